"""``compartment rollback``: make earlier deployments active again, and follow the run.

The platform's three modes (``POST /v1/deployments/rollback``):

- only the environment (maybe ``--service``): each active service (or that one) goes back
  to its previous deployment;
- ``--run <runId>``: the deployments of that earlier run become active again;
- ``--service <name> --to <deploymentId>``: one service to that deployment (``--service``
  may be left out when the project has one service only).

The run is followed exactly like a promotion (``follow_run``): same output, same exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import msgspec

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.errors import UsageError
from compartment_cli.models.api import RollbackRequest
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.follow import (
    Progress,
    RunTarget,
    WaitOptions,
    follow_run,
    target_of,
)
from compartment_cli.workflows.lifecycle import NO_LIFECYCLE, Lifecycle, send_when_free

__all__ = ["RollbackOptions", "rollback", "rollback_request", "run_rollback"]


@dataclass(frozen=True)
class RollbackOptions:
    project: str
    environment: str
    service: str | None = None
    to: str | None = None
    """``--to``: a deployment id."""
    run: str | None = None
    """``--run``: an earlier run's id."""
    services_known: int | None = None
    """How many services compartment.yml has (None: no file, ask the control plane)."""
    lifecycle: Lifecycle = NO_LIFECYCLE


def rollback_request(options: RollbackOptions) -> RollbackRequest:
    """The request body for ``options``; the platform's rules as usage errors (exit 2)."""
    if options.run is not None and options.to is not None:
        raise UsageError(
            "--run and --to exclude each other: roll back to a whole earlier run, or one "
            "service to one deployment",
            code="usage_error",
        )
    if options.run is not None and options.service is not None:
        raise UsageError(
            "--run rolls back every service of that run; it cannot be combined with --service",
            code="usage_error",
        )
    body: dict[str, object] = {
        "projectName": options.project,
        "environmentName": options.environment,
    }
    for key, value in (
        ("serviceName", options.service),
        ("targetDeploymentId", options.to),
        ("targetDeploymentRunId", options.run),
        ("bakeMs", options.lifecycle.bake_ms),
    ):
        if value is not None:
            body[key] = value
    try:
        return msgspec.convert(body, RollbackRequest)
    except msgspec.ValidationError as exc:
        raise UsageError(f"invalid rollback: {exc}", code="invalid_name") from None


async def _check_to(api: ApiClient, options: RollbackOptions) -> None:
    """``--to`` without ``--service`` needs a project of one service."""
    if options.to is None or options.service is not None:
        return
    count = options.services_known
    if count is None:
        status = await api.status(options.project, options.environment)
        count = len({d.service_name for d in (*status.active_deployments, *status.deployments)})
    if count > 1:
        raise UsageError(
            f"--to needs --service: project {options.project!r} has {count} services; "
            "name the one to roll back",
            code="usage_error",
        )


async def rollback(
    http: httpx.AsyncClient, options: RollbackOptions, progress: Progress, wait: WaitOptions
) -> RunResult:
    """Subscribe to the environment's events, POST the rollback, wait for its run to end."""
    request = rollback_request(options)
    await _check_to(ApiClient(http, retry=wait.api_retry), options)

    async def start(api: ApiClient) -> RunTarget:
        admitted = await send_when_free(
            api, lambda: api.rollback(request), progress, options.lifecycle
        )
        return target_of(admitted, source_environment=None, kind="rollback")

    return await follow_run(
        http,
        project=options.project,
        environment=options.environment,
        start=start,
        progress=progress,
        wait=wait,
        kind="rollback",
    )


async def run_rollback(
    connection: Connection, options: RollbackOptions, progress: Progress, wait: WaitOptions
) -> RunResult:
    async with open_client(connection) as http:
        return await rollback(http, options, progress, wait)
