"""Deployment runs: what promote and deploy do once the API has accepted them.

A run moves one or more services of one environment together::

    queued → starting_candidate → checking_readiness
      ├─ every candidate ready → switching_route (all routes in one step)
      │                        → draining_previous → completed
      └─ any candidate fails   → candidates stopped, no route moved,
                                 every deployment of the run failed

Deploy runs add ``preparing_source`` and ``building_image`` before the
candidates start. Each step of each deployment is an event in the target
environment's stream; every change of a deployment's summary is a
``deployment.status`` event; ``run.completed`` is the last event of a run.

The admission of a run (validation, the busy check, the rows) is synchronous:
no two requests can interleave between the check and the insert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from compartment_cli.models.api import (
    DeployResponse,
    PromoteRequest,
    ReadSummary,
    RunStatus,
)
from compartment_cli.models.descriptor import ROUTED_KINDS, DeployManifest, ServiceConfig
from compartment_cli.models.events import (
    RunCompletedEvent,
    RunStep,
    StatusEvent,
    StepEvent,
    StepStatus,
)
from compartment_cli.server.artifacts import ArtifactStore, run_build
from compartment_cli.server.bus import SUBSCRIBER_BUFFER, EventBus
from compartment_cli.server.routes import RouteTable
from compartment_cli.server.runtime import (
    ReadinessResult,
    RunningProcess,
    Supervisor,
    check_readiness,
    check_started,
    free_port,
)
from compartment_cli.server.spawn import ProcessSpec
from compartment_cli.server.store import Deployment, Environment, Project, Run, Store, new_id, now
from compartment_cli.server.summaries import Summaries

log = logging.getLogger("compartment.server")

WORKER_GRACE_S = 1.0
UNROUTED_WEB_GRACE_S = 0.3
BUILD_TIMEOUT_S = 600.0


class Refusal(Exception):
    """The API refuses a request: an HTTP status and the platform's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _InFlight:
    run_id: str
    move_key: str
    description: str
    targets: set[tuple[str, str]]
    task: asyncio.Task[None] | None = None


@dataclass
class _Candidate:
    deployment: Deployment
    config: ServiceConfig
    needs_build: bool = False
    started: bool = False
    ready: ReadinessResult | None = None
    backend_port: int | None = None


@dataclass
class _RunContext:
    run: Run
    project: Project
    environment: Environment
    candidates: list[_Candidate] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)


async def _wait_until(condition: Callable[[], bool], *, seconds: float) -> None:
    """Until ``condition()`` holds, looking every millisecond, for at most ``seconds``."""
    for _ in range(int(seconds * 1000)):
        if condition():
            return
        await asyncio.sleep(0.001)


def route_key(environment_id: str, service_name: str) -> str:
    return f"{environment_id}/{service_name}"


def _grace(config: ServiceConfig) -> float:
    return UNROUTED_WEB_GRACE_S if config.kind in ROUTED_KINDS else WORKER_GRACE_S


async def _await_ready(
    process: RunningProcess, config: ServiceConfig, *, report: Callable[[str], None]
) -> ReadinessResult:
    """compartment.yml's readiness check or, without one, still running after a grace."""
    if config.readiness is None:
        return await check_started(process, grace=_grace(config))
    return await check_readiness(
        process,
        path=config.readiness.url_path,
        timeout_ms=config.readiness.timeout_ms,
        report=report,
    )


class Orchestrator:
    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        supervisor: Supervisor,
        routes: RouteTable,
        artifacts: ArtifactStore,
        data_dir: Path,
        route_host: str,
        drain_timeout: float,
        event_retention: int = 100_000,
        bench_flood: int = 0,
    ) -> None:
        self._store = store
        self._summaries = Summaries(store, route_host)
        self._bus = bus
        self._supervisor = supervisor
        self._routes = routes
        self._artifacts = artifacts
        self._logs = data_dir / "logs"
        self._route_host = route_host
        self._drain_timeout = drain_timeout
        self._event_retention = event_retention
        self._by_move: dict[str, _InFlight] = {}
        self._by_target: dict[tuple[str, str], _InFlight] = {}
        self._build_locks: dict[str, asyncio.Lock] = {}
        self._bench_flood = bench_flood

    # --- admission (synchronous) -------------------------------------------------

    def promote(self, request: PromoteRequest) -> DeployResponse:
        source_name = request.source_environment_name
        target_name = request.target_environment_name
        if source_name == target_name:
            raise Refusal(
                409,
                "source_and_target_environment_match",
                f"source and target environment are both {source_name!r}",
            )
        project = self._store.project(request.project_name)
        if project is None:
            raise Refusal(404, "project_not_found", f"project {request.project_name!r} not found")
        source = self._store.environment(project.id, source_name)
        if source is None:
            raise Refusal(
                404,
                "environment_not_found",
                f"environment {source_name!r} not found in project {project.name!r}",
            )
        service = request.service_name
        if service is not None and service not in self._store.service_names(project.id):
            raise Refusal(
                404,
                "service_not_found",
                f"service {service!r} not found in project {project.name!r}",
            )
        sources = self._store.active_deployments(source.id, service=service)
        if not sources:
            scope = f"service {service!r} of " if service else ""
            raise Refusal(
                404,
                "active_deployment_not_found",
                f"nothing is active in {scope}environment {source_name!r} to promote",
            )
        for deployment in sources:
            if not self._artifacts.exists(deployment.artifact_digest):
                raise Refusal(
                    409,
                    "deployment_image_not_available",
                    f"the artifact of {deployment.service_name} ({deployment.id}) is no longer"
                    " available",
                )
        move_key = "promote:{}:{}:{}:{}:{}".format(
            project.name,
            source_name,
            target_name,
            service or "*",
            ",".join(sorted(d.id for d in sources)),
        )
        existing = self._by_move.get(move_key)
        if existing is not None:
            return self._response(existing.run_id)
        target = self._store.environment(project.id, target_name)
        target_id = target.id if target else None
        self._check_busy(target_id, [d.service_name for d in sources])
        with self._store.transaction():
            target = self._store.ensure_environment(project.id, target_name)
            run = self._new_run("promote", project, target, source.id, move_key)
            candidates = [
                self._new_deployment(run, target, d.service_name, d.artifact_digest, d.config)
                for d in sources
            ]
        return self._admit(
            run,
            project,
            target,
            candidates,
            f"promote {project.name} from {source_name} to {target_name}",
            messages={
                c.deployment.id: f"promoting {d.id} (artifact sha256:{d.artifact_digest[:12]})"
                f" from {source_name}, no rebuild"
                for c, d in zip(candidates, sources, strict=True)
            },
        )

    def deploy(self, manifest: DeployManifest, digests: dict[str, str]) -> DeployResponse:
        """``digests``: the stored artifact of every service in the manifest."""
        services = {
            name: config
            for name, config in manifest.services.items()
            if manifest.service_name in (None, name)
        }
        if not services:
            raise Refusal(
                404,
                "service_not_found",
                f"service {manifest.service_name!r} is not in the uploaded manifest",
            )
        move_key = "deploy:{}:{}:{}".format(
            manifest.project_name,
            manifest.environment_name,
            ",".join(
                f"{name}={digests[name]}:{msgspec.json.encode(cfg).decode()}"
                for name, cfg in sorted(services.items())
            ),
        )
        existing = self._by_move.get(move_key)
        if existing is not None:
            return self._response(existing.run_id)
        project = self._store.project(manifest.project_name)
        environment = (
            self._store.environment(project.id, manifest.environment_name) if project else None
        )
        self._check_busy(environment.id if environment else None, list(services))
        with self._store.transaction():
            project = self._store.ensure_project(manifest.project_name)
            environment = self._store.ensure_environment(project.id, manifest.environment_name)
            run = self._new_run("deploy", project, environment, None, move_key)
            candidates = []
            for name, config in sorted(services.items()):
                self._store.record_artifact(digests[name])
                candidate = self._new_deployment(
                    run, environment, name, digests[name], msgspec.json.encode(config).decode()
                )
                candidate.needs_build = bool(
                    config.build and config.build.command
                ) and not self._artifacts.is_built(digests[name])
                candidates.append(candidate)
        return self._admit(
            run,
            project,
            environment,
            candidates,
            f"deploy {project.name} to {environment.name}",
            messages={c.deployment.id: f"queued in {run.id}" for c in candidates},
        )

    def _check_busy(self, environment_id: str | None, services: list[str]) -> None:
        if environment_id is None:
            return
        for service in services:
            holder = self._by_target.get((environment_id, service))
            if holder is not None:
                raise Refusal(
                    409,
                    "deployment_target_busy",
                    f"{service} is being changed by run {holder.run_id} ({holder.description});"
                    f" wait for it, or follow it with: compartment deployment watch"
                    f" {holder.run_id}",
                )

    def _new_run(
        self,
        run_type: Literal["deploy", "promote"],
        project: Project,
        environment: Environment,
        source_environment_id: str | None,
        move_key: str,
    ) -> Run:
        run = Run(
            id=new_id("run"),
            type=run_type,
            project_id=project.id,
            environment_id=environment.id,
            source_environment_id=source_environment_id,
            move_key=move_key,
            status="queued",
            created_at=now(),
            completed_at=None,
        )
        self._store.insert_run(run)
        return run

    def _new_deployment(
        self, run: Run, environment: Environment, service: str, digest: str, config: str
    ) -> _Candidate:
        previous = self._store.active_deployments(environment.id, service=service)
        deployment = Deployment(
            id=new_id("dep"),
            run_id=run.id,
            environment_id=environment.id,
            service_name=service,
            artifact_digest=digest,
            config=config,
            status="queued",
            promotion_stage="queued",
            health="pending",
            is_active=0,
            failure_message=None,
            created_at=now(),
            completed_at=None,
            previous_id=previous[0].id if previous else None,
        )
        self._store.insert_deployment(deployment)
        service_config = deployment.service
        if (
            service_config.kind in ROUTED_KINDS
            and self._store.route_port(environment.id, service) is None
        ):
            # A route recorded in this same admission is not listening yet: its port
            # must not be handed out twice (the routes table keeps ports unique).
            port = free_port(self._route_host, taken=self._store.route_ports())
            self._store.save_route(environment.id, service, port)
        return _Candidate(deployment, service_config)

    def _admit(
        self,
        run: Run,
        project: Project,
        environment: Environment,
        candidates: list[_Candidate],
        description: str,
        *,
        messages: dict[str, str],
    ) -> DeployResponse:
        context = _RunContext(run, project, environment, candidates)
        flight = _InFlight(
            run.id,
            run.move_key,
            description,
            {(environment.id, c.deployment.service_name) for c in candidates},
        )
        self._by_move[run.move_key] = flight
        for target in flight.targets:
            self._by_target[target] = flight
        for candidate in candidates:
            self._step(context, candidate, "queued", "succeeded", messages[candidate.deployment.id])
        flight.task = asyncio.get_running_loop().create_task(self._execute(context, flight))
        return self._response(run.id)

    def _response(self, run_id: str) -> DeployResponse:
        run = self._store.run(run_id)
        assert run is not None
        return DeployResponse(
            deployment_run_id=run.id,
            deployments=self._summaries.deployments(self._store.run_deployments(run.id)),
            environment=self._store.environment_by_id(run.environment_id).summary(),
            project=self._store.project_by_id(run.project_id).summary(),
        )

    # --- events ---------------------------------------------------------------------

    def _publish(
        self, context: _RunContext, event: StepEvent | StatusEvent | RunCompletedEvent
    ) -> None:
        self._bus.publish(context.project.name, context.environment.name, event)

    def _step(
        self,
        context: _RunContext,
        candidate: _Candidate,
        step: RunStep,
        status: StepStatus,
        message: str,
    ) -> None:
        self._publish(
            context,
            StepEvent(
                deployment_run_id=context.run.id,
                deployment_id=candidate.deployment.id,
                service_name=candidate.deployment.service_name,
                step=step,
                status=status,
                message=message,
                at=now(),
            ),
        )

    def _summary(self, deployment_id: str) -> ReadSummary:
        return self._summaries.read_one(deployment_id)

    def _update(self, context: _RunContext, deployment_id: str, **changes: object) -> None:
        self._store.update_deployment(deployment_id, **changes)  # type: ignore[arg-type]
        self._publish(context, StatusEvent(self._summary(deployment_id)))

    # --- execution -------------------------------------------------------------------

    async def _execute(self, context: _RunContext, flight: _InFlight) -> None:
        status: RunStatus = "failed"
        try:
            status = await self._run_steps(context)
        except asyncio.CancelledError:
            self._fail_run(
                context,
                "the control plane stopped while this run was in flight",
                stopped_service=None,
            )
            await self._stop_candidates(context)
            raise
        except Exception as exc:
            log.exception("run %s failed unexpectedly", context.run.id)
            self._fail_run(
                context, f"internal error in the control plane: {exc}", stopped_service=None
            )
            await self._stop_candidates(context)
        finally:
            self._by_move.pop(flight.move_key, None)
            for target in flight.targets:
                if self._by_target.get(target) is flight:
                    del self._by_target[target]
        log.info("run %s %s", context.run.id, status)

    async def _run_steps(self, context: _RunContext) -> RunStatus:
        self._store.set_run_status(context.run.id, "running")
        for candidate in context.candidates:
            deployment = candidate.deployment
            port = self._store.route_port(deployment.environment_id, deployment.service_name)
            if port is not None:
                await self._open_route(deployment.environment_id, deployment.service_name, port)
        for candidate in context.candidates:
            self._update(context, candidate.deployment.id, status="running")
        if context.run.type == "promote" and self._bench_flood:
            await self._flood(context, self._bench_flood)
        if context.run.type == "deploy":
            failure = await self._build(context)
            if failure is not None:
                return self._fail_run(context, failure[1], stopped_service=failure[0])
        failure = await self._start_and_check(context)
        if failure is not None:
            await self._stop_candidates(context)
            return self._fail_run(context, failure[1], stopped_service=failure[0])
        previous = self._switch(context)
        await self._drain(context, previous)
        return self._complete(context)

    async def _build(self, context: _RunContext) -> tuple[str, str] | None:
        for candidate in context.candidates:
            digest = candidate.deployment.artifact_digest
            self._update(context, candidate.deployment.id, stage="preparing_source")
            self._step(
                context,
                candidate,
                "preparing_source",
                "succeeded",
                f"artifact sha256:{digest[:12]} stored",
            )
            command = candidate.config.build.command if candidate.config.build else None
            if not candidate.needs_build or command is None:
                reason = "no build.command" if command is None else "artifact already built"
                self._step(context, candidate, "building_image", "skipped", reason)
                continue
            self._update(context, candidate.deployment.id, stage="building_image")
            self._step(context, candidate, "building_image", "running", f"running {command!r}")
            # Two environments may deploy the same new artifact at once: one builds.
            async with self._build_locks.setdefault(digest, asyncio.Lock()):
                if self._artifacts.is_built(digest):
                    ok, message = True, "built meanwhile by another run"
                else:
                    spec = self._spec(
                        candidate.deployment, context.project, context.environment, command, None
                    )
                    ok, message = await run_build(
                        self._supervisor.spawner,
                        spec,
                        timeout=BUILD_TIMEOUT_S,
                    )
            self._step(
                context, candidate, "building_image", "succeeded" if ok else "failed", message
            )
            if not ok:
                return candidate.deployment.service_name, f"build failed: {message}"
        return None

    async def _flood(self, context: _RunContext, count: int) -> None:
        """Benchmarks only (``compartment server --bench-flood N``, a hidden switch of the
        process, off by default; no request can turn it on): ``count`` progress events
        of the run's first deployment, as fast as the environment's followers take them.

        Waits up to 10 s for a follower, so that one sees every event, and pauses
        while a follower's backlog is over half its buffer, so none is cut off.
        """
        project, environment = context.project.name, context.environment.name
        candidate = context.candidates[0]

        def followed() -> bool:
            return bool(self._bus.backlogs(project, environment))

        def caught_up() -> bool:
            backlog = max(self._bus.backlogs(project, environment), default=0)
            return backlog <= SUBSCRIBER_BUFFER // 2

        await _wait_until(followed, seconds=10.0)
        for number in range(1, count + 1):
            self._step(
                context,
                candidate,
                "starting_candidate",
                "running",
                f"bench flood: event {number} of {count}",
            )
            if number % 100 == 0:
                await asyncio.sleep(0)
                await _wait_until(caught_up, seconds=60.0)

    def _spec(
        self,
        deployment: Deployment,
        project: Project,
        environment: Environment,
        command: str,
        port: int | None,
    ) -> ProcessSpec:
        return ProcessSpec(
            deployment_id=deployment.id,
            project=project.name,
            environment=environment.name,
            service=deployment.service_name,
            command=command,
            cwd=self._artifacts.path(deployment.artifact_digest),
            log_path=self._log_path(deployment),
            port=port,
        )

    def _log_path(self, deployment: Deployment) -> Path:
        return self._logs / f"{deployment.id}.log"

    async def _start_and_check(self, context: _RunContext) -> tuple[str, str] | None:
        """Start every candidate and wait until all are ready or one fails.

        Returns (service, reason) of the first failure; the other checks are
        cancelled then, since no route will move anyway.
        """
        tasks = {asyncio.create_task(self._start_one(context, c)): c for c in context.candidates}
        failure: tuple[str, str] | None = None
        try:
            pending = set(tasks)
            while pending and failure is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    candidate = tasks[task]
                    result = task.result()
                    if not result.ok and failure is None:
                        failure = (candidate.deployment.service_name, result.message)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return failure

    async def _start_one(self, context: _RunContext, candidate: _Candidate) -> ReadinessResult:
        deployment = candidate.deployment
        config = candidate.config
        command = config.run.command if config.run else None
        self._update(context, deployment.id, stage="releasing")
        if command is None:
            message = "no run.command: nothing to start"
            self._step(context, candidate, "starting_candidate", "skipped", message)
            self._step(context, candidate, "checking_readiness", "skipped", message)
            candidate.ready = ReadinessResult(True, message)
            return candidate.ready
        port = free_port()
        self._step(context, candidate, "starting_candidate", "running", f"$ {command}")
        try:
            process = await self._supervisor.start(
                self._spec(deployment, context.project, context.environment, command, port)
            )
        except OSError as exc:
            message = f"could not start {command!r}: {exc.strerror or exc}"
            self._step(context, candidate, "starting_candidate", "failed", message)
            return ReadinessResult(False, message)
        candidate.started = True
        candidate.backend_port = port
        self._step(
            context,
            candidate,
            "starting_candidate",
            "succeeded",
            f"started pid {process.pid} on port {port}",
        )
        self._update(context, deployment.id, stage="awaiting_readiness")
        if config.readiness is not None:
            plan = (
                f"GET {config.readiness.url_path} until it answers 2xx, for up to"
                f" {config.readiness.timeout_ms / 1000:g} s"
            )
        else:
            plan = f"no readiness check: ready if still running after {_grace(config):g} s"
        self._step(context, candidate, "checking_readiness", "running", plan)
        result = await _await_ready(
            process,
            config,
            report=lambda text: self._step(
                context, candidate, "checking_readiness", "running", text
            ),
        )
        self._step(
            context,
            candidate,
            "checking_readiness",
            "succeeded" if result.ok else "failed",
            result.message,
        )
        self._update(context, deployment.id, health="healthy" if result.ok else "unhealthy")
        candidate.ready = result
        return result

    def _switch(self, context: _RunContext) -> dict[str, Deployment]:
        """Move every route of the run at once; returns the deployments replaced, by id."""
        targets: dict[str, int | None] = {}
        previous: dict[str, Deployment] = {}
        for candidate in context.candidates:
            deployment = candidate.deployment
            if deployment.previous_id:
                replaced = self._store.deployment(deployment.previous_id)
                if replaced is not None and replaced.is_active:
                    previous[deployment.id] = replaced
            if candidate.config.kind in ROUTED_KINDS:
                targets[route_key(deployment.environment_id, deployment.service_name)] = (
                    candidate.backend_port
                )
        old_targets = self._routes.switch(targets)
        with self._store.transaction():
            for candidate in context.candidates:
                replaced = previous.get(candidate.deployment.id)
                if replaced is not None:
                    self._store.update_deployment(replaced.id, is_active=False, stage="stopped")
                self._store.update_deployment(
                    candidate.deployment.id, is_active=True, stage="activating"
                )
        for candidate in context.candidates:
            deployment = candidate.deployment
            replaced = previous.get(deployment.id)
            if replaced is not None:
                self._publish(context, StatusEvent(self._summary(replaced.id)))
            self._publish(context, StatusEvent(self._summary(deployment.id)))
            key = route_key(deployment.environment_id, deployment.service_name)
            if key in targets:
                port = self._store.route_port(deployment.environment_id, deployment.service_name)
                was = f" (was {replaced.id})" if replaced else ""
                self._step(
                    context,
                    candidate,
                    "switching_route",
                    "succeeded",
                    f"http://{self._route_host}:{port}/ now serves {deployment.id}{was}",
                )
                candidate.backend_port = old_targets.get(key)
            else:
                self._step(
                    context,
                    candidate,
                    "switching_route",
                    "skipped",
                    f"{candidate.config.kind}: no route",
                )
                candidate.backend_port = None
        return previous

    async def _drain(self, context: _RunContext, previous: dict[str, Deployment]) -> None:
        async def drain_one(candidate: _Candidate) -> None:
            replaced = previous.get(candidate.deployment.id)
            if replaced is None:
                self._step(
                    context, candidate, "draining_previous", "skipped", "nothing was serving before"
                )
                return
            started = time.monotonic()
            old_port = candidate.backend_port
            cut = 0
            if old_port is not None:
                open_now = self._routes.open_connections(old_port)
                self._step(
                    context,
                    candidate,
                    "draining_previous",
                    "running",
                    f"{replaced.id}: {open_now} open connection(s), waiting up to"
                    f" {self._drain_timeout:g} s",
                )
                cut = await self._routes.drain(old_port, self._drain_timeout)
            await self._supervisor.stop(replaced.id)
            cut_text = f", {cut} connection(s) cut" if cut else ""
            self._step(
                context,
                candidate,
                "draining_previous",
                "succeeded",
                f"{replaced.id} drained in {time.monotonic() - started:.1f} s"
                f" and stopped{cut_text}",
            )

        await asyncio.gather(*(drain_one(c) for c in context.candidates))

    def _complete(self, context: _RunContext) -> RunStatus:
        elapsed = time.monotonic() - context.started_at
        for candidate in context.candidates:
            self._update(
                context, candidate.deployment.id, status="succeeded", stage="active", completed=True
            )
            self._step(
                context, candidate, "completed", "succeeded", f"active after {elapsed:.1f} s"
            )
        return self._finish(context, "succeeded")

    def _fail_run(
        self, context: _RunContext, reason: str, *, stopped_service: str | None
    ) -> RunStatus:
        """Every deployment of the run ends failed, naming the service and the reason."""
        for candidate in context.candidates:
            current = self._store.deployment(candidate.deployment.id)
            if current is None or current.status in ("failed", "succeeded"):
                continue
            service = candidate.deployment.service_name
            if stopped_service is None or stopped_service == service:
                message = f"{service}: {reason}"
            else:
                verb = "promoted" if context.run.type == "promote" else "deployed"
                message = f"{service}: not {verb}, because {stopped_service}: {reason}"
            if current.is_active and current.previous_id:
                # It died after its route moved: what it replaced is active again.
                self._store.update_deployment(current.previous_id, is_active=True, stage="active")
                self._publish(context, StatusEvent(self._summary(current.previous_id)))
            self._update(
                context,
                candidate.deployment.id,
                status="failed",
                stage="stopped",
                failure_message=message,
                is_active=False if current.is_active else None,
                completed=True,
            )
            self._step(context, candidate, "completed", "failed", message)
        return self._finish(context, "failed")

    def _finish(self, context: _RunContext, status: Literal["succeeded", "failed"]) -> RunStatus:
        self._store.finish_run(context.run.id, status)
        self._publish(
            context,
            RunCompletedEvent(
                deployment_run_id=context.run.id,
                status=status,
                deployments=self._summaries.read(self._store.run_deployments(context.run.id)),
                at=now(),
            ),
        )
        # The log is bounded by count; a run's events are the newest when it ends.
        self._store.prune_events(keep=self._event_retention)
        return status

    async def _stop_candidates(self, context: _RunContext) -> None:
        await asyncio.gather(
            *(
                self._supervisor.stop(c.deployment.id, grace=2.0)
                for c in context.candidates
                if c.started
            )
        )

    # --- life cycle ------------------------------------------------------------------

    async def recover(self) -> None:
        """After a start: fail what was in flight, then bring back what is active."""
        for run in self._store.unfinished_runs():
            self._recover_run(run)
        for environment_id, service, port in self._store.routes():
            await self._open_route(environment_id, service, port)
        await asyncio.gather(*(self._restore(d) for d in self._store.all_active_deployments()))

    async def _open_route(self, environment_id: str, service: str, port: int) -> None:
        """Listen for a route on its recorded port; a port taken meanwhile is replaced."""
        key = route_key(environment_id, service)
        if self._routes.port(key) is not None:
            return
        try:
            await self._routes.open(key, port)
        except OSError as exc:
            new_port = await self._routes.open(key, 0)
            log.warning("route port %s is taken (%s); %s now uses %s", port, exc, service, new_port)
            self._store.save_route(environment_id, service, new_port)

    def _recover_run(self, run: Run) -> None:
        """A run the previous life of the server left unfinished: it failed, and
        whatever it replaced is active again (it may have died mid-switch)."""
        context = _RunContext(
            run,
            self._store.project_by_id(run.project_id),
            self._store.environment_by_id(run.environment_id),
        )
        context.candidates = [_Candidate(d, d.service) for d in self._store.run_deployments(run.id)]
        self._fail_run(
            context,
            "the control plane stopped while this run was in flight; what was active before"
            " it is still active",
            stopped_service=None,
        )

    async def _restore(self, deployment: Deployment) -> None:
        config = deployment.service
        command = config.run.command if config.run else None
        if command is None:
            return
        environment = self._store.environment_by_id(deployment.environment_id)
        project = self._store.project_by_id(environment.project_id)
        port = free_port()
        try:
            process = await self._supervisor.start(
                self._spec(deployment, project, environment, command, port)
            )
        except OSError as exc:
            log.error("could not restore %s: %s", deployment.id, exc)
            self._store.update_deployment(deployment.id, health="unhealthy")
            return
        result = await _await_ready(process, config, report=lambda _text: None)
        self._store.update_deployment(deployment.id, health="healthy" if result.ok else "unhealthy")
        if not result.ok:
            log.error("restored %s is not ready: %s", deployment.id, result.message)
            return
        if config.kind in ROUTED_KINDS:
            self._routes.switch(
                {route_key(deployment.environment_id, deployment.service_name): port}
            )
        log.info("restored %s %s/%s", deployment.id, environment.name, deployment.service_name)

    async def shutdown(self) -> None:
        """Fail the runs in flight (cancelling them records why), then stop everything."""
        tasks = [f.task for f in self._by_move.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
