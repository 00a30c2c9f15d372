"""The ``compartment`` command line.

``main`` is the console entry point. It answers ``--version`` without
importing typer, httpx or anything else heavy; commands import what they need
inside their bodies, so ``compartment --help`` and ``compartment server``
start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from compartment_cli import __version__

        sys.stdout.write(f"compartment {__version__}\n")
        return 0
    # httpx's own command line (httpx._main) imports rich and pygments whenever
    # they are installed: about 30-60 ms of start-up that this process never
    # uses. A None entry makes `from ._main import main` fail, and httpx then
    # installs its stub instead.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from compartment_cli.cli.app import run

    return run(args)
