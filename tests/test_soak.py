"""Soak: promotions back and forth between two environments leak nothing.

examples/hello (copied to a temporary directory) is deployed to ``blue`` and
``green``; then promotions alternate blue→green, green→blue, ... Every
``CLI_EVERY``-th promotion runs the installed ``compartment promote --output
json`` in a subprocess, as a CI job would (exit 0, one JSON document, no
token); the others go straight to the HTTP API (``POST
/v1/deployments/promote``, then the run is polled) for speed. Each must
succeed. Afterwards the control plane has:

- exactly one serving process per active deployment, no other process of its
  data dir, and no unreaped (zombie) child;
- as many open file descriptors as after the warm-up, within ``FD_TOLERANCE``;
- the same listening sockets: the API port and the four route ports, all on
  127.0.0.1, the route ports the same set as before the first promotion;
- resident memory (VmRSS) within 20% of where it was after the warm-up;
- every route answering, with the deployment that is active behind it.

Two forms:

- by default (``pytest tests/test_soak.py``): 30 promotions, 3 of them
  through the CLI, warm-up = the first 10; about 15 s on two cores;
- ``pytest --run-slow tests/test_soak.py`` (or ``make soak``): the full 200,
  20 through the CLI, warm-up = the first 20, as issue 4 asks; 70-90 s.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    EXAMPLE,
    ControlPlane,
    deployment_processes,
    http_get,
    listening_sockets,
    open_fds,
    proc_status,
    promote_by_cli,
    serving_processes,
    zombie_children,
)

PROJECT = "hello"
ENVIRONMENTS = ("blue", "green")
CLI_EVERY = 10
FD_TOLERANCE = 3
MEMORY_GROWTH = 1.20


@dataclass(frozen=True)
class Sample:
    """What the control plane process holds at one moment."""

    fds: int
    rss_kb: int
    threads: int
    listening: frozenset[tuple[str, int]]


def sample(plane: ControlPlane) -> Sample:
    """A reading taken once the process has settled.

    A connection the test just closed may take a moment to be closed on the
    server side too: the fewest fds seen over half a second count.
    """
    assert plane.process is not None
    pid = plane.process.pid
    fds = []
    for _ in range(6):
        fds.append(open_fds(pid))
        time.sleep(0.1)
    return Sample(
        fds=min(fds),
        rss_kb=proc_status(pid, "VmRSS"),
        threads=proc_status(pid, "Threads"),
        listening=frozenset(listening_sockets(pid)),
    )


def active_ids(plane: ControlPlane) -> dict[str, dict[str, str]]:
    """environment → service → active deployment id."""
    return {
        env: {service: d["id"] for service, d in plane.active(PROJECT, env).items()}
        for env in ENVIRONMENTS
    }


def promote_by_api(plane: ControlPlane, source: str, target: str) -> str:
    response = plane.post_promote(
        projectName=PROJECT, sourceEnvironmentName=source, targetEnvironmentName=target
    )
    assert response.status_code == 200, response.text
    run = plane.wait_run(response.json()["deploymentRunId"])
    assert run["status"] == "succeeded", run
    return str(run["deploymentRunId"])


def assert_routes_answer(plane: ControlPlane) -> None:
    """Every route answers 200 with the deployment that is active behind it."""
    for env in ENVIRONMENTS:
        for service, deployment in plane.active(PROJECT, env).items():
            answer = http_get(deployment["routeUrl"])
            assert answer.startswith("200 "), (env, service, answer)
            assert deployment["id"] in answer, (env, service, answer)


def soak(plane: ControlPlane, tmp_path: Path, promotions: int, warm_up: int) -> None:
    directory = tmp_path / PROJECT
    shutil.copytree(EXAMPLE, directory)
    for env in ENVIRONMENTS:
        assert plane.deploy_and_wait(directory, env)["status"] == "succeeded"
    assert plane.process is not None
    pid = plane.process.pid
    route_ports = plane.route_ports()
    assert len(route_ports) == 2 * len(ENVIRONMENTS)
    first = sample(plane)
    assert first.listening == {("127.0.0.1", plane.port)} | {("127.0.0.1", p) for p in route_ports}

    warm: Sample | None = None
    runs: set[str] = set()
    durations: list[float] = []
    for number in range(1, promotions + 1):
        source, target = ENVIRONMENTS if number % 2 else ENVIRONMENTS[::-1]
        started = time.monotonic()
        if number % CLI_EVERY == 0:
            runs.add(promote_by_cli(plane, directory, source, target)["deploymentRunId"])
        else:
            runs.add(promote_by_api(plane, source, target))
        durations.append(time.monotonic() - started)
        if number % CLI_EVERY == 0:
            assert_routes_answer(plane)
        if number == warm_up:
            warm = sample(plane)
    assert len(runs) == promotions  # each promotion was a run of its own
    assert warm is not None

    last = sample(plane)
    active = active_ids(plane)
    active_deployments = {d for services in active.values() for d in services.values()}
    report = (
        f"{promotions} promotions in {sum(durations):.1f} s "
        f"(median {sorted(durations)[len(durations) // 2]:.2f} s); "
        f"fds {first.fds} → {warm.fds} → {last.fds}; "
        f"VmRSS {first.rss_kb} → {warm.rss_kb} → {last.rss_kb} kB; "
        f"threads {first.threads} → {warm.threads} → {last.threads}"
    )
    print(report)

    # Processes: one serving process per active deployment, nothing else, no zombie.
    assert serving_processes(plane.data_dir) == dict.fromkeys(active_deployments, 1), report
    assert set(deployment_processes(plane.data_dir).values()) == active_deployments
    assert zombie_children(pid) == []
    # File descriptors and listening sockets.
    assert last.fds <= warm.fds + FD_TOLERANCE, report
    assert last.fds <= first.fds + FD_TOLERANCE, report
    assert plane.route_ports() == route_ports
    assert last.listening == first.listening
    # Memory.
    assert last.rss_kb <= warm.rss_kb * MEMORY_GROWTH, report
    # Every route answers with its active deployment.
    assert_routes_answer(plane)


def test_soak_promotions_back_and_forth_leak_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The light form: 30 promotions, memory compared with after the first 10."""
    soak(control_plane, tmp_path, promotions=30, warm_up=10)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_200_promotions_back_and_forth_leak_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The full form (--run-slow): 200 promotions, memory compared with after the first 20."""
    soak(control_plane, tmp_path, promotions=200, warm_up=20)
