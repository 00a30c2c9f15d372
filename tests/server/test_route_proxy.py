"""The route's HTTP/1.1 proxying against small in-process deployments: headers, pooling,
failures, 100-continue, tunnels."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from compartment_cli.server.routes import RouteTable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(handler: Handler) -> tuple[asyncio.Server, int]:
    async def quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(quiet, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def route_to(table: RouteTable, handler: Handler) -> tuple[asyncio.Server, str]:
    server, backend = await serving(handler)
    port = await table.open("env-1/web")
    table.switch({"env-1/web": backend})
    return server, f"http://127.0.0.1:{port}"


def answer(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.mark.anyio
async def test_forwarded_headers_added_and_hop_by_hop_headers_stripped(table: RouteTable) -> None:
    seen: list[bytes] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer(b"ok", b"Connection: X-Secret", b"X-Secret: 1", b"Keep-Alive: x"))
        await writer.drain()

    server, url = await route_to(table, backend)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(
            url + "/a?b=1",
            headers={
                "Connection": "keep-alive, X-Private",
                "X-Private": "p",
                "Proxy-Authorization": "Basic x",
                "TE": "trailers",
                "X-Forwarded-For": "10.0.0.1",
                "X-Kept": "yes",
            },
        )
    server.close()

    head = seen[0].decode().lower()
    assert head.startswith("get /a?b=1 http/1.1\r\n")
    assert "x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n" in head
    assert "x-forwarded-proto: http\r\n" in head
    assert f"x-forwarded-host: {url[len('http://') :]}\r\n" in head
    assert "x-kept: yes\r\n" in head
    for gone in ("x-private", "proxy-authorization", "te:", "connection", "keep-alive"):
        assert gone not in head
    assert response.text == "ok"
    assert "x-secret" not in response.headers
    assert "keep-alive" not in response.headers


@pytest.mark.anyio
async def test_no_target_answers_503_with_retry_after(table: RouteTable) -> None:
    port = await table.open("env-1/web")

    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"http://127.0.0.1:{port}/")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_a_stale_pooled_connection_is_retried_once_for_idempotent_requests_only(
    table: RouteTable,
) -> None:
    connections = 0

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers the first request of a connection, then drops it at the second
        # without a word: what a keep-alive timeout racing a request looks like.
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        if b"content-length: 4" in head.lower():
            await reader.readexactly(4)
        writer.write(answer(b"first"))
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server, url = await route_to(table, backend)
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(url)).text == "first"
        assert (await client.get(url)).text == "first"  # the pooled one dropped: retried
        assert connections == 2
        refused = await client.post(url, content=b"body")  # on the one the retry opened
    server.close()

    assert refused.status_code == 502  # a POST is never sent twice
    assert refused.text == "the deployment closed the connection before it answered\n"
    assert connections == 2


@pytest.mark.anyio
async def test_a_deployment_that_dies_mid_request_never_leaves_the_client_hanging(
    table: RouteTable,
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/half" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await writer.drain()
        writer.transport.abort()

    server, url = await route_to(table, backend)
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        started = time.monotonic()
        before_head = await client.get(url + "/none")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url + "/half")  # its head was sent: the connection closes
        assert (await client.get(url + "/none")).status_code == 502  # still serving
    server.close()

    assert before_head.status_code == 502
    assert before_head.headers["content-type"] == "text/plain; charset=utf-8"
    assert time.monotonic() - started < 3


@pytest.mark.anyio
async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    table: RouteTable,
) -> None:
    seen: list[bytes] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        body = await reader.readexactly(5)
        writer.write(answer(b"got " + body))
        await writer.drain()

    server, url = await route_to(table, backend)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.write(b"hello")
    final = await asyncio.wait_for(reader.readuntil(b"got hello"), 5)
    writer.close()
    server.close()

    assert interim == b"HTTP/1.1 100 \r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 ")
    assert b"expect" not in seen[0].lower()


@pytest.mark.anyio
async def test_tunnel_passes_bytes_and_half_close_and_drain_waits_for_it(
    table: RouteTable,
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\nhi"
        )
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.write(b"END")  # still writable after the client half-closed
        await writer.drain()

    server, url = await route_to(table, backend)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await reader.readexactly(2) == b"hi"
    writer.write(b"abc")
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"ABC"
    backend_port = table.target("env-1/web")
    assert backend_port is not None
    assert table.in_flight(backend_port).tunnels == 1
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"END"
    writer.close()
    await asyncio.sleep(0.1)
    assert table.open_connections(backend_port) == 0

    # A second tunnel holds a drain until its bound, then is cut.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"hi"), 5)
    table.switch({"env-1/web": None})
    report = await table.drain(backend_port, timeout=0.3)
    assert (report.requests, report.tunnels, report.cut) == (0, 1, 1)
    assert str(report).endswith(" s (waited for 1 tunnel)")
    assert report.cut_text == "; 1 tunnel cut"
    assert 0.25 < report.seconds < 1
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    server.close()


@pytest.mark.anyio
async def test_pipelined_head_and_http_1_0_requests(table: RouteTable) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.split()[:2]
            body = b"" if method == b"HEAD" else path
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), body))
            await writer.drain()

    server, url = await route_to(table, backend)
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /two HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = await asyncio.wait_for(reader.read(), 5)  # until the route closes
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /old HTTP/1.0\r\n\r\n")
    old = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()

    parts = answers.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert [part.rpartition(b"\r\n\r\n")[2] for part in parts] == [b"/one", b"", b"/three"]
    assert b"content-length: 4" in parts[1].lower()  # HEAD: the GET's length, no body
    assert old.startswith(b"HTTP/1.1 200 ")
    assert old.endswith(b"\r\n\r\n/old")


@pytest.mark.anyio
async def test_a_reused_connection_to_an_app_that_sends_head_and_body_apart_is_not_slowed(
    table: RouteTable,
) -> None:
    # Like Python's http.server: head and body in two sends, Nagle's algorithm on. On
    # a kept-alive connection the body then waits for the route's ACK of the head,
    # which the kernel delays by up to 40 ms unless the route asks for quick ACKs.
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0)
            writer.write(b"ok")
            await writer.drain()

    server, url = await route_to(table, backend)
    took = []
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(20):
            started = time.monotonic()
            assert (await client.get(url)).text == "ok"
            took.append(time.monotonic() - started)
    server.close()

    assert sorted(took)[10] < 0.015, took
