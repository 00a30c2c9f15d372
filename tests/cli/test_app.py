"""Parsing and the command edge, in-process: typer's runner and ``main`` with captured streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compartment_cli.cli import main
from compartment_cli.cli.app import app, parse_duration, wants_json
from compartment_cli.cli.output import Output
from compartment_cli.errors import EXIT_CODE_HELP, UsageError
from tests.support import cli_json

runner = CliRunner()

# Nothing listens here: a test that got as far as a request would fail with 5, not 2.
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPARTMENT_CLI_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("COMPARTMENT_API_URL", "COMPARTMENT_TOKEN", "COMPARTMENT_ORG", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "staging"], "Missing option '--to'"),
        (["--to", "production"], "Missing option '--from'"),
        (["--from", "a", "--to", "b", "--output", "yaml"], "'yaml' is not one of"),
        (["--from", "a", "--to", "b", "--no-such-flag"], "No such option"),
    ],
)
def test_typer_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["promote", "--project", "shop", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "staging"],
        ["--from", "a", "--to", "b", "--bogus"],
        ["--from", "a", "--to", "b", "--limit", "x"],
    ],
)
def test_typer_usage_errors_in_json_mode_are_one_json_document(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = run_main(capsys, "promote", "--output", "json", *args)
    assert code == 2
    document = cli_json(out)
    assert document["error"]["code"] == "usage_error"
    assert document["error"]["exitCode"] == 2
    assert err == ""


def test_same_environment_twice_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = runner.invoke(
        app,
        ["promote", "--project", "shop", "--from", "prod", "--to", "prod", "--api-url", CLOSED],
    )
    assert result.exit_code == 2
    assert "--from and --to both name 'prod'" in result.output

    code, out, _ = run_main(
        capsys, "promote", "--project", "shop", "--from", "p", "--to", "p", "-o", "json"
    )
    assert code == 2
    assert cli_json(out)["error"]["code"] == "same_environment"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--project", "Not_A_Slug"], "invalid_name"),
        (["--project", "shop", "--service", "Bad Name"], "invalid_name"),
        (["--project", "shop", "--timeout", "later"], "invalid_duration"),
    ],
)
def test_bad_names_and_durations_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], code: str
) -> None:
    exit_code, out, _ = run_main(
        capsys, "promote", "--from", "a", "--to", "b", "--api-url", CLOSED, "-o", "json", *args
    )
    assert exit_code == 2
    assert cli_json(out)["error"]["code"] == code


def test_without_project_or_compartment_yml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "promote", "--from", "a", "--to", "b")
    assert code == 2
    assert out == ""
    assert err.startswith("error: compartment.yml was not found in the current directory.")


def test_service_must_be_in_compartment_yml(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "compartment.yml").write_text("name: shop\nservices:\n  api: api\n")
    code, out, _ = run_main(
        capsys, "promote", "--from", "a", "--to", "b", "--service", "db", "-o", "json"
    )
    assert code == 2
    assert "services: api" in cli_json(out)["error"]["message"]


def test_a_bad_api_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys, "promote", "--project", "shop", "--from", "a", "--to", "b",
        "--api-url", "localhost:8787", "-o", "json",
    )  # fmt: skip
    assert code == 2
    assert cli_json(out)["error"]["code"] == "invalid_api_url"


def test_promote_help_lists_the_exit_codes() -> None:
    result = runner.invoke(app, ["promote", "--help"])
    assert result.exit_code == 0
    for line in EXIT_CODE_HELP.splitlines():
        assert line.strip() in result.output
    assert "--timeout" in result.output


def test_version_is_fast_and_does_not_import_typer() -> None:
    probe = (
        "import sys; from compartment_cli.cli import main; code = main(['--version']); "
        "assert 'typer' not in sys.modules and 'httpx' not in sys.modules; sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("compartment ")


def test_help_does_not_import_httpx_or_rich() -> None:
    probe = (
        "import sys; from compartment_cli.cli import main; main(['promote', '--help']); "
        "bad = [m for m in ('httpx', 'rich', 'anyio', 'compartment_cli.server.app') "
        "if m in sys.modules]; assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", None), ("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0),
     ("500ms", 0.5), ("1.5s", 1.5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "-1s", "1m-", "s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_wants_json() -> None:
    assert wants_json(["promote", "--output", "json"])
    assert wants_json(["promote", "-o", "JSON"])
    assert wants_json(["promote", "--output=json"])
    assert not wants_json(["promote", "--output", "text"])
    assert not wants_json(["promote", "--", "--output", "json"])


def test_server_flags_reach_serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[Any] = []

    def fake_serve(options: Any) -> int:
        seen.append(options)
        return 7

    monkeypatch.setattr("compartment_cli.server.main.serve", fake_serve)
    args = [
        "server", "--host", "0.0.0.0", "--port", "9999", "--data-dir", str(tmp_path),
        "--token", "t0k3n", "--no-login", "--no-events", "--ping-interval", "0.5",
        "--drain-timeout", "2", "--max-upload-bytes", "1024",
    ]  # fmt: skip
    assert main(args) == 7
    (options,) = seen
    assert (options.host, options.port, options.data_dir) == ("0.0.0.0", 9999, tmp_path)
    assert (options.token, options.login, options.events) == ("t0k3n", False, False)
    assert (options.ping_interval, options.drain_timeout, options.max_upload_bytes) == (
        0.5,
        2.0,
        1024,
    )
    hidden = runner.invoke(app, ["server", "--help"]).output
    assert "--no-events" in hidden
    assert "--ping-interval" not in hidden


def test_unexpected_errors_say_where_to_report_and_hide_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def boom() -> object:
        raise ZeroDivisionError("division by zero")

    out = Output.create(json=False, verbose=False, environ={})
    assert out.run(boom) == 70
    _, err = capsys.readouterr()
    assert "unexpected ZeroDivisionError" in err
    assert "report it" in err
    assert "COMPARTMENT_DEBUG=1" in err
    assert "Traceback" not in err

    debug = Output.create(json=True, verbose=False, environ={"COMPARTMENT_DEBUG": "1"})
    assert debug.run(boom) == 70
    stdout, err = capsys.readouterr()
    assert "Traceback" in err
    assert cli_json(stdout)["error"]["code"] == "internal_error"


def test_keyboard_interrupt_outside_the_event_loop_is_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted() -> object:
        raise KeyboardInterrupt

    out = Output.create(json=True, verbose=False, environ={})
    assert out.run(interrupted) == 130
    stdout, _ = capsys.readouterr()
    assert cli_json(stdout)["error"]["exitCode"] == 130
