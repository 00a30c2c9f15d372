"""Promotion plans: made from reads only (``promote --dry-run``), read back from a file
(``promote --plan FILE``), and compared with the source as it is now.

A plan never changes anything: it reads the source's and the target's status
and, where the control plane has ``GET /v1/deployments/runs/{id}`` (ours), the
artifact digests of the runs of their active deployments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from compartment_cli.client.api import ApiClient
from compartment_cli.errors import ApiRefused, UsageError
from compartment_cli.models.api import NameRef, ReadSummary, StatusResponse
from compartment_cli.models.plan import (
    PLAN_KIND,
    PLAN_VERSION,
    PlanAction,
    PlanDeployment,
    PlanService,
    PlanTarget,
    PromotionPlan,
)

__all__ = ["changed_services", "load_plan", "make_plan", "plan_changes", "source_actives"]

_IN_FLIGHT = frozenset({"queued", "running"})


async def source_actives(
    api: ApiClient, project: str, source: str, service: str | None
) -> list[ReadSummary]:
    """The source's active deployments in the scope (one service, or all), by service."""
    status = await api.status(project, source, service=service)
    actives = [d for d in status.active_deployments if service is None or d.service_name == service]
    if not actives:
        scope = f"service {service!r}" if service else "any service"
        raise ApiRefused(
            f"nothing of {scope} is active in {source!r} of project {project!r}: "
            "there is nothing to promote",
            code="active_deployment_not_found",
        )
    return sorted(actives, key=lambda d: d.service_name)


async def _target_status(api: ApiClient, project: str, target: str) -> StatusResponse | None:
    """The target's status; None when the environment does not exist yet."""
    try:
        return await api.status(project, target)
    except ApiRefused as exc:
        if exc.code == "environment_not_found":
            return None
        raise


async def _digests(api: ApiClient, run_ids: set[str]) -> dict[str, str] | None:
    """Deployment id → artifact digest for the deployments of ``run_ids``; None when the
    control plane tells none (no runs endpoint, or runs without digests)."""
    digests: dict[str, str] = {}
    for run_id in sorted(run_ids):
        try:
            run = await api.get_run(run_id)
        except ApiRefused:
            return None
        if not run.artifact_digests:
            return None
        digests.update(run.artifact_digests)
    return digests


async def make_plan(
    api: ApiClient, project: str, source: str, target: str, service: str | None
) -> PromotionPlan:
    """What promoting ``source`` to ``target`` would do now, per service; changes nothing."""
    actives = await source_actives(api, project, source, service)
    status = await _target_status(api, project, target)
    in_scope = {d.service_name for d in actives}
    target_active = {
        d.service_name: d
        for d in (status.active_deployments if status else [])
        if d.service_name in in_scope
    }
    holder = next(
        (
            d.deployment_run_id
            for d in (status.deployments if status else [])
            if d.status in _IN_FLIGHT and (service is None or d.service_name == service)
        ),
        None,
    )
    runs = {d.deployment_run_id for d in (*actives, *target_active.values())}
    digests = await _digests(api, runs)

    def entry(d: ReadSummary) -> PlanDeployment:
        return PlanDeployment(
            deployment_id=d.id,
            deployment_run_id=d.deployment_run_id,
            artifact_digest=None if digests is None else digests.get(d.id),
            label=d.label,
            created_at=d.created_at,
        )

    services = []
    for deployment in actives:
        now = target_active.get(deployment.service_name)
        source_entry = entry(deployment)
        target_entry = None if now is None else entry(now)
        action: PlanAction = "promote"
        if target_entry is None:
            action = "new"
        elif source_entry.artifact_digest and (
            source_entry.artifact_digest == target_entry.artifact_digest
        ):
            action = "unchanged"
        services.append(
            PlanService(
                service_name=deployment.service_name,
                action=action,
                source=source_entry,
                target=target_entry,
            )
        )
    return PromotionPlan(
        kind=PLAN_KIND,
        version=PLAN_VERSION,
        project=NameRef(name=project),
        source_environment=NameRef(name=source),
        environment=PlanTarget(
            name=target,
            exists=status is not None,
            busy=holder is not None,
            deployment_run_id=holder,
        ),
        service_name=service,
        services=services,
        digests_known=digests is not None,
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def load_plan(path: Path) -> PromotionPlan:
    """A plan saved from ``promote --dry-run --output json`` (``UsageError`` if it is not one)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"--plan {str(path)!r}: cannot read it ({exc.strerror or exc})", code="invalid_plan"
        ) from None
    try:
        plan = msgspec.json.decode(data, type=PromotionPlan)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, RecursionError) as exc:
        raise UsageError(
            f"--plan {str(path)!r} is not a plan of `compartment promote --dry-run --output "
            f"json`: {exc}",
            code="invalid_plan",
        ) from None
    if plan.kind != PLAN_KIND or plan.version != PLAN_VERSION:
        raise UsageError(
            f"--plan {str(path)!r} is a {plan.kind!r} version {plan.version}, not a "
            f"{PLAN_KIND!r} version {PLAN_VERSION}",
            code="invalid_plan",
        )
    if not plan.services:
        raise UsageError(f"--plan {str(path)!r} names no service", code="invalid_plan")
    return plan


def changed_services(plan: PromotionPlan) -> list[PlanService]:
    """The services whose artifact is not already active in the target."""
    return [s for s in plan.services if s.action != "unchanged"]


def plan_changes(
    services: list[PlanService], actives: list[ReadSummary], *, whole: bool
) -> list[str]:
    """How the source's active deployments differ from those ``services`` of a plan saw,
    e.g. ``api: dep_1 is no longer active (now dep_2)``; empty when they are the same.
    ``whole``: the promotion moves every active service, so a new one counts too."""
    now = {d.service_name: d.id for d in actives}
    planned = {s.service_name for s in services}
    changes = [
        f"{name}: {deployment_id} is active now and is not in the plan"
        for name, deployment_id in sorted(now.items())
        if whole and name not in planned
    ]
    for entry in services:
        current = now.get(entry.service_name)
        if current is None:
            changes.append(f"{entry.service_name}: nothing is active any more")
        elif current != entry.source.deployment_id:
            changes.append(
                f"{entry.service_name}: {entry.source.deployment_id} is no longer active "
                f"(now {current})"
            )
    return changes
