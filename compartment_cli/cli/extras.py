"""Commands around the main ones: ``compartment schema`` and ``compartment completion``.

``register`` adds them to the app (cli/app.py calls it), so this module never
imports the app. Shell completion costs nothing when not completing: the
shell's completion script runs ``compartment`` with ``_COMPARTMENT_COMPLETE``
set, and only then are typer's completion classes loaded (``prepare_completion``).
"""

from __future__ import annotations

import enum
import os
import sys
from typing import Annotated

import typer

from compartment_cli.cli.coercion import DirectCommand

__all__ = ["COMPLETE_VAR", "prepare_completion", "register"]

PROG = "compartment"
COMPLETE_VAR = "_COMPARTMENT_COMPLETE"


class SchemaKind(enum.StrEnum):
    result = "result"
    error = "error"
    list = "list"
    plan = "plan"


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def schema(
    kind: Annotated[
        SchemaKind,
        typer.Argument(
            help="result (a run's final state), error (any other outcome), list (deployment list).",
            case_sensitive=False,
        ),
    ],
) -> None:
    """Print the JSON Schema of what --output json prints."""
    from compartment_cli.cli.schemas import shipped

    sys.stdout.write(shipped(kind.value))


def completion(shell: Annotated[Shell, typer.Argument(case_sensitive=False)]) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash: compartment completion bash > ~/.local/share/bash-completion/completions/compartment
    zsh:  compartment completion zsh > "${fpath[1]}/_compartment"
    fish: compartment completion fish > ~/.config/fish/completions/compartment.fish
    """
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell.value)
    sys.stdout.write(script + "\n")


def register(app: typer.Typer) -> None:
    app.command("schema", cls=DirectCommand)(schema)
    app.command("completion", cls=DirectCommand)(completion)


def prepare_completion() -> None:
    """When the shell asks for completions, load typer's completion classes (only then)."""
    if os.environ.get(COMPLETE_VAR):
        from typer._completion_classes import completion_init

        completion_init()
