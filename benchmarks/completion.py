"""Completion latency and end-to-end wall time of ``compartment promote``.

Two control planes with ``examples/hello`` in staging: one with the event
stream, one without (``--no-events``, so the CLI polls once a second like the
hosted platform's). Promotions staging → production alternate between them,
so both see the same machine load. For each one:

- wall: from spawning ``compartment promote --output json`` (run in
  examples/hello, so compartment.yml is read and validated, as a user runs
  it) to its exit, reaped with ``wait4``;
- completion latency: from the control plane's own ``at`` timestamp of the
  run's ``run.completed`` event (read from its event log afterwards) to the
  exit of the process;
- the CLI's own share: wall minus the run's duration on the server
  (``completedAt - createdAt`` of ``GET /v1/deployments/runs/{id}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import COMPARTMENT, EXAMPLE, Plane, parse_time, run_timed


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)


def promote_once(plane: Plane, scratch: Path) -> tuple[float, float, float, float]:
    """One promotion: (completion latency, wall, CLI share, server-side duration) in s."""
    out = scratch / "promote.json"
    done = run_timed(
        [COMPARTMENT, "promote", "--from", "staging", "--to", "production", "--output", "json"],
        env=plane.env,
        cwd=EXAMPLE,
        stdout=out,
        stderr=scratch / "promote.err",
        timeout=120,
    )
    document = json.loads(out.read_bytes())
    if done.returncode != 0:
        raise RuntimeError(f"promote exited {done.returncode}: {document}")
    run_id = document["deploymentRunId"]
    run = plane.run(run_id)
    server = parse_time(run["completedAt"]) - parse_time(run["createdAt"])
    latency = done.ended - plane.completed_at(run_id)
    return latency, done.wall, done.wall - server, server


def measure(events: Plane, polling: Plane, count: int, scratch: Path) -> tuple[Samples, Samples]:
    """``count`` promotions on each plane, alternating; one warm-up each first."""
    scratch.mkdir(parents=True, exist_ok=True)
    promote_once(events, scratch)
    promote_once(polling, scratch)
    with_events, with_polling = Samples(), Samples()
    for _ in range(count):
        for plane, samples in ((events, with_events), (polling, with_polling)):
            latency, wall, share, server = promote_once(plane, scratch)
            samples.latency.append(latency)
            samples.wall.append(wall)
            samples.share.append(share)
            samples.server.append(server)
    return with_events, with_polling
