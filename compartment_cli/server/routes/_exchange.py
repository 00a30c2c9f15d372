"""One client connection of a route: HTTP/1.1 requests, each sent to the route's current target.

The target is read when a request's head has been read, so after a switch
the next request of every open keep-alive connection goes to the new
deployment while the requests in flight finish where they started. An
``Upgrade`` request turns the connection into a raw tunnel to the deployment
chosen for it. Memory stays bounded: bodies are passed on one chunk at a
time, each write waits for the socket (``drain``), a request head is at most
``MAX_HEAD`` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import h11

from compartment_cli.server.routes._upstream import CHUNK, Upstream

if TYPE_CHECKING:
    from compartment_cli.server.routes._table import Flight, RouteTable

Headers = list[tuple[bytes, bytes]]

MAX_HEAD = 32 * 1024  # bytes of request line and headers; more is 431
LINGER = 1.0  # s an error answer keeps reading the client before it closes
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_ONLY = frozenset({b"expect", b"x-forwarded-proto", b"x-forwarded-host"})
_TUNNEL = frozenset({b"connection", b"upgrade"})
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_NOT_ANSWERED = "the deployment closed the connection before it answered"


class _ClientError(Exception):
    """The client broke its request: answer ``status`` if nothing was sent yet, then close."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _Closed(Exception):
    """The exchange cannot go on; the connection closes without another word."""


_UPLOAD_ERRORS = (_ClientError, _Closed, ConnectionError, OSError, h11.ProtocolError)


def error_response(status: int, text: str, *extra: tuple[str, str]) -> bytes:
    body = (text + "\n").encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
        ("Connection", "close"),
    ]
    head = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + "\r\n").encode("latin-1") + body


def _tokens(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    return {
        token.strip().lower()
        for key, value in headers
        if key == name
        for token in value.split(b",")
        if token.strip()
    }


def end_to_end(
    headers: Sequence[tuple[bytes, bytes]],
    drop: frozenset[bytes] = frozenset(),
    keep: frozenset[bytes] = frozenset(),
) -> Headers:
    """The headers without hop-by-hop ones (and any the Connection header names)."""
    dropped = (HOP_BY_HOP | drop | _tokens(headers, b"connection")) - keep
    return [(key, value) for key, value in headers if key not in dropped]


def _upstream_headers(request: h11.Request, client: str, tunnel: bool, backend: int) -> Headers:
    headers = end_to_end(
        request.headers, drop=_REQUEST_ONLY, keep=_TUNNEL if tunnel else frozenset()
    )
    forwarded = [value for key, value in request.headers if key == b"x-forwarded-for"]
    headers = [(key, value) for key, value in headers if key != b"x-forwarded-for"]
    headers.append((b"x-forwarded-for", b", ".join([*forwarded, client.encode()])))
    headers.append((b"x-forwarded-proto", b"http"))
    host = next((value for key, value in request.headers if key == b"host"), None)
    if host is not None:
        headers.append((b"x-forwarded-host", host))
    else:  # HTTP/1.0 may leave it out; HTTP/1.1 to the deployment may not
        headers.append((b"host", b"127.0.0.1:%d" % backend))
    if _tokens(request.headers, b"transfer-encoding"):
        headers.append((b"transfer-encoding", b"chunked"))
    return headers


def _has_body(request: h11.Request) -> bool:
    for key, value in request.headers:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _wants_tunnel(request: h11.Request) -> bool:
    return b"upgrade" in _tokens(request.headers, b"connection") and any(
        key == b"upgrade" for key, _ in request.headers
    )


class ClientConnection:
    """The requests of one accepted connection, one after the other (``serve`` is its task)."""

    def __init__(
        self,
        table: RouteTable,
        key: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.table = table
        self.key = key
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.upstream: Upstream | None = None
        self.cut = False
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        peer = writer.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""

    async def serve(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            if not self.cut:
                raise
        except (_Closed, ConnectionError, OSError, h11.ProtocolError):
            pass
        finally:
            if self.upstream is not None:
                self.upstream.abort()
            if self.cut:
                self.writer.transport.abort()
            else:
                self.writer.close()

    async def _serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None or not await self._exchange(request):
                    return
                if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    return
                self.conn.start_next_cycle()
        except _ClientError as error:
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._answer(error.status, error.text)

    def abort(self) -> None:
        """Cut the connection now (drain bound reached, route table closing)."""
        self.cut = True
        self.writer.transport.abort()
        if self.upstream is not None:
            self.upstream.abort()
        self.task.cancel()

    # --- reading the client --------------------------------------------------------------

    async def _read_request(self) -> h11.Request | None:
        """The next request head; None when the client is done (or idle too long)."""
        timeouts = self.table.timeouts
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as error:
                raise _ClientError(error.error_status_hint, f"bad request: {error}") from None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed
            if deadline is None and self.conn.trailing_data[0]:
                deadline = loop.time() + timeouts.head
            try:
                async with asyncio.timeout_at(
                    deadline if deadline is not None else loop.time() + timeouts.idle
                ):
                    data = await self.reader.read(CHUNK)
            except TimeoutError:
                if deadline is None:
                    return None  # an idle keep-alive connection
                raise _ClientError(408, "the request head did not arrive in time") from None
            if data and deadline is None:
                deadline = loop.time() + timeouts.head
            self.conn.receive_data(data)

    async def _body_event(self) -> h11.Data | h11.EndOfMessage:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as error:
                raise _ClientError(400, f"bad request body: {error}") from None
            if isinstance(event, h11.Data | h11.EndOfMessage):
                return event
            if event is not h11.NEED_DATA:
                raise _Closed
            try:
                async with asyncio.timeout(self.table.timeouts.body):
                    data = await self.reader.read(CHUNK)
            except TimeoutError:
                raise _ClientError(408, "the request body stopped arriving") from None
            self.conn.receive_data(data)

    # --- one request -----------------------------------------------------------------------

    async def _exchange(self, request: h11.Request) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        flight = self.table.begin(self.key, self)
        if flight is None:
            await self._answer(503, "no deployment serves this route", ("Retry-After", "1"))
            return False
        try:
            return await self._forward(request, flight)
        finally:
            self.table.end(flight)

    async def _forward(self, request: h11.Request, flight: Flight) -> bool:
        tunnel = _wants_tunnel(request)
        body = _has_body(request)
        if not body:
            self.conn.next_event()  # its EndOfMessage, already parsed
        try:
            head = h11.Request(
                method=request.method,
                target=request.target,
                headers=_upstream_headers(request, self.client, tunnel, flight.backend),
            )
        except h11.LocalProtocolError as error:
            raise _ClientError(400, f"bad request: {error}") from None
        retry = not body and request.method in IDEMPOTENT
        upload: asyncio.Task[None] | None = None
        while True:
            try:
                upstream = await self.table.pool.acquire(flight.backend)
            except (OSError, TimeoutError):
                await self._answer(
                    502, "the deployment behind this route did not accept the connection"
                )
                return False
            self.upstream = upstream
            try:
                if body:
                    await upstream.send(head)
                    upload = asyncio.create_task(self._upload(upstream))
                else:
                    await upstream.send(head, h11.EndOfMessage())
                response = await self._response_head(upstream)
                break
            except (ConnectionError, OSError, h11.ProtocolError):
                upstream.abort()
                self.upstream = None
                if upload is not None:
                    upload.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await upload  # a _ClientError of its own goes to the client
                elif upstream.reused and retry:
                    retry = False
                    continue  # a stale pooled connection: once more on a fresh one
                await self._answer(502, _NOT_ANSWERED)
                return False
        try:
            if isinstance(response, h11.InformationalResponse):
                await self._tunnel(upstream, response, flight)
                return False
            return await self._relay(upstream, response, upload)
        finally:
            if upload is not None:
                upload.cancel()  # no-op when it is done
                with contextlib.suppress(asyncio.CancelledError, *_UPLOAD_ERRORS):
                    await upload

    async def _upload(self, upstream: Upstream) -> None:
        """The request body, chunk by chunk; client faults abort the upstream too."""
        try:
            if self.conn.they_are_waiting_for_100_continue:
                self._write(h11.InformationalResponse(status_code=100, headers=[]))
            while True:
                event = await self._body_event()
                if isinstance(event, h11.EndOfMessage):
                    await upstream.send(h11.EndOfMessage())
                    return
                await upstream.send(h11.Data(data=event.data))
        except (_ClientError, _Closed):
            upstream.abort()
            raise

    async def _response_head(self, upstream: Upstream) -> h11.Response | h11.InformationalResponse:
        """The final response head (or a 101), passing other 1xx answers on."""
        while True:
            event = await upstream.next_event()
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return event
                if event.status_code != 100:
                    self._write(
                        h11.InformationalResponse(
                            status_code=event.status_code, headers=end_to_end(event.headers)
                        )
                    )
                continue
            raise ConnectionResetError(_NOT_ANSWERED)

    async def _relay(
        self, upstream: Upstream, response: h11.Response, upload: asyncio.Task[None] | None
    ) -> bool:
        """Pass the response on; from its head on, a failure can only close the connection.

        What the deployment sent in one piece goes on in one write (one
        packet for a small answer); nothing waits in between for more.
        """
        head = h11.Response(
            status_code=response.status_code,
            headers=end_to_end(response.headers),
            reason=response.reason,
        )
        pending = [self.conn.send(head) or b""]
        source = upstream.conn
        try:
            while True:
                event = source.next_event()
                if event is h11.NEED_DATA:
                    self.writer.write(b"".join(pending))
                    pending.clear()
                    await self.writer.drain()
                    await upstream.receive()
                elif isinstance(event, h11.Data):
                    pending.append(self.conn.send(h11.Data(data=event.data)) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    pending.append(self.conn.send(h11.EndOfMessage()) or b"")
                    break
                else:
                    raise _Closed
        except (ConnectionError, OSError, h11.ProtocolError):
            raise _Closed from None
        self.writer.write(b"".join(pending))
        await self.writer.drain()
        if upload is not None:
            upload.cancel()  # a deployment may answer before the whole body was sent
            with contextlib.suppress(asyncio.CancelledError, *_UPLOAD_ERRORS):
                await upload
        self.upstream = None
        self.table.pool.release(upstream)
        return True

    async def _tunnel(
        self, upstream: Upstream, switching: h11.InformationalResponse, flight: Flight
    ) -> None:
        self._write(
            h11.InformationalResponse(
                status_code=101, headers=end_to_end(switching.headers, keep=_TUNNEL)
            )
        )
        self.table.to_tunnel(flight)
        from_client, _ = self.conn.trailing_data
        from_upstream, _ = upstream.conn.trailing_data
        if from_client:
            upstream.writer.write(from_client)
        if from_upstream:
            self.writer.write(from_upstream)
        pipes = {
            asyncio.create_task(_pipe(self.reader, upstream.writer)),
            asyncio.create_task(_pipe(upstream.reader, self.writer)),
        }
        try:
            done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                finished.result()  # a reset on either side ends both
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

    # --- writing the client ----------------------------------------------------------------

    def _write(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)

    async def _answer(self, status: int, text: str, *extra: tuple[str, str]) -> None:
        """An error answer, then close. Reading on a moment first: closing a socket with
        unread input resets it, and the client may then never see the answer."""
        self.writer.write(error_response(status, text, *extra))
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()
            if self.writer.can_write_eof():
                self.writer.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER):
                    while await self.reader.read(CHUNK):
                        pass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of input, then pass the half-close on."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.transport.is_closing():
        writer.write_eof()
