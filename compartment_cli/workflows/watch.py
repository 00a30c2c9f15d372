"""``compartment deployment watch``: follow a run by its id, or report it if it has ended.

The run is looked up with ``GET /v1/deployments/runs/{id}``; a run still going
is followed with ``follow.follow_run`` (its environment's events, or polling),
exactly as promote and deploy follow theirs. A run that has ended is reported
at once; with ``replay`` its events are first read back from the control
plane's event log (``Last-Event-ID: 0``) and told to ``Progress`` as they were
told live, so ``--verbose`` and ``--timeline`` show what they showed then.
"""

from __future__ import annotations

import math

import anyio
import httpx

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.client.events import EventStream, NoEventStream
from compartment_cli.errors import RunRef, WaitTimedOut
from compartment_cli.models.events import StatusEvent, StepEvent, run_id_of
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.follow import (
    FINAL_STATUSES,
    Progress,
    RunTarget,
    WaitOptions,
    final_result,
    follow_run,
)

__all__ = ["run_watch", "watch_run"]


# --- deployment watch ------------------------------------------------------------------------


async def watch_run(
    http: httpx.AsyncClient,
    run_id: str,
    progress: Progress,
    wait: WaitOptions,
    *,
    replay: bool = False,
) -> RunResult:
    """Follow the run ``run_id`` to its end, or report it if it has ended; ``--timeout``
    bounds it all, the first look at the run included."""
    found: list[RunRef] = []
    with anyio.move_on_after(math.inf if wait.timeout is None else wait.timeout):
        return await _watch_run(http, run_id, progress, wait, found, replay)
    raise WaitTimedOut(
        f"Timed out after {wait.timeout:g}s waiting for run {run_id} to finish.",
        run=found[0] if found else RunRef(run_id),
        kind="run",
    )


async def _watch_run(
    http: httpx.AsyncClient,
    run_id: str,
    progress: Progress,
    wait: WaitOptions,
    found: list[RunRef],
    replay: bool,
) -> RunResult:
    api = ApiClient(http, retry=wait.api_retry)
    first = await api.get_run(run_id)
    found.append(RunRef(run_id, first.project.name, first.environment.name))

    async def look_again(api: ApiClient) -> RunTarget:
        # Subscribed by now: if the run is still going, its end will be seen.
        run = first if first.status in FINAL_STATUSES else await api.get_run(run_id)
        return RunTarget(
            run_id=run.deployment_run_id,
            project=run.project.name,
            environment=run.environment.name,
            source_environment=None
            if run.source_environment is None
            else run.source_environment.name,
            services={d.id: d.service_name for d in run.deployments},
            kind=run.type,
            final_status=run.status if run.status in FINAL_STATUSES else None,
            created_at=run.created_at,
            completed_at=run.completed_at,
            deployments=run.deployments,
        )

    if first.status in FINAL_STATUSES:
        target = await look_again(api)
        progress.run_started(target)
        if replay:
            await _replay(http, target, progress, wait)
        return await final_result(api, target, first.status, target.deployments, 0)
    result = await follow_run(
        http,
        project=first.project.name,
        environment=first.environment.name,
        start=look_again,
        progress=progress,
        wait=wait,
        kind=first.type,
    )
    return result


REPLAY_QUIET = 2.0  # seconds without an event: the event log has been read to its end


async def _replay(
    http: httpx.AsyncClient, target: RunTarget, progress: Progress, wait: WaitOptions
) -> None:
    """Tell ``progress`` the events of ``target`` (a run that has ended) from the event log:
    until its ``run.completed``, or until the log has nothing more (pruned, or no stream)."""
    stream = EventStream(
        http,
        project=target.project,
        environment=target.environment,
        last_event_id=0,
        connect_retry=wait.connect_retry,
        reconnect_retry=wait.reconnect_retry,
        on_warning=progress.warning,
    )
    try:
        async with stream:
            events = stream.__aiter__()
            while True:
                with anyio.move_on_after(REPLAY_QUIET):
                    _, event = await events.__anext__()
                    if run_id_of(event) != target.run_id:
                        continue
                    if isinstance(event, StepEvent):
                        progress.step(event)
                    elif isinstance(event, StatusEvent):
                        progress.deployment_changed(event.deployment, polled=False)
                    else:
                        return
                    continue
                progress.notice("the event log no longer holds the end of this run")
                return
    except NoEventStream:
        progress.notice("this control plane keeps no event log: the run's steps cannot be shown")
    finally:
        progress.flush()


async def run_watch(
    connection: Connection,
    run_id: str,
    progress: Progress,
    wait: WaitOptions,
    *,
    replay: bool = False,
) -> RunResult:
    """``compartment deployment watch``: ``watch_run`` over a client of ``connection``."""
    async with open_client(connection) as http:
        return await watch_run(http, run_id, progress, wait, replay=replay)
