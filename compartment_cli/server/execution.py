"""Execution: a run's steps, from its candidates' start to completed or failed.

Deploy runs build first (one build per new artifact, however many runs want
it). Then every candidate starts and is checked for readiness at once, in one
task group: the first failure cancels the other checks, stops the candidates
and fails the run with no route moved. When all are ready, every route of the
run switches in one synchronous step; then the deployments they replaced
drain and stop, and the run completes. See ``runs.py`` for the step picture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import anyio
from anyio.abc import TaskGroup

from compartment_cli.models.api import Health, PromotionStage, RunStatus
from compartment_cli.server.bake import Bake
from compartment_cli.server.builds import run_build
from compartment_cli.server.runs import (
    Candidate,
    Recorder,
    RunContext,
    RunHook,
    Services,
    await_ready,
    grace,
    route_key,
    run_routes,
)
from compartment_cli.server.runtime import ReadinessResult, free_port
from compartment_cli.server.store import Change, Deployment

log = logging.getLogger("compartment.server")

BUILD_TIMEOUT_S = 600.0
CANDIDATE_STOP_GRACE_S = 2.0


class Execution:
    def __init__(
        self,
        services: Services,
        recorder: Recorder,
        *,
        restored: Callable[[Iterable[tuple[str, str]]], Awaitable[None]],
        before_start: RunHook | None = None,
    ) -> None:
        """``restored(targets)``: until a start of the server has brought back what
        was active on those (environment id, service name) targets."""
        self._services = services
        self._store = services.store
        self._recorder = recorder
        self._restored = restored
        self._before_start = before_start
        self._build_locks: dict[str, anyio.Lock] = {}
        self._bake = Bake(services, recorder)

    async def execute(self, context: RunContext) -> RunStatus:
        """Run every step; a failure, an internal error or a cancellation (the server
        stops) ends the run failed, with its candidates stopped. Cancellation is re-raised."""
        status: RunStatus = "failed"
        try:
            status = await self._run_steps(context)
        except anyio.get_cancelled_exc_class():
            self._recorder.fail_run(
                context,
                "the control plane stopped while this run was in flight",
                stopped_service=None,
            )
            with anyio.CancelScope(shield=True):
                await self._stop_candidates(context)
            raise
        except Exception as exc:
            log.exception("run %s failed unexpectedly", context.run.id)
            self._recorder.fail_run(
                context, f"internal error in the control plane: {exc}", stopped_service=None
            )
            await self._stop_candidates(context)
        log.info("run %s %s", context.run.id, status)
        return status

    async def _run_steps(self, context: RunContext) -> RunStatus:
        await self._restored(
            (c.deployment.environment_id, c.deployment.service_name) for c in context.candidates
        )
        self._store.set_run_status(context.run.id, "running")
        for candidate in context.candidates:
            deployment = candidate.deployment
            port = self._store.route_port(deployment.environment_id, deployment.service_name)
            if port is not None:
                await self._services.open_route(
                    deployment.environment_id, deployment.service_name, port
                )
        for candidate in context.candidates:
            self._recorder.update(context, candidate.deployment.id, Change(status="running"))
        if self._before_start is not None:
            await self._before_start(context, self._recorder)
        if context.run.type == "deploy":
            failure = await self._build(context)
            if failure is not None:
                return self._recorder.fail_run(context, failure[1], stopped_service=failure[0])
        failure = await self._start_and_check(context)
        if failure is not None:
            await self._stop_candidates(context)
            return self._recorder.fail_run(context, failure[1], stopped_service=failure[0])
        previous = self._switch(context)
        if context.bake_ms:
            trouble = await self._bake.watch(context, previous)
            if trouble is not None:
                return await self._bake.switch_back(context, previous, trouble)
        await self._drain(context, previous)
        return self._complete(context)

    async def _build(self, context: RunContext) -> tuple[str, str] | None:
        for candidate in context.candidates:
            digest = candidate.deployment.artifact_digest
            self._recorder.update(
                context, candidate.deployment.id, Change(stage="preparing_source")
            )
            self._recorder.step(
                context,
                candidate,
                "preparing_source",
                "succeeded",
                f"artifact sha256:{digest[:12]} stored",
            )
            command = candidate.config.build.command if candidate.config.build else None
            if not candidate.needs_build or command is None:
                reason = "no build.command" if command is None else "artifact already built"
                self._recorder.step(context, candidate, "building_image", "skipped", reason)
                continue
            self._recorder.update(context, candidate.deployment.id, Change(stage="building_image"))
            self._recorder.step(
                context, candidate, "building_image", "running", f"running {command!r}"
            )
            # Two environments may deploy the same new artifact at once: one builds.
            async with self._build_locks.setdefault(digest, anyio.Lock()):
                if self._services.artifacts.is_built(digest):
                    ok, message = True, "built meanwhile by another run"
                else:
                    spec = self._services.spec(
                        candidate.deployment,
                        context.project,
                        context.environment,
                        command,
                        None,
                    )
                    ok, message = await run_build(
                        self._services.supervisor.spawner, spec, timeout=BUILD_TIMEOUT_S
                    )
            self._recorder.step(
                context, candidate, "building_image", "succeeded" if ok else "failed", message
            )
            if not ok:
                return candidate.deployment.service_name, f"build failed: {message}"
        return None

    async def _start_and_check(self, context: RunContext) -> tuple[str, str] | None:
        """Start every candidate and wait until all are ready or one fails.

        Returns (service, reason) of the first failure; the other checks are
        cancelled then, since no route will move anyway.
        """
        failure: tuple[str, str] | None = None

        async def start(candidate: Candidate, group: TaskGroup) -> None:
            nonlocal failure
            result = await self._start_one(context, candidate)
            if not result.ok and failure is None:
                failure = (candidate.deployment.service_name, result.message)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for candidate in context.candidates:
                group.start_soon(start, candidate, group)
        return failure

    async def _start_one(self, context: RunContext, candidate: Candidate) -> ReadinessResult:
        deployment = candidate.deployment
        config = candidate.config
        command = config.run.command if config.run else None
        self._recorder.update(context, deployment.id, Change(stage="releasing"))
        if command is None:
            message = "no run.command: nothing to start"
            self._recorder.step(context, candidate, "starting_candidate", "skipped", message)
            self._recorder.step(context, candidate, "checking_readiness", "skipped", message)
            candidate.ready = ReadinessResult(True, message)
            return candidate.ready
        port = free_port()
        self._recorder.step(context, candidate, "starting_candidate", "running", f"$ {command}")
        try:
            process = await self._services.supervisor.start(
                self._services.spec(deployment, context.project, context.environment, command, port)
            )
        except OSError as exc:
            message = f"could not start {command!r}: {exc.strerror or exc}"
            self._recorder.step(context, candidate, "starting_candidate", "failed", message)
            return ReadinessResult(False, message)
        candidate.started = True
        candidate.backend_port = port
        self._recorder.step(
            context,
            candidate,
            "starting_candidate",
            "succeeded",
            f"started pid {process.pid} on port {port}",
        )
        self._recorder.update(context, deployment.id, Change(stage="awaiting_readiness"))
        if config.readiness is not None:
            plan = (
                f"GET {config.readiness.url_path} until it answers 2xx, for up to"
                f" {config.readiness.timeout_ms / 1000:g} s"
            )
        else:
            plan = f"no readiness check: ready if still running after {grace(config):g} s"
        self._recorder.step(context, candidate, "checking_readiness", "running", plan)
        result = await await_ready(
            process,
            config,
            report=lambda text: self._recorder.step(
                context, candidate, "checking_readiness", "running", text
            ),
        )
        self._recorder.step(
            context,
            candidate,
            "checking_readiness",
            "succeeded" if result.ok else "failed",
            result.message,
        )
        health: Health = "healthy" if result.ok else "unhealthy"
        self._recorder.update(context, deployment.id, Change(health=health))
        candidate.ready = result
        return result

    def _switch(self, context: RunContext) -> dict[str, Deployment]:
        """Move every route of the run at once; returns the deployments replaced, by id."""
        previous: dict[str, Deployment] = {}
        for candidate in context.candidates:
            deployment = candidate.deployment
            if deployment.previous_id:
                replaced = self._store.deployment(deployment.previous_id)
                if replaced is not None and replaced.is_active:
                    previous[deployment.id] = replaced
        targets = run_routes(context)
        old_targets = self._services.routes.switch(targets)
        # What a rollback replaced is "rolled_back" (the platform's stage), not just stopped.
        replaced_stage: PromotionStage = (
            "rolled_back" if context.run.type == "rollback" else "stopped"
        )
        with self._store.transaction():
            for candidate in context.candidates:
                replaced = previous.get(candidate.deployment.id)
                if replaced is not None:
                    self._store.update_deployment(
                        replaced.id, Change(is_active=False, stage=replaced_stage)
                    )
                self._store.update_deployment(
                    candidate.deployment.id, Change(is_active=True, stage="activating")
                )
        self._recorder.switched(
            context,
            previous,
            "switching_route",
            lambda url, deployment, replaced: (
                f"{url} now serves {deployment.id}" + (f" (was {replaced.id})" if replaced else "")
            ),
        )
        # From here on a candidate's backend_port is what its route served before (None:
        # nothing, or no route): what draining waits for, and where a switch back goes.
        for candidate in context.candidates:
            deployment = candidate.deployment
            key = route_key(deployment.environment_id, deployment.service_name)
            candidate.backend_port = old_targets.get(key)
        return previous

    async def _drain(self, context: RunContext, previous: dict[str, Deployment]) -> None:
        async def drain_one(candidate: Candidate) -> None:
            replaced = previous.get(candidate.deployment.id)
            if replaced is None:
                self._recorder.step(
                    context, candidate, "draining_previous", "skipped", "nothing was serving before"
                )
                return
            old_port = candidate.backend_port
            drained = cut = ""
            if old_port is not None:
                in_flight = self._services.routes.in_flight(old_port)
                self._recorder.step(
                    context,
                    candidate,
                    "draining_previous",
                    "running",
                    f"{replaced.id}: {in_flight}, waiting up to {self._services.drain_timeout:g} s",
                )
                report = await self._services.routes.drain(old_port, self._services.drain_timeout)
                drained, cut = f" {report}", report.cut_text
            await self._services.supervisor.stop(replaced.id)
            self._recorder.step(
                context,
                candidate,
                "draining_previous",
                "succeeded",
                f"{replaced.id}{drained} and stopped{cut}",
            )

        async with anyio.create_task_group() as group:
            for candidate in context.candidates:
                group.start_soon(drain_one, candidate)

    def _complete(self, context: RunContext) -> RunStatus:
        elapsed = time.monotonic() - context.started_at
        for candidate in context.candidates:
            self._recorder.update(
                context,
                candidate.deployment.id,
                Change(status="succeeded", stage="active", completed=True),
            )
            self._recorder.step(
                context, candidate, "completed", "succeeded", f"active after {elapsed:.1f} s"
            )
        return self._recorder.finish(context, "succeeded")

    async def _stop_candidates(self, context: RunContext) -> None:
        async with anyio.create_task_group() as group:
            for candidate in context.candidates:
                if candidate.started:
                    stop = partial(self._services.supervisor.stop, grace=CANDIDATE_STOP_GRACE_S)
                    group.start_soon(stop, candidate.deployment.id)
