"""The benchmarks (issue 5) in smoke mode: every figure gets a value; no timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, clean_environ

FIGURES = [
    "start-up: compartment --version",
    "start-up: compartment promote --help",
    "completion latency, median",
    "completion latency, p95",
    "promote wall time",
    "promote: the CLI's own share (wall − run on server)",
    "promote: the CLI's own share, polling fallback",
    "fan-out: commit → delivery p99",
    "fan-out: commit → delivery p50",
    "fan-out: control plane memory per follower",
    "throughput: deployment watch --verbose",
    "throughput: CPU per event",
    "CLI peak RSS",
    "route: requests/s",
    "route: latency p50",
    "route: latency p99",
    "route: failed requests",
    "route: slowest of",
    "route: candidate's first 2xx → first request it answers",
    "instant promotion: run on the server",
]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in seen:
            found.append(entry.name)
    return found


@pytest.mark.timeout(600)
def test_smoke_mode_reports_every_figure_with_a_value(tmp_path: Path) -> None:
    scratch = tmp_path / "bench"
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--no-hyperfine",  # the suite must not depend on it
            "--json",
            str(out),
            "--scratch",
            str(scratch),
        ],
        cwd=REPO,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    figures = [row["figure"] for row in rows]
    for figure in FIGURES:
        assert any(f.startswith(figure) for f in figures), (figure, figures)
    for row in rows:
        assert isinstance(row["value"], float), row
        assert math.isfinite(row["value"]), row
        if row["target"]:
            assert row["met"] in (True, False), row
    table = done.stdout
    assert "| figure" in table
    for figure in figures:
        assert figure in table
    # Everything it started is gone, and so is its scratch directory.
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []
