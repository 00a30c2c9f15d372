"""The ``compartment`` command line.

``main`` is the console entry point. It answers ``--version`` without
importing typer, httpx or anything else heavy; commands import what they need
inside their bodies, so ``compartment --help`` and ``compartment server``
start fast.

Run as the console script (no ``argv``), a client command ends the process
itself once stdout and stderr are flushed: tearing down the interpreter after
httpx, anyio and typer have been loaded costs 40-70 ms here, between the
result being printed and a pipeline going on, and nothing is left to clean up
by then (files are closed, threads stopped, temporary directories removed).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Without ``argv`` (the console script) a client command does not return: the
    process exits as soon as its output is flushed (see the module docstring).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    code = _run(args)
    if argv is None and args[:1] != ["server"]:
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe: nobody is reading any more.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _run(args: list[str]) -> int:
    if args in (["--version"], ["-V"]):
        from compartment_cli import __version__

        sys.stdout.write(f"compartment {__version__}\n")
        return 0
    # httpx's own command line (httpx._main) imports rich and pygments whenever
    # they are installed: about 30-60 ms of start-up that this process never
    # uses. A None entry makes `from ._main import main` fail, and httpx then
    # installs its stub instead.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from compartment_cli.cli import logs, rollback, server  # noqa: F401  (register their commands)
    from compartment_cli.cli.app import run

    return run(args)
