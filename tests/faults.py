"""A TCP proxy that breaks the network on purpose, between the CLI and the control plane.

``FaultProxy`` listens on a free loopback port and forwards every connection to
``upstream_port``. Its ``mode`` can be changed at any time from the test; open
connections feel the change at their next chunk.

========  ===========================================  ==========================================
mode      a new connection                             data of an open connection
========  ===========================================  ==========================================
PASS      is forwarded                                 is forwarded, both ways
DOWN      is refused (the proxy stops listening:       goes on as before
          ``connect()`` fails with ECONNREFUSED)
CLOSE     is accepted, then closed at once (FIN)       server→client: the connection is closed
                                                       (FIN) instead
RESET     is accepted, then reset at once (RST, by     server→client: the connection is reset
          closing with ``SO_LINGER`` 0)                (RST) instead
CUT       is forwarded                                 server→client: after ``cut_after`` bytes
                                                       in all, the connection is closed (FIN)
DELAY     is forwarded                                 each chunk, either way, waits ``delay`` s
STALL     is forwarded                                 nothing moves, either way, until the mode
                                                       changes; the connection stays open
========  ===========================================  ==========================================

``match`` narrows the faults to some connections: when it is set, a connection
whose client has sent no request containing it (say ``b"GET /v1/events"``)
behaves as PASS whatever the mode, and the "new connection" column does not
apply (what a connection is for is only known once its client has spoken).

``connections`` counts the connections accepted; ``requests`` keeps, in order,
each chunk a client sent that starts an HTTP request (request line and
headers), and ``request_times`` when each came (``time.monotonic()``). An
upstream that refuses a connection makes the proxy reset the client's.
``down_after(n, seconds)`` stops listening right after the n-th connection is
accepted, for ``seconds``: a refusal aimed at whatever connects next.

::

    with FaultProxy(control_plane.port) as proxy:
        proxy.set(Mode.CUT, cut_after=4096, match=b"GET /v1/events")
        run_cli("--api-url", proxy.url, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
import socket
import struct
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.support import REGISTRY, free_port

__all__ = ["FaultProxy", "Mode"]

_CHUNK = 64 * 1024
_REQUEST_LINE = re.compile(rb"[A-Z]+ /")


class Mode(enum.Enum):
    PASS = "pass"
    DOWN = "down"
    CLOSE = "close"
    RESET = "reset"
    CUT = "cut"
    DELAY = "delay"
    STALL = "stall"


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    requests: list[bytes] = field(default_factory=list)  # request heads its client sent
    sent_down: int = 0  # server→client bytes forwarded so far
    done: bool = False


class FaultProxy:
    def __init__(self, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.mode = Mode.PASS
        self.cut_after = 4096
        self.delay = 0.05
        self.match: bytes | None = None
        self.connections = 0
        self.requests: list[bytes] = []
        self.request_times: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._changed: asyncio.Event | None = None
        self._open: set[_Connection] = set()
        self._down_after: tuple[int, float] | None = None
        REGISTRY["ports"].add(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- from the test's thread ----------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set(
        self,
        mode: Mode,
        *,
        cut_after: int | None = None,
        delay: float | None = None,
        match: bytes | None = None,
    ) -> None:
        """Switch to ``mode`` (and its settings); ``match`` applies until the next ``set``."""

        async def switch() -> None:
            if cut_after is not None:
                self.cut_after = cut_after
            if delay is not None:
                self.delay = delay
            self.match = match
            self.mode = mode
            if mode is Mode.DOWN:
                self._unlisten()
            else:
                await self._listen()
            self._wake()

        self._call(switch())

    def down_after(self, connections: int, seconds: float) -> None:
        """Once ``connections`` connections in all have been accepted, refuse for ``seconds``."""

        async def arm() -> None:
            self._down_after = (connections, seconds)

        self._call(arm())

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(10)

    # --- in the proxy's loop -------------------------------------------------------------

    async def _listen(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        if self._server is None and self.mode is not Mode.DOWN:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()  # open connections are not closed by this
            self._server = None

    async def _refuse_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.mode is not Mode.DOWN:
            await self._listen()

    async def _shutdown(self) -> None:
        self._unlisten()
        for connection in list(self._open):
            _abort(connection.client)
            if connection.upstream is not None:
                _abort(connection.upstream)
        self._wake()

    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    def _mode_for(self, connection: _Connection) -> Mode:
        if self.match is not None and not any(self.match in r for r in connection.requests):
            return Mode.PASS
        return self.mode

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._down_after is not None and self.connections >= self._down_after[0]:
            seconds = self._down_after[1]
            self._down_after = None
            self._unlisten()  # at once, before whatever comes next can connect
            self._loop.create_task(self._refuse_for(seconds))
        connection = _Connection(writer)
        if self.match is None and self.mode is Mode.CLOSE:
            await _close(reader, writer)
            return
        if self.match is None and self.mode is Mode.RESET:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        connection.upstream = up_writer
        self._open.add(connection)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, connection, down=False),
                self._pump(up_reader, writer, connection, down=True),
            )
        finally:
            self._open.discard(connection)
            _abort(up_writer)
            if not writer.is_closing():
                writer.close()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        connection: _Connection,
        *,
        down: bool,
    ) -> None:
        """Forward ``source`` to ``sink`` (``down``: server→client) until either side ends."""
        while not connection.done:
            try:
                data = await source.read(_CHUNK)
            except OSError:
                data = b""
            if not data or connection.done:
                break
            if not down and _REQUEST_LINE.match(data):
                self.requests.append(data)
                self.request_times.append(time.monotonic())
                connection.requests.append(data)
            mode = self._mode_for(connection)
            while mode is Mode.STALL and not connection.done:
                assert self._changed is not None
                await self._changed.wait()
                mode = self._mode_for(connection)
            if connection.done:
                break
            if mode is Mode.DELAY:
                await asyncio.sleep(self.delay)
            if down and mode is Mode.CLOSE:
                break
            if down and mode is Mode.RESET:
                connection.done = True
                _reset(sink)
                return
            if down and mode is Mode.CUT:
                room = self.cut_after - connection.sent_down
                if len(data) >= room:
                    sink.write(data[:room])
                    with contextlib.suppress(OSError):
                        await sink.drain()
                    break
            connection.sent_down += len(data) if down else 0
            sink.write(data)
            try:
                await sink.drain()
            except OSError:
                break
        # One side ended: end the other, so neither waits for ever.
        connection.done = True
        if not sink.is_closing():
            sink.close()
        self._wake()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: ``SO_LINGER`` on, with a timeout of 0."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close with FIN. A socket closed with unread data in it sends RST instead (Linux), so
    send the FIN first, then read what the client sends until it closes too."""
    with contextlib.suppress(OSError, TimeoutError):
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)
    writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.transport.abort()
