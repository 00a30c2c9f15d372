"""A restart of the control plane does not wait for its slowest deployment."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest

from tests.support import ControlPlane, serving_processes, wait_serving

SLOW_S = 8.0  # the slow deployment's readiness, after each start


def route_status(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2, headers={"Connection": "close"})
    except httpx.TransportError:
        return None


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_restart_serves_each_route_as_soon_as_its_own_deployment_is_ready(
    control_plane: ControlPlane, project: Any, how: signal.Signals
) -> None:
    plane = control_plane
    run = plane.deploy_and_wait(project("1.0.0", fast={}, slow={"ready_after": SLOW_S}), "prod")
    assert run["status"] == "succeeded", run
    before = plane.active("shop", "prod")
    routes = {service: d["routeUrl"] for service, d in before.items()}

    plane.stop(how)
    started = time.monotonic()
    plane.start()  # returns once /healthz answers
    api_after = time.monotonic() - started

    first_200: dict[str, float] = {}
    waiting_answers: set[int] = set()
    while len(first_200) < 2 and time.monotonic() - started < SLOW_S + 20:
        for service, url in routes.items():
            if service in first_200:
                continue
            answer = route_status(url)
            if answer is not None and answer.status_code == 200:
                first_200[service] = time.monotonic() - started
            elif answer is not None:
                waiting_answers.add(answer.status_code)
                assert answer.status_code == 503, answer.text
                assert answer.headers.get("retry-after"), answer.headers
        time.sleep(0.02)

    # The API within a second or so (slack for a loaded machine), not after the slow app.
    assert api_after < min(2.0, SLOW_S / 2), api_after
    assert first_200["fast"] < SLOW_S / 2, first_200
    assert first_200["slow"] >= SLOW_S * 0.9, first_200
    assert waiting_answers == {503}  # the slow route, until its deployment was ready
    after = plane.active("shop", "prod")
    assert {s: d["id"] for s, d in after.items()} == {s: d["id"] for s, d in before.items()}
    assert {s: d["routeUrl"] for s, d in after.items()} == routes
    for service, url in routes.items():
        assert wait_serving(url) == f"200 1.0.0 {before[service]['id']}"
    assert serving_processes(plane.data_dir) == {d["id"]: 1 for d in before.values()}


def test_a_run_requested_during_a_restart_waits_only_for_what_it_changes(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    plane.deploy_and_wait(project("1.0.0", fast={}, slow={"ready_after": SLOW_S}), "prod")
    before = plane.active("shop", "prod")

    plane.stop()
    started = time.monotonic()
    plane.start()
    response = plane.deploy(project("2.0.0", fast={}, slow={"ready_after": SLOW_S}), "prod", "fast")
    assert response.status_code == 200, response.text
    run = plane.wait_run(response.json()["deploymentRunId"], timeout=30)
    fast_deployed = time.monotonic() - started
    slow_meanwhile = route_status(before["slow"]["routeUrl"])

    assert run["status"] == "succeeded", run
    # Done while the slow deployment was still being brought back: it did not wait for it.
    assert slow_meanwhile is not None
    assert slow_meanwhile.status_code == 503, fast_deployed
    assert fast_deployed < SLOW_S, fast_deployed
    after = plane.active("shop", "prod")
    assert wait_serving(after["fast"]["routeUrl"]) == f"200 2.0.0 {after['fast']['id']}"
    assert after["slow"]["id"] == before["slow"]["id"]
    assert wait_serving(after["slow"]["routeUrl"]) == f"200 1.0.0 {before['slow']['id']}"
