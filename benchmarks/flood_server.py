"""A control plane for the throughput benchmark: ``compartment server`` plus a flood.

``python benchmarks/flood_server.py --bench-flood N --port P --data-dir D
[--event-retention K] [--no-login]``: the local control plane, except that
each promotion, once running, first emits N progress events of its first
deployment, as fast as the target environment's followers take them. The
flood reaches the server through ``serve``'s ``before_start`` hook, which the
``compartment server`` command never sets: it is not on the production path.

Waits up to 10 s for a follower, so that one sees every event, and pauses
while a follower's backlog is over half its buffer, so none is cut off.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel

from compartment_cli.server.bus import SUBSCRIBER_BUFFER
from compartment_cli.server.main import ServerOptions, serve
from compartment_cli.server.runs import Recorder, RunContext, RunHook


async def _wait_until(condition: Callable[[], bool], *, seconds: float) -> None:
    """Until ``condition()`` holds, looking every millisecond, for at most ``seconds``."""
    for _ in range(int(seconds * 1000)):
        if condition():
            return
        await anyio.sleep(0.001)


def flood(count: int) -> RunHook:
    """The hook: ``count`` progress events at the start of every promotion."""

    async def before_start(context: RunContext, recorder: Recorder) -> None:
        if context.run.type != "promote":
            return
        bus = recorder.services.bus
        project, environment = context.project.name, context.environment.name
        candidate = context.candidates[0]

        def followed() -> bool:
            return bool(bus.backlogs(project, environment))

        def caught_up() -> bool:
            return max(bus.backlogs(project, environment), default=0) <= SUBSCRIBER_BUFFER // 2

        await _wait_until(followed, seconds=10.0)
        for number in range(1, count + 1):
            message = f"bench flood: event {number} of {count}"
            recorder.step(context, candidate, "starting_candidate", "running", message)
            if number % 100 == 0:
                await anyio.lowlevel.checkpoint()
                await _wait_until(caught_up, seconds=60.0)

    return before_start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flood_server.py")
    parser.add_argument("--bench-flood", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--event-retention", type=int, default=100_000)
    parser.add_argument("--no-login", action="store_true")
    args = parser.parse_args(argv)
    options = ServerOptions(
        port=args.port,
        data_dir=args.data_dir,
        login=not args.no_login,
        event_retention=args.event_retention,
    )
    return serve(options, before_start=flood(args.bench_flood))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
