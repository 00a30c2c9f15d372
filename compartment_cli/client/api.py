"""The deployments API over HTTP (CONTRACT.md section 4), as typed calls.

``ApiClient`` turns every way a request can go wrong into one of the error
kinds of ``compartment_cli.errors``:

- an API error body ``{"error": {"code", "message"}}`` keeps its code and
  message and gets the exit code its HTTP status deserves;
- a body that is not one (an HTML page from a proxy, a truncated or foreign
  reply) says what came back, and is ``Unavailable`` for a 5xx, else
  ``NotAuthorized`` or ``ApiRefused``;
- network failures are retried with backoff for reads (GET, also on 5xx);
  a write (POST) is sent again only when the first attempt provably never
  reached the server (the connection could not be opened), so a promotion is
  never requested twice by one invocation.

The token is sent in a header and never appears in a message: every message
is scrubbed of it before it leaves this module.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from compartment_cli.client.connection import Connection
from compartment_cli.errors import (
    ApiRefused,
    CompartmentError,
    NotAuthorized,
    RunRef,
    Unavailable,
    UsageError,
    error_for_response,
)
from compartment_cli.models.api import (
    BUSY_RUN_HEADER,
    JOINED_HEADER,
    DeployResponse,
    EnvironmentListResponse,
    ErrorResponse,
    ListResponse,
    PromoteRequest,
    RollbackRequest,
    RunResponse,
    StatusResponse,
)
from compartment_cli.models.logs import LogsResponse

__all__ = [
    "DEFAULT_RETRY",
    "TIME_SCALE",
    "TIME_SCALE_ENV",
    "Admitted",
    "ApiClient",
    "RetryPolicy",
    "address_of",
    "describe_transport_error",
    "error_from_response",
    "open_client",
    "open_http_client",
    "scrub",
    "secrets_of",
    "time_scale",
]

T = TypeVar("T")

# Reads answer quickly; a deploy upload may be large, so writes get longer.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=120.0, pool=10.0)
_RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# What msgspec raises for a body it cannot read: besides DecodeError and
# ValidationError, UnicodeDecodeError for invalid UTF-8 in a string and
# RecursionError for JSON nested deeper than the recursion limit (a few KB).
_UNREADABLE = (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError)
_UPLOAD_CHUNK = 256 * 1024


# Hidden, for tests: every retry pause (reads, connects, the event stream's reconnect budget)
# and the default stall window of the event stream are multiplied by this factor, read
# once, so a test can wait out the real budgets in a fraction of their time. Only
# shortens: a value that is not a number in (0, 1] counts as 1.
TIME_SCALE_ENV = "COMPARTMENT_TEST_TIME_SCALE"


def time_scale(environ: Mapping[str, str]) -> float:
    """The factor ``TIME_SCALE_ENV`` in ``environ`` asks for (1.0 when unset or unusable)."""
    try:
        scale = float(environ.get(TIME_SCALE_ENV, "").strip() or 1.0)
    except ValueError:
        return 1.0
    return scale if 0.0 < scale <= 1.0 else 1.0


TIME_SCALE = time_scale(os.environ)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try again: ``attempts`` in all, the
    delay doubling from ``first_delay`` up to ``max_delay``."""

    attempts: int = 4
    first_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, failures: int, *, floor: float = 0.0) -> float:
        """The pause after the ``failures``-th consecutive failure (1-based)."""
        base = max(self.first_delay, floor)
        delay = min(self.max_delay, base * 2.0 ** max(0, failures - 1))
        # A little jitter, so that many clients do not come back in step.
        return delay * random.uniform(0.8, 1.0) * TIME_SCALE

    def delays(self) -> Iterator[float]:
        """The pauses between attempts: one fewer than ``attempts``."""
        for failures in range(1, self.attempts):
            yield self.delay(failures)


DEFAULT_RETRY = RetryPolicy()


def open_http_client(
    api_url: str,
    headers: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one HTTP client of a command: base URL and headers of the connection."""
    try:
        return httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers=dict(headers),
            timeout=DEFAULT_TIMEOUT,
            transport=transport,
            follow_redirects=False,
            verify=_tls_for(api_url),
        )
    except httpx.InvalidURL as exc:
        raise UsageError(f"the API URL {api_url!r} is not a valid URL: {exc}") from None


@asynccontextmanager
async def open_client(
    connection: Connection, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client of one command, closed (shielded, bounded) when it is done."""
    http = open_http_client(connection.api_url, connection.headers(), transport=transport)
    try:
        yield http
    finally:
        with anyio.move_on_after(5, shield=True):
            await http.aclose()


def _tls_for(api_url: str) -> ssl.SSLContext | bool:
    """Certificate checks for an https control plane; for a plain-http one (the local
    one), a context that is never used and so need not load the CA bundle, which
    costs about 30 ms of every command's start. Redirects are never followed, so
    no request of the client leaves the base URL's scheme; were one to, this
    context would still check certificates, and with no CA loaded trust none."""
    if api_url.lower().startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


def secrets_of(client: httpx.AsyncClient) -> tuple[str, ...]:
    """What must never appear in a message: the bearer token the client sends."""
    authorization = client.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    secret = credentials.strip() if scheme.lower() == "bearer" else authorization.strip()
    return (secret,) if len(secret) >= 4 else ()


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def address_of(client: httpx.AsyncClient) -> str:
    """The control plane's address for messages, without any userinfo."""
    url = client.base_url
    return str(url.copy_with(username=None, password=None)).rstrip("/")


def describe_transport_error(exc: httpx.TransportError) -> str:
    """A short, token-free account of a network failure."""
    detail = str(exc).strip()
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out opening a connection"
    if isinstance(exc, httpx.ConnectError):
        if "refused" in detail.lower() or _caused_by(exc, ConnectionRefusedError):
            return "connection refused"
        return f"could not connect ({detail})" if detail else "could not connect"
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer in time"
    if isinstance(exc, httpx.WriteTimeout):
        return "timed out sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "timed out waiting for a free connection"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection before answering in full"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "the connection broke"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "the API URL must start with http:// or https://"
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the chain of causes of ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _body_kind(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not response.content:
        return "an empty body"
    if "html" in content_type:
        return "an HTML page"
    if content_type.endswith("json"):
        return "JSON that is not an API error" if response.is_error else "JSON"
    return f"a {content_type or 'untyped'} body"


def error_from_response(
    response: httpx.Response, *, where: str, secrets: tuple[str, ...] = ()
) -> CompartmentError:
    """The error an HTTP error response stands for (its body must have been read)."""
    status = response.status_code
    try:
        body = msgspec.json.decode(response.content, type=ErrorResponse)
    except _UNREADABLE:
        body = None
    if body is not None:
        error = error_for_response(status, body.error.code, scrub(body.error.message, secrets))
        holder = response.headers.get(BUSY_RUN_HEADER)
        return error.about(RunRef(holder)) if holder else error

    request = response.request
    what = f"{request.method} {request.url.path}"
    answer = f"HTTP {status} {response.reason_phrase}".rstrip()
    request_id = response.headers.get("x-request-id")
    suffix = f" (request id {request_id})" if request_id else ""
    kind = _body_kind(response)
    if status >= 500 or status in (408, 429):
        return Unavailable(
            f"the control plane at {where} failed: {what} answered {answer} with {kind}{suffix}",
            code="server_error",
        )
    if status in (401, 403):
        return NotAuthorized(
            f"the control plane at {where} refused the credentials: {what} answered {answer}"
            f"{suffix}; check COMPARTMENT_TOKEN or log in again",
            code="unauthorized" if status == 401 else "forbidden",
        )
    return ApiRefused(
        f"{what} at {where} answered {answer} with {kind}, not an API error; "
        f"is {where} a Compartment control plane?{suffix}",
        code=f"http_{status}",
    )


@dataclass(frozen=True)
class Admitted:
    """The answer to a promote or deploy: the run, and whether the request joined an
    identical run already in progress (our control plane says so; others never do)."""

    response: DeployResponse
    joined: bool = False


class ApiClient:
    """Typed calls to the deployments API over one ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._http = http
        self._retry = retry
        self._secrets = secrets_of(http)
        self.where = address_of(http)

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    # --- reads ----------------------------------------------------------

    async def status(
        self,
        project: str,
        environment: str,
        *,
        deployment_id: str | None = None,
        service: str | None = None,
    ) -> StatusResponse:
        """``GET /v1/deployments/status``: without a deployment id, the
        environment's deployments newest first and its active ones."""
        params = {
            "projectName": project,
            "environmentName": environment,
            "deploymentId": deployment_id,
            "serviceName": service,
        }
        return await self._get("/v1/deployments/status", params, StatusResponse)

    async def list_deployments(
        self,
        project: str,
        *,
        environment: str | None = None,
        service: str | None = None,
        limit: int | None = None,
    ) -> ListResponse:
        """``GET /v1/deployments``, newest first."""
        params = {
            "projectName": project,
            "environmentName": environment,
            "serviceName": service,
            "limit": None if limit is None else str(limit),
        }
        return await self._get("/v1/deployments", params, ListResponse)

    async def environments(self, project: str) -> EnvironmentListResponse:
        """(ours) ``GET /v1/environments``: the project's environments."""
        return await self._get(
            "/v1/environments", {"projectName": project}, EnvironmentListResponse
        )

    async def get_run(self, run_id: str) -> RunResponse:
        """(ours) ``GET /v1/deployments/runs/{id}``: one run and where it goes."""
        path = "/v1/deployments/runs/" + quote(run_id, safe="")
        return await self._get(path, {}, RunResponse)

    async def logs(self, query: Mapping[str, str | None]) -> LogsResponse:
        """``GET /v1/deployments/logs`` (``models.logs``: the platform's query, and ours)."""
        return await self._get("/v1/deployments/logs", query, LogsResponse)

    # --- writes ---------------------------------------------------------

    async def promote(self, request: PromoteRequest) -> Admitted:
        """``POST /v1/deployments/promote``."""
        body = msgspec.json.encode(request)
        return await self._post(
            "/v1/deployments/promote", lambda: body, {"Content-Type": "application/json"}
        )

    async def rollback(self, request: RollbackRequest) -> Admitted:
        """``POST /v1/deployments/rollback``."""
        body = msgspec.json.encode(request)
        return await self._post(
            "/v1/deployments/rollback", lambda: body, {"Content-Type": "application/json"}
        )

    async def deploy(self, archive: Path) -> Admitted:
        """``POST /v1/deployments`` with a deploy archive (gzipped tar), streamed from disk."""
        size = (await anyio.Path(archive).stat()).st_size

        def content() -> AsyncIterable[bytes]:
            return _read_chunks(archive)

        return await self._post(
            "/v1/deployments",
            content,
            {"Content-Type": "application/gzip", "Content-Length": str(size)},
        )

    # --- plumbing -------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _network_error(self, exc: httpx.TransportError, what: str, attempts: int) -> Unavailable:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return Unavailable(
            self._scrub(
                f"cannot reach the control plane at {self.where}: {what}: "
                f"{describe_transport_error(exc)}{tried}"
            ),
            code="network_error",
        )

    async def _get(self, path: str, params: Mapping[str, str | None], type_: type[T]) -> T:
        query = {key: value for key, value in params.items() if value is not None}
        delays = self._retry.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.get(path, params=query)
            except httpx.UnsupportedProtocol as exc:
                raise UsageError(
                    f"the API URL {self.where!r} is not usable: {describe_transport_error(exc)}"
                ) from None
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._network_error(exc, f"GET {path}", attempt) from None
                await anyio.sleep(delay)
                continue
            if response.status_code in _RETRIED_STATUSES:
                delay = next(delays, None)
                if delay is not None:
                    await anyio.sleep(_retry_after(response, delay))
                    continue
            return self._decode(response, type_)

    async def _post(
        self,
        path: str,
        content: Callable[[], bytes | AsyncIterable[bytes]],
        headers: Mapping[str, str],
    ) -> Admitted:
        delays = self._retry.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.post(path, content=content(), headers=dict(headers))
            except httpx.UnsupportedProtocol as exc:
                raise UsageError(
                    f"the API URL {self.where!r} is not usable: {describe_transport_error(exc)}"
                ) from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # No connection was opened, so nothing reached the server: safe to send again.
                delay = next(delays, None)
                if delay is None:
                    raise self._network_error(exc, f"POST {path}", attempt) from None
                await anyio.sleep(delay)
                continue
            except httpx.TransportError as exc:
                raise Unavailable(
                    self._scrub(
                        f"POST {path} to {self.where} may have reached the control plane but "
                        f"no answer came back ({describe_transport_error(exc)}); it was not sent "
                        "again. See what happened with: compartment deployment list"
                    ),
                    code="network_error",
                ) from None
            joined = response.headers.get(JOINED_HEADER, "").lower() == "true"
            return Admitted(self._decode(response, DeployResponse), joined=joined)

    def _decode(self, response: httpx.Response, type_: type[T]) -> T:
        if not response.is_success:
            raise error_from_response(response, where=self.where, secrets=self._secrets)
        try:
            return msgspec.json.decode(response.content, type=type_)
        except _UNREADABLE as exc:
            request = response.request
            raise Unavailable(
                self._scrub(
                    f"the control plane at {self.where} answered {request.method} "
                    f"{request.url.path} with {_body_kind(response)} this CLI cannot read: {exc}"
                ),
                code="bad_response",
            ) from None


def _retry_after(response: httpx.Response, default: float) -> float:
    """Honour a short ``Retry-After`` in seconds; ignore long or odd ones."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return default
    return min(max(seconds, default), 10.0)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        while chunk := await handle.read(_UPLOAD_CHUNK):
            yield chunk
