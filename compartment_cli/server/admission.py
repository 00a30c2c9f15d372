"""Admission: whether a run may start, and its rows, before any of it runs.

A promote or deploy request is checked (the platform's refusals), joined to
an identical run still in flight (deduplicated by its move key), refused when
another run holds one of its (environment, service) targets (busy), and
otherwise written as a queued run with one deployment per service. All of it
is synchronous: no two requests can interleave between the check and the
insert. Execution starts afterwards (``Orchestrator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from compartment_cli.models.api import (
    BUSY_RUN_HEADER,
    DeployResponse,
    PromoteRequest,
    RollbackRequest,
    RunType,
)
from compartment_cli.models.descriptor import ROUTED_KINDS, DeployManifest
from compartment_cli.server.errors import Refusal, environment_not_found, project_not_found
from compartment_cli.server.rollback import require_reusable, resolve_rollback
from compartment_cli.server.runs import Candidate, Recorder, RunContext, Services
from compartment_cli.server.runtime import free_port
from compartment_cli.server.store import (
    Deployment,
    Environment,
    Project,
    Run,
    Store,
    new_id,
    now,
)


@dataclass
class InFlight:
    """A run admitted and not finished yet: what it holds until it ends."""

    context: RunContext
    description: str  # for the busy refusal of another request
    targets: set[tuple[str, str]]  # (environment id, service name)

    @property
    def run_id(self) -> str:
        return self.context.run.id


@dataclass(frozen=True)
class Admitted:
    response: DeployResponse
    flight: InFlight | None
    """The new run to execute; None when the request joined a run already in flight."""


def check_plan(
    planned: list[str], sources: list[Deployment], source_name: str, store: Store
) -> None:
    """409 ``plan_stale`` unless the source's active deployments are exactly ``planned``,
    naming every service that changed since the plan was made."""
    active = {d.service_name: d.id for d in sources}
    if set(planned) == set(active.values()) and len(planned) == len(active):
        return
    wanted: dict[str, str] = {}
    changes: list[str] = []
    for deployment_id in planned:
        row = store.deployment(deployment_id)
        if row is None:
            changes.append(f"{deployment_id} is not a deployment of this project")
        else:
            wanted[row.service_name] = deployment_id
    for service in sorted(set(wanted) | set(active)):
        planned_id, now_id = wanted.get(service), active.get(service)
        if planned_id == now_id:
            continue
        if now_id is None:
            changes.append(f"{service}: the plan has {planned_id}, nothing is active now")
        elif planned_id is None:
            changes.append(f"{service}: not in the plan, {now_id} is active now")
        else:
            changes.append(f"{service}: the plan has {planned_id}, {now_id} is active now")
    if not changes:  # the same deployments, some named twice
        changes.append(f"the plan names {len(planned)} deployments, {len(active)} are active")
    raise Refusal(
        409,
        "plan_stale",
        f"the active deployments of {source_name!r} changed since the plan: " + "; ".join(changes),
    )


class Admission:
    def __init__(self, services: Services, recorder: Recorder) -> None:
        self._services = services
        self._store = services.store
        self._recorder = recorder
        self._by_move: dict[str, InFlight] = {}
        self._by_target: dict[tuple[str, str], InFlight] = {}

    def release(self, flight: InFlight) -> None:
        """The run ended: its move may run again and its targets are free."""
        if self._by_move.get(flight.context.run.move_key) is flight:
            del self._by_move[flight.context.run.move_key]
        for target in flight.targets:
            if self._by_target.get(target) is flight:
                del self._by_target[target]

    def promote(self, request: PromoteRequest) -> Admitted:
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
            raise project_not_found(request.project_name)
        source = self._store.environment(project.id, source_name)
        if source is None:
            raise environment_not_found(source_name, project.name)
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
            require_reusable(deployment, self._services.summaries)
        if request.source_deployment_ids is not None:
            check_plan(request.source_deployment_ids, sources, source_name, self._store)
        move_key = "promote:{}:{}:{}:{}:{}".format(
            project.name,
            source_name,
            target_name,
            service or "*",
            ",".join(sorted(d.id for d in sources)),
        )
        existing = self._by_move.get(move_key)
        if existing is not None:
            return Admitted(self._response(existing.run_id), None)
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
            bake_ms=request.bake_ms,
        )

    def rollback(self, request: RollbackRequest) -> Admitted:
        """The earlier deployments (``rollback.py``) start again from their artifacts."""
        project, environment, targets = resolve_rollback(
            request, self._store, self._services.summaries
        )
        move_key = "rollback:{}:{}:{}".format(
            project.name, environment.name, ",".join(sorted(d.id for d in targets))
        )
        existing = self._by_move.get(move_key)
        if existing is not None:
            return Admitted(self._response(existing.run_id), None)
        self._check_busy(environment.id, [d.service_name for d in targets])
        with self._store.transaction():
            run = self._new_run("rollback", project, environment, None, move_key)
            candidates = [
                self._new_deployment(run, environment, d.service_name, d.artifact_digest, d.config)
                for d in targets
            ]
        return self._admit(
            run,
            project,
            environment,
            candidates,
            f"roll back {project.name} in {environment.name}",
            messages={
                c.deployment.id: f"rolling back to {d.id} of {d.run_id}"
                f" (artifact sha256:{d.artifact_digest[:12]}), no rebuild"
                for c, d in zip(candidates, targets, strict=True)
            },
            bake_ms=request.bake_ms,
        )

    def deploy(self, manifest: DeployManifest, digests: dict[str, str]) -> Admitted:
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
            return Admitted(self._response(existing.run_id), None)
        for name in services:
            if not self._services.artifacts.exists(digests[name]):  # removed since the upload
                raise Refusal(
                    409,
                    "deployment_image_not_available",
                    f"the upload of {name} was removed by retention meanwhile; deploy again",
                )
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
                ) and not self._services.artifacts.is_built(digests[name])
                candidates.append(candidate)
        return self._admit(
            run,
            project,
            environment,
            candidates,
            f"deploy {project.name} to {environment.name}",
            messages={c.deployment.id: f"queued in {run.id}" for c in candidates},
            bake_ms=manifest.bake_ms,
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
                    headers={BUSY_RUN_HEADER: holder.run_id},
                )

    def _new_run(
        self,
        run_type: RunType,
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
    ) -> Candidate:
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
            port = free_port(self._services.route_host, taken=self._store.route_ports())
            self._store.save_route(environment.id, service, port)
        return Candidate(deployment, service_config)

    def _admit(
        self,
        run: Run,
        project: Project,
        environment: Environment,
        candidates: list[Candidate],
        description: str,
        *,
        messages: dict[str, str],
        bake_ms: int | None,
    ) -> Admitted:
        context = RunContext(run, project, environment, candidates, bake_ms=bake_ms)
        flight = InFlight(
            context,
            description,
            {(environment.id, c.deployment.service_name) for c in candidates},
        )
        self._by_move[run.move_key] = flight
        for target in flight.targets:
            self._by_target[target] = flight
        for candidate in candidates:
            self._recorder.step(
                context, candidate, "queued", "succeeded", messages[candidate.deployment.id]
            )
        return Admitted(self._response(run.id), flight)

    def _response(self, run_id: str) -> DeployResponse:
        run = self._store.run(run_id)
        assert run is not None
        return DeployResponse(
            deployment_run_id=run.id,
            deployments=self._services.summaries.deployments(self._store.run_deployments(run.id)),
            environment=self._store.environment_by_id(run.environment_id).summary(),
            project=self._store.project_by_id(run.project_id).summary(),
        )
