"""The route proxy, with real sockets: in-process backends and one real deployment."""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
import time
from pathlib import Path
from typing import Self

import h11
import httpx
import pytest

from compartment_cli.server.routes import DrainReport, InFlight, RouteTable
from compartment_cli.server.runtime import ProcessSpec, Supervisor, check_readiness, free_port


class Backend:
    """An in-process deployment on a free loopback port, for ``async with``."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class NamedBackend(Backend):
    """An HTTP/1.1 keep-alive backend whose every answer is its name (``/slow/<s>``: later)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split()[1]
                if path.startswith(b"/slow/"):
                    await asyncio.sleep(float(path.rpartition(b"/")[2]))
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                body = self.name.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class KeepAliveClient:
    """One raw HTTP/1.1 connection that sends several requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> KeepAliveClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str = "/") -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split()[1])
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def proxy_tasks() -> list[asyncio.Task[object]]:
    names = ("RouteTable.", "ClientConnection.", "_pipe")
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__.startswith(names)  # type: ignore[union-attr]
    ]


@pytest.mark.anyio
async def test_no_target_answers_503(table: RouteTable) -> None:
    port = await table.open("env-1/web")

    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(f"http://127.0.0.1:{port}/orders", content=b"x" * 200_000)

    assert answer.status_code == 503
    assert answer.headers["connection"] == "close"
    assert answer.text == "no deployment serves this route\n"
    assert table.target("env-1/web") is None


@pytest.mark.anyio
async def test_refusing_backend_answers_502(table: RouteTable) -> None:
    port = await table.open("env-1/web")
    table.switch({"env-1/web": free_port()})

    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/")

    assert answer.status_code == 502
    assert answer.headers["connection"] == "close"


@pytest.mark.anyio
async def test_proxies_a_request_to_a_real_deployment(table: RouteTable, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = os.environ['COMPARTMENT_DEPLOYMENT_ID'].encode() + self.path.encode()\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    supervisor = Supervisor(tmp_path / "data")
    backend_port = free_port()
    proc = await supervisor.start(
        ProcessSpec(
            "dep-7",
            "shop",
            "production",
            "web",
            f"exec {shlex.quote(sys.executable)} app.py",
            tmp_path,
            tmp_path / "data" / "dep-7.log",
            backend_port,
        )
    )
    try:
        ready = await check_readiness(proc, path="/", timeout_ms=5000, report=lambda _: None)
        assert ready.ok, ready.message
        port = await table.open("env-1/web")
        assert table.switch({"env-1/web": backend_port}) == {"env-1/web": None}

        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/cart?id=1")

        assert answer.status_code == 200
        assert answer.text == "dep-7/cart?id=1"
    finally:
        await supervisor.stop_all(grace=1.0)


class EchoBackend(Backend):
    """Streams every request body straight back (chunked) while it still arrives (h11)."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: list[h11.Request] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    self.heads.append(event)
                    writer.write(conn.send(h11.Response(status_code=200, headers=[])) or b"")
                elif isinstance(event, h11.Data):
                    writer.write(conn.send(h11.Data(data=event.data)) or b"")
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                else:
                    return
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            pass  # cancelled: the test's loop ends
        finally:
            writer.close()


@pytest.mark.anyio
async def test_large_bodies_stream_both_ways(table: RouteTable) -> None:
    # Was a raw TCP echo with a half-close: the route now speaks HTTP, and a
    # half-close is a tunnel's business (test_tunnel_passes_bytes_and_half_close).
    async with EchoBackend() as backend:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": backend.port})
        payload = bytes(range(256)) * (5 * 4096)  # 5 MiB
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = h11.Connection(h11.CLIENT)
        first_back = asyncio.Event()

        async def send() -> None:
            head = h11.Request(
                method="POST",
                target="/echo",
                headers=[("Host", "x"), ("Content-Length", str(len(payload)))],
            )
            writer.write(client.send(head) or b"")
            for start in range(0, len(payload), 65536):
                if start == 65536 * 8:
                    await asyncio.wait_for(first_back.wait(), 5)  # the answer already streams
                writer.write(client.send(h11.Data(data=payload[start : start + 65536])) or b"")
                await writer.drain()
            writer.write(client.send(h11.EndOfMessage()) or b"")

        sender = asyncio.create_task(send())
        received = hashlib.sha256()
        size = 0
        answer: h11.Response | None = None
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                answer = event
            elif isinstance(event, h11.Data):
                first_back.set()
                received.update(event.data)
                size += len(event.data)
            else:
                break
        await sender
        writer.close()

        assert answer is not None
        assert answer.status_code == 200
        assert size == len(payload)
        assert received.digest() == hashlib.sha256(payload).digest()
        assert dict(backend.heads[0].headers)[b"content-length"] == str(len(payload)).encode()


@pytest.mark.anyio
async def test_switch_moves_every_connection_at_its_next_request(table: RouteTable) -> None:
    # Was: an open connection stayed with the old backend. Now each request
    # goes where the route points when its head is read.
    async with NamedBackend("blue") as blue, NamedBackend("green") as green:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": blue.port})
        old = await KeepAliveClient.connect(port)
        assert await old.get() == (200, b"blue")
        slow = await KeepAliveClient.connect(port)
        in_flight = asyncio.create_task(slow.get("/slow/0.5"))
        await asyncio.sleep(0.1)

        assert table.switch({"env-1/web": green.port}) == {"env-1/web": blue.port}

        assert await old.get() == (200, b"green")  # the same connection, moved
        new = await KeepAliveClient.connect(port)
        assert await new.get() == (200, b"green")
        assert table.in_flight(blue.port) == InFlight(requests=1, tunnels=0)
        assert str(table.in_flight(blue.port)) == "1 request in flight"
        assert table.open_connections(blue.port) == 1

        report = await table.drain(blue.port, timeout=10)

        assert await in_flight == (200, b"blue")  # finished where it started
        assert report.requests == 1
        assert report.cut == 0
        assert 0.2 < report.seconds < 1
        assert table.open_connections(blue.port) == 0
        assert await slow.get() == (200, b"green")
        for client in (old, new, slow):
            await client.close()


@pytest.mark.anyio
async def test_drain_with_nothing_in_flight_takes_milliseconds(table: RouteTable) -> None:
    async with NamedBackend("blue") as blue, NamedBackend("green") as green:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": blue.port})
        idle = [await KeepAliveClient.connect(port) for _ in range(5)]
        for client in idle:
            assert await client.get() == (200, b"blue")
        table.switch({"env-1/web": green.port})

        report = await table.drain(blue.port, timeout=10)

        assert report == DrainReport(requests=0, tunnels=0, seconds=report.seconds, cut=0)
        assert report.seconds < 0.05
        for client in idle:
            assert await client.get() == (200, b"green")
            await client.close()


@pytest.mark.anyio
async def test_drain_cuts_at_timeout(table: RouteTable) -> None:
    async with NamedBackend("blue") as blue, NamedBackend("green") as green:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": blue.port})
        slow = [await KeepAliveClient.connect(port) for _ in range(2)]
        for client in slow:
            client.writer.write(b"GET /slow/30 HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.2)
        table.switch({"env-1/web": green.port})

        started = time.monotonic()
        report = await table.drain(blue.port, timeout=0.4)

        assert (report.requests, report.tunnels, report.cut) == (2, 0, 2)
        assert str(report).endswith(" s (waited for 2 requests)")
        assert report.cut_text == "; 2 requests cut"
        assert 0.35 <= time.monotonic() - started < 1.5
        assert table.open_connections(blue.port) == 0
        for client in slow:
            assert await client.reader.read() == b""  # the proxy closed it
            client.writer.close()


@pytest.mark.anyio
async def test_switch_moves_several_routes_or_none(table: RouteTable) -> None:
    web = await table.open("env-1/web")
    api = await table.open("env-1/api")
    assert web != api
    assert await table.open("env-1/web") == web

    assert table.switch({"env-1/web": 4001, "env-1/api": 4002}) == {
        "env-1/web": None,
        "env-1/api": None,
    }
    with pytest.raises(KeyError):
        table.switch({"env-1/web": 5001, "env-9/web": 5002})
    assert table.target("env-1/web") == 4001
    assert table.switch({"env-1/web": None}) == {"env-1/web": 4001}
    assert table.target("env-1/api") == 4002


@pytest.mark.anyio
async def test_open_a_taken_port_raises(table: RouteTable) -> None:
    port = await table.open("env-1/web")

    with pytest.raises(OSError, match="address already in use"):
        await table.open("env-2/web", port)
    assert await table.open("env-3/web", free_port()) > 0


@pytest.mark.anyio
async def test_close_leaves_nothing_listening_or_running() -> None:
    table = RouteTable()
    async with NamedBackend("blue") as blue:
        port = await table.open("env-1/web")
        idle_port = await table.open("env-1/api")
        table.switch({"env-1/web": blue.port})
        client = await KeepAliveClient.connect(port)
        assert await client.get() == (200, b"blue")
        assert proxy_tasks()

        await table.close()

        assert await client.reader.read() == b""
        client.writer.close()
        for closed in (port, idle_port):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", closed)
        assert proxy_tasks() == []
        assert table.open_connections(blue.port) == 0
        await table.close()  # idempotent
