"""EventStream's own logic: subscribe, decode, reconnect with Last-Event-ID, stall, caps.

Each fake connection is a script of byte chunks served through httpx.MockTransport
(which streams, unlike ASGITransport). Parsing SSE from awkward splits is httpx-sse's
job; here chunks still split events in odd places to check the byte guard does not care.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest

from compartment_cli.client.api import RetryPolicy, open_http_client
from compartment_cli.client.events import EventStream, NoEventStream
from compartment_cli.errors import ApiRefused, NotAuthorized, Unavailable
from compartment_cli.models.events import RunCompletedEvent, StepEvent

pytestmark = pytest.mark.anyio

TOKEN = "tok-abcdefgh"
FAST = RetryPolicy(attempts=3, first_delay=0.0, max_delay=0.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def step(event_id: int, step_name: str = "checking_readiness", run: str = "run_1") -> bytes:
    data = {
        "deploymentRunId": run,
        "deploymentId": "dep_1",
        "serviceName": "api",
        "step": step_name,
        "status": "running",
        "message": "GET /healthz answered 503, retrying",
        "at": "2025-01-01T12:00:01.204Z",
    }
    return f"id: {event_id}\nevent: deployment.step\ndata: {json.dumps(data)}\n\n".encode()


def completed(event_id: int) -> bytes:
    data = {"deploymentRunId": "run_1", "status": "succeeded", "deployments": [], "at": "x"}
    return f"id: {event_id}\nevent: run.completed\ndata: {json.dumps(data)}\n\n".encode()


STALL = object()  # the connection goes silent
BREAK = object()  # the connection breaks


@dataclass
class Script:
    """One connection's answer: a status, headers and body chunks (or STALL / BREAK)."""

    chunks: list[object] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    body: bytes = b""


class ScriptedBody(httpx.AsyncByteStream):
    def __init__(self, chunks: list[object], request: httpx.Request) -> None:
        self.chunks = chunks
        self.request = request
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if chunk is STALL:
                await anyio.sleep(3600)
            elif chunk is BREAK:
                raise httpx.ReadError("connection reset", request=self.request)
            else:
                assert isinstance(chunk, bytes)
                yield chunk
                await anyio.sleep(0)

    async def aclose(self) -> None:
        self.closed = True


class FakeServer:
    def __init__(self, *scripts: Script | Exception) -> None:
        self.scripts = list(scripts)
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.scripts.pop(0) if self.scripts else Script([STALL])
        if isinstance(script, Exception):
            raise script
        if script.status != 200 or script.body:
            return httpx.Response(
                script.status, content=script.body, headers={"content-type": script.content_type}
            )
        return httpx.Response(
            200,
            headers={"content-type": script.content_type},
            stream=ScriptedBody(script.chunks, request),
        )

    @property
    def last_event_ids(self) -> list[str | None]:
        return [r.headers.get("last-event-id") for r in self.requests]


def stream_for(server: FakeServer, **kwargs: object) -> EventStream:
    http = open_http_client(
        "http://cp.test",
        {"Authorization": f"Bearer {TOKEN}"},
        transport=httpx.MockTransport(server.handler),
    )
    options: dict[str, object] = {
        "connect_retry": FAST,
        "reconnect_retry": FAST,
        "stall_timeout": 5.0,
    }
    options.update(kwargs)
    return EventStream(http, project="shop", environment="production", **options)  # type: ignore[arg-type]


async def take(stream: EventStream, n: int) -> list[tuple[int, object]]:
    out = []
    with anyio.fail_after(10):
        async for item in stream:
            out.append(item)
            if len(out) == n:
                break
    return out


async def test_yields_decoded_events_and_sends_the_query() -> None:
    server = FakeServer(Script([b"retry: 1000\n\n", step(1), completed(2), STALL]))
    async with stream_for(server) as events:
        items = await take(events, 2)
    assert [i for i, _ in items] == [1, 2]
    assert isinstance(items[0][1], StepEvent)
    assert isinstance(items[1][1], RunCompletedEvent)
    request = server.requests[0]
    assert request.url.path == "/v1/events"
    assert dict(request.url.params) == {"projectName": "shop", "environmentName": "production"}
    assert request.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in request.headers


async def test_enter_returns_once_headers_arrive_before_any_event() -> None:
    server = FakeServer(Script([STALL]))
    with anyio.fail_after(5):
        async with stream_for(server) as events:
            assert events.connections == 1


async def test_reconnects_after_a_drop_with_last_event_id_and_never_repeats() -> None:
    server = FakeServer(
        Script([step(1), step(2)[:17]]),  # ends in the middle of event 2
        Script([step(1), step(2), step(3), completed(4)]),  # replays from before
    )
    reconnects: list[str] = []
    async with stream_for(server, on_reconnect=reconnects.append) as events:
        items = await take(events, 4)
    assert [i for i, _ in items] == [1, 2, 3, 4]
    assert server.last_event_ids == [None, "1"]
    assert reconnects == ["the control plane closed the event stream"]


async def test_a_drop_before_the_first_event_resumes_from_where_the_stream_started() -> None:
    server = FakeServer(
        Script([b"id: 41\nretry: 1000\n\n", BREAK]),  # the server says where it starts
        Script([step(42), completed(43)]),
    )
    async with stream_for(server) as events:
        items = await take(events, 2)
    assert [i for i, _ in items] == [42, 43]
    assert server.last_event_ids == [None, "41"]


async def test_reconnects_after_a_broken_connection() -> None:
    server = FakeServer(Script([step(5), BREAK]), Script([step(6)]))
    async with stream_for(server) as events:
        items = await take(events, 2)
    assert [i for i, _ in items] == [5, 6]
    assert server.last_event_ids == [None, "5"]


async def test_a_stall_without_pings_reconnects_and_pings_keep_it_alive() -> None:
    pings = [b": ping\n\n"] * 3
    server = FakeServer(Script([step(1), STALL]), Script([*pings, step(2)]))
    reconnects: list[str] = []
    async with stream_for(server, stall_timeout=0.2, on_reconnect=reconnects.append) as events:
        items = await take(events, 2)
    assert [i for i, _ in items] == [1, 2]
    assert server.last_event_ids == [None, "1"]
    assert reconnects == ["no data on the event stream for 0.2s"]


async def test_reconnect_budget_is_bounded() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    server = FakeServer(Script([step(1)]), refused, refused, refused, refused)
    async with stream_for(server) as events:
        await take(events, 1)
        with pytest.raises(Unavailable) as info:
            await take(events, 1)
    assert info.value.code == "event_stream_lost"
    assert "connection refused" in info.value.message
    assert TOKEN not in info.value.message


async def test_events_reset_the_budget() -> None:
    # Each connection brings one new event then drops: never out of budget.
    server = FakeServer(*(Script([step(i), BREAK]) for i in range(1, 8)))
    async with stream_for(server) as events:
        items = await take(events, 7)
    assert [i for i, _ in items] == list(range(1, 8))


async def test_initial_connect_retries_then_gives_up() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    server = FakeServer(refused, refused, refused)
    with pytest.raises(Unavailable) as info:
        async with stream_for(server):
            pass
    assert info.value.code == "network_error"
    assert "after 3 attempts" in info.value.message
    assert len(server.requests) == 3


async def test_initial_connect_survives_one_refusal() -> None:
    server = FakeServer(httpx.ConnectError("refused"), Script([step(1)]))
    async with stream_for(server) as events:
        assert [i for i, _ in await take(events, 1)] == [1]


@pytest.mark.parametrize("status", [404, 405])
async def test_no_event_stream(status: int) -> None:
    server = FakeServer(Script(status=status, body=b"Not Found", content_type="text/plain"))
    with pytest.raises(NoEventStream):
        async with stream_for(server):
            pass


async def test_stream_gone_after_reconnect_is_reported() -> None:
    server = FakeServer(Script([step(1)]), Script(status=404, body=b"gone"))
    async with stream_for(server) as events:
        await take(events, 1)
        with pytest.raises(NoEventStream):
            await take(events, 1)


async def test_wrong_content_type_is_unavailable() -> None:
    server = FakeServer(Script(body=b"<html></html>", content_type="text/html"))
    with pytest.raises(Unavailable) as info:
        async with stream_for(server):
            pass
    assert "text/html" in info.value.message


async def test_refusals_map_to_error_kinds() -> None:
    body = json.dumps({"error": {"code": "unauthorized", "message": "bad token"}}).encode()
    server = FakeServer(Script(status=401, body=body, content_type="application/json"))
    with pytest.raises(NotAuthorized):
        async with stream_for(server):
            pass
    body = json.dumps({"error": {"code": "project_not_found", "message": "no"}}).encode()
    server = FakeServer(Script(status=400, body=body, content_type="application/json"))
    with pytest.raises(ApiRefused):
        async with stream_for(server):
            pass


async def test_5xx_on_connect_is_retried() -> None:
    server = FakeServer(Script(status=503, body=b"later"), Script([step(1)]))
    async with stream_for(server) as events:
        assert [i for i, _ in await take(events, 1)] == [1]


async def test_unknown_types_skipped_silently_undecodable_with_a_warning() -> None:
    server = FakeServer(
        Script(
            [
                b'id: 1\nevent: deployment.flavour\ndata: {"x": 1}\n\n',
                b"id: 2\nevent: deployment.step\ndata: {not json\n\n",
                b'id: 3\nevent: deployment.step\ndata: {"deploymentRunId": 1}\n\n',
                b"event: deployment.step\nid: nope\ndata: {}\n\n",
                step(4),
            ]
        )
    )
    warnings: list[str] = []
    async with stream_for(server, on_warning=warnings.append) as events:
        items = await take(events, 1)
    assert [i for i, _ in items] == [4]
    assert len(warnings) == 3
    assert "event 2" in warnings[0]
    assert "event 3" in warnings[1]


async def test_oversized_event_is_a_clear_error() -> None:
    big = b"id: 1\nevent: deployment.step\ndata: " + b"x" * 3000
    server = FakeServer(Script([big[:1000], big[1000:], b"\n\n"]))
    async with stream_for(server, max_event_bytes=2048) as events:
        with pytest.raises(Unavailable) as info:
            await take(events, 1)
    assert info.value.code == "event_too_large"


async def test_many_small_events_do_not_add_up_to_the_cap() -> None:
    chunks = b"".join(step(i) for i in range(1, 40))
    # Split at odd places, including inside the blank line that ends an event.
    parts = [chunks[i : i + 97] for i in range(0, len(chunks), 97)]
    server = FakeServer(Script(list(parts)))
    async with stream_for(server, max_event_bytes=1024) as events:
        items = await take(events, 39)
    assert len(items) == 39


async def test_resumes_from_a_given_last_event_id() -> None:
    server = FakeServer(Script([step(7), step(8)]))
    async with stream_for(server, last_event_id=7) as events:
        items = await take(events, 1)
    assert [i for i, _ in items] == [8]
    assert server.last_event_ids == ["7"]
