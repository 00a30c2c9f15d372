"""What promote, deploy and rollback add to a plain request: apply a plan exactly, leave out
what is unchanged, wait for a busy target, bake.

- ``--plan FILE`` / ``--only-changed``: the promotion is scoped to the plan's services
  and carries ``sourceDeploymentIds`` (ours): the control plane refuses it atomically,
  under the target's lock, with 409 ``plan_stale`` when the source's active deployments
  are no longer those. A control plane without the field refuses it as unknown (400
  naming it; nothing started): then the source is read and compared just before the
  request is sent again without it.
- ``--bake``: ``bakeMs`` (ours). A control plane without it refuses the key (400 naming
  it, before anything starts): exit 2, saying so.
- ``--wait-for-target``: ``busy.request_when_free`` around the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from compartment_cli.client.api import Admitted, ApiClient
from compartment_cli.errors import ApiRefused, UsageError
from compartment_cli.models.api import PromoteRequest
from compartment_cli.models.plan import NothingToPromote, PlanService, PromotionPlan
from compartment_cli.workflows.busy import request_when_free
from compartment_cli.workflows.follow import Progress
from compartment_cli.workflows.plan import (
    changed_services,
    make_plan,
    plan_changes,
    source_actives,
)

__all__ = [
    "NO_LIFECYCLE",
    "Lifecycle",
    "bake_unsupported",
    "promote_checked",
    "scoped_request",
    "send_when_free",
    "stale_plan",
    "unsupported_field",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Lifecycle:
    """The lifecycle options of one promote, deploy or rollback."""

    plan: PromotionPlan | None = None
    """Apply exactly this plan (``--plan FILE``)."""
    only_changed: bool = False
    wait_for_target: float | None = None
    """Seconds to wait for a busy target; None: refuse at once (exit 3)."""
    bake_ms: int | None = None


NO_LIFECYCLE = Lifecycle()


def unsupported_field(error: ApiRefused, field: str) -> bool:
    """Whether ``error`` is a 400-style refusal of the request key ``field`` as unknown."""
    return error.code.startswith("invalid") and f"{field}" in error.message


def bake_unsupported(error: ApiRefused, where: str) -> UsageError:
    return UsageError(
        f"--bake: the control plane at {where} does not support baking (it refused bakeMs: "
        f"{error.message}); nothing was started. Bake needs the local control plane of "
        "compartment-cli (`compartment server`).",
        code="bake_not_supported",
    )


async def send_when_free(
    api: ApiClient,
    send: Callable[[], Awaitable[T]],
    progress: Progress,
    lifecycle: Lifecycle,
) -> T:
    """``send()`` with ``--wait-for-target`` and ``--bake``'s refusal."""
    try:
        return await request_when_free(api, send, progress, lifecycle.wait_for_target)
    except ApiRefused as exc:
        if lifecycle.bake_ms is not None and unsupported_field(exc, "bakeMs"):
            raise bake_unsupported(exc, api.where) from None
        raise


async def scoped_request(
    api: ApiClient, request: PromoteRequest, lifecycle: Lifecycle, progress: Progress
) -> tuple[PromoteRequest, list[PlanService] | None] | NothingToPromote:
    """The promotion to send for ``lifecycle``, with the plan's services it moves (None when
    there is no plan), or ``NothingToPromote`` when ``--only-changed`` leaves nothing."""
    request = msgspec.structs.replace(request, bake_ms=lifecycle.bake_ms)
    plan = lifecycle.plan
    if plan is None and lifecycle.only_changed:
        plan = await make_plan(
            api,
            request.project_name,
            request.source_environment_name,
            request.target_environment_name,
            request.service_name,
        )
        if not plan.digests_known:
            progress.notice(
                "the control plane tells no artifact digests: --only-changed cannot see what "
                "is unchanged, so every service is promoted"
            )
    if plan is None:
        return request, None
    services = changed_services(plan) if lifecycle.only_changed else list(plan.services)
    if not services:
        status = await api.status(request.project_name, request.target_environment_name)
        names = ", ".join(s.service_name for s in plan.services)
        return NothingToPromote(
            deployment_run_id=None,
            status="unchanged",
            project=plan.project,
            source_environment=plan.source_environment,
            environment=status.environment,
            deployments=[],
            active_deployments=status.active_deployments,
            services=plan.services,
            message=(
                f"nothing to promote: the artifacts of {names} are already active in "
                f"{plan.environment.name}; no run was started"
            ),
        )
    service = plan.service_name
    if len(services) == 1:
        service = services[0].service_name
    elif len(services) < len(plan.services):
        progress.notice(
            "the control plane moves one service or all of them: the unchanged ones "
            f"({', '.join(s.service_name for s in plan.services if s not in services)}) "
            "are promoted again with the others"
        )
        services = list(plan.services)
    request = msgspec.structs.replace(
        request,
        service_name=service,
        source_deployment_ids=[s.source.deployment_id for s in services],
    )
    return request, services


async def promote_checked(
    api: ApiClient,
    request: PromoteRequest,
    services: list[PlanService] | None,
    progress: Progress,
) -> Admitted:
    """POST the promotion; if the control plane does not know ``sourceDeploymentIds``,
    compare the source with the plan here, then send it without."""
    try:
        return await api.promote(request)
    except ApiRefused as exc:
        if services is None or not unsupported_field(exc, "sourceDeploymentIds"):
            raise
    progress.notice(
        f"the control plane at {api.where} cannot check the plan itself; checking the source "
        "just before the request"
    )
    actives = await source_actives(
        api, request.project_name, request.source_environment_name, request.service_name
    )
    changes = plan_changes(services, actives, whole=request.service_name is None)
    if changes:
        raise stale_plan(changes, request.source_environment_name)
    return await api.promote(msgspec.structs.replace(request, source_deployment_ids=None))


def stale_plan(changes: list[str], source: str) -> ApiRefused:
    return ApiRefused(
        f"the plan is stale: the active deployments of {source} changed since it was made "
        f"({'; '.join(changes)}); nothing was started. Make a new plan with --dry-run.",
        code="plan_stale",
    )
