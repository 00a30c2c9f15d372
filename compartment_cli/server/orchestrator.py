"""Deployment runs: what promote and deploy do once the API has accepted them.

The orchestrator is the API's one door to runs. Its parts, one module each:

* ``admission.py``: whether a run may start (checks, dedupe, busy) and its rows;
* ``execution.py``: a run's steps (build, start, readiness, switch, drain, end);
* ``recovery.py``: what a start of the server does with what its last life left;
* ``rollback.py``: which earlier deployments a rollback brings back (for admission);
* ``bake.py``: the watch after the switch and the switch back (for execution);
* ``retention.py``: what is removed of old deployments, at start and after each run;
* ``runs.py``: what they all share (the run's context, the ``Recorder`` of its
  rows and events), one floor below them.

Concurrency is anyio's, structured: every run executes in the orchestrator's
task group, which lives as long as the server (``running``); stopping the
server cancels it, and each run in flight ends failed with its candidates
stopped before ``running`` returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from compartment_cli.models.api import DeployResponse, PromoteRequest, RollbackRequest
from compartment_cli.models.descriptor import DeployManifest
from compartment_cli.server.admission import Admission, Admitted, InFlight
from compartment_cli.server.execution import Execution
from compartment_cli.server.recovery import Recovery
from compartment_cli.server.retention import DEFAULT_KEEP, Retention
from compartment_cli.server.runs import Recorder, RunHook, Services


class Orchestrator:
    def __init__(
        self,
        services: Services,
        *,
        before_start: RunHook | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        """``before_start``: a hook for benchmarks, never set by ``compartment server``;
        ``keep``: deployments kept per service and environment (``retention.py``)."""
        recorder = Recorder(services)
        self._retention = Retention(services, keep)
        self._admission = Admission(services, recorder)
        self._recovery = Recovery(services, recorder)
        self._execution = Execution(
            services, recorder, restored=self._recovery.restored, before_start=before_start
        )
        self._runs: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Recover, then take runs until the block ends; then fail those in flight.

        The active deployments are restored in the background, beside the runs.
        """
        async with anyio.create_task_group() as runs:
            await self._recovery.recover(runs)
            await self._retention.sweep()
            self._runs = runs
            try:
                yield
            finally:
                self._runs = None
                runs.cancel_scope.cancel()

    def promote(self, request: PromoteRequest) -> DeployResponse:
        return self._start(self._admission.promote(request))

    def rollback(self, request: RollbackRequest) -> DeployResponse:
        return self._start(self._admission.rollback(request))

    def deploy(self, manifest: DeployManifest, digests: dict[str, str]) -> DeployResponse:
        """``digests``: the stored artifact of every service in the manifest."""
        return self._start(self._admission.deploy(manifest, digests))

    def _start(self, admitted: Admitted) -> DeployResponse:
        if admitted.flight is not None:
            if self._runs is None:
                raise RuntimeError("the orchestrator takes runs only while it is running")
            self._runs.start_soon(self._execute, admitted.flight)
        return admitted.response

    async def _execute(self, flight: InFlight) -> None:
        try:
            await self._execution.execute(flight.context)
        finally:
            self._admission.release(flight)
        await self._retention.sweep()
