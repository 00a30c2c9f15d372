"""The event stream: every step is an event, ids only grow, replay is exact."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.support import ControlPlane


def read_events(
    plane: ControlPlane, environment: str, *, last_event_id: int | None, until_run: str
) -> list[tuple[int, str, dict[str, Any]]]:
    """Events of an environment after ``last_event_id``, up to ``until_run``'s completion."""
    headers = {"Authorization": f"Bearer {plane.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events = []
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(
            client,
            "GET",
            f"{plane.api_url}/v1/events",
            params={"projectName": "shop", "environmentName": environment},
            headers=headers,
        ) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-store"
        for sse in source.iter_sse():
            if not sse.data:
                continue
            data = json.loads(sse.data)
            events.append((int(sse.id), sse.event, data))
            if sse.event == "run.completed" and data["deploymentRunId"] == until_run:
                return events
    raise AssertionError("the stream ended before the run completed")


def test_every_step_of_a_run_is_an_event_and_replay_gives_exactly_the_missing_ones(
    control_plane: ControlPlane, project: Any
) -> None:
    run_id = control_plane.deploy(project("1.0.0"), "staging").json()["deploymentRunId"]
    control_plane.wait_run(run_id)

    everything = read_events(control_plane, "staging", last_event_id=0, until_run=run_id)

    ids = [event_id for event_id, _, _ in everything]
    assert ids == sorted(set(ids))
    steps = {
        (data["serviceName"], data["step"], data["status"])
        for _, kind, data in everything
        if kind == "deployment.step"
    }
    for service in ("web", "api"):
        for step in ("queued", "starting_candidate", "checking_readiness", "completed"):
            assert (service, step, "succeeded") in steps
        assert (service, "switching_route", "succeeded") in steps
        assert (service, "draining_previous", "skipped") in steps
    assert everything[-1][1] == "run.completed"
    assert everything[-1][2]["status"] == "succeeded"
    assert {kind for _, kind, _ in everything} == {
        "deployment.step",
        "deployment.status",
        "run.completed",
    }

    middle = ids[len(ids) // 2]
    replayed = read_events(control_plane, "staging", last_event_id=middle, until_run=run_id)

    assert replayed == [event for event in everything if event[0] > middle]


def test_a_subscriber_sees_a_run_live_and_events_only_of_its_environment(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "staging")
    headers = {"Authorization": f"Bearer {control_plane.token}"}
    seen: list[tuple[str, dict[str, Any]]] = []
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(
            client,
            "GET",
            f"{control_plane.api_url}/v1/events",
            params={"projectName": "shop", "environmentName": "production"},
            headers=headers,
        ) as source,
    ):
        response = control_plane.post_promote(
            projectName="shop", sourceEnvironmentName="staging", targetEnvironmentName="production"
        )
        run_id = response.json()["deploymentRunId"]
        for sse in source.iter_sse():
            if sse.data:
                seen.append((sse.event, json.loads(sse.data)))
            if sse.event == "run.completed":
                break

    assert all(data.get("deploymentRunId", run_id) == run_id for _, data in seen)
    assert seen[0][0] == "deployment.step"
    assert seen[0][1]["step"] == "queued"
    assert seen[-1][1]["status"] == "succeeded"


def test_the_stream_pings_and_hints_a_retry(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane", extra_args=["--ping-interval", "0.2"])
    plane.start()
    try:
        lines: list[str] = []
        started = time.monotonic()
        with (
            httpx.Client(timeout=10) as client,
            client.stream(
                "GET",
                f"{plane.api_url}/v1/events",
                params={"projectName": "shop", "environmentName": "production"},
                headers={"Authorization": f"Bearer {plane.token}"},
            ) as response,
        ):
            for line in response.iter_lines():
                lines.append(line)
                if sum(line.startswith(": ping") for line in lines) >= 2:
                    break
                assert time.monotonic() - started < 5
        # Where the stream starts, so that a client that reconnects before
        # the first event can say Last-Event-ID and miss nothing.
        assert lines[0].startswith("id: ")
        assert lines[1].startswith("retry: ")
    finally:
        plane.stop()


def test_no_events_turns_the_stream_off(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane", extra_args=["--no-events"])
    plane.start()
    try:
        response = plane.get("/v1/events", projectName="shop", environmentName="production")
    finally:
        plane.stop()
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_event_log_keeps_the_newest_events_and_ids_keep_growing(
    tmp_path: Path, project: Any
) -> None:
    plane = ControlPlane(tmp_path / "plane", extra_args=["--event-retention", "30"])
    plane.start()
    try:
        first = plane.deploy_and_wait(project("1.0.0"), "staging")["deploymentRunId"]
        second = plane.deploy_and_wait(project("2.0.0"), "staging")["deploymentRunId"]

        kept = read_events(plane, "staging", last_event_id=0, until_run=second)
    finally:
        plane.stop()

    assert len(kept) == 30
    ids = [event_id for event_id, _, _ in kept]
    assert ids == list(range(ids[0], ids[0] + 30))
    assert ids[0] > 30  # the first run's events were dropped, and no id was reused
    # Of the first run only the status changes the second run caused remain.
    assert all(
        kind == "deployment.status" for _, kind, data in kept if data["deploymentRunId"] == first
    )
