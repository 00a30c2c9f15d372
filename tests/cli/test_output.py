"""Output: which stream gets what, terminals, NO_COLOR, exit codes from results and errors."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import msgspec
import pytest

from compartment_cli.cli.output import Output, color_allowed
from compartment_cli.errors import ApiRefused, WaitTimedOut
from compartment_cli.models.api import NameRef, ReadOperationSummary, ReadSummary
from compartment_cli.models.events import StepEvent
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.watch import RunTarget
from tests.support import cli_json


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


DEPLOYMENT = ReadSummary(
    id="dep_1",
    service_name="api",
    deployment_run_id="run_1",
    status="succeeded",
    promotion_stage="active",
    health="healthy",
    is_active=True,
    label=None,
    route_url="http://127.0.0.1:9000/",
    failure_message=None,
    created_at="2025-01-01T12:00:00Z",
    completed_at="2025-01-01T12:00:01Z",
    rollback_available=False,
    operation=ReadOperationSummary(
        type="promote", status="succeeded", created_at="t", completed_at="t"
    ),
)
RESULT = RunResult(
    deployment_run_id="run_1",
    status="succeeded",
    project=NameRef(name="shop"),
    source_environment=NameRef(name="staging"),
    environment=NameRef(name="production"),
    deployments=[DEPLOYMENT],
    active_deployments=[DEPLOYMENT],
    duration_ms=1000,
)
TARGET = RunTarget(
    run_id="run_1",
    project="shop",
    environment="production",
    source_environment="staging",
    services={"dep_1": "api"},
)
STEP = StepEvent(
    deployment_run_id="run_1",
    deployment_id="dep_1",
    service_name="api",
    step="checking_readiness",
    status="running",
    message="GET /healthz answered 503, retrying",
    at="2025-01-01T12:00:01.204Z",
)


def output(*, json: bool = False, verbose: bool = False, tty: bool = False, **env: str) -> Output:
    stream = Terminal if tty else io.StringIO
    return Output.create(json=json, verbose=verbose, stdout=stream(), stderr=stream(), environ=env)


def text(stream: object) -> str:
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def test_colour_needs_a_terminal_and_no_no_color() -> None:
    assert not color_allowed(io.StringIO(), {})
    assert color_allowed(Terminal(), {})
    assert not color_allowed(Terminal(), {"NO_COLOR": "1"})
    assert not color_allowed(Terminal(), {"TERM": "dumb"})
    assert color_allowed(Terminal(), {"NO_COLOR": ""})


def test_text_result_on_stdout_exit_0() -> None:
    out = output()
    assert out.run(lambda: RESULT) == 0
    header, columns, row = text(out.stdout).splitlines()
    assert header.startswith(f"{RESULT.project.name}  ")
    assert "run run_1" in header
    assert columns.split() == ["SERVICE", "DEPLOYMENT", "STATUS", "ROUTE", "DURATION"]
    assert row.split() == ["api", "dep_1", "succeeded", "http://127.0.0.1:9000/", "1.0s"]
    assert text(out.stderr) == ""


def test_failed_result_exits_1_and_explains_on_stderr() -> None:
    failed = msgspec.structs.replace(
        RESULT,
        status="failed",
        deployments=[
            msgspec.structs.replace(DEPLOYMENT, status="failed", failure_message="api: exited")
        ],
    )
    out = output(json=True)
    assert out.run(lambda: failed) == 1
    assert cli_json(text(out.stdout))["status"] == "failed"
    assert "api: exited" in text(out.stderr)


def test_errors_in_text_and_json() -> None:
    def refused() -> object:
        raise ApiRefused("environment 'qa' not found", code="environment_not_found")

    out = output()
    assert out.run(refused) == 3
    assert text(out.stderr) == "error: environment 'qa' not found\n"
    assert text(out.stdout) == ""

    out = output(json=True, tty=True)
    assert out.run(refused) == 3
    assert cli_json(text(out.stdout)) == {
        "error": {
            "code": "environment_not_found",
            "message": "environment 'qa' not found",
            "exitCode": 3,
        }
    }


def test_timeout_message_says_how_to_follow_again() -> None:
    def timed_out() -> object:
        raise WaitTimedOut("Timed out after 1s.", run_id="run_9")

    out = output()
    assert out.run(timed_out) == 124
    assert "compartment deployment watch run_9" in text(out.stderr)


def test_colour_on_a_terminal_only() -> None:
    out = output(tty=True)
    out.run(lambda: RESULT)
    assert "\x1b[" in text(out.stdout)
    out = output(tty=True, NO_COLOR="1")
    out.run(lambda: RESULT)
    assert "\x1b[" not in text(out.stdout)


def test_verbose_lines_go_to_stderr_at_once_even_in_json_mode() -> None:
    out = output(json=True, verbose=True)
    reporter = out._reporter()
    reporter.run_started(TARGET)
    reporter.step(STEP)
    lines = text(out.stderr).splitlines()
    assert "run run_1  promote staging → production: api dep_1" in lines[0]
    assert lines[1].endswith("api  checking_readiness  GET /healthz answered 503, retrying")
    assert text(out.stdout) == ""
    reporter.close()


def test_the_run_line_carries_the_control_planes_time_like_the_steps_after_it() -> None:
    out = output(verbose=True)
    reporter = out._reporter()
    requested = dataclasses.replace(TARGET, requested_at="2025-01-01T12:00:01.100Z")
    reporter.run_started(requested)
    reporter.step(STEP)
    reporter.close()
    times = [line.split()[0] for line in text(out.stderr).splitlines()]
    assert times == sorted(times)
    assert times[0].endswith(":00:01.100")


def test_no_progress_off_a_terminal_but_warnings() -> None:
    out = output()
    reporter = out._reporter()
    reporter.run_started(TARGET)
    reporter.step(STEP)
    reporter.notice("reconnecting")
    reporter.warning("skipped event 3")
    reporter.close()
    assert text(out.stderr) == "warning: skipped event 3\n"
    assert reporter.run_id == "run_1"


def test_live_view_on_a_terminal_shows_each_service_and_erases_itself() -> None:
    out = output(tty=True, NO_COLOR="1")
    reporter = out._reporter()
    reporter.run_started(TARGET)
    reporter.step(STEP)
    time.sleep(0.35)
    reporter.close()
    drawn = text(out.stderr)
    assert "\x1b[2K  api  waiting for readiness" in drawn
    assert not any(code in drawn for code in ("\x1b[1m", "\x1b[2m", "\x1b[33m"))  # NO_COLOR
    assert "GET /healthz answered 503, retrying" in drawn
    assert drawn.endswith("\x1b[J\x1b[?25h")  # erased, cursor shown again
    assert text(out.stdout) == ""


def test_no_live_view_in_json_mode_on_a_terminal() -> None:
    out = output(json=True, tty=True)
    reporter = out._reporter()
    reporter.run_started(TARGET)
    time.sleep(0.2)
    reporter.close()
    assert text(out.stderr) == ""


def test_verbose_prints_status_changes_only_when_polling() -> None:
    out = output(verbose=True)
    reporter = out._reporter()
    running = msgspec.structs.replace(DEPLOYMENT, status="running", promotion_stage="releasing")
    reporter.deployment_changed(running, polled=False)  # the step events tell this already
    assert text(out.stderr) == ""
    reporter.deployment_changed(running, polled=True)
    assert text(out.stderr).rstrip().endswith("api  running  releasing  health healthy")


def test_nothing_configured_adds_how_to_get_a_control_plane_to_network_and_auth_errors() -> None:
    from compartment_cli.errors import Unavailable

    out = output(json=True)
    out.not_configured = True
    assert out.error(Unavailable("connection refused")) == 5
    assert out.error(ApiRefused("project 'shop' not found")) == 3
    first, second = (cli_json(line)["error"]["message"] for line in text(out.stdout).splitlines())
    assert "compartment server" in first
    assert "compartment server" not in second


def test_the_hint_is_for_the_default_url_without_a_login_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compartment_cli.cli.app import _connection

    for name in ("COMPARTMENT_API_URL", "COMPARTMENT_TOKEN", "COMPARTMENT_ORG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMPARTMENT_CLI_CONFIG_DIR", str(tmp_path))
    bare, pointed = output(), output()
    _connection(None, None, bare)
    _connection("http://127.0.0.1:9", None, pointed)
    assert bare.not_configured
    assert not pointed.not_configured
