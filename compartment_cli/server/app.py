"""The control plane's HTTP API: a Starlette app over the orchestrator and the store.

Every ``/v1`` request needs ``Authorization: Bearer <token>``; every response
carries ``x-request-id``; every error is ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compartment_cli.models.api import (
    JOINED_HEADER,
    MAX_LIST_LIMIT,
    DeployResponse,
    EnvironmentListResponse,
    EnvironmentName,
    ErrorBody,
    ErrorResponse,
    ListResponse,
    NameRef,
    ProjectName,
    PromoteRequest,
    RollbackRequest,
    RunResponse,
    RunType,
    ServiceName,
    StatusResponse,
)
from compartment_cli.models.descriptor import DeployManifest
from compartment_cli.models.logs import LogsQuery
from compartment_cli.server.artifacts import ArchiveError, ArtifactStore, read_deploy_archive
from compartment_cli.server.bus import EventBus
from compartment_cli.server.errors import Refusal, environment_not_found, project_not_found
from compartment_cli.server.logs import LOGS_REQUEST_ERROR, environment_asked, logs_response
from compartment_cli.server.openapi import openapi_document
from compartment_cli.server.orchestrator import Orchestrator
from compartment_cli.server.store import Environment, Project, Store, now
from compartment_cli.server.summaries import Summaries

log = logging.getLogger("compartment.server")

SSE_RETRY_MS = 1000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class State:
    store: Store
    summaries: Summaries
    bus: EventBus
    orchestrator: Orchestrator
    artifacts: ArtifactStore
    token: str
    data_dir: Path
    tmp_dir: Path
    events_enabled: bool
    max_upload_bytes: int
    ping_interval: float


def run_type(stored: str) -> RunType:
    return "rollback" if stored == "rollback" else "promote" if stored == "promote" else "deploy"


def json_response(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(ErrorResponse(error=ErrorBody(code=code, message=message)), status)


# --- middleware: request ids and auth ---------------------------------------------


class ApiMiddleware:
    """Adds ``x-request-id`` to every response and checks the bearer token on ``/v1``.

    A pure ASGI middleware, so streaming responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, token: Callable[[], str]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else f"req_{secrets.token_hex(8)}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        if scope["path"].startswith("/v1") and not self._authorized(headers):
            response = error_response(
                401, "unauthorized", "missing or invalid bearer token in the Authorization header"
            )
            await response(scope, receive, send_with_id)
            return
        await self.app(scope, receive, send_with_id)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token().encode())


# --- query and body parsing ---------------------------------------------------------

Q = TypeVar("Q")


class StatusQuery(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    project_name: ProjectName
    environment_name: EnvironmentName = "production"
    deployment_id: str | None = None
    service_name: ServiceName | None = None


class ListQuery(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    project_name: ProjectName
    environment_name: EnvironmentName | None = None
    service_name: ServiceName | None = None
    limit: int = 20


class EnvironmentsQuery(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    project_name: ProjectName


class EventsQuery(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    project_name: ProjectName
    environment_name: EnvironmentName


def parse_query(request: Request, query_type: type[Q], code: str) -> Q:
    params = request.query_params
    raw: dict[str, Any] = {}
    for key in params:
        values = params.getlist(key)
        if len(values) != 1:
            raise Refusal(400, code, f"query parameter {key!r} is given {len(values)} times")
        raw[key] = values[0]
    try:
        return msgspec.convert(raw, query_type, strict=False)
    except msgspec.ValidationError as exc:
        raise Refusal(400, code, f"invalid query: {exc}") from None


async def parse_body(request: Request, body_type: type[Q], code: str) -> Q:
    body = await request.body()
    try:
        return msgspec.json.decode(body, type=body_type)
    # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 in a
    # string, and RecursionError for JSON nested too deeply: a 400 all the same.
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise Refusal(400, code, f"invalid request body: {exc}") from None


def _project_and_environment(
    state: State, project_name: str, environment_name: str | None
) -> tuple[Project, Environment | None]:
    project = state.store.project(project_name)
    if project is None:
        raise project_not_found(project_name)
    if environment_name is None:
        return project, None
    environment = state.store.environment(project.id, environment_name)
    if environment is None:
        raise environment_not_found(environment_name, project_name)
    return project, environment


# --- handlers ---------------------------------------------------------------------------


def _state(request: Request) -> State:
    state: State = request.app.state.compartment
    return state


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def openapi(request: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")


async def promote(request: Request) -> Response:
    state = _state(request)
    body = await parse_body(request, PromoteRequest, "invalid_promote_deployment_request")
    started = now()
    return _admitted(state, state.orchestrator.promote(body), started)


async def rollback(request: Request) -> Response:
    state = _state(request)
    body = await parse_body(request, RollbackRequest, "invalid_rollback_deployment_request")
    started = now()
    return _admitted(state, state.orchestrator.rollback(body), started)


def _admitted(state: State, response: DeployResponse, started: str) -> Response:
    """The answer to a promote or deploy; marked when it joined a run begun before it."""
    answer = json_response(response)
    run = state.store.run(response.deployment_run_id)
    if run is not None and run.created_at < started:
        answer.headers[JOINED_HEADER] = "true"
    return answer


async def list_environments(request: Request) -> Response:
    state = _state(request)
    query = parse_query(request, EnvironmentsQuery, "invalid_environment_list_request")
    project, _ = _project_and_environment(state, query.project_name, None)
    return json_response(
        EnvironmentListResponse(
            environments=[e.summary() for e in state.store.environments(project.id)],
            project=NameRef(name=project.name),
        )
    )


async def deployment_status(request: Request) -> Response:
    state = _state(request)
    query = parse_query(request, StatusQuery, "invalid_deployment_status_request")
    project, environment = _project_and_environment(
        state, query.project_name, query.environment_name
    )
    assert environment is not None
    store = state.store
    if query.deployment_id is not None:
        found = store.deployment(query.deployment_id)
        if found is None or found.environment_id != environment.id:
            raise Refusal(
                404,
                "deployment_not_found",
                f"deployment {query.deployment_id!r} not found in {environment.name!r}",
            )
        deployments = [found]
    else:
        deployments = store.environment_deployments(environment.id, service=query.service_name)
    return json_response(
        StatusResponse(
            active_deployments=state.summaries.read(
                store.active_deployments(environment.id, service=query.service_name)
            ),
            deployments=state.summaries.read(deployments),
            environment=NameRef(name=environment.name),
            project=NameRef(name=project.name),
        )
    )


async def list_deployments(request: Request) -> Response:
    state = _state(request)
    query = parse_query(request, ListQuery, "invalid_deployment_list_request")
    if not 1 <= query.limit <= MAX_LIST_LIMIT:
        raise Refusal(
            400, "invalid_deployment_list_request", f"limit must be from 1 to {MAX_LIST_LIMIT}"
        )
    environment_name = query.environment_name or "production"
    project, environment = _project_and_environment(state, query.project_name, environment_name)
    assert environment is not None
    store = state.store
    deployments = store.environment_deployments(
        environment.id, service=query.service_name, limit=query.limit
    )
    return json_response(
        ListResponse(
            deployments=state.summaries.read(deployments),
            environment=NameRef(name=environment.name),
            project=NameRef(name=project.name),
        )
    )


async def get_run(request: Request) -> Response:
    state = _state(request)
    store = state.store
    run_id = request.path_params["run_id"]
    run = store.run(run_id)
    if run is None:
        raise Refusal(404, "deployment_run_not_found", f"deployment run {run_id!r} not found")
    source = (
        NameRef(name=store.environment_by_id(run.source_environment_id).name)
        if run.source_environment_id
        else None
    )
    deployments = store.run_deployments(run.id)
    return json_response(
        RunResponse(
            deployment_run_id=run.id,
            type=run_type(run.type),
            status=run.status,
            project=NameRef(name=store.project_by_id(run.project_id).name),
            environment=NameRef(name=store.environment_by_id(run.environment_id).name),
            source_environment=source,
            deployments=state.summaries.read(deployments),
            created_at=run.created_at,
            completed_at=run.completed_at,
            artifact_digests={d.id: f"sha256:{d.artifact_digest}" for d in deployments},
        )
    )


async def deployment_logs(request: Request) -> Response:
    """The platform's logs endpoint (``server.logs``)."""
    state = _state(request)
    query = parse_query(request, LogsQuery, LOGS_REQUEST_ERROR)
    project, environment = _project_and_environment(
        state, query.project_name, environment_asked(query)
    )
    return logs_response(state, query, project, environment)


async def deploy(request: Request) -> Response:
    state = _state(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/gzip", "application/x-gzip", "application/x-tar+gzip"):
        raise Refusal(
            415,
            "invalid_deploy_request",
            "the deploy body must be a gzipped tar (Content-Type: application/gzip)",
        )
    work = Path(tempfile.mkdtemp(prefix="upload-", dir=state.tmp_dir))
    try:
        archive = work / "upload.tar.gz"
        await _receive_upload(request, archive, state.max_upload_bytes)
        staging = work / "staging"
        staging.mkdir()
        try:
            manifest, digests = await anyio.to_thread.run_sync(
                _store_upload, state.artifacts, archive, staging, state.max_upload_bytes
            )
        except ArchiveError as exc:
            raise Refusal(exc.status, exc.code, exc.message) from None
        started = now()
        return _admitted(state, state.orchestrator.deploy(manifest, digests), started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _store_upload(
    artifacts: ArtifactStore, archive: Path, staging: Path, max_bytes: int
) -> tuple[DeployManifest, dict[str, str]]:
    """Check and unpack the archive, then store each service's tree (off the event loop)."""
    manifest, trees = read_deploy_archive(archive, staging, max_bytes=max_bytes)
    return manifest, {name: artifacts.put(tree)[0] for name, tree in trees.items()}


async def _receive_upload(request: Request, path: Path, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "payload_too_large", f"the upload is over the limit of {limit} bytes")
    received = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise Refusal(
                    413, "payload_too_large", f"the upload is over the limit of {limit} bytes"
                )
            out.write(chunk)


async def events(request: Request) -> Response:
    state = _state(request)
    if not state.events_enabled:
        raise Refusal(404, "not_found", "this control plane has no event stream")
    query = parse_query(request, EventsQuery, "invalid_events_request")
    last_id_header = request.headers.get("last-event-id", "").strip()
    if last_id_header and not last_id_header.isdigit():
        raise Refusal(400, "invalid_events_request", "Last-Event-ID must be an event id")
    after = int(last_id_header) if last_id_header else state.store.last_event_id()

    async def content() -> AsyncIterator[ServerSentEvent | bytes]:
        # The id of where this stream starts: a client that reconnects before
        # the first event sends it back as Last-Event-ID and misses nothing.
        yield ServerSentEvent(id=str(after), retry=SSE_RETRY_MS)
        # The events ready together go out in one write, each encoded once for all.
        async for batch in state.bus.batches(query.project_name, query.environment_name, after):
            yield b"".join(event.frame for event in batch)

    return EventSourceResponse(
        content(),
        ping=state.ping_interval,
        sep="\n",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- errors ---------------------------------------------------------------------------------


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    response = error_response(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "the control plane failed; see its log")


def create_app(state: State, lifespan: Any = None) -> ASGIApp:
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/deployments/promote", promote, methods=["POST"]),
        Route("/v1/deployments/rollback", rollback, methods=["POST"]),
        Route("/v1/deployments/status", deployment_status, methods=["GET"]),
        Route("/v1/deployments/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v1/deployments/logs", deployment_logs, methods=["GET"]),
        Route("/v1/deployments", list_deployments, methods=["GET"]),
        Route("/v1/deployments", deploy, methods=["POST"]),
        Route("/v1/environments", list_environments, methods=["GET"]),
        Route("/v1/events", events, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            Refusal: _refusal,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.compartment = state
    with contextlib.suppress(AttributeError):
        app.router.redirect_slashes = False
    return ApiMiddleware(app, lambda: state.token)
