"""The promote workflow against a fake control plane (httpx.MockTransport, streaming).

What the real server cannot show on demand: that the stream is subscribed
before the POST is sent, that other runs' events are ignored, that a stream
which disappears mid-run hands over to polling, and that errors come out of
the task group as one plain error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from compartment_cli.client.api import RetryPolicy, open_http_client
from compartment_cli.errors import ApiRefused, Unavailable, WaitTimedOut
from compartment_cli.models.api import (
    DeploymentSummary,
    DeployResponse,
    EnvironmentSummary,
    NameRef,
    OperationSummary,
    ProjectSummary,
    ReadOperationSummary,
    ReadSummary,
    ResolvedBuildConfig,
    ResolvedRunConfig,
    StatusResponse,
)
from compartment_cli.models.events import StepEvent
from compartment_cli.workflows.follow import RunTarget, WaitOptions
from compartment_cli.workflows.promote import promote, promote_request

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0)
WAIT = WaitOptions(
    timeout=10,
    poll_interval=0.01,
    api_retry=FAST,
    connect_retry=FAST,
    reconnect_retry=FAST,
    handle_sigint=False,
)
REQUEST = promote_request("shop", "staging", "production")
OPERATION = ReadOperationSummary(
    type="promote", status="running", created_at="t", completed_at=None
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read(
    run: str, dep: str, service: str, status: str = "running", stage: str = "queued"
) -> ReadSummary:
    return ReadSummary(
        id=dep,
        service_name=service,
        deployment_run_id=run,
        status=status,  # type: ignore[arg-type]
        promotion_stage=stage,  # type: ignore[arg-type]
        health="healthy" if stage == "active" else "pending",
        is_active=stage == "active",
        label=None,
        route_url="http://127.0.0.1:9000/",
        failure_message=None,
        created_at="2025-01-01T12:00:00Z",
        completed_at="2025-01-01T12:00:03Z" if stage == "active" else None,
        rollback_available=False,
        operation=OPERATION,
    )


def deploy_response(run: str = "run_1") -> bytes:
    summary = DeploymentSummary(
        id="dep_1",
        service_name="api",
        status="queued",
        health="pending",
        route_url=None,
        failure_message=None,
        is_active=False,
        label=None,
        created_at="t",
        completed_at=None,
        operation=OperationSummary(
            **msgspec.structs.asdict(OPERATION), id=run, target_type="deployment", target_id="dep_1"
        ),
        promotion_stage="queued",
        readiness=None,
        rollback_available=False,
        build=ResolvedBuildConfig(),
        run=ResolvedRunConfig(),
    )
    return msgspec.json.encode(
        DeployResponse(
            deployment_run_id=run,
            deployments=[summary],
            environment=EnvironmentSummary(
                id="env", name="production", project_id="p", created_at="t", updated_at="t"
            ),
            project=ProjectSummary(
                id="p",
                name="shop",
                organization_id="o",
                archived_at=None,
                created_at="t",
                updated_at="t",
            ),
        )
    )


def sse(event_id: int, event_type: str, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    return f"id: {event_id}\nevent: {event_type}\ndata: ".encode() + payload + b"\n\n"


def step(event_id: int, run: str, step_name: str) -> bytes:
    return sse(
        event_id,
        "deployment.step",
        {
            "deploymentRunId": run,
            "deploymentId": "dep_1" if run == "run_1" else "dep_other",
            "serviceName": "api",
            "step": step_name,
            "status": "running",
            "message": step_name,
            "at": "2025-01-01T12:00:01Z",
        },
    )


def completed(event_id: int, run: str = "run_1", status: str = "succeeded") -> bytes:
    return sse(
        event_id,
        "run.completed",
        {"deploymentRunId": run, "status": status, "deployments": [], "at": "t"},
    )


class ChannelBody(httpx.AsyncByteStream):
    def __init__(self, receive: anyio.abc.ObjectReceiveStream[bytes | None]) -> None:
        self.receive = receive

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.receive:
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        await self.receive.aclose()


class FakeControlPlane:
    """Events are pushed into the open stream when the POST arrives (``on_post``)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.events_status = 200
        self.streams: list[anyio.abc.ObjectSendStream[bytes | None]] = []
        self.on_post: list[bytes | None] = []
        self.promote_status = 200
        self.polls: list[ReadSummary] = []
        self.final = [read("run_1", "dep_1", "api", "succeeded", "active")]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.log.append(f"{request.method} {path}")
        if path == "/v1/events":
            if self.events_status != 200:
                return httpx.Response(self.events_status, text="nope")
            send, receive = anyio.create_memory_object_stream[bytes | None](100)
            self.streams.append(send)
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=ChannelBody(receive)
            )
        if path == "/v1/deployments/promote":
            if self.promote_status != 200:
                body = {"error": {"code": "deployment_target_busy", "message": "busy"}}
                return httpx.Response(self.promote_status, json=body)
            for chunk in self.on_post:
                await self.streams[-1].send(chunk)
            return httpx.Response(200, content=deploy_response())
        if path == "/v1/deployments/status":
            if "deploymentId" in request.url.params:
                deployments = [self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]]
            else:
                other = read("run_0", "dep_0", "api", "succeeded", "active")
                deployments = [*self.final, other]
            body = StatusResponse(
                active_deployments=self.final,
                deployments=deployments,
                environment=NameRef(name="production"),
                project=NameRef(name="shop"),
            )
            return httpx.Response(200, content=msgspec.json.encode(body))
        return httpx.Response(404, text="no such route")

    def client(self) -> httpx.AsyncClient:
        return open_http_client(
            "http://cp.test",
            {"Authorization": "Bearer tok"},
            transport=httpx.MockTransport(self.handler),
        )


class Recorder:
    def __init__(self) -> None:
        self.started: list[RunTarget] = []
        self.steps: list[str] = []
        self.changes: list[tuple[str, str]] = []
        self.polled: list[bool] = []
        self.notices: list[str] = []
        self.warnings: list[str] = []

    def run_started(self, target: RunTarget) -> None:
        self.started.append(target)

    def step(self, event: StepEvent) -> None:
        self.steps.append(f"{event.deployment_run_id}:{event.step}")

    def deployment_changed(self, deployment: ReadSummary, *, polled: bool) -> None:
        self.changes.append((deployment.status, deployment.promotion_stage))
        self.polled.append(polled)

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def flush(self) -> None:
        pass


async def test_subscribes_before_the_post_and_follows_only_its_run() -> None:
    plane = FakeControlPlane()
    plane.on_post = [
        step(1, "run_other", "starting_candidate"),
        step(2, "run_1", "starting_candidate"),
        step(3, "run_1", "checking_readiness"),
        completed(4, "run_other", "failed"),
        completed(5, "run_1"),
    ]
    progress = Recorder()
    async with plane.client() as http:
        result = await promote(http, REQUEST, progress, WAIT)

    # Subscribed first; the target's name checked (this control plane cannot list
    # environments: 404), then the promotion requested.
    assert plane.log[:3] == [
        "GET /v1/events",
        "GET /v1/environments",
        "POST /v1/deployments/promote",
    ]
    assert plane.log[3:] == ["GET /v1/deployments/status"]  # the final state, read once
    assert any("cannot list environments" in notice for notice in progress.notices)
    assert progress.steps == ["run_1:starting_candidate", "run_1:checking_readiness"]
    assert [t.run_id for t in progress.started] == ["run_1"]
    assert result.status == "succeeded"
    assert result.deployment_run_id == "run_1"
    assert [d.id for d in result.deployments] == ["dep_1"]  # run_0's deployment left out
    assert result.source_environment == NameRef(name="staging")


async def test_without_an_event_stream_it_polls_and_reports_changes() -> None:
    plane = FakeControlPlane()
    plane.events_status = 404
    plane.polls = [
        read("run_1", "dep_1", "api", "running", "queued"),
        read("run_1", "dep_1", "api", "running", "queued"),
        read("run_1", "dep_1", "api", "running", "awaiting_readiness"),
        read("run_1", "dep_1", "api", "succeeded", "active"),
    ]
    progress = Recorder()
    async with plane.client() as http:
        result = await promote(http, REQUEST, progress, WAIT)

    assert progress.changes == [
        ("running", "queued"),
        ("running", "awaiting_readiness"),
        ("succeeded", "active"),
    ]
    assert all(progress.polled)
    assert result.status == "succeeded"
    assert plane.log.count("POST /v1/deployments/promote") == 1


async def test_a_failed_deployment_found_by_polling_fails_the_run() -> None:
    plane = FakeControlPlane()
    plane.events_status = 405
    plane.polls = [read("run_1", "dep_1", "api", "failed", "awaiting_readiness")]
    async with plane.client() as http:
        result = await promote(http, REQUEST, Recorder(), WAIT)
    assert result.status == "failed"


async def test_a_stream_that_goes_away_mid_run_hands_over_to_polling() -> None:
    plane = FakeControlPlane()
    plane.on_post = [step(1, "run_1", "starting_candidate"), None]  # then the stream closes

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events" and plane.streams:
            plane.log.append("GET /v1/events")
            return httpx.Response(404, text="gone")
        return await plane.handler(request)

    plane.polls = [read("run_1", "dep_1", "api", "succeeded", "active")]
    progress = Recorder()
    http = open_http_client("http://cp.test", {}, transport=httpx.MockTransport(handler))
    async with http:
        result = await promote(http, REQUEST, progress, WAIT)

    assert result.status == "succeeded"
    assert progress.steps == ["run_1:starting_candidate"]
    assert any("polling" in notice for notice in progress.notices)
    assert plane.log.count("GET /v1/events") == 2


async def test_timeout_bounds_the_wait_and_names_the_run() -> None:
    plane = FakeControlPlane()
    plane.on_post = [step(1, "run_1", "checking_readiness")]
    wait = WaitOptions(timeout=0.3, api_retry=FAST, connect_retry=FAST, handle_sigint=False)
    async with plane.client() as http:
        with pytest.raises(WaitTimedOut) as info:
            await promote(http, REQUEST, Recorder(), wait)
    assert info.value.run_id == "run_1"
    assert "compartment deployment watch run_1" in info.value.message


async def test_a_refused_post_is_one_plain_error() -> None:
    plane = FakeControlPlane()
    plane.promote_status = 409
    async with plane.client() as http:
        with pytest.raises(ApiRefused) as info:
            await promote(http, REQUEST, Recorder(), WAIT)
    assert info.value.code == "deployment_target_busy"


async def test_an_unreachable_stream_is_unavailable_before_anything_is_posted() -> None:
    plane = FakeControlPlane()
    plane.events_status = 503
    async with plane.client() as http:
        with pytest.raises(Unavailable):
            await promote(http, REQUEST, Recorder(), WAIT)
    assert "POST /v1/deployments/promote" not in plane.log
