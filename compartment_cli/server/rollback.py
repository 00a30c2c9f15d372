"""Rollback admission: which earlier deployments a rollback request brings back.

The platform's three modes and rules (``POST /v1/deployments/rollback``):

* no target: each active service (or the one named) goes back to its previous
  deployment, the newest one that succeeded, is not active and whose artifact is
  still available;
* ``targetDeploymentRunId``: that earlier run's deployments of this environment, which
  must cover every active service (``rollback_run_topology_mismatch`` otherwise);
* ``targetDeploymentId``: one service to that deployment; ``serviceName`` is needed when
  the project has several services (``rollback_service_required``).

A target must have succeeded and not be active (``rollback_target_not_found``), and its
artifact must still be stored: ``deployment_image_cleaned`` when retention removed it,
``deployment_image_not_available`` when it is gone otherwise. Admission then starts the
targets again from their artifacts as new deployments of a ``rollback`` run, gated by
readiness and switched like a promotion.
"""

from __future__ import annotations

from compartment_cli.models.api import RollbackRequest
from compartment_cli.server.errors import Refusal, environment_not_found, project_not_found
from compartment_cli.server.store import Deployment, Environment, Project, Store
from compartment_cli.server.summaries import Summaries

INVALID = "invalid_rollback_deployment_request"


def target_not_found(detail: str) -> Refusal:
    return Refusal(404, "rollback_target_not_found", f"no valid rollback target: {detail}")


def require_reusable(deployment: Deployment, summaries: Summaries) -> Deployment:
    """The platform's refusals of a deployment whose artifact cannot start again."""
    state = summaries.image_state(deployment.artifact_digest)
    if state == "cleaned":
        raise Refusal(
            409,
            "deployment_image_cleaned",
            f"the artifact of {deployment.service_name} ({deployment.id}) was removed by"
            " retention (compartment server --keep)",
        )
    if state == "missing":
        raise Refusal(
            409,
            "deployment_image_not_available",
            f"the artifact of {deployment.service_name} ({deployment.id}) is not available",
        )
    return deployment


def resolve_rollback(
    request: RollbackRequest, store: Store, summaries: Summaries
) -> tuple[Project, Environment, list[Deployment]]:
    """The project, the environment and the deployments to start again; a Refusal when the
    request breaks a rule of the platform."""
    if request.target_deployment_id is not None and request.target_deployment_run_id is not None:
        raise Refusal(
            400, INVALID, "Provide either targetDeploymentId or targetDeploymentRunId, not both."
        )
    if request.target_deployment_run_id is not None and request.service_name is not None:
        raise Refusal(
            400, INVALID, "serviceName is not supported when rolling back to a deployment run."
        )
    project = store.project(request.project_name)
    if project is None:
        raise project_not_found(request.project_name)
    environment = store.environment(project.id, request.environment_name)
    if environment is None:
        raise environment_not_found(request.environment_name, project.name)
    services = store.service_names(project.id)
    if request.service_name is not None and request.service_name not in services:
        raise Refusal(
            404,
            "service_not_found",
            f"service {request.service_name!r} not found in project {project.name!r}",
        )
    if request.target_deployment_id is not None:
        targets = [_to_deployment(request, environment, services, store)]
    elif request.target_deployment_run_id is not None:
        targets = _to_run(request.target_deployment_run_id, environment, store)
    else:
        targets = _to_previous(request.service_name, environment, store, summaries)
    return project, environment, [require_reusable(d, summaries) for d in targets]


def _candidate(deployment: Deployment) -> Deployment:
    if deployment.is_active:
        raise target_not_found(f"{deployment.id} ({deployment.service_name}) is already active")
    if deployment.status != "succeeded":
        raise target_not_found(
            f"{deployment.id} ({deployment.service_name}) did not succeed ({deployment.status})"
        )
    return deployment


def _to_deployment(
    request: RollbackRequest, environment: Environment, services: set[str], store: Store
) -> Deployment:
    service = request.service_name
    if service is None and len(services) > 1:
        raise Refusal(
            409,
            "rollback_service_required",
            "Select a service when rolling back to a specific deployment in a multi-service"
            f" project (services: {', '.join(sorted(services))}).",
        )
    deployment = store.deployment(request.target_deployment_id or "")
    if (
        deployment is None
        or deployment.environment_id != environment.id
        or (service is not None and deployment.service_name != service)
    ):
        scope = f"service {service!r} of " if service else ""
        raise Refusal(
            404,
            "deployment_not_found",
            f"deployment {request.target_deployment_id!r} not found in {scope}environment"
            f" {environment.name!r}",
        )
    return _candidate(deployment)


def _to_run(run_id: str, environment: Environment, store: Store) -> list[Deployment]:
    deployments = [d for d in store.run_deployments(run_id) if d.environment_id == environment.id]
    if not deployments:
        raise Refusal(
            404,
            "deployment_not_found",
            f"deployment run {run_id!r} has no deployments in environment {environment.name!r}",
        )
    covered = {d.service_name for d in deployments}
    uncovered = sorted(
        d.service_name
        for d in store.active_deployments(environment.id)
        if d.service_name not in covered
    )
    if uncovered:
        raise Refusal(
            409,
            "rollback_run_topology_mismatch",
            f"The selected deployment run does not cover all currently active services in this"
            f" environment (not in {run_id}: {', '.join(uncovered)}).",
        )
    return [_candidate(d) for d in deployments]


def _to_previous(
    service: str | None, environment: Environment, store: Store, summaries: Summaries
) -> list[Deployment]:
    active = store.active_deployments(environment.id, service=service)
    if not active:
        scope = f"service {service!r} of " if service else ""
        raise Refusal(
            404,
            "active_deployment_not_found",
            f"nothing is active in {scope}environment {environment.name!r} to roll back",
        )
    targets = []
    for current in active:
        history = store.environment_deployments(environment.id, service=current.service_name)
        previous = next(
            (
                d
                for d in history
                if d.id != current.id
                and d.status == "succeeded"
                and not d.is_active
                and summaries.image_state(d.artifact_digest) == "available"
            ),
            None,
        )
        if previous is None:
            raise target_not_found(
                f"{current.service_name} has no earlier deployment that succeeded and can start"
                " again"
            )
        targets.append(previous)
    return targets
