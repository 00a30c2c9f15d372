"""The bake (ours, ``bakeMs``): after the switch, watch the new deployments for a while
and switch back at the first sign of trouble.

While it bakes, every route of the run serves the new deployments and the ones they
replaced keep running without traffic. Each new process must stay alive, and when its
service has a readiness check, ``GET <path>`` to its own port must answer 2xx, probed
every ``PROBE_INTERVAL_S`` (at least once a second). The first failure moves every route
of the run back in one step, stops the new deployments, makes the previous ones active
again and ends the run failed: ``switched back after 12.3 s: api: readiness GET /healthz
answered 503``. A bake that passes goes on as a run without one: the previous
deployments drain and stop (``execution.py``).
"""

from __future__ import annotations

import time
from functools import partial

import anyio
from anyio.abc import TaskGroup

from compartment_cli.models.api import RunStatus
from compartment_cli.server.runs import Candidate, Recorder, RunContext, Services, run_routes
from compartment_cli.server.runtime import exited_within, probe_ready
from compartment_cli.server.store import Change, Deployment

PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 1.0
STOP_GRACE_S = 2.0


class Failure:
    def __init__(self, candidate: Candidate, reason: str, after: float) -> None:
        self.candidate = candidate
        self.reason = reason
        self.after = after

    @property
    def message(self) -> str:
        service = self.candidate.deployment.service_name
        return f"switched back after {self.after:.1f} s: {service}: {self.reason}"


class Bake:
    def __init__(self, services: Services, recorder: Recorder) -> None:
        self._services = services
        self._store = services.store
        self._recorder = recorder

    async def watch(self, context: RunContext, previous: dict[str, Deployment]) -> Failure | None:
        """Watch every new deployment for ``context.bake_ms``; the first failure, if any
        (the other watches stop then)."""
        seconds = (context.bake_ms or 0) / 1000
        started = time.monotonic()
        failure: Failure | None = None
        reported: set[str] = set()

        async def watch_one(candidate: Candidate, group: TaskGroup) -> None:
            nonlocal failure
            reason = await self._watch_one(context, candidate, previous, started + seconds)
            reported.add(candidate.deployment.id)
            if reason is not None and failure is None:
                failure = Failure(candidate, reason, time.monotonic() - started)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for candidate in context.candidates:
                group.start_soon(watch_one, candidate, group)
        if failure is not None:
            failed = failure.candidate.deployment.service_name
            for candidate in context.candidates:
                if candidate.deployment.id not in reported:
                    self._recorder.step(
                        context, candidate, "baking", "skipped", f"stopped: {failed} failed"
                    )
        return failure

    async def _watch_one(
        self,
        context: RunContext,
        candidate: Candidate,
        previous: dict[str, Deployment],
        deadline: float,
    ) -> str | None:
        """None when the deployment stayed well until ``deadline``; else what went wrong."""
        process = self._services.supervisor.get(candidate.deployment.id)
        seconds = max(0.0, deadline - time.monotonic())
        if process is None:
            self._recorder.step(context, candidate, "baking", "skipped", "no process to watch")
            return None
        readiness = candidate.config.readiness
        checks = f"GET {readiness.path} and the process" if readiness else "the process"
        replaced = previous.get(candidate.deployment.id)
        kept = f"; {replaced.id} kept running without traffic" if replaced else ""
        self._recorder.step(
            context,
            candidate,
            "baking",
            "running",
            f"watching {checks} every {PROBE_INTERVAL_S:g} s for {seconds:g} s{kept}",
        )
        probes = 0
        while True:
            if readiness is not None:
                answer = await probe_ready(process, readiness.path, PROBE_TIMEOUT_S)
                probes += 1
                if answer is not None:
                    reason = f"readiness {answer}"
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                probed = f", {probes} probe(s) answered 2xx" if readiness else ""
                self._recorder.step(
                    context, candidate, "baking", "succeeded", f"healthy for {seconds:g} s{probed}"
                )
                return None
            ended = await exited_within(process, min(PROBE_INTERVAL_S, remaining))
            if ended is not None:
                reason = ended
                break
        self._recorder.step(context, candidate, "baking", "failed", reason)
        self._recorder.update(context, candidate.deployment.id, Change(health="unhealthy"))
        return reason

    async def switch_back(
        self, context: RunContext, previous: dict[str, Deployment], failure: Failure
    ) -> RunStatus:
        """Every route of the run back to what it served before, in one step; then the new
        deployments stop and the run ends failed."""
        # After the switch, backend_port is the port of what the route served before.
        targets = run_routes(context)
        new_backends = self._services.routes.switch(targets)
        message = failure.message
        with self._store.transaction():
            for candidate in context.candidates:
                replaced = previous.get(candidate.deployment.id)
                if replaced is not None:
                    self._store.update_deployment(
                        replaced.id, Change(is_active=True, stage="active")
                    )
                self._store.update_deployment(
                    candidate.deployment.id,
                    Change(
                        status="failed",
                        stage="stopped",
                        is_active=False,
                        failure_message=message,
                        completed=True,
                    ),
                )
        self._recorder.switched(
            context,
            previous,
            "switching_back",
            lambda url, _deployment, replaced: (
                f"{url} serves {replaced.id} again"
                if replaced
                else f"{url} serves nothing again (503)"
            ),
        )
        # Requests already on the new deployments finish there (bounded, as in a drain);
        # the next request of every client goes to the previous deployment.
        async with anyio.create_task_group() as group:
            for port in new_backends.values():
                if port is not None:
                    group.start_soon(
                        self._services.routes.drain, port, self._services.drain_timeout
                    )
        async with anyio.create_task_group() as group:
            for candidate in context.candidates:
                if candidate.started:
                    stop = partial(self._services.supervisor.stop, grace=STOP_GRACE_S)
                    group.start_soon(stop, candidate.deployment.id)
        for candidate in context.candidates:
            self._recorder.step(context, candidate, "completed", "failed", message)
        return self._recorder.finish(context, "failed")
