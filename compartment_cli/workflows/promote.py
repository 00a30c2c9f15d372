"""``compartment promote``: request a promotion and follow it to its end."""

from __future__ import annotations

import httpx
import msgspec

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.errors import UsageError
from compartment_cli.models.api import PromoteRequest
from compartment_cli.models.base import ENVIRONMENT_NAME_RULE, PROJECT_NAME_RULE, SERVICE_NAME_RULE
from compartment_cli.models.plan import NothingToPromote, PromotionPlan
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.environments import check_target
from compartment_cli.workflows.follow import (
    Progress,
    RunTarget,
    WaitOptions,
    follow_run,
    target_of,
)
from compartment_cli.workflows.lifecycle import (
    NO_LIFECYCLE,
    Lifecycle,
    promote_checked,
    scoped_request,
    send_when_free,
)
from compartment_cli.workflows.plan import make_plan

__all__ = ["promote", "promote_request", "run_dry_run", "run_promote"]


def promote_request(
    project: str, source: str, target: str, service: str | None = None
) -> PromoteRequest:
    """The request body, checked as strictly as the API checks it (``UsageError`` if not)."""
    body: dict[str, str] = {
        "projectName": project,
        "sourceEnvironmentName": source,
        "targetEnvironmentName": target,
    }
    if service is not None:
        body["serviceName"] = service
    try:
        return msgspec.convert(body, PromoteRequest)
    except msgspec.ValidationError as exc:
        raise UsageError(_explain(str(exc)), code="invalid_name") from None


def _explain(detail: str) -> str:
    flags = {
        "$.projectName": f"--project (a slug: {PROJECT_NAME_RULE})",
        "$.sourceEnvironmentName": f"--from ({ENVIRONMENT_NAME_RULE})",
        "$.targetEnvironmentName": f"--to ({ENVIRONMENT_NAME_RULE})",
        "$.serviceName": f"--service ({SERVICE_NAME_RULE})",
    }
    for path, flag in flags.items():
        if path in detail:
            return f"invalid {flag}: {detail.split(' - at ')[0]}"
    return detail


async def promote(
    http: httpx.AsyncClient,
    request: PromoteRequest,
    progress: Progress,
    wait: WaitOptions,
    *,
    create_env: bool = False,
    lifecycle: Lifecycle = NO_LIFECYCLE,
) -> RunResult | NothingToPromote:
    """Subscribe to the target's events, check the target's name, POST the promotion, wait
    for its run to end. ``lifecycle``: a plan to apply exactly, ``--only-changed``,
    ``--wait-for-target``, ``--bake`` (``workflows.lifecycle``)."""
    scoped = await scoped_request(
        ApiClient(http, retry=wait.api_retry), request, lifecycle, progress
    )
    if isinstance(scoped, NothingToPromote):
        return scoped
    request, services = scoped

    async def start(api: ApiClient) -> RunTarget:
        check = await check_target(
            api,
            request.project_name,
            request.target_environment_name,
            flag="--to",
            create=create_env,
            progress=progress,
        )
        admitted = await send_when_free(
            api, lambda: promote_checked(api, request, services, progress), progress, lifecycle
        )
        return target_of(
            admitted,
            source_environment=request.source_environment_name,
            kind="promote",
            existed=check.exists,
        )

    return await follow_run(
        http,
        project=request.project_name,
        environment=request.target_environment_name,
        start=start,
        progress=progress,
        wait=wait,
        kind="promote",
    )


async def run_promote(
    connection: Connection,
    request: PromoteRequest,
    progress: Progress,
    wait: WaitOptions,
    *,
    create_env: bool = False,
    lifecycle: Lifecycle = NO_LIFECYCLE,
) -> RunResult | NothingToPromote:
    async with open_client(connection) as http:
        return await promote(
            http, request, progress, wait, create_env=create_env, lifecycle=lifecycle
        )


async def run_dry_run(connection: Connection, request: PromoteRequest) -> PromotionPlan:
    """``promote --dry-run``: the plan, from reads only."""
    async with open_client(connection) as http:
        return await make_plan(
            ApiClient(http),
            request.project_name,
            request.source_environment_name,
            request.target_environment_name,
            request.service_name,
        )
