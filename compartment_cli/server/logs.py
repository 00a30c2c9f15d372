"""Deployment logs: each line of a deployment's output with its stream and time, and
``GET /v1/deployments/logs``, the platform's logs endpoint.

A deployment's stdout and stderr come to the control plane through pipes;
``OutputLog.pump`` writes every line twice: as it was to ``logs/<id>.log``
(the plain text a person opens, and the tail a failure message quotes), and
with its stream and time as one JSON line to ``logs/<id>.lines``, which the
endpoint reads. The control plane's own lines about a deployment (its steps:
started, readiness, switch, drain) go to the same ``.lines`` file with the
stream ``compartment``.

The endpoint answers the platform's query (``projectName``, ``environmentName``,
``serviceName``, ``since``, ``tailLines``) with the platform's shape
(``deployments``, ``environment``, ``project``, ``lines``), for the active
deployments of the environment; ours adds ``deploymentId`` and
``deploymentRunId`` to pick deployments that are not active (a failed
candidate), and ``follow=true``: a server-sent event stream, one ``log`` event
per line, that goes on with new lines as they are written and ends once every
deployment followed has ended (failed or stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import msgspec

from compartment_cli.models.api import NameRef
from compartment_cli.models.logs import (
    DEFAULT_TAIL_LINES,
    END_EVENT,
    LOG_EVENT,
    LogLine,
    LogsQuery,
    LogsResponse,
    LogStream,
)
from compartment_cli.server.errors import Refusal

if TYPE_CHECKING:
    from starlette.responses import Response

    from compartment_cli.server.app import State
    from compartment_cli.server.store import Deployment, Environment, Project

__all__ = ["OutputLog", "environment_asked", "lines_path", "log_path", "logs_response"]

FOLLOW_INTERVAL = 0.2  # seconds between two looks at the files while following
_MAX_LINE = 16 * 1024  # a longer line is cut into pieces of this size


class _Stored(msgspec.Struct, array_like=True):
    """One line of a ``.lines`` file: time, stream, text."""

    timestamp: str
    stream: LogStream
    message: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_path(data_dir: Path, deployment_id: str) -> Path:
    """Where a deployment's build and run output goes, as plain text (``.lines`` beside it)."""
    return data_dir / "logs" / f"{deployment_id}.log"


def lines_path(log_path: Path) -> Path:
    return log_path.with_suffix(".lines")


class OutputLog:
    """Where one deployment's output goes, line by line."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.lines_path = lines_path(log_path)

    def write(self, stream: LogStream, message: str) -> None:
        """One line of the control plane's own (``compartment``) about this deployment."""
        self.lines_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lines_path.open("ab") as lines:
            lines.write(msgspec.json.encode(_Stored(_now(), stream, message)) + b"\n")

    async def pump(self, stdout: int, stderr: int) -> None:
        """Copy what comes through two pipes (their read ends, which it closes) to the log
        files until both are closed at the other end."""
        loop = asyncio.get_running_loop()
        readers: list[tuple[asyncio.StreamReader, LogStream]] = []
        streams: tuple[tuple[int, LogStream], ...] = ((stdout, "stdout"), (stderr, "stderr"))
        for fd, name in streams:
            reader = asyncio.StreamReader()
            pipe = os.fdopen(fd, "rb", buffering=0)
            await loop.connect_read_pipe(partial(asyncio.StreamReaderProtocol, reader), pipe)
            readers.append((reader, name))
        self.lines_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as text, self.lines_path.open("ab") as lines:
            await asyncio.gather(*(self._copy(r, name, text, lines) for r, name in readers))

    async def _copy(
        self, reader: asyncio.StreamReader, stream: LogStream, text: BinaryIO, lines: BinaryIO
    ) -> None:
        pending = b""
        while True:
            chunk = await reader.read(65536)
            pending += chunk
            parts = pending.split(b"\n")
            pending = parts.pop() if chunk else b""
            if not chunk and parts and parts[-1] == b"":
                parts.pop()
            while len(pending) > _MAX_LINE:
                parts.append(pending[:_MAX_LINE])
                pending = pending[_MAX_LINE:]
            # A log that cannot be written (a full disk) loses lines; the pipe is read on,
            # so the deployment never blocks on its own output.
            if parts:
                with contextlib.suppress(OSError):
                    self._write_parts(parts, stream, text, lines)
            if not chunk:
                return

    @staticmethod
    def _write_parts(
        parts: list[bytes], stream: LogStream, text: BinaryIO, lines: BinaryIO
    ) -> None:
        at = _now()
        text.write(b"".join(part + b"\n" for part in parts))
        text.flush()
        lines.write(
            b"".join(
                msgspec.json.encode(
                    _Stored(at, stream, part.decode("utf-8", errors="replace").rstrip("\r"))
                )
                + b"\n"
                for part in parts
            )
        )
        lines.flush()


def read_lines(path: Path, offset: int = 0) -> tuple[list[_Stored], int]:
    """The whole lines of a ``.lines`` file from ``offset``, and the offset after them."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    found: list[_Stored] = []
    for raw in data[:end].splitlines():
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found.append(msgspec.json.decode(raw, type=_Stored))
    return found, offset + end


# --- the endpoint ----------------------------------------------------------------------------


LOGS_REQUEST_ERROR = "invalid_deployment_logs_request"


def environment_asked(query: LogsQuery) -> str | None:
    """The environment the query names: production by default, but none (any) when it picks
    a deployment or a run."""
    if query.deployment_id is not None or query.deployment_run_id is not None:
        return query.environment_name
    return query.environment_name or "production"


def logs_response(
    state: State, query: LogsQuery, project: Project, environment: Environment | None
) -> Response:
    """The answer to ``GET /v1/deployments/logs`` (``app`` parses the query and finds the
    project and environment)."""
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.responses import Response

    code = LOGS_REQUEST_ERROR
    since = None
    if query.since is not None:
        try:
            since = datetime.fromisoformat(query.since)
        except ValueError:
            raise Refusal(400, code, f"since {query.since!r} is not an ISO-8601 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    store = state.store
    picked = query.deployment_id is not None or query.deployment_run_id is not None
    deployments: list[Deployment]
    if query.deployment_id is not None:
        found = store.deployment(query.deployment_id)
        if found is None or store.environment_by_id(found.environment_id).project_id != project.id:
            raise Refusal(
                404,
                "deployment_not_found",
                f"deployment {query.deployment_id!r} not found in project {project.name!r}",
            )
        deployments = [found]
    elif query.deployment_run_id is not None:
        run = store.run(query.deployment_run_id)
        if run is None or run.project_id != project.id:
            raise Refusal(
                404,
                "deployment_run_not_found",
                f"deployment run {query.deployment_run_id!r} not found in project {project.name!r}",
            )
        deployments = store.run_deployments(run.id)
    else:
        assert environment is not None
        deployments = store.active_deployments(environment.id, service=query.service_name)
    if query.service_name is not None:
        deployments = [d for d in deployments if d.service_name == query.service_name]
    if environment is not None and picked:
        deployments = [d for d in deployments if d.environment_id == environment.id]
    if environment is None:
        if not deployments:
            raise Refusal(404, "deployment_not_found", "no deployment matches")
        environment = store.environment_by_id(deployments[0].environment_id)
    tail = query.tail_lines or DEFAULT_TAIL_LINES
    sources = [(d, lines_path(log_path(state.data_dir, d.id))) for d in deployments]

    def wire(deployment: Deployment, stored: _Stored) -> LogLine:
        return LogLine(
            deployment_id=deployment.id,
            environment_name=environment.name,
            message=stored.message,
            service_name=deployment.service_name,
            stream=stored.stream,
            timestamp=stored.timestamp,
        )

    backlog: list[LogLine] = []
    offsets: dict[str, int] = {}
    for deployment, path in sources:
        stored, offsets[deployment.id] = read_lines(path)
        backlog.extend(
            wire(deployment, s) for s in stored if since is None or _after(s.timestamp, since)
        )
    backlog.sort(key=lambda line: line.timestamp)
    backlog = backlog[-tail:]
    if not query.follow:
        return Response(
            content=msgspec.json.encode(
                LogsResponse(
                    deployments=state.summaries.read(deployments),
                    environment=NameRef(name=environment.name),
                    lines=backlog,
                    project=NameRef(name=project.name),
                )
            ),
            media_type="application/json",
        )

    def ended(deployment_id: str) -> bool:
        current = store.deployment(deployment_id)
        return current is None or current.status in ("failed", "stopped")

    async def follow() -> AsyncIterator[ServerSentEvent | bytes]:
        yield ServerSentEvent(retry=1000, comment="following")
        if backlog:
            yield _frames(backlog)
        while True:
            done = all(ended(d.id) for d, _ in sources)
            fresh: list[LogLine] = []
            for deployment, path in sources:
                stored, offsets[deployment.id] = read_lines(path, offsets[deployment.id])
                fresh.extend(wire(deployment, s) for s in stored)
            if fresh:
                fresh.sort(key=lambda line: line.timestamp)
                yield _frames(fresh)
            if done:  # its last lines were written before it ended: all sent now
                yield b"event: %s\ndata: {}\n\n" % END_EVENT.encode()
                return
            await asyncio.sleep(FOLLOW_INTERVAL)

    return EventSourceResponse(
        follow(),
        ping=state.ping_interval,
        sep="\n",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _frames(lines: list[LogLine]) -> bytes:
    head = b"event: %s\ndata: " % LOG_EVENT.encode()
    return b"".join(head + msgspec.json.encode(line) + b"\n\n" for line in lines)


def _after(timestamp: str, since: datetime) -> bool:
    try:
        at = datetime.fromisoformat(timestamp)
    except ValueError:
        return True
    return at >= since
