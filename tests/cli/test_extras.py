"""compartment schema (the JSON Schemas of --output json) and compartment completion."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from compartment_cli.cli.schemas import KINDS, generate, shipped
from tests.support import COMPARTMENT, clean_environ


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPARTMENT, *args], capture_output=True, text=True, env=clean_environ(**env), timeout=60
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_shipped_schemas_are_generated_from_the_structs(kind: str) -> None:
    assert shipped(kind) == generate(kind), (
        f"compartment_cli/schemas/{kind}.json is stale: run python -m compartment_cli.cli.schemas"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_compartment_schema_prints_a_valid_json_schema(kind: str) -> None:
    done = run("schema", kind)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert done.stdout == shipped(kind)


def test_the_schemas_refuse_what_the_cli_never_prints() -> None:
    error = json.loads(shipped("error"))
    jsonschema.validate({"error": {"code": "x", "message": "m", "exitCode": 5}}, error)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error": {"code": "x", "message": "m"}}, error)  # no exitCode
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"deploymentRunId": 7, "status": "succeeded"}, json.loads(shipped("result"))
        )


def test_an_unknown_schema_is_a_usage_error() -> None:
    done = run("schema", "yaml")
    assert done.returncode == 2
    assert "'yaml' is not one of" in done.stderr


# --- completion --------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_of_each_shell(shell: str) -> None:
    done = run("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "_COMPARTMENT_COMPLETE=complete_" + shell in done.stdout
    assert "compartment" in done.stdout


def test_bash_completes_commands_and_options_through_the_script() -> None:
    script = run("completion", "bash").stdout
    probe = (
        f"{script}\n"
        "complete_words() { COMP_WORDS=($1); COMP_CWORD=$2; _compartment_completion compartment;"
        ' printf "%s\\n" "${COMPREPLY[@]}"; }\n'
        'complete_words "compartment pro" 1\n'
        "echo ---\n"
        'complete_words "compartment promote --t" 2\n'
    )
    env = clean_environ(PATH=f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin:/bin")
    done = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    commands, options = done.stdout.split("---\n")
    assert commands.split() == ["promote"], done.stderr
    assert set(options.split()) == {"--to", "--timeout"}


@pytest.mark.parametrize(
    ("shell", "env", "expected"),
    [
        ("zsh", {"_TYPER_COMPLETE_ARGS": "compartment deployment "}, ["list", "watch"]),
        ("fish", {"_TYPER_COMPLETE_ARGS": "compartment promote -o ",
                  "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, ["text", "json"]),
    ],
)  # fmt: skip
def test_zsh_and_fish_are_answered_by_the_same_protocol(
    shell: str, env: dict[str, str], expected: list[str]
) -> None:
    done = run(**{"_COMPARTMENT_COMPLETE": f"complete_{shell}", **env})
    assert done.returncode == 0, done.stderr
    for word in expected:
        assert word in done.stdout


def test_schema_and_completion_cost_nothing_when_not_used() -> None:
    # Nothing new at start-up: the schemas are read only by `compartment schema`, and typer
    # loads its completion classes itself (typer.completion) whether or not we complete.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", COMPARTMENT, "promote", "--help"],
        capture_output=True, text=True, env=clean_environ(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    modules = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()}
    assert "compartment_cli.cli.extras" in modules
    assert "compartment_cli.cli.schemas" not in modules
    assert "msgspec" not in modules
