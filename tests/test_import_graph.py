"""Start-up: a command imports only what it needs (issue 5).

Each command runs as a user runs it (the installed ``compartment`` script) under
``python -X importtime``, which names every module the process imports.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import COMPARTMENT, clean_environ

# What only a command that talks to a control plane, or reads compartment.yml, needs.
NETWORK_AND_FILES = {"httpx", "httpcore", "anyio", "msgspec", "ruamel", "h11"}
# Never needed to parse a command line: typer 0.29 would import pydantic to coerce
# values (compartment_cli/cli/coercion.py avoids it); rich would format help.
NEVER_TO_PARSE = {"pydantic", "pydantic_core", "rich", "pygments"}


def imported(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages ``compartment *args`` imports, and how it ended."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", COMPARTMENT, *args],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
    )
    names = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return names, done


def test_version_imports_neither_typer_nor_anything_heavy() -> None:
    names, done = imported("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("compartment ")
    assert names & (NETWORK_AND_FILES | NEVER_TO_PARSE | {"typer", "click"}) == set()


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["promote", "--help"],
        ["deploy", "--help"],
        ["deployment", "--help"],
        ["deployment", "watch", "--help"],
        ["server", "--help"],
    ],
)
def test_help_imports_nothing_but_the_command_line(args: list[str]) -> None:
    names, done = imported(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage: compartment" in done.stdout
    assert names & (NETWORK_AND_FILES | NEVER_TO_PARSE) == set()


def test_a_command_parses_its_options_without_pydantic() -> None:
    # Parsed, then refused before any request: --from and --to are the same.
    names, done = imported("promote", "--from", "a", "--to", "a", "--project", "shop")
    assert done.returncode == 2, done.stderr[-2000:]
    assert names & NEVER_TO_PARSE == set()
