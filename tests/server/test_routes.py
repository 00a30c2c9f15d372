"""The route proxy, with real sockets: in-process backends and one real deployment."""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from compartment_cli.server.routes import RouteTable
from compartment_cli.server.runtime import ProcessSpec, Supervisor, check_readiness, free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def table() -> AsyncIterator[RouteTable]:
    routes = RouteTable()
    yield routes
    await routes.close()


class NamedBackend:
    """An HTTP/1.1 keep-alive backend whose every answer is its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> NamedBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
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
    names = ("RouteTable.", "_pipe")
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


@pytest.mark.anyio
async def test_large_body_and_half_close(table: RouteTable) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"END")  # still writable after the client half-closed
        writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": backend.sockets[0].getsockname()[1]})
        payload = bytes(range(256)) * (5 * 4096)  # 5 MiB
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        received = await reader.read(-1)  # until the proxy passes on the end
        await sender
        writer.close()

        assert len(received) == len(payload) + 3
        assert hashlib.sha256(received[:-3]).digest() == hashlib.sha256(payload).digest()
        assert received.endswith(b"END")
    finally:
        backend.close()


@pytest.mark.anyio
async def test_switch_moves_new_connections_and_drain_waits_for_old_ones(
    table: RouteTable,
) -> None:
    async with NamedBackend("blue") as blue, NamedBackend("green") as green:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": blue.port})
        old = await KeepAliveClient.connect(port)
        assert await old.get() == (200, b"blue")

        assert table.switch({"env-1/web": green.port}) == {"env-1/web": blue.port}

        new = await KeepAliveClient.connect(port)
        assert await new.get() == (200, b"green")
        assert await old.get() == (200, b"blue")  # the open connection stays put
        assert table.target("env-1/web") == green.port
        assert table.open_connections(blue.port) == 1

        drain = asyncio.create_task(table.drain(blue.port, timeout=10))
        await asyncio.sleep(0.3)
        assert not drain.done()
        assert await old.get() == (200, b"blue")  # still served while draining
        await old.close()
        started = time.monotonic()
        assert await drain == 0
        assert time.monotonic() - started < 1
        assert table.open_connections(blue.port) == 0

        assert await new.get() == (200, b"green")  # untouched by the drain
        await new.close()


@pytest.mark.anyio
async def test_drain_cuts_at_timeout(table: RouteTable) -> None:
    async with NamedBackend("blue") as blue, NamedBackend("green") as green:
        port = await table.open("env-1/web")
        table.switch({"env-1/web": blue.port})
        slow = [await KeepAliveClient.connect(port) for _ in range(2)]
        for client in slow:
            assert await client.get() == (200, b"blue")
        table.switch({"env-1/web": green.port})

        started = time.monotonic()
        assert await table.drain(blue.port, timeout=0.4) == 2

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
