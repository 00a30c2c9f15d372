"""`compartment promote` (and deploy / deployment watch) as a user runs it.

Every test runs the installed `compartment` executable in a subprocess against
the real control plane of tests/support.py on a loopback port, and checks that
the token of that control plane appears in no output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compartment_cli.models.result import RunResult
from tests.support import COMPARTMENT, ControlPlane, cli_json, http_get, result_rows

PROMOTE = ("promote", "--from", "staging", "--to", "production")

RESULT_KEYS = {
    "deploymentRunId",
    "status",
    "project",
    "sourceEnvironment",
    "environment",
    "deployments",
    "activeDeployments",
    "durationMs",
    "environmentCreated",
    "joined",
}
SUMMARY_KEYS = {
    "id",
    "serviceName",
    "deploymentRunId",
    "status",
    "promotionStage",
    "health",
    "isActive",
    "label",
    "routeUrl",
    "failureMessage",
    "createdAt",
    "completedAt",
    "rollbackAvailable",
    "operation",
    # Optional in the platform's newest ReadSummary; the local control plane always
    # fills both.
    "accessProtected",
    "reusableImageState",
}

# Stands in front of the test service: in the environments listed in FAIL_IN,
# /healthz answers 503 for ever, so a promotion there fails its readiness check.
GATE = """\
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).parent
if os.environ["COMPARTMENT_ENVIRONMENT"] not in (HERE / "FAIL_IN").read_text().split():
    os.execv(sys.executable, [sys.executable, str(HERE / "service.py")])


class Unhealthy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Unhealthy).serve_forever()
"""


def cli(
    plane: ControlPlane,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `compartment *args` in `cwd`; no output may contain the server's token."""
    completed = subprocess.run(
        [COMPARTMENT, *args],
        cwd=cwd,
        env={**plane.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert_no_token(plane, completed.stdout, completed.stderr)
    return completed


def assert_no_token(plane: ControlPlane, *outputs: str) -> None:
    token = plane.token
    for output in outputs:
        assert token not in output


def parse_result(stdout: str) -> dict[str, Any]:
    """The one JSON document on stdout, checked against the documented shape."""
    document = cli_json(stdout)  # fails if anything else is on stdout
    assert set(document) == RESULT_KEYS
    for deployment in (*document["deployments"], *document["activeDeployments"]):
        assert set(deployment) == SUMMARY_KEYS
    msgspec.json.decode(stdout, type=RunResult, strict=True)
    result: dict[str, Any] = document
    return result


def failing_in_production(plane: ControlPlane, project: Any) -> Path:
    """A project (2.0.0) in staging whose web service fails its readiness in production."""
    directory: Path = project(
        "2.0.0", web={"readiness": {"type": "http", "path": "/healthz", "timeoutMs": 1500}}, api={}
    )
    (directory / "web" / "gate.py").write_text(GATE)
    (directory / "web" / "FAIL_IN").write_text("production\n")
    config = json.loads((directory / "compartment.yml").read_text())
    web = config["services"]["web"]["run"]
    web["command"] = web["command"].replace("service.py", "gate.py")
    (directory / "compartment.yml").write_text(json.dumps(config))
    assert plane.deploy_and_wait(directory, "staging")["status"] == "succeeded"
    return directory


def staged(plane: ControlPlane, project: Any, version: str = "2.0.0", **services: Any) -> Path:
    """A project deployed to staging (and succeeded there); returns its directory."""
    directory: Path = project(version, **services)
    run = plane.deploy_and_wait(directory, "staging")
    assert run["status"] == "succeeded", run
    return directory


def start_cli(plane: ControlPlane, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [COMPARTMENT, *args],
        cwd=cwd,
        env=plane.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- success -----------------------------------------------------------------------------------


def test_promote_all_services(control_plane: ControlPlane, project: Any) -> None:
    directory = staged(control_plane, project, "2.0.0")

    done = cli(control_plane, "promote", "--from", "staging", "--to", "production", cwd=directory)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: nothing but errors
    rows = result_rows(done.stdout)
    assert [row[0] for row in rows] == ["api", "web"]
    production = control_plane.active("shop", "production")
    header = done.stdout.splitlines()[0].split()
    # production did not exist before this first promotion into it
    assert header[:7] == ["shop", "staging", "→", "production", "(new", "environment)", "run"]
    assert header[8:] == ["succeeded", header[-1]]
    for row in rows:
        service, deployment_id, status, route, duration = row
        assert deployment_id == production[service]["id"]
        assert status == "succeeded"
        assert route == production[service]["routeUrl"]
        assert duration.endswith(("ms", "s"))
        assert http_get(route).startswith("200 2.0.0")


def test_promote_one_service(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")
    directory = staged(control_plane, project, "2.0.0")

    done = cli(
        control_plane,
        *PROMOTE,
        "--service",
        "api",
        "--output",
        "json",
        cwd=directory,
    )

    assert done.returncode == 0, done.stderr
    result = parse_result(done.stdout)
    assert [d["serviceName"] for d in result["deployments"]] == ["api"]
    after = control_plane.active("shop", "production")
    assert http_get(after["api"]["routeUrl"]).startswith("200 2.0.0")
    assert after["web"]["id"] == before["web"]["id"]


def test_verbose_lines_arrive_while_the_command_runs_and_json_stays_pure(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = staged(control_plane, project, "2.0.0", web={"ready_after": 2.5}, api={})

    process = start_cli(
        control_plane,
        *PROMOTE,
        "--verbose",
        "--output",
        "json",
        cwd=directory,
    )
    assert process.stderr is not None
    assert process.stdout is not None
    first = process.stderr.readline()
    still_running = process.poll() is None
    seen_at = time.monotonic()
    stdout, rest = process.communicate(timeout=60)
    finished_at = time.monotonic()

    assert still_running, "the first verbose line came only after the command had ended"
    assert finished_at - seen_at > 1.0  # the slow readiness was still ahead
    assert first.split()[1:2] == ["run"]
    stderr = first + rest
    assert "checking_readiness" in stderr
    assert "GET /healthz answered 503" in stderr
    assert process.returncode == 0, stderr
    assert_no_token(control_plane, stdout, stderr)
    result = parse_result(stdout)
    assert result["status"] == "succeeded"
    assert result["sourceEnvironment"] == {"name": "staging"}
    assert result["environment"] == {"name": "production"}
    assert result["project"] == {"name": "shop"}
    assert result["deploymentRunId"] in first
    assert {d["serviceName"] for d in result["activeDeployments"]} == {"api", "web"}
    assert all(d["deploymentRunId"] == result["deploymentRunId"] for d in result["deployments"])
    assert result["durationMs"] >= 2000


# --- failure and refusals ----------------------------------------------------------------------


def test_failing_readiness_exits_1_and_the_old_version_keeps_answering(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")
    directory = failing_in_production(control_plane, project)

    done = cli(control_plane, "promote", "--from", "staging", "--to", "production", cwd=directory)

    assert done.returncode == 1, done.stderr
    assert "failed" in done.stdout
    assert "production keeps serving its previous deployments" in done.stderr
    assert "web:" in done.stderr
    after = control_plane.active("shop", "production")
    assert {s: d["id"] for s, d in after.items()} == {s: d["id"] for s, d in before.items()}
    # The route is not shown beside a failed deployment as if it served it.
    rows = {row[0]: " ".join(row) for row in result_rows(done.stdout)}
    for service in ("api", "web"):
        previous = after[service]
        assert (
            f"not switched: {previous['routeUrl']} still serves {previous['id']}" in rows[service]
        )
    # The cause is told once, under web; api gets one line.
    assert "  api: not promoted: web failed" in done.stderr.splitlines()
    assert done.stderr.count("readiness") == 1, done.stderr
    assert http_get(after["web"]["routeUrl"]).startswith("200 1.0.0")

    as_json = cli(
        control_plane,
        *PROMOTE,
        "-o",
        "json",
        cwd=directory,
    )
    assert as_json.returncode == 1
    result = parse_result(as_json.stdout)
    assert result["status"] == "failed"
    web = next(d for d in result["deployments"] if d["serviceName"] == "web")
    assert web["status"] == "failed"
    assert web["failureMessage"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--to", "production"], "Missing option '--from'"),
        (["--from", "production", "--to", "production"], "same_environment"),
        (["--from", "staging", "--to", "production", "--output", "yaml"], "'yaml'"),
        (["--from", "staging", "--to", "production", "--timeout", "soon"], "invalid_duration"),
    ],
)
def test_usage_errors_exit_2_with_one_json_document(
    control_plane: ControlPlane, tmp_path: Path, args: list[str], needle: str
) -> None:
    json_flag = [] if "--output" in args else ["--output", "json"]
    done = cli(control_plane, "promote", "--project", "shop", *args, *json_flag, cwd=tmp_path)
    assert done.returncode == 2
    if json_flag:
        document = cli_json(done.stdout)
        assert document["error"]["exitCode"] == 2
        assert needle in json.dumps(document)
    else:
        assert done.stdout == ""
        assert needle in done.stderr


def test_bad_compartment_yml_exits_2_with_line_and_key(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "compartment.yml").write_text(
        "name: shop\n"
        "services:\n"
        "  api:\n"
        "    path: api\n"
        "    readiness:\n"
        "      type: http\n"
        "      timeoutMs: 400000\n"
    )
    done = cli(control_plane, "promote", "--from", "staging", "--to", "production", cwd=tmp_path)
    assert done.returncode == 2
    assert "compartment.yml:7: services.api.readiness.timeoutMs:" in done.stderr
    assert done.stdout == ""


def test_no_compartment_yml_and_no_project_exits_2(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    done = cli(
        control_plane,
        *PROMOTE,
        "-o",
        "json",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "compartment.yml was not found" in cli_json(done.stdout)["error"]["message"]


def test_unknown_environment_exits_3(control_plane: ControlPlane, project: Any) -> None:
    directory = staged(control_plane, project)
    done = cli(
        control_plane, "promote", "--from", "qa", "--to", "production", "-o", "json", cwd=directory
    )
    assert done.returncode == 3
    assert cli_json(done.stdout) == {
        "error": {
            "code": "environment_not_found",
            "message": cli_json(done.stdout)["error"]["message"],
            "exitCode": 3,
        }
    }


def test_busy_target_exits_3(control_plane: ControlPlane, project: Any) -> None:
    directory = staged(control_plane, project, "2.0.0", web={"ready_after": 3}, api={})
    first = control_plane.post_promote(
        projectName="shop", sourceEnvironmentName="staging", targetEnvironmentName="production"
    )
    assert first.status_code == 200

    done = cli(
        control_plane,
        *PROMOTE,
        "--service",
        "web",
        cwd=directory,
    )

    assert done.returncode == 3
    assert "error:" in done.stderr
    assert first.json()["deploymentRunId"] in done.stderr
    control_plane.wait_run(first.json()["deploymentRunId"])


def test_wrong_token_exits_4_and_is_not_shown(control_plane: ControlPlane, project: Any) -> None:
    directory = staged(control_plane, project)
    wrong = "wrong-token-0123456789"
    for output in ("text", "json"):
        done = cli(
            control_plane,
            *PROMOTE,
            "--verbose",
            "--output",
            output,
            cwd=directory,
            env={
                "COMPARTMENT_API_URL": control_plane.api_url,
                "COMPARTMENT_TOKEN": wrong,
                "COMPARTMENT_DEBUG": "1",
            },
        )
        assert done.returncode == 4
        assert wrong not in done.stdout + done.stderr
    assert cli_json(done.stdout)["error"]["code"] == "unauthorized"


def test_server_stopped_exits_5(control_plane: ControlPlane, project: Any) -> None:
    directory = staged(control_plane, project)
    control_plane.stop()
    started = time.monotonic()
    done = cli(
        control_plane,
        *PROMOTE,
        "-o",
        "json",
        cwd=directory,
    )
    assert done.returncode == 5
    error = cli_json(done.stdout)["error"]
    assert error["exitCode"] == 5
    assert "connection refused" in error["message"]
    assert time.monotonic() - started < 20


# --- the wait ends early -----------------------------------------------------------------------


def test_timeout_exits_124_and_watch_follows_the_run_to_its_end(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = staged(control_plane, project, "2.0.0", web={"ready_after": 3}, api={})

    done = cli(
        control_plane,
        *PROMOTE,
        "--timeout",
        "1s",
        cwd=directory,
    )

    assert done.returncode == 124, done.stderr
    assert "goes on in the control plane" in done.stderr
    run_id = done.stderr.split("compartment deployment watch ")[1].split()[0]
    assert control_plane.run(run_id)["status"] in ("queued", "running")

    watched = cli(control_plane, "deployment", "watch", run_id, "-o", "json", cwd=directory)
    assert watched.returncode == 0, watched.stderr
    result = parse_result(watched.stdout)
    assert result["deploymentRunId"] == run_id
    assert result["status"] == "succeeded"
    assert result["sourceEnvironment"] == {"name": "staging"}

    # A run that has ended is reported at once, the same way.
    again = cli(control_plane, "deployment", "watch", run_id, cwd=directory)
    assert again.returncode == 0
    assert [row[0] for row in result_rows(again.stdout)] == ["api", "web"]


def test_sigint_exits_130_and_says_how_to_follow_the_run(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = staged(control_plane, project, "2.0.0", web={"ready_after": 3}, api={})
    process = start_cli(
        control_plane,
        *PROMOTE,
        "--verbose",
        "-o",
        "json",
        cwd=directory,
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the run has started
    assert " run run_" in first
    process.send_signal(signal.SIGINT)
    stdout, rest = process.communicate(timeout=30)

    assert process.returncode == 130, first + rest
    error = cli_json(stdout)["error"]
    assert error["exitCode"] == 130
    assert error["code"] == "interrupted"
    run_id = first.split(" run ")[1].split()[0]
    assert f"compartment deployment watch {run_id}" in error["message"]
    assert "Traceback" not in rest
    assert control_plane.wait_run(run_id)["status"] == "succeeded"


# --- without the event stream ------------------------------------------------------------------


def test_polling_without_the_event_stream_gives_the_same_result(
    session_root: Path, project: Any
) -> None:
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="cp-", dir=session_root)))
    plane.start("--no-events")
    try:
        assert plane.get("/v1/events", projectName="shop", environmentName="x").status_code == 404
        directory = staged(plane, project, "2.0.0", web={"ready_after": 1.5}, api={})

        done = cli(
            plane,
            *PROMOTE,
            "--verbose",
            "--output",
            "json",
            cwd=directory,
        )

        assert done.returncode == 0, done.stderr
        result = parse_result(done.stdout)
        assert result["status"] == "succeeded"
        assert sorted(d["serviceName"] for d in result["deployments"]) == ["api", "web"]
        assert all(d["promotionStage"] == "active" for d in result["deployments"])
        # --verbose shows each change of status and stage.
        assert "awaiting_readiness" in done.stderr
        assert "succeeded  active" in done.stderr
        production = plane.active("shop", "production")
        assert http_get(production["web"]["routeUrl"]).startswith("200 2.0.0")

        text = cli(plane, "deploy", "--env", "staging", cwd=directory)
        assert text.returncode == 0, text.stderr
        assert [row[0] for row in result_rows(text.stdout)] == ["api", "web"]
    finally:
        plane.stop()


# --- the other commands ------------------------------------------------------------------------


def test_deploy_and_deployment_list(control_plane: ControlPlane, project: Any) -> None:
    directory = project("3.0.0")

    done = cli(control_plane, "deploy", "--env", "staging", "-o", "json", cwd=directory)

    assert done.returncode == 0, done.stderr
    result = parse_result(done.stdout)
    assert result["sourceEnvironment"] is None
    assert result["environment"] == {"name": "staging"}
    staging = control_plane.active("shop", "staging")
    assert http_get(staging["api"]["routeUrl"]).startswith("200 3.0.0")

    listed = cli(control_plane, "deployment", "list", "--env", "staging", cwd=directory)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:7] == [
        "SERVICE",
        "DEPLOYMENT",
        "STATUS",
        "STAGE",
        "ACTIVE",
        "CREATED",
        "ROUTE",
    ]
    assert {row[1] for row in result_rows(listed.stdout)} == {
        d["id"] for d in result["deployments"]
    }
    as_json = cli(
        control_plane, "deployment", "list", "--env", "staging", "-o", "json", cwd=directory
    )
    assert len(cli_json(as_json.stdout)["deployments"]) == 2
