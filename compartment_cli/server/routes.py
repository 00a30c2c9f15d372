"""Stable loopback ports in front of deployments: a small TCP proxy per route.

A route (one per project, environment and service) listens on a port that
does not change across deployments. Each accepted connection is bound to the
route's backend at accept time and stays there until it ends, so ``switch``
moves new connections at once without breaking open ones; ``drain`` then
waits for the old backend's connections to finish.

Without a backend a connection gets ``503 Service Unavailable``; when the
backend refuses, ``502 Bad Gateway``. Both close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

_CHUNK = 64 * 1024
_CONNECT_TIMEOUT = 5.0
_ERROR_READ_TIMEOUT = 2.0  # how long an error answer waits for the request head
_LINGER = 1.0  # how long an error answer keeps reading before it closes


@dataclass
class _Route:
    key: str
    server: asyncio.Server
    port: int
    target: int | None = None


@dataclass(eq=False)
class _Connection:
    route: str
    backend_port: int | None
    task: asyncio.Task[None]
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    cut: bool = False


def _error_response(status: str, text: str) -> bytes:
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class RouteTable:
    """The routes of one control plane. All methods run on one event loop."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._routes: dict[str, _Route] = {}
        self._connections: set[_Connection] = set()
        self._changed = asyncio.Event()
        self._closed = False

    async def open(self, key: str, port: int = 0) -> int:
        """Start listening for a route (0 = any free port); returns the port.

        OSError when the port is taken. Opening an open route again returns
        its port (ValueError if a different port is asked for).
        """
        if self._closed:
            raise RuntimeError("route table is closed")
        existing = self._routes.get(key)
        if existing is not None:
            if port not in (0, existing.port):
                raise ValueError(f"route {key} already listens on port {existing.port}")
            return existing.port
        server = await asyncio.start_server(partial(self._accept, key), self.host, port)
        bound: int = server.sockets[0].getsockname()[1]
        self._routes[key] = _Route(key, server, bound)
        return bound

    def port(self, key: str) -> int | None:
        """The port a route listens on, None when it is not open."""
        route = self._routes.get(key)
        return route.port if route is not None else None

    def target(self, key: str) -> int | None:
        route = self._routes.get(key)
        return route.target if route is not None else None

    def switch(self, targets: Mapping[str, int | None]) -> dict[str, int | None]:
        """Point several routes at new backends at once; returns the previous targets.

        Synchronous on purpose: no connection can be accepted half-way. A
        KeyError for a route that is not open changes nothing.
        """
        for key in targets:
            if key not in self._routes:
                raise KeyError(key)
        previous: dict[str, int | None] = {}
        for key, backend in targets.items():
            route = self._routes[key]
            previous[key] = route.target
            route.target = backend
        return previous

    def open_connections(self, backend_port: int) -> int:
        return sum(1 for conn in self._connections if conn.backend_port == backend_port)

    async def drain(self, backend_port: int, timeout: float) -> int:  # noqa: ASYNC109 (the interface)
        """Wait until no proxied connection to that backend is open, at most ``timeout``.

        Then cuts what is left and returns how many connections were cut.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open_connections(backend_port):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        left = [conn for conn in self._connections if conn.backend_port == backend_port]
        await self._cut(left)
        return len(left)

    async def close(self) -> None:
        """Stop every listener and close every connection. Idempotent."""
        self._closed = True
        routes = list(self._routes.values())
        self._routes.clear()
        for route in routes:
            route.server.close()
        await self._cut(list(self._connections))
        for route in routes:
            await route.server.wait_closed()

    # --- connections ---------------------------------------------------------

    async def _cut(self, connections: list[_Connection]) -> None:
        for conn in connections:
            conn.cut = True
            for writer in conn.writers:
                writer.transport.abort()
            conn.task.cancel()
        if connections:
            await asyncio.gather(*(conn.task for conn in connections), return_exceptions=True)

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        self._changed.set()
        self._changed = asyncio.Event()

    async def _accept(
        self, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        route = self._routes.get(key)
        target = route.target if route is not None else None
        conn = _Connection(key, target, task, [writer])
        self._connections.add(conn)
        try:
            if self._closed or route is None:
                writer.transport.abort()
            elif target is None:
                await self._answer_error(
                    reader, writer, "503 Service Unavailable", "no deployment serves this route"
                )
            else:
                await self._proxy(conn, reader, writer, target)
        except asyncio.CancelledError:
            if not conn.cut:
                raise
        except (ConnectionError, OSError):
            pass
        finally:
            for each in conn.writers:
                if conn.cut:
                    each.transport.abort()
                else:
                    each.close()
            self._forget(conn)

    async def _proxy(
        self,
        conn: _Connection,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        target: int,
    ) -> None:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                backend_reader, backend_writer = await asyncio.open_connection(
                    "127.0.0.1", target, limit=_CHUNK
                )
        except (OSError, TimeoutError):
            await self._answer_error(
                client_reader,
                client_writer,
                "502 Bad Gateway",
                "the deployment behind this route did not accept the connection",
            )
            return
        conn.writers.append(backend_writer)
        upstream = asyncio.create_task(_pipe(client_reader, backend_writer))
        downstream = asyncio.create_task(_pipe(backend_reader, client_writer))
        try:
            done, _ = await asyncio.wait(
                {upstream, downstream}, return_when=asyncio.FIRST_EXCEPTION
            )
            for finished in done:
                finished.result()  # a reset on either side ends both
        finally:
            for pipe in (upstream, downstream):
                pipe.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)

    @staticmethod
    async def _answer_error(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: str, text: str
    ) -> None:
        # Read the request head first and keep reading a moment after the
        # answer: closing a socket with unread input resets it, and the client
        # may then never see the answer.
        with contextlib.suppress(
            asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError
        ):
            async with asyncio.timeout(_ERROR_READ_TIMEOUT):
                await reader.readuntil(b"\r\n\r\n")
        writer.write(_error_response(status, text))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LINGER):
                while await reader.read(_CHUNK):
                    pass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of input, then pass the half-close on."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.transport.is_closing():
        writer.write_eof()
