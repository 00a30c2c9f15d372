"""Following the deployment event stream, ``GET /v1/events`` (ours; CONTRACT.md section 4).

httpx-sse parses the stream; this module adds what it leaves to its caller:

- entering ``EventStream`` returns once the response headers have arrived, so
  a caller that enters it before requesting a promotion misses no event;
  a control plane without the stream (404 or 405, like the hosted platform)
  raises ``NoEventStream`` so the caller can poll instead;
- iterating yields ``(id, event)`` decoded with ``models.events``; unknown
  event types are skipped, undecodable ones skipped with a warning (the first
  ``MAX_WARNINGS`` of them: a stream of nonsense must not flood stderr);
- a dropped or stalled connection (no byte, not even a ``: ping``, for
  ``stall_timeout``) is re-opened with ``Last-Event-ID``, backing off within
  a bounded number of attempts (then ``Unavailable``); no id is yielded twice;
- an event larger than ``max_event_bytes`` ends the stream with ``Unavailable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType

import anyio
import httpx
import msgspec
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from compartment_cli.client.api import (
    DEFAULT_RETRY,
    TIME_SCALE,
    RetryPolicy,
    address_of,
    describe_transport_error,
    error_from_response,
    scrub,
    secrets_of,
)
from compartment_cli.errors import CompartmentError, Unavailable, UsageError
from compartment_cli.models.events import DeploymentEvent, UnknownEventError, decode_event

__all__ = [
    "DEFAULT_STALL_TIMEOUT",
    "MAX_EVENT_BYTES",
    "RECONNECT_RETRY",
    "EventStream",
    "NoEventStream",
]

DEFAULT_STALL_TIMEOUT = 45.0 * TIME_SCALE
MAX_EVENT_BYTES = 1024 * 1024
MAX_WARNINGS = 5
# Once a run is being followed, ride out a control plane restart.
RECONNECT_RETRY = RetryPolicy(attempts=8, first_delay=0.5, max_delay=10.0)

EVENTS_PATH = "/v1/events"
_EVENT_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")


class NoEventStream(Exception):
    """The control plane has no event stream (404 or 405): poll instead."""


class _Dropped(Exception):
    """The connection ended or could not be opened; worth another try."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stalled(Exception):
    pass


class _TooLarge(Exception):
    pass


class _GuardedStream(httpx.AsyncByteStream):
    """The response body, watched for stalls and for events that never end."""

    def __init__(self, inner: httpx.AsyncByteStream, *, stall_timeout: float, limit: int) -> None:
        self._inner = inner
        self._stall_timeout = stall_timeout
        self._limit = limit
        self._pending = 0  # bytes since the last blank line (the end of an event)
        self._tail = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            with anyio.move_on_after(self._stall_timeout) as scope:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                raise _Stalled
            self._count(chunk)
            yield chunk

    def _count(self, chunk: bytes) -> None:
        data = self._tail + chunk
        end = max(
            (data.rfind(sep) + len(sep) for sep in _EVENT_BOUNDARIES if sep in data), default=-1
        )
        self._pending = len(data) - end if end >= 0 else self._pending + len(chunk)
        self._tail = data[-3:]
        if self._pending > self._limit:
            raise _TooLarge

    async def aclose(self) -> None:
        await self._inner.aclose()


class EventStream:
    """The event stream of one environment, from now (or after ``last_event_id``) on.

    ::

        async with EventStream(http, project="shop", environment="production") as events:
            ...  # subscribed: anything that happens from here on will be seen
            async for event_id, event in events:
                ...

    Entering raises ``NoEventStream`` when the control plane has none, and
    ``CompartmentError`` kinds when it refuses (``NotAuthorized``,
    ``ApiRefused``) or cannot be reached after ``connect_retry``. Iteration
    never ends by itself: the caller stops at the event it waits for. It may
    raise ``NoEventStream`` too, when a reconnect finds the stream gone.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        project: str,
        environment: str,
        last_event_id: int | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        max_event_bytes: int = MAX_EVENT_BYTES,
        connect_retry: RetryPolicy = DEFAULT_RETRY,
        reconnect_retry: RetryPolicy = RECONNECT_RETRY,
        on_warning: Callable[[str], None] | None = None,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> None:
        self._http = http
        self._params = {"projectName": project, "environmentName": environment}
        self._last_id = last_event_id
        self._stall_timeout = stall_timeout
        self._max_event_bytes = max_event_bytes
        self._connect_retry = connect_retry
        self._reconnect_retry = reconnect_retry
        self._on_warning = on_warning or _ignore
        self._on_reconnect = on_reconnect or _ignore
        self._secrets = secrets_of(http)
        self._where = address_of(http)
        self._retry_hint = 0.0  # seconds, from the server's `retry:` field
        self._connection: contextlib.AsyncExitStack | None = None
        self._events: AsyncIterator[ServerSentEvent] | None = None
        self._failures = 0  # consecutive attempts that brought no event
        self._warnings = 0
        self.connections = 0  # how many times a connection was opened (for tests and logs)

    @property
    def last_event_id(self) -> int | None:
        return self._last_id

    async def __aenter__(self) -> EventStream:
        await self._open_with_retries(self._connect_retry, "")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._disconnect()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> tuple[int, DeploymentEvent]:
        while True:
            if self._events is None:
                raise RuntimeError("EventStream used outside `async with`")
            try:
                sse = await self._events.__anext__()
            except StopAsyncIteration:
                reason = "the control plane closed the event stream"
            except _Stalled:
                reason = f"no data on the event stream for {self._stall_timeout:g}s"
            except _TooLarge:
                await self._disconnect()
                raise Unavailable(
                    f"the control plane at {self._where} sent an event larger than "
                    f"{self._max_event_bytes // 1024} KiB; stopped following its event stream",
                    code="event_too_large",
                ) from None
            except httpx.TransportError as exc:
                reason = f"the event stream broke: {describe_transport_error(exc)}"
            else:
                item = self._accept(sse)
                if item is not None:
                    return item
                continue
            await self._disconnect()
            await self._open_with_retries(self._reconnect_retry, reason)

    # --- one event ------------------------------------------------------

    def _accept(self, sse: ServerSentEvent) -> tuple[int, DeploymentEvent] | None:
        if sse.retry is not None and sse.retry >= 0:
            # Capped before dividing: a retry of thousands of digits is too large for a float.
            self._retry_hint = min(sse.retry, 60_000) / 1000
        if sse.event == "message" and not sse.data:
            # A block with only `retry:` or `id:`. The id says where the stream
            # starts, so a reconnect before the first event misses nothing.
            start = _start_id(sse.id)
            if start is not None and (self._last_id is None or start > self._last_id):
                self._last_id = start
            return None
        try:
            event_id = int(sse.id)
        except ValueError:
            self._warn(f"skipped a {sse.event!r} event without a numeric id ({sse.id!r})")
            return None
        if self._last_id is not None and event_id <= self._last_id:
            return None  # already seen before a reconnect
        self._last_id = event_id
        self._failures = 0
        try:
            event = decode_event(sse.event, sse.data)
        except UnknownEventError:
            return None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._warn(f"skipped event {event_id} ({sse.event}) that cannot be read: {exc}")
            return None
        return event_id, event

    def _warn(self, text: str) -> None:
        self._warnings += 1
        if self._warnings < MAX_WARNINGS:
            self._on_warning(scrub(text, self._secrets))
        elif self._warnings == MAX_WARNINGS:
            self._on_warning(
                scrub(text, self._secrets) + "; more unreadable events will be skipped silently"
            )

    # --- connections ----------------------------------------------------

    async def _open_with_retries(self, policy: RetryPolicy, reason: str) -> None:
        """Open a connection; ``reason`` is why the previous one ended ("" the first time)."""
        initial = not reason
        while True:
            if reason:
                self._failures += 1
                if self._failures >= policy.attempts:
                    lost = "" if initial else "lost the event stream and could not get it back: "
                    raise Unavailable(
                        scrub(f"{lost}{reason} (after {self._failures} attempts)", self._secrets),
                        code="network_error" if initial else "event_stream_lost",
                    )
                if not initial:
                    self._on_reconnect(reason)
                await anyio.sleep(policy.delay(self._failures, floor=self._retry_hint))
            try:
                await self._open()
            except _Dropped as exc:
                reason = exc.reason
                continue
            return

    async def _open(self) -> None:
        headers = {} if self._last_id is None else {"Last-Event-ID": str(self._last_id)}
        stack = contextlib.AsyncExitStack()
        try:
            source = await stack.enter_async_context(self._connect(headers))
            response = source.response
            await self._check(response)
            # An event stream is always UTF-8, whatever charset the Content-Type
            # names (WHATWG HTML, "Parsing an event stream"); decoding it as
            # UTF-7 or UTF-16 yields garbage, lone surrogates or a UnicodeError.
            response.encoding = "utf-8"
            response.stream = _GuardedStream(
                _async_stream(response),
                stall_timeout=self._stall_timeout,
                limit=self._max_event_bytes,
            )
            events = source.aiter_sse()
            stack.push_async_callback(events.aclose)
        except BaseException:
            await _close_quietly(stack)
            raise
        self._connection = stack
        self._events = events
        self.connections += 1

    @contextlib.asynccontextmanager
    async def _connect(self, headers: dict[str, str]) -> AsyncIterator[EventSource]:
        # The stall guard notices silence first; this only bounds the wait for headers.
        timeout = httpx.Timeout(10.0, read=self._stall_timeout + 5.0)
        try:
            async with aconnect_sse(
                self._http,
                "GET",
                EVENTS_PATH,
                params=self._params,
                headers=headers,
                timeout=timeout,
            ) as source:
                yield source
        except httpx.UnsupportedProtocol as exc:
            raise UsageError(
                f"the API URL {self._where!r} is not usable: {describe_transport_error(exc)}"
            ) from None
        except httpx.TransportError as exc:
            raise _Dropped(
                f"cannot open the event stream of {self._where}: {describe_transport_error(exc)}"
            ) from None

    async def _check(self, response: httpx.Response) -> None:
        """Subscribed, or why not."""
        if response.status_code in (404, 405):
            raise NoEventStream(f"{self._where} has no event stream ({response.status_code})")
        if response.status_code >= 400:
            await response.aread()
            error = error_from_response(response, where=self._where, secrets=self._secrets)
            if isinstance(error, Unavailable):
                raise _Dropped(error.message)
            raise error
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if response.status_code != 200 or content_type != "text/event-stream":
            raise Unavailable(
                f"{EVENTS_PATH} at {self._where} answered HTTP {response.status_code} with "
                f"Content-Type {content_type or 'none'!r}, not an event stream",
                code="bad_response",
            )

    async def _disconnect(self) -> None:
        stack, self._connection, self._events = self._connection, None, None
        if stack is not None:
            await _close_quietly(stack)


def _async_stream(response: httpx.Response) -> httpx.AsyncByteStream:
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("the event stream needs an httpx.AsyncClient")
    return stream


async def _close_quietly(stack: contextlib.AsyncExitStack) -> None:
    """Close a connection that is being given up; its own errors no longer matter.

    Shielded and bounded, so that closing also happens while being cancelled.
    """
    with anyio.move_on_after(5, shield=True):
        try:
            await stack.aclose()
        except (httpx.TransportError, _Stalled, _TooLarge, _Dropped):
            pass
        except CompartmentError:
            pass


def _start_id(text: str) -> int | None:
    """The id of a data-less block, when it is plain digits that ``int`` takes.

    Not ``str.isdigit`` alone: it is true for "²", which ``int`` refuses, and
    ``int`` refuses more than 4300 digits too.
    """
    if text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    return None


def _ignore(_: str) -> None:
    return None
