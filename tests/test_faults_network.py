"""Fault scenarios of issue 4 that break the network between the CLI and the control plane.

The installed ``compartment`` runs in a subprocess against the fault proxy of
tests/faults.py (``--api-url``), which forwards to the real control plane and
breaks what a test tells it to: cut streams, stalls, refused connections. Each
test checks what a user sees: the exit code, the JSON on stdout, the progress
on stderr, and what the control plane did (runs created, events recorded).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest

from compartment_cli.models.events import StepEvent
from compartment_cli.render import step_line
from tests.fault_scenarios import (
    cli_env,
    finish,
    promote_args,
    run_cli,
    run_count,
    server_events,
    slow_project,
    start_cli,
    wait_until,
)
from tests.faults import FaultProxy, Mode
from tests.support import ControlPlane, write_project

EVENTS = b"GET /v1/events"


def stream_requests(proxy: FaultProxy) -> list[bytes]:
    """The requests for the event stream that went through the proxy, in order."""
    return [request for request in proxy.requests if request.startswith(EVENTS)]


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A promote JSON result without what differs between two equal runs (ids, times, ports)."""

    def summary(d: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in d.items() if k not in ("id", "deploymentRunId", "createdAt")}
        kept["completedAt"] = d["completedAt"] is not None
        kept["routeUrl"] = d["routeUrl"] is not None
        kept["operation"] = {k: d["operation"][k] for k in ("type", "status")}
        return kept

    return {
        "keys": sorted(result),
        "status": result["status"],
        "deployments": [summary(d) for d in result["deployments"]],
        "activeDeployments": sorted(
            (summary(d) for d in result["activeDeployments"]), key=lambda d: d["serviceName"]
        ),
    }


def read_lines(stream: IO[str] | None, count: int) -> str:
    """The first ``count`` lines of a child's pipe, read from its file descriptor byte by
    byte, so that nothing is left in a buffer that ``communicate`` would not see."""
    assert stream is not None
    data = b""
    while data.count(b"\n") < count and (byte := os.read(stream.fileno(), 1)):
        data += byte
    return data.decode()


def step_lines(stderr: str) -> list[str]:
    """The lines of --verbose output that are step events (not the run line, not notices)."""
    lines = stderr.splitlines() or [""]
    assert " run run_" in lines[0], stderr
    return [line for line in lines[1:] if not line.endswith("; reconnecting")]


def expected_step_lines(plane: ControlPlane, environment: str, run_id: str) -> list[str]:
    """What --verbose must show: the run's step events as the control plane recorded them,
    replayed from Last-Event-ID 0 straight from the server."""
    lines = []
    for _, kind, data in server_events(plane, environment, run_id):
        if kind == "deployment.step" and data["deploymentRunId"] == run_id:
            lines.append(step_line(msgspec.convert(data, StepEvent)))
    return lines


# --- the event stream cut every few kilobytes -------------------------------------------------


def test_a_stream_cut_every_few_kilobytes_loses_and_repeats_nothing(
    control_plane: ControlPlane, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    services = ["web", "api", "admin", "worker"]
    before = write_project(tmp_path / "v1", "1.0.0", **{name: {} for name in services})
    for environment in ("production", "mirror"):
        assert control_plane.deploy_and_wait(before, environment)["status"] == "succeeded"
    after = slow_project(tmp_path / "v2", {"production": 1.5, "mirror": 1.5}, services)
    assert control_plane.deploy_and_wait(after, "staging")["status"] == "succeeded"
    fault_proxy.set(Mode.CUT, cut_after=6000, match=EVENTS)

    # The same promotion twice at once: into `mirror` straight, into `production` through cuts.
    env = cli_env(control_plane)
    clean = start_cli(*promote_args(control_plane.api_url, "--verbose", target="mirror"), env=env)
    cut = start_cli(*promote_args(fault_proxy.url, "--verbose"), env=env)
    clean_done, cut_done = finish(clean, 60), finish(cut, 60, control_plane.token)

    assert (clean_done.returncode, cut_done.returncode) == (0, 0), f"{clean_done}\n{cut_done}"
    expected = comparable(clean_done.json())
    assert comparable(cut_done.json()) == expected
    assert len(expected["deployments"]) == len(services)
    streams = stream_requests(fault_proxy)
    assert len(streams) >= 4, f"only {len(streams)} stream connections: the cuts did not bite"
    resumed = [re.search(rb"(?i)last-event-id: (\d+)", head) for head in streams[1:]]
    assert all(resumed), "a reconnect without Last-Event-ID"
    assert cut_done.stderr.count("; reconnecting") == len(streams) - 1

    run_id = cut_done.json()["deploymentRunId"]
    expected_lines = expected_step_lines(control_plane, "production", run_id)
    assert len(expected_lines) >= 10 * len(services)
    assert step_lines(cut_done.stderr) == expected_lines


# --- the event stream stalls ------------------------------------------------------------------

STALL_TIMEOUT = 1.5


@pytest.fixture
def pinging_plane(session_root: Path) -> Iterator[ControlPlane]:
    """A control plane that pings idle streams every 0.3 s, well inside the CLI's stall
    window of 1.5 s (COMPARTMENT_STREAM_STALL_TIMEOUT), as 15 s is inside 45 s."""
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="cp-", dir=session_root)))
    plane.start("--ping-interval", "0.3")
    yield plane
    plane.stop()


def test_a_silent_stream_is_noticed_within_the_stall_window_and_resumed(
    pinging_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = pinging_plane
    after = slow_project(tmp_path / "v2", {"production": 4}, ["web", "api"])
    assert plane.deploy_and_wait(after, "staging")["status"] == "succeeded"
    env = cli_env(plane, COMPARTMENT_STREAM_STALL_TIMEOUT=f"{STALL_TIMEOUT}s")

    with FaultProxy(plane.port) as proxy:
        started = start_cli(*promote_args(proxy.url, "--verbose"), env=env)
        wait_until(lambda: any(r.startswith(b"POST ") for r in proxy.requests), 20, "promoted")
        # The run line, then its first step: the run's events are flowing when the stall begins.
        head = read_lines(started[0].stderr, 2)
        proxy.set(Mode.STALL, match=EVENTS)  # open, and silent: not even a ping gets through
        stalled_at = time.monotonic()
        wait_until(lambda: len(stream_requests(proxy)) == 2, 10, "the client reconnected")
        noticed_after = time.monotonic() - stalled_at
        proxy.set(Mode.PASS)
        done = finish(started, 30, plane.token)
        done.stderr = head + done.stderr

    assert done.returncode == 0, done
    assert done.json()["status"] == "succeeded"
    # Noticed after the stall window, reconnected after the server's retry hint (1 s).
    assert STALL_TIMEOUT < noticed_after < STALL_TIMEOUT + 1.0 + 1.5, noticed_after
    assert f"no data on the event stream for {STALL_TIMEOUT:g}s; reconnecting" in done.stderr
    last_id = re.search(rb"(?i)\r\nlast-event-id: (\d+)\r\n", stream_requests(proxy)[1])
    assert last_id is not None, "the reconnect did not say where it was"
    run_id = done.json()["deploymentRunId"]
    expected = expected_step_lines(plane, "production", run_id)
    assert step_lines(done.stderr) == expected
    # The stall began after the run's first events and ended before its last.
    recorded = [event_id for event_id, _, _ in server_events(plane, "production", run_id)]
    assert recorded[0] <= int(last_id.group(1)) < recorded[-1]


# --- refused, then accepted; reset after the request -----------------------------------------


@pytest.fixture
def staged(control_plane: ControlPlane, tmp_path: Path) -> ControlPlane:
    """``shop`` (web, api) active in staging; ready 1 s after starting in production, 2 s in
    busy (long enough for 20 commands to ask for the same promotion while it runs)."""
    after = slow_project(tmp_path / "v2", {"production": 1, "busy": 2}, ["web", "api"])
    assert control_plane.deploy_and_wait(after, "staging")["status"] == "succeeded"
    return control_plane


def test_refused_at_first_then_accepted_creates_exactly_one_run(
    staged: ControlPlane, fault_proxy: FaultProxy
) -> None:
    env = cli_env(staged)
    # The control plane cannot be reached when the command starts, and is back 1 s later.
    fault_proxy.set(Mode.DOWN)
    started = start_cli(*promote_args(fault_proxy.url), env=env)
    time.sleep(1.0)
    fault_proxy.set(Mode.PASS)
    first = finish(started, 30, staged.token)

    assert first.returncode == 0, first
    assert run_count(staged) == 1

    # Now only the promotion's own connection is refused: the proxy stops listening for
    # 0.6 s once the event stream is connected, just before the POST.
    fault_proxy.down_after(fault_proxy.connections + 1, 0.6)
    second = run_cli(*promote_args(fault_proxy.url, target="canary"), env=env, timeout=30)

    assert second.returncode == 0, second
    assert run_count(staged) == 2
    posts = [i for i, r in enumerate(fault_proxy.requests) if r.startswith(b"POST ")]
    assert len(posts) == 2  # one per command: a refused connection carries no request
    stream = max(i for i in range(posts[1]) if fault_proxy.requests[i].startswith(EVENTS))
    waited = fault_proxy.request_times[posts[1]] - fault_proxy.request_times[stream]
    assert waited >= 0.5, f"the POST came {waited:.2f}s after subscribing: was it refused?"


def test_a_control_plane_that_hangs_up_at_once_gets_no_promotion(
    staged: ControlPlane, fault_proxy: FaultProxy
) -> None:
    fault_proxy.set(Mode.CLOSE)  # every connection accepted, then closed without a byte

    done = run_cli(*promote_args(fault_proxy.url), env=cli_env(staged), timeout=30)

    assert done.returncode == 5, done
    error = done.json()["error"]
    assert error["code"] == "network_error"
    # "the connection broke" or "... closed the connection ...": the kernel's choice
    assert error["message"].startswith(f"cannot open the event stream of {fault_proxy.url}: ")
    assert " (after 4 attempts). " in error["message"]
    assert error["message"].endswith("is `compartment server` running?")  # what to do
    assert done.seconds < 5
    assert run_count(staged) == 0  # subscribing failed, so nothing was requested


def test_a_reset_after_the_request_left_is_not_sent_again(
    staged: ControlPlane, fault_proxy: FaultProxy
) -> None:
    # The POST reaches the control plane, its answer is replaced by a TCP reset: the CLI
    # cannot know whether the promotion started, so it must not send it a second time.
    fault_proxy.set(Mode.RESET, match=b"POST /v1/deployments/promote")
    done = run_cli(*promote_args(fault_proxy.url), env=cli_env(staged), timeout=30)

    assert done.returncode == 5, done
    error = done.json()["error"]
    assert error["code"] == "network_error"
    assert "was not sent again" in error["message"]
    assert "compartment deployment list" in error["message"]
    assert run_count(staged) == 1
    assert sum(r.startswith(b"POST ") for r in fault_proxy.requests) == 1


# --- 20 promotions at once ----------------------------------------------------------------


def all_at_once(proxy: FaultProxy, commands: list[list[str]], env: dict[str, str]) -> list[Any]:
    """Start every command, hold them at the proxy until each has connected, release them
    together, and return how each ended."""
    proxy.set(Mode.STALL)  # connections are accepted; nothing gets through yet
    started = [start_cli(*args, env=env) for args in commands]
    wait_until(lambda: proxy.connections >= len(commands), 60, "every command connected")
    proxy.set(Mode.PASS)
    with ThreadPoolExecutor(len(started)) as pool:
        return list(pool.map(lambda s: finish(s, 60), started))


def test_twenty_identical_promotions_at_once_make_one_run(
    staged: ControlPlane, fault_proxy: FaultProxy
) -> None:
    commands = [promote_args(fault_proxy.url, target="busy")] * 20

    results = all_at_once(fault_proxy, commands, cli_env(staged))

    assert [done.returncode for done in results] == [0] * 20, "\n".join(map(str, results))
    assert len({done.json()["deploymentRunId"] for done in results}) == 1
    assert run_count(staged) == 1


def test_twenty_different_promotions_of_one_target_at_once_make_one_run(
    control_plane: ControlPlane, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    # One service, active in ten source environments: from each, promote all services
    # or --service web. Twenty different moves, all of them of (production, web).
    sources = [f"src{i}" for i in range(10)]
    project = slow_project(tmp_path / "v2", {"production": 2}, ["web"])
    runs = [control_plane.deploy(project, source).json()["deploymentRunId"] for source in sources]
    assert all(control_plane.wait_run(run)["status"] == "succeeded" for run in runs)
    commands = []
    for source in sources:
        args = promote_args(fault_proxy.url)
        args[args.index("staging")] = source
        commands += [args, [*args, "--service", "web"]]

    results = all_at_once(fault_proxy, commands, cli_env(control_plane))

    codes = sorted(done.returncode for done in results)
    assert codes == [0] + [3] * 19, "\n".join(map(str, results))
    (winner,) = (done.json()["deploymentRunId"] for done in results if done.returncode == 0)
    for done in results:
        if done.returncode == 3:
            error = done.json()["error"]
            assert error["code"] == "deployment_target_busy"
            assert winner in error["message"]
    assert run_count(control_plane) == 1
