"""What help and usage say: each command its own exit codes, metavars that say what they are,
and plain words for an empty environment name (issue: messages that read right)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from compartment_cli.cli import logs, main  # logs registers its commands on the app
from compartment_cli.cli.app import app

runner = CliRunner()
assert logs.logs is not None


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_each_command_states_its_own_exit_codes() -> None:
    deploy = help_of("deploy")
    assert "0    every deployed service is active" in deploy
    assert "1    the deployment failed; the environment keeps serving" in deploy
    assert "promot" not in deploy.split("Exit codes:")[1]
    promote = help_of("promote")
    assert "0    every promoted deployment is active" in promote
    watch = help_of("deployment", "watch")
    assert "0    the run succeeded" in watch
    for command in (("deployment", "list"), ("logs",), ("deployment", "logs")):
        codes = help_of(*command).split("Exit codes:")[1]
        assert "0    done" in codes
        assert "  1 " not in codes  # nothing of these can fail a promotion
        assert "124" not in codes


def test_usage_and_metavars_say_what_they_are() -> None:
    assert "Usage: compartment deployment watch [OPTIONS] RUN_ID" in help_of("deployment", "watch")
    assert "{" not in help_of("deployment", "watch").splitlines()[0]
    promote = help_of("promote")
    assert "<str>" not in promote.split("Options:")[1]
    assert re.search(r"--from <env>\s", promote)
    assert re.search(r"--to <env>\s", promote)
    assert re.search(r"--project <name>\s", promote)
    assert re.search(r"--service <name>\s", promote)
    assert re.search(r"--timeout <duration>\s", promote)
    assert re.search(r"-e, --env <env>\s", help_of("deploy"))
    for command in (("deploy",), ("deployment", "list"), ("logs",), ("deployment", "logs")):
        assert "<str>" not in help_of(*command).split("Options:")[1], command


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["promote", "--project", "shop", "--from", "staging", "--to", ""], "--to"),
        (["promote", "--project", "shop", "--from", "", "--to", "production"], "--from"),
        (["logs", "--project", "shop", "--env", ""], "--env"),
    ],
)
def test_an_empty_environment_name_is_said_in_words(
    capsys: pytest.CaptureFixture[str], args: list[str], flag: str
) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"error: {flag}: an environment name cannot be empty\n"
    assert main([*args, "-o", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["error"]["message"] == f"{flag}: an environment name cannot be empty"
