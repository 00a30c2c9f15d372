"""(ours) A promotion plan: what ``promote --dry-run`` prints and ``promote --plan FILE`` applies.

Built from reads only (``GET /v1/deployments/status``, and where the control
plane has it ``GET /v1/deployments/runs/{id}`` for artifact digests), so it can
be made against any control plane. ``--output json`` prints one
``PromotionPlan``; saved to a file, it is what ``--plan`` reads back.
"""

from __future__ import annotations

from typing import Final, Literal

from compartment_cli.models.api import NameRef, ReadSummary, Wire

PLAN_KIND: Final = "compartment.promotion-plan"
PLAN_VERSION: Final = 1

PlanAction = Literal["promote", "unchanged", "new"]
"""``promote``: the target runs another artifact; ``unchanged``: the same artifact is already
active in the target; ``new``: nothing of the service is active in the target."""


class PlanDeployment(Wire):
    """One active deployment the plan is about."""

    deployment_id: str
    deployment_run_id: str
    artifact_digest: str | None
    """``sha256:…`` where the control plane tells it (ours does), else null."""
    label: str | None = None
    created_at: str | None = None


class PlanService(Wire):
    service_name: str
    action: PlanAction
    source: PlanDeployment
    target: PlanDeployment | None


class PlanTarget(Wire):
    """The target environment: whether it exists, and whether a run holds it now."""

    name: str
    exists: bool
    busy: bool
    deployment_run_id: str | None
    """The run that holds the target when ``busy``."""


class PromotionPlan(Wire):
    kind: str
    version: int
    project: NameRef
    source_environment: NameRef
    environment: PlanTarget
    service_name: str | None
    """The scope: one service (``--service``), or null for every active one."""
    services: list[PlanService]
    digests_known: bool
    """False when the control plane tells no artifact digests: then no service can be
    ``unchanged`` and ``--only-changed`` has nothing to leave out."""
    created_at: str


class NothingToPromote(Wire):
    """``--only-changed`` found every artifact already active in the target: no run."""

    deployment_run_id: None
    status: Literal["unchanged"]
    project: NameRef
    source_environment: NameRef
    environment: NameRef
    deployments: list[ReadSummary]
    active_deployments: list[ReadSummary]
    services: list[PlanService]
    message: str
