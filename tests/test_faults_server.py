"""Fault scenarios of issue 4 that break the control plane itself: SIGKILL mid-promotion,
with and without a restart on the same port and data dir, and SIGSTOP (a control plane
that accepts connections and answers nothing).

The installed ``compartment`` talks straight to the control plane, as it would in CI;
each command is bounded by a subprocess timeout, so a hang fails the test.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from tests.fault_scenarios import (
    cli_env,
    finish,
    promote_args,
    run_count,
    slow_project,
    start_cli,
    wait_until,
)
from tests.faults import FaultProxy, Mode
from tests.support import ControlPlane, http_get, wait_serving, write_project

NEVER = 3600  # seconds: "ready" later than any test lasts


def posts(proxy: FaultProxy) -> int:
    return sum(request.startswith(b"POST ") for request in proxy.requests)


def stuck_in_readiness(plane: ControlPlane, tmp_path: Path) -> dict[str, str]:
    """1.0.0 active in production, 2.0.0 in staging, whose candidates in production never
    become ready. Returns production's route URLs, by service."""
    before = write_project(tmp_path / "v1", "1.0.0")
    assert plane.deploy_and_wait(before, "production")["status"] == "succeeded"
    after = slow_project(tmp_path / "v2", {"production": NEVER}, ["web", "api"])
    assert plane.deploy_and_wait(after, "staging")["status"] == "succeeded"
    return {name: d["routeUrl"] for name, d in plane.active("shop", "production").items()}


def in_readiness(plane: ControlPlane) -> bool:
    response = plane.get("/v1/deployments/status", projectName="shop", environmentName="production")
    return any(d["promotionStage"] == "awaiting_readiness" for d in response.json()["deployments"])


def test_killed_and_restarted_mid_promotion_ends_failed_with_the_reason(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = control_plane
    routes = stuck_in_readiness(plane, tmp_path)
    started = start_cli(*promote_args(plane.api_url, "--verbose"), env=plane.env)
    wait_until(lambda: in_readiness(plane), 20, "the candidates are being checked")

    plane.kill()
    time.sleep(2.5)
    plane.start()  # same port, same data dir
    # Once the control plane is back, each route serves what it served before
    # (as soon as that deployment is ready again).
    for url in routes.values():
        assert wait_serving(url).startswith("200 1.0.0 "), url
    done = finish(started, 60, plane.token)

    assert done.returncode == 1, done
    result = done.json()
    assert result["status"] == "failed"
    reason = "the control plane stopped while this run was in flight"
    assert all(reason in d["failureMessage"] for d in result["deployments"]), result
    assert {d["serviceName"]: d["routeUrl"] for d in result["activeDeployments"]} == routes
    assert reason in done.stderr
    assert "; reconnecting" in done.stderr  # it waited through the restart, and said so
    for url in routes.values():
        assert http_get(url).startswith("200 1.0.0 "), url


def test_never_back_ends_with_5_after_the_retries_or_124_at_the_timeout(
    control_plane: ControlPlane, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    # Through the proxy only to see both commands send their (identical) promotion before
    # the kill; then the proxy stops listening too, so the commands meet refused
    # connections, as with the control plane alone.
    plane = control_plane
    stuck_in_readiness(plane, tmp_path)
    # The patient one waits out the reconnect budget at a tenth of its real length
    # (about 3.5 s instead of 35 s); the hurried one keeps the real budget, past its timeout.
    patient = start_cli(
        *promote_args(fault_proxy.url), env=cli_env(plane, COMPARTMENT_TEST_TIME_SCALE="0.1")
    )
    hurried = start_cli(*promote_args(fault_proxy.url, "--timeout", "6s"), env=cli_env(plane))
    wait_until(lambda: posts(fault_proxy) == 2 and in_readiness(plane), 20, "both are waiting")
    plane.kill()
    fault_proxy.set(Mode.DOWN)

    timed_out = finish(hurried, 30, plane.token)
    gave_up = finish(patient, 90, plane.token)

    assert timed_out.returncode == 124, timed_out
    error = timed_out.json()["error"]
    assert error["code"] == "timeout"
    run_id = re.search(r"compartment deployment watch (run_\w+)", error["message"])
    assert run_id, error
    assert timed_out.seconds < 6 + 3

    assert gave_up.returncode == 5, gave_up
    error = gave_up.json()["error"]
    assert error["code"] == "event_stream_lost", gave_up
    assert fault_proxy.url in error["message"]
    assert "connection refused" in error["message"]
    assert f"see how it ended with: compartment deployment watch {run_id[1]}" in error["message"]
    assert error["deploymentRunId"] == run_id[1]
    assert timed_out.json()["error"]["deploymentRunId"] == run_id[1]
    assert gave_up.seconds < 60

    plane.start()  # only so that it stops what the killed server left running


def test_frozen_before_or_during_a_promotion_ends_at_the_timeout(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # SIGSTOP: the kernel still accepts connections for the server, nothing answers them.
    plane = control_plane
    assert plane.process is not None
    stuck_in_readiness(plane, tmp_path)
    waiting = start_cli(*promote_args(plane.api_url, "--timeout", "5s"), env=plane.env)
    wait_until(lambda: in_readiness(plane), 20, "the candidates are being checked")
    run_id = plane.get("/v1/deployments", projectName="shop").json()["deployments"][0][
        "deploymentRunId"
    ]
    plane.process.send_signal(signal.SIGSTOP)
    try:
        starting = start_cli(*promote_args(plane.api_url, "--timeout", "3s"), env=plane.env)
        watching = start_cli(
            *("deployment", "watch", run_id, "--timeout", "3s", "--output", "json"),
            *("--api-url", plane.api_url),
            env=plane.env,
        )
        too_late = finish(starting, 30, plane.token)
        watched = finish(watching, 30, plane.token)
        midway = finish(waiting, 30, plane.token)
    finally:
        plane.process.send_signal(signal.SIGCONT)

    assert too_late.returncode == 124, too_late
    error = too_late.json()["error"]
    assert error["code"] == "timeout"
    assert error["message"] == (
        f"Timed out after 3s before the control plane at {plane.api_url} answered; "
        "the promotion was not requested, nothing was started."
    )
    assert too_late.seconds < 3 + 2
    assert watched.returncode == 124, watched
    assert f"follow it again with: compartment deployment watch {run_id}" in watched.stdout
    assert watched.seconds < 3 + 2
    assert midway.returncode == 124, midway
    assert "compartment deployment watch run_" in midway.json()["error"]["message"]
    assert midway.seconds < 5 + 2
    assert run_count(plane) == 1
