"""Start-up: how long a command takes from exec to exit, against references.

With hyperfine installed, it times every command (``-N``: no shell between);
otherwise each command is run in turn, round after round, so that all of
them see the same machine load, and the median is kept.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import base_environ, median


def hyperfine() -> str | None:
    return shutil.which("hyperfine")


def medians(
    commands: Sequence[Sequence[str]], *, runs: int, warmup: int, use_hyperfine: bool = True
) -> list[float]:
    """The median wall time of each command, in seconds."""
    tool = hyperfine() if use_hyperfine else None
    if tool is not None:
        return _with_hyperfine(tool, commands, runs=runs, warmup=warmup)
    return _with_own_loop(commands, runs=runs, warmup=warmup)


def _with_hyperfine(
    tool: str, commands: Sequence[Sequence[str]], *, runs: int, warmup: int
) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="compartment-bench-") as scratch:
        export = Path(scratch) / "hyperfine.json"
        done = subprocess.run(
            [
                tool,
                "--shell=none",
                "--style=none",
                f"--warmup={warmup}",
                f"--runs={runs}",
                f"--export-json={export}",
                *(shlex.join(command) for command in commands),
            ],
            env=base_environ(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # its warnings (a slow first run) only when it fails
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"hyperfine failed ({done.returncode}): {done.stderr}")
        results = json.loads(export.read_text())["results"]
    return [float(result["median"]) for result in results]


def _with_own_loop(commands: Sequence[Sequence[str]], *, runs: int, warmup: int) -> list[float]:
    env = base_environ()
    times: list[list[float]] = [[] for _ in commands]
    for round_number in range(warmup + runs):
        for index, command in enumerate(commands):
            started = time.perf_counter()
            subprocess.run(
                list(command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                times[index].append(elapsed)
    return [median(samples) for samples in times]
