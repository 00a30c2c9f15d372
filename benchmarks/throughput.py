"""Throughput and memory of following a run with a flood of progress events.

The control plane is ``benchmarks.flood_server`` (``compartment server`` with a
benchmark-only hook): each promotion emits N progress events of its first deployment as soon as
the target environment has a follower, as fast as followers take them.

- The CLI: a promotion is requested through the API, then ``compartment
  deployment watch <run> --verbose`` follows it, its progress lines into a
  file. Rate: N / (its exit − the control plane's timestamp of the first
  flood event). Peak RSS and CPU: its own (``benchmarks.peak``).
- The reference, same control plane, next promotion: ``benchmarks.bare_sse``
  (httpx-sse parsing, counting, nothing else) subscribes first, then the
  promotion is requested. Rate measured the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import COMPARTMENT, PYTHON, REPO, Plane, parse_time, run_timed, spawn

# Peak memory and CPU of the follower itself, not of this (larger) process: see benchmarks.peak.
PEAK = [PYTHON, "-m", "benchmarks.peak"]


@dataclass(frozen=True)
class Followed:
    events: int
    rate: float  # events per second
    max_rss_kib: int
    cpu: float  # CPU seconds of the follower process
    wall: float


def first_flood_at(plane: Plane, run_id: str, count: int) -> float:
    rows = plane.query(
        "SELECT data FROM events WHERE type = 'deployment.step'"
        " AND json_extract(data, '$.message') = ?"
        " AND json_extract(data, '$.deploymentRunId') = ?",
        f"bench flood: event 1 of {count}",
        run_id,
    )
    if not rows:
        raise RuntimeError(f"run {run_id} has no flood events")
    return parse_time(json.loads(rows[0][0])["at"])


def with_cli(plane: Plane, count: int, scratch: Path) -> Followed:
    """``compartment deployment watch --verbose`` of a flooded promotion, into files."""
    scratch.mkdir(parents=True, exist_ok=True)
    run_id = plane.post_promote()
    err = scratch / f"watch-{count}.err"
    peak = scratch / f"watch-{count}.peak.json"
    done = run_timed(
        [*PEAK, str(peak), COMPARTMENT, "deployment", "watch", run_id, "--verbose"],
        env=plane.env,
        cwd=REPO,
        stdout=scratch / f"watch-{count}.out",
        stderr=err,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"deployment watch exited {done.returncode}: {err.read_text()[-2000:]}")
    shown = sum(1 for line in err.open(errors="replace") if "bench flood" in line)
    if shown != count:
        raise RuntimeError(f"deployment watch showed {shown} of {count} flood events")
    rate = count / (done.ended - first_flood_at(plane, run_id, count))
    usage = json.loads(peak.read_text())
    return Followed(shown, rate, usage["max_rss_kib"], usage["cpu"], done.wall)


def with_bare_sse(plane: Plane, count: int, scratch: Path) -> Followed:
    """The same, followed by bare httpx-sse parsing (``benchmarks.bare_sse``)."""
    peak = scratch / "bare.peak.json"
    running = spawn(
        [
            *PEAK,
            str(peak),
            PYTHON,
            "-m",
            "benchmarks.bare_sse",
            plane.api_url,
            plane.token,
            "hello",
            "production",
        ],
        cwd=REPO,
        env=plane.env,
        capture=True,
    )
    running.expect_subscribed("benchmarks.bare_sse")
    run_id = plane.post_promote()
    done = running.wait(timeout=900)
    counts = json.loads(done.stdout)
    if done.returncode != 0 or counts["flood"] != count:
        raise RuntimeError(f"benchmarks.bare_sse saw {counts} of {count} flood events")
    rate = count / (done.ended - first_flood_at(plane, run_id, count))
    usage = json.loads(peak.read_text())
    return Followed(counts["flood"], rate, usage["max_rss_kib"], usage["cpu"], done.wall)
