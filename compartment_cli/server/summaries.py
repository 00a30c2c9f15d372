"""Rows of the store as the API's wire shapes: ReadSummary and DeploymentSummary.

A listing costs a fixed number of queries however many deployments it holds:
one for their runs and one for their routes, never one per row. Each
deployment's stored service JSON is decoded once (``Deployment.service``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from compartment_cli.models.api import (
    BuildPackageLists,
    DeploymentSummary,
    OperationStatus,
    OperationSummary,
    ReadOperationSummary,
    ReadSummary,
    ResolvedBuildConfig,
    ResolvedReadinessConfig,
    ResolvedRunConfig,
    ReusableImageState,
)
from compartment_cli.models.descriptor import ROUTED_KINDS
from compartment_cli.server.store import Deployment, Run, Store

if TYPE_CHECKING:
    from compartment_cli.server.artifacts import ArtifactStore

_OPERATION_STATUS: dict[str, OperationStatus] = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "stopped": "succeeded",
}


class Summaries:
    """Maps deployments to wire shapes; route URLs use ``route_host``.

    ``reusableImageState`` is ``available`` while the artifact is stored, ``cleaned`` once
    retention removed it, ``missing`` otherwise; ``rollbackAvailable`` is the platform's
    rule: succeeded, not active, and its artifact available. Without ``artifacts``
    (tests of the shapes alone) every artifact counts as available.
    """

    def __init__(
        self, store: Store, route_host: str, artifacts: ArtifactStore | None = None
    ) -> None:
        self._store = store
        self._route_host = route_host
        self._artifacts = artifacts

    def image_state(self, digest: str) -> ReusableImageState:
        if self._artifacts is None or self._artifacts.exists(digest):
            return "available"
        return "cleaned" if digest in self._store.cleaned_artifacts() else "missing"

    def read(self, deployments: Sequence[Deployment]) -> list[ReadSummary]:
        """The ReadSummary of each deployment, in the same order (two queries in all)."""
        if not deployments:
            return []
        runs = self._store.runs_by_id({d.run_id for d in deployments})
        ports = self._store.routes_of({d.environment_id for d in deployments})
        return [self._read(d, runs[d.run_id], ports) for d in deployments]

    def read_one(self, deployment_id: str) -> ReadSummary:
        deployment = self._store.deployment(deployment_id)
        assert deployment is not None
        return self.read([deployment])[0]

    def deployments(self, deployments: Sequence[Deployment]) -> list[DeploymentSummary]:
        """The DeploymentSummary (a ReadSummary plus the resolved config) of each deployment."""
        return [
            _with_config(read, deployment)
            for read, deployment in zip(self.read(deployments), deployments, strict=True)
        ]

    def _read(
        self, deployment: Deployment, run: Run, ports: dict[tuple[str, str], int]
    ) -> ReadSummary:
        port = ports.get((deployment.environment_id, deployment.service_name))
        routed = deployment.service.kind in ROUTED_KINDS
        image = self.image_state(deployment.artifact_digest)
        return ReadSummary(
            id=deployment.id,
            service_name=deployment.service_name,
            deployment_run_id=deployment.run_id,
            status=deployment.status,
            promotion_stage=deployment.promotion_stage,
            health=deployment.health,
            is_active=bool(deployment.is_active),
            label=None,
            route_url=f"http://{self._route_host}:{port}/" if routed and port else None,
            failure_message=deployment.failure_message,
            created_at=deployment.created_at,
            completed_at=deployment.completed_at,
            rollback_available=(
                deployment.status == "succeeded"
                and not deployment.is_active
                and image == "available"
            ),
            operation=ReadOperationSummary(
                type=run.type,
                status=_OPERATION_STATUS[deployment.status],
                created_at=run.created_at,
                completed_at=deployment.completed_at,
            ),
            # Nothing guards a local route.
            access_protected=False,
            reusable_image_state=image,
        )


def _with_config(read: ReadSummary, deployment: Deployment) -> DeploymentSummary:
    """The write endpoints' shape: the read fields it shares, plus the resolved config."""
    service = deployment.service
    shared = {
        name: getattr(read, name)
        for name in DeploymentSummary.__struct_fields__
        if name in ReadSummary.__struct_fields__ and name != "operation"
    }
    build = service.build
    packages = build.packages if build else None
    return DeploymentSummary(
        **shared,
        # The run is the operation; it acts on this deployment.
        operation=OperationSummary(
            **msgspec.structs.asdict(read.operation),
            id=deployment.run_id,
            target_type="deployment",
            target_id=deployment.id,
        ),
        readiness=(
            ResolvedReadinessConfig(
                path=service.readiness.path, timeout_ms=service.readiness.timeout_ms
            )
            if service.readiness
            else None
        ),
        build=ResolvedBuildConfig(
            command=build.command if build and build.command else msgspec.UNSET,
            env=list(build.env) if build else [],
            include=list(build.include) if build else [],
            output_directory=(
                build.output_directory if build and build.output_directory else msgspec.UNSET
            ),
            packages=BuildPackageLists(
                build=list(packages.build) if packages else [],
                runtime=list(packages.runtime) if packages else [],
            ),
            strategy=build.strategy if build else "auto",
        ),
        run=ResolvedRunConfig(
            command=service.run.command if service.run and service.run.command else msgspec.UNSET
        ),
    )
