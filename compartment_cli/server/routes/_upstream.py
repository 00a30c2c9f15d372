"""Connections from a route to its deployments: HTTP/1.1 over h11, kept alive per backend.

A pooled connection may have been closed by the deployment while it sat
idle; ``Pool.acquire`` skips those it can tell (end of input seen, too old),
and the exchange retries the rest once when that is safe (see ``_exchange``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import h11

CHUNK = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
POOL_IDLE = 4.0  # s a pooled connection may sit idle (under uvicorn's 5 s keep-alive)
POOL_SIZE = 32  # idle connections kept per backend
# Linux only. A reused connection has left TCP's quick-ACK start, so the
# kernel delays its ACKs (up to 40 ms); an app that writes its response head
# and body in two sends without TCP_NODELAY (Python's http.server does) then
# waits for that ACK before the body goes out (Nagle). Quick ACKs are asked
# for again before each read, as the kernel may drop back after one.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class Upstream:
    """One connection to a deployment, speaking HTTP/1.1 as the client."""

    __slots__ = ("_socket", "conn", "idle_since", "port", "reader", "reused", "writer")

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port = port
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self.reused = False
        self.idle_since = 0.0
        self._socket = writer.get_extra_info("socket")

    async def send(self, *events: h11.Event) -> None:
        data = b"".join(self.conn.send(event) or b"" for event in events)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        """The deployment's next event; end of input mid-message raises RemoteProtocolError."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            await self.receive()

    async def receive(self) -> None:
        """Read what the deployment sent next into the h11 connection (b"": its end)."""
        if _QUICKACK is not None and self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self.conn.receive_data(await self.reader.read(CHUNK))

    def usable(self, now: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.transport.is_closing()
            and now - self.idle_since < POOL_IDLE
        )

    def abort(self) -> None:
        self.writer.transport.abort()


class Pool:
    """Idle keep-alive connections by backend port. All methods run on one event loop.

    ``wanted(port)`` says whether a backend still serves a route: a connection
    to one that does not (a drained deployment) is closed, never pooled.
    """

    def __init__(self, host: str, connect_timeout: float, wanted: Callable[[int], bool]) -> None:
        self._host = host
        self._connect_timeout = connect_timeout
        self._wanted = wanted
        self._idle: dict[int, list[Upstream]] = {}

    async def acquire(self, port: int) -> Upstream:
        """A pooled connection to ``port`` or a new one; OSError/TimeoutError when refused."""
        idle = self._idle.get(port)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                upstream = idle.pop()  # the most recently used is the least likely stale
                if upstream.usable(now):
                    upstream.reused = True
                    return upstream
                upstream.abort()
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(self._host, port, limit=CHUNK)
        return Upstream(port, reader, writer)

    def release(self, upstream: Upstream) -> None:
        """Pool the connection when its exchange ended cleanly, else close it."""
        conn = upstream.conn
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and self._wanted(upstream.port)
            and not upstream.writer.transport.is_closing()
        ):
            idle = self._idle.setdefault(upstream.port, [])
            if len(idle) < POOL_SIZE:
                conn.start_next_cycle()
                upstream.idle_since = asyncio.get_running_loop().time()
                idle.append(upstream)
                return
        upstream.abort()

    def close_backend(self, port: int) -> int:
        """Close every idle connection to ``port``; returns how many."""
        idle = self._idle.pop(port, [])
        for upstream in idle:
            upstream.abort()
        return len(idle)

    def close(self) -> None:
        for port in list(self._idle):
            self.close_backend(port)
