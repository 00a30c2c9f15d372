"""Following a deployment run to its end, the same way for promote, deploy and watch.

``follow_run`` runs one anyio task group:

1. a task opens the target environment's event stream and reports
   "subscribed" through ``tg.start`` (or that there is no stream);
2. only then is the run started (``start``: the POST of promote or deploy, or
   for ``deployment watch`` a second look at the run), so no event of it can
   be missed;
3. the run's own events (by run id and deployment ids) go to ``Progress``
   until its ``run.completed``; without a stream, or if it goes away,
   ``/v1/deployments/status`` is polled once a second instead;
4. the final state is read once from ``/v1/deployments/status`` and returned
   as a ``RunResult``.

``--timeout`` bounds all four steps (``WaitTimedOut``), so a control plane
that accepts connections and never answers cannot hold the command past it;
Ctrl-C anywhere is ``Interrupted``. Both carry the run id once there is one,
so the message can say how to follow the run again. Nothing here prints:
progress goes to ``Progress``.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

import anyio
import httpx
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from compartment_cli.client.api import DEFAULT_RETRY, Admitted, ApiClient, RetryPolicy
from compartment_cli.client.events import (
    DEFAULT_STALL_TIMEOUT,
    RECONNECT_RETRY,
    EventStream,
    NoEventStream,
)
from compartment_cli.errors import CompartmentError, Interrupted, RunRef, Unavailable, WaitTimedOut
from compartment_cli.models.api import (
    NameRef,
    ReadSummary,
    RunStatus,
    RunType,
    is_done,
    parse_timestamp,
)
from compartment_cli.models.events import (
    DeploymentEvent,
    RunCompletedEvent,
    StatusEvent,
    StepEvent,
    run_id_of,
)
from compartment_cli.models.result import RunResult

__all__ = [
    "FINAL_STATUSES",
    "Progress",
    "RunTarget",
    "WaitOptions",
    "final_result",
    "follow_run",
    "ref_of",
    "run_duration_ms",
    "target_of",
    "unwrap_group",
]

FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed"})


class Progress(Protocol):
    """What a front end hears while a run is followed; every method returns at once."""

    def run_started(self, target: RunTarget) -> None:
        """The run is known: its id, environment and deployments."""

    def step(self, event: StepEvent) -> None:
        """A step of one of the run's deployments changed (event stream only)."""

    def deployment_changed(self, deployment: ReadSummary, *, polled: bool) -> None:
        """A deployment's status or stage changed: from a ``deployment.status`` event, or
        ``polled`` (no event stream, so no steps either)."""

    def notice(self, message: str) -> None:
        """Something worth a line in verbose mode (a reconnect, falling back to polling)."""

    def warning(self, message: str) -> None:
        """Something always worth a line (an event that could not be read)."""

    def flush(self) -> None:
        """The workflow is about to wait: show what the events handled so far told."""


@dataclass(frozen=True)
class RunTarget:
    """A run being followed and where it goes."""

    run_id: str
    project: str
    environment: str
    source_environment: str | None
    services: dict[str, str]
    """Deployment id → service name."""
    kind: RunType = "promote"
    final_status: RunStatus | None = None
    """Set when the run had already ended when it was looked up."""
    created_at: str | None = None
    """When the control plane created the run (known for ``deployment watch``)."""
    requested_at: str | None = None
    """When the control plane accepted the request (its deployments' creation)."""
    completed_at: str | None = None
    deployments: list[ReadSummary] = field(default_factory=list)
    """The run's deployments as last seen, when the run had already ended."""
    joined: bool = False
    """The request joined an identical run already in progress."""
    environment_created: bool = False
    """The request created the target environment."""


def ref_of(target: RunTarget) -> RunRef:
    """The run as an error names it."""
    return RunRef(target.run_id, target.project, target.environment)


def target_of(
    admitted: Admitted,
    *,
    source_environment: str | None,
    kind: RunType,
    existed: bool | None = None,
) -> RunTarget:
    """The run a promote or deploy request started (or joined). ``existed``: whether the
    target environment was there before the request (None: not known)."""
    response = admitted.response
    return RunTarget(
        joined=admitted.joined,
        environment_created=existed is False and not admitted.joined,
        run_id=response.deployment_run_id,
        project=response.project.name,
        environment=response.environment.name,
        source_environment=source_environment,
        services={d.id: d.service_name for d in response.deployments},
        kind=kind,
        requested_at=min((d.created_at for d in response.deployments), default=None),
    )


@dataclass(frozen=True)
class WaitOptions:
    timeout: float | None = 15 * 60.0
    """Seconds to wait for the run to end; None: no limit."""
    poll_interval: float = 1.0
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    api_retry: RetryPolicy = DEFAULT_RETRY
    connect_retry: RetryPolicy = DEFAULT_RETRY
    reconnect_retry: RetryPolicy = RECONNECT_RETRY
    handle_sigint: bool = True
    """Turn Ctrl-C into ``Interrupted`` (needs the main thread)."""


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception of a task group that explains its failure: a ``CompartmentError``
    when there is one, else the only exception; None when there are several others."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    for leaf in leaves:
        if isinstance(leaf, CompartmentError):
            return leaf
    return leaves[0] if len(leaves) == 1 else None


# --- the task group --------------------------------------------------------------------------


@dataclass
class _Tracker:
    """Where the command is, for the message of a Ctrl-C or a timeout."""

    phase: Literal["subscribing", "requesting", "waiting", "reading"] = "subscribing"
    kind: str = "promotion"
    run: RunRef | None = None

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.run_id


_STREAM_GONE = None  # sent by the follower when the stream disappears mid-run
_Item = tuple[int, DeploymentEvent] | None


async def follow_run(
    http: httpx.AsyncClient,
    *,
    project: str,
    environment: str,
    start: Callable[[ApiClient], Awaitable[RunTarget]],
    progress: Progress,
    wait: WaitOptions,
    kind: RunType = "promote",
) -> RunResult:
    """Subscribe to ``environment``'s events, ``start`` the run, wait for it, read its result."""
    api = ApiClient(http, retry=wait.api_retry)
    tracker = _Tracker(
        kind={"promote": "promotion", "rollback": "rollback"}.get(kind, "deployment")
    )
    send, receive = anyio.create_memory_object_stream[_Item](1024)
    with anyio.move_on_after(math.inf if wait.timeout is None else wait.timeout):
        try:
            async with anyio.create_task_group() as tg:
                if wait.handle_sigint:
                    await tg.start(_interrupt_on_sigint, tracker)
                streaming = await tg.start(
                    _follow_events, http, project, environment, send, progress, wait
                )
                tracker.phase = "requesting"
                clock = time.monotonic()
                target = await start(api)
                tracker.run = ref_of(target)
                tracker.phase = "waiting"
                progress.run_started(target)
                status, deployments = await _wait(
                    api, target, receive if streaming else None, progress, wait
                )
                elapsed_ms = int((time.monotonic() - clock) * 1000)
                tracker.phase = "reading"
                result = await final_result(api, target, status, deployments, elapsed_ms)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            single = unwrap_group(group)
            if single is None:
                raise
            raise _naming_the_run(single, tracker) from None
        finally:
            receive.close()
        return result
    raise _timed_out(tracker, wait.timeout, api.where)


def _timed_out(tracker: _Tracker, timeout: float | None, where: str) -> WaitTimedOut:
    after = f"Timed out after {timeout:g}s"
    if tracker.run_id is not None and tracker.phase == "reading":
        return WaitTimedOut(
            f"{after} reading the result of run {tracker.run_id}, which has ended; see it "
            f"with: compartment deployment watch {tracker.run_id}"
        ).about(tracker.run)
    if tracker.run_id is not None:
        return WaitTimedOut(
            f"{after} waiting for run {tracker.run_id} to finish.",
            run=tracker.run,
            kind=tracker.kind,
        )
    if tracker.phase == "requesting":
        return WaitTimedOut(
            f"{after} while the {tracker.kind} was being requested from {where}; it may have "
            "started. See: compartment deployment list"
        )
    return WaitTimedOut(
        f"{after} before the control plane at {where} answered; the {tracker.kind} was not "
        "requested, nothing was started."
    )


def _naming_the_run(error: BaseException, tracker: _Tracker) -> BaseException:
    """A network failure once the run exists: which run it was, and how to see how it ended."""
    if not isinstance(error, Unavailable) or tracker.run is None:
        return error
    return Unavailable(
        f"{error.message}. The {tracker.kind} was requested as run {tracker.run_id} and may "
        "still be going on; once the control plane answers again, see how it ended with: "
        f"compartment deployment watch {tracker.run_id}",
        code=error.code,
        run=tracker.run,
    )


async def _interrupt_on_sigint(
    tracker: _Tracker, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            raise _interrupted(tracker)


def _interrupted(tracker: _Tracker) -> Interrupted:
    if tracker.run_id is not None:
        return Interrupted("Interrupted.", run=tracker.run, kind=tracker.kind)
    if tracker.phase == "requesting":
        return Interrupted(
            f"Interrupted while the {tracker.kind} was being requested; it may have started. "
            "See: compartment deployment list"
        )
    return Interrupted(f"Interrupted before the {tracker.kind} was requested; nothing was started.")


async def _follow_events(
    http: httpx.AsyncClient,
    project: str,
    environment: str,
    send: MemoryObjectSendStream[_Item],
    progress: Progress,
    wait: WaitOptions,
    *,
    task_status: TaskStatus[bool] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Forward the environment's events; report True once subscribed, False if no stream."""
    subscribed = False
    with send:
        stream = EventStream(
            http,
            project=project,
            environment=environment,
            stall_timeout=wait.stall_timeout,
            connect_retry=wait.connect_retry,
            reconnect_retry=wait.reconnect_retry,
            on_warning=progress.warning,
            on_reconnect=lambda reason: progress.notice(f"{reason}; reconnecting"),
        )
        try:
            async with stream:
                subscribed = True
                task_status.started(True)
                async for item in stream:
                    # No trip through the event loop per event while there is room:
                    # the waiter takes what is buffered in one go (see _received).
                    try:
                        send.send_nowait(item)
                    except anyio.WouldBlock:
                        await send.send(item)
        except NoEventStream:
            if not subscribed:
                task_status.started(False)
                return
            await send.send(_STREAM_GONE)


async def _wait(
    api: ApiClient,
    target: RunTarget,
    events: MemoryObjectReceiveStream[_Item] | None,
    progress: Progress,
    wait: WaitOptions,
) -> tuple[RunStatus, list[ReadSummary]]:
    """The run's final status and deployments, from its ``run.completed`` or by polling."""
    if target.final_status is not None:
        return target.final_status, target.deployments
    seen: dict[str, tuple[str, str]] = {}
    if events is not None:
        completed = await _wait_for_events(events, target, progress, seen)
        if completed is not None:
            return completed.status, completed.deployments
        progress.notice("the event stream is gone; polling for status instead")
    deployments = await _poll(api, target, progress, seen, wait.poll_interval)
    return _status_of(deployments), deployments


def _changed(seen: dict[str, tuple[str, str]], deployment: ReadSummary) -> bool:
    key = (deployment.status, deployment.promotion_stage)
    if seen.get(deployment.id) == key:
        return False
    seen[deployment.id] = key
    return True


async def _wait_for_events(
    events: MemoryObjectReceiveStream[_Item],
    target: RunTarget,
    progress: Progress,
    seen: dict[str, tuple[str, str]],
) -> RunCompletedEvent | None:
    """The run's ``run.completed``; None when the stream went away first."""
    while (item := await _next_item(events, progress)) is not _STREAM_GONE:
        _, event = item
        if run_id_of(event) != target.run_id:
            continue
        if isinstance(event, StepEvent):
            if not target.services or event.deployment_id in target.services:
                progress.step(event)
        elif isinstance(event, StatusEvent):
            deployment = event.deployment
            if (not target.services or deployment.id in target.services) and _changed(
                seen, deployment
            ):
                progress.deployment_changed(deployment, polled=False)
        else:
            return event
    return None


async def _next_item(events: MemoryObjectReceiveStream[_Item], progress: Progress) -> _Item:
    """The next item, taken without awaiting when one is buffered (``receive`` is a trip
    through the event loop per item, the main cost of a flood of events); ``_STREAM_GONE``
    once the follower has ended. Before waiting, the burst handled so far is flushed."""
    try:
        return events.receive_nowait()
    except anyio.WouldBlock:
        progress.flush()
        try:
            return await events.receive()
        except anyio.EndOfStream:
            return _STREAM_GONE
    except anyio.EndOfStream:
        return _STREAM_GONE


async def _poll(
    api: ApiClient,
    target: RunTarget,
    progress: Progress,
    seen: dict[str, tuple[str, str]],
    interval: float,
) -> list[ReadSummary]:
    """Poll each of the run's deployments once per ``interval`` until all are done."""
    current: dict[str, ReadSummary] = {}
    while True:
        for deployment_id in target.services:
            if deployment_id in current and is_done(current[deployment_id]):
                continue
            status = await api.status(
                target.project, target.environment, deployment_id=deployment_id
            )
            for deployment in (*status.deployments, *status.active_deployments):
                if deployment.id == deployment_id:
                    current[deployment_id] = deployment
                    if _changed(seen, deployment):
                        progress.deployment_changed(deployment, polled=True)
                    break
        if len(current) == len(target.services) and all(map(is_done, current.values())):
            return list(current.values())
        await anyio.sleep(interval)


def _status_of(deployments: list[ReadSummary]) -> RunStatus:
    return "succeeded" if all(d.status == "succeeded" for d in deployments) else "failed"


async def final_result(
    api: ApiClient,
    target: RunTarget,
    status: RunStatus,
    deployments: list[ReadSummary],
    elapsed_ms: int,
) -> RunResult:
    """The run's final state, read once: its deployments and the environment's active ones."""
    final = await api.status(target.project, target.environment)
    mine = [d for d in final.deployments if d.deployment_run_id == target.run_id]
    if not mine:  # older than the status list reaches back
        mine = deployments
    duration_ms = run_duration_ms(mine, target.created_at, target.completed_at)
    return RunResult(
        deployment_run_id=target.run_id,
        status=status,
        project=NameRef(name=final.project.name),
        source_environment=(
            None if target.source_environment is None else NameRef(name=target.source_environment)
        ),
        environment=NameRef(name=final.environment.name),
        deployments=sorted(mine, key=lambda d: d.service_name),
        active_deployments=final.active_deployments,
        duration_ms=elapsed_ms if duration_ms is None else duration_ms,
        environment_created=target.environment_created,
        joined=target.joined,
    )


def run_duration_ms(
    deployments: list[ReadSummary], created_at: str | None = None, completed_at: str | None = None
) -> int | None:
    """How long a run took as the control plane timed it: from its first deployment's
    creation to its last one's completion; else from the run's own times; None if unknown."""
    starts = [parse_timestamp(d.created_at) for d in deployments]
    ends = [parse_timestamp(d.completed_at) for d in deployments]
    started: datetime | None
    ended: datetime | None
    if deployments and None not in starts and None not in ends:
        started, ended = min(filter(None, starts)), max(filter(None, ends))
    else:
        started, ended = parse_timestamp(created_at), parse_timestamp(completed_at)
    if started is None or ended is None:
        return None
    return max(0, int((ended - started).total_seconds() * 1000))
