"""What every phase of a deployment run shares: one floor below admission,
execution and recovery, which all import it and never each other.

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
The ``Recorder`` writes all three, each after the row it reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from compartment_cli.models.api import ReadSummary, RunStatus
from compartment_cli.models.descriptor import ROUTED_KINDS, ServiceConfig
from compartment_cli.models.events import (
    RunCompletedEvent,
    RunStep,
    StatusEvent,
    StepEvent,
    StepStatus,
)
from compartment_cli.server.artifacts import ArtifactStore
from compartment_cli.server.bus import EventBus
from compartment_cli.server.logs import OutputLog, log_path
from compartment_cli.server.routes import RouteTable
from compartment_cli.server.runtime import (
    ReadinessResult,
    RunningProcess,
    Supervisor,
    check_readiness,
    check_started,
)
from compartment_cli.server.spawn import ProcessSpec
from compartment_cli.server.store import (
    Change,
    Deployment,
    Environment,
    Project,
    Run,
    Store,
    now,
)
from compartment_cli.server.summaries import Summaries

log = logging.getLogger("compartment.server")

WORKER_GRACE_S = 1.0
UNROUTED_WEB_GRACE_S = 0.3


@dataclass(frozen=True)
class Services:
    """The parts of one control plane that a run uses."""

    store: Store
    bus: EventBus
    summaries: Summaries
    supervisor: Supervisor
    routes: RouteTable
    artifacts: ArtifactStore
    data_dir: Path
    route_host: str  # as route URLs show it
    drain_timeout: float
    event_retention: int

    def log_path(self, deployment: Deployment) -> Path:
        """Where a deployment's build and run output goes."""
        return log_path(self.data_dir, deployment.id)

    def spec(
        self,
        deployment: Deployment,
        project: Project,
        environment: Environment,
        command: str,
        port: int | None,
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> ProcessSpec:
        return ProcessSpec(
            deployment_id=deployment.id,
            project=project.name,
            environment=environment.name,
            service=deployment.service_name,
            command=command,
            cwd=self.artifacts.path(deployment.artifact_digest),
            log_path=self.log_path(deployment),
            port=port,
            extra_env=extra_env or {},
        )

    async def open_route(self, environment_id: str, service: str, port: int) -> None:
        """Listen for a route on its recorded port; a port taken meanwhile is replaced."""
        key = route_key(environment_id, service)
        if self.routes.port(key) is not None:
            return
        try:
            await self.routes.open(key, port)
        except OSError as exc:
            new_port = await self.routes.open(key, 0)
            log.warning("route port %s is taken (%s); %s now uses %s", port, exc, service, new_port)
            self.store.save_route(environment_id, service, new_port)


@dataclass
class Candidate:
    """One deployment of a run, and what the run learned about it so far."""

    deployment: Deployment
    config: ServiceConfig
    needs_build: bool = False
    started: bool = False
    ready: ReadinessResult | None = None
    backend_port: int | None = None
    """Its own port until the switch; after it, the port of what it replaced."""


@dataclass
class RunContext:
    run: Run
    project: Project
    environment: Environment
    candidates: list[Candidate] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    bake_ms: int | None = None
    """(ours) Watch the new deployments this long after the switch (``bake.py``)."""


RunHook = Callable[[RunContext, "Recorder"], Awaitable[None]]
"""Called once a run is running, before its builds and candidates start (benchmarks)."""


def route_key(environment_id: str, service_name: str) -> str:
    return f"{environment_id}/{service_name}"


def run_routes(context: RunContext) -> dict[str, int | None]:
    """The route of each routed service of the run → the backend its candidate holds."""
    return {
        route_key(c.deployment.environment_id, c.deployment.service_name): c.backend_port
        for c in context.candidates
        if c.config.kind in ROUTED_KINDS
    }


def grace(config: ServiceConfig) -> float:
    """Without a readiness check: how long a process must keep running to count as ready."""
    return UNROUTED_WEB_GRACE_S if config.kind in ROUTED_KINDS else WORKER_GRACE_S


async def await_ready(
    process: RunningProcess, config: ServiceConfig, *, report: Callable[[str], None]
) -> ReadinessResult:
    """compartment.yml's readiness check or, without one, still running after a grace."""
    if config.readiness is None:
        return await check_started(process, grace=grace(config))
    return await check_readiness(
        process,
        path=config.readiness.url_path,
        timeout_ms=config.readiness.timeout_ms,
        report=report,
    )


class Recorder:
    """Writes what a run does: the rows first, then the events that report them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._store = services.store

    def publish(
        self, context: RunContext, event: StepEvent | StatusEvent | RunCompletedEvent
    ) -> None:
        self.services.bus.publish(context.project.name, context.environment.name, event)

    def step(
        self,
        context: RunContext,
        candidate: Candidate,
        step: RunStep,
        status: StepStatus,
        message: str,
    ) -> None:
        self.publish(
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
        # The deployment's log has the control plane's side of it too (`compartment logs`).
        said = step if status == "running" else f"{step} {status}"
        log_path = self.services.log_path(candidate.deployment)
        OutputLog(log_path).write("compartment", f"{said}: {message}")

    def summary(self, deployment_id: str) -> ReadSummary:
        return self.services.summaries.read_one(deployment_id)

    def status(self, context: RunContext, deployment_id: str) -> None:
        """Publish a deployment's summary as it is now (after its row changed)."""
        self.publish(context, StatusEvent(self.summary(deployment_id)))

    def update(self, context: RunContext, deployment_id: str, change: Change) -> None:
        """Change a deployment's row and publish its new summary."""
        self._store.update_deployment(deployment_id, change)
        self.status(context, deployment_id)

    def switched(
        self,
        context: RunContext,
        previous: Mapping[str, Deployment],
        step: RunStep,
        serves: Callable[[str, Deployment, Deployment | None], str],
    ) -> None:
        """After the run's routes moved (and the rows with them): every deployment's new
        summary, then ``step`` for each candidate, saying what its route serves now
        (``serves(url, deployment, replaced)``), or skipped for a service without a route."""
        for candidate in context.candidates:
            deployment = candidate.deployment
            replaced = previous.get(deployment.id)
            if replaced is not None:
                self.status(context, replaced.id)
            self.status(context, deployment.id)
            if candidate.config.kind in ROUTED_KINDS:
                port = self._store.route_port(deployment.environment_id, deployment.service_name)
                url = f"http://{self.services.route_host}:{port}/"
                self.step(context, candidate, step, "succeeded", serves(url, deployment, replaced))
            else:
                kind = candidate.config.kind
                self.step(context, candidate, step, "skipped", f"{kind}: no route")

    def fail_run(
        self, context: RunContext, reason: str, *, stopped_service: str | None
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
                verb = {"promote": "promoted", "rollback": "rolled back"}.get(
                    context.run.type, "deployed"
                )
                message = f"{service}: not {verb}, because {stopped_service}: {reason}"
            if current.is_active and current.previous_id:
                # It died after its route moved: what it replaced is active again.
                self._store.update_deployment(
                    current.previous_id, Change(is_active=True, stage="active")
                )
                self.status(context, current.previous_id)
            self.update(
                context,
                candidate.deployment.id,
                Change(
                    status="failed",
                    stage="stopped",
                    failure_message=message,
                    is_active=False if current.is_active else None,
                    completed=True,
                ),
            )
            self.step(context, candidate, "completed", "failed", message)
        return self.finish(context, "failed")

    def finish(self, context: RunContext, status: Literal["succeeded", "failed"]) -> RunStatus:
        self._store.finish_run(context.run.id, status)
        self.publish(
            context,
            RunCompletedEvent(
                deployment_run_id=context.run.id,
                status=status,
                deployments=self.services.summaries.read(
                    self._store.run_deployments(context.run.id)
                ),
                at=now(),
            ),
        )
        # The log is bounded by count; a run's events are the newest when it ends.
        self._store.prune_events(keep=self.services.event_retention)
        return status
