"""The lifecycle options against a control plane that does not know our request fields.

The hosted platform's promote request is strict: an unknown key is a 400 naming it. No
such control plane can run here, so it is a fake (httpx.MockTransport) answering as the
platform does. Our own control plane is tested end to end in tests/cli/test_lifecycle_e2e.py.
"""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

from compartment_cli.client.api import ApiClient, open_http_client
from compartment_cli.errors import ApiRefused, ExitCode, UsageError
from compartment_cli.models.api import NameRef, StatusResponse
from compartment_cli.models.plan import PlanDeployment, PlanService
from compartment_cli.workflows.busy import busy_run_id
from compartment_cli.workflows.lifecycle import Lifecycle, promote_checked, send_when_free
from compartment_cli.workflows.promote import promote_request
from tests.workflows.test_follow import deploy_response, read

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Platform:
    """Refuses our keys as the platform's strict request schema does; records every POST."""

    def __init__(self, active: str) -> None:
        self.active = active
        self.posts: list[dict[str, object]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            status = StatusResponse(
                active_deployments=[read("run_0", self.active, "web", "succeeded", "active")],
                deployments=[],
                environment=NameRef(name="staging"),
                project=NameRef(name="shop"),
            )
            return httpx.Response(200, content=msgspec.json.encode(status))
        body = json.loads(request.content)
        self.posts.append(body)
        unknown = [key for key in ("sourceDeploymentIds", "bakeMs") if key in body]
        if unknown:
            message = f"Unrecognized key(s) in object: {', '.join(repr(k) for k in unknown)}"
            error = {"error": {"code": "invalid_promote_deployment_request", "message": message}}
            return httpx.Response(400, json=error)
        return httpx.Response(200, content=deploy_response())


PLANNED = [
    PlanService(
        service_name="web",
        action="promote",
        source=PlanDeployment(
            deployment_id="dep_web_1", deployment_run_id="run_0", artifact_digest=None
        ),
        target=None,
    )
]
REQUEST = msgspec.structs.replace(
    promote_request("shop", "staging", "production"), source_deployment_ids=["dep_web_1"]
)


class Notices:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, message: str) -> None:
        self.lines.append(message)


def client(platform: Platform) -> ApiClient:
    return ApiClient(
        open_http_client("http://cp.test", {}, transport=httpx.MockTransport(platform.handler))
    )


async def test_without_plan_support_the_source_is_checked_just_before_the_request() -> None:
    platform = Platform(active="dep_web_1")
    notices = Notices()

    admitted = await promote_checked(client(platform), REQUEST, PLANNED, notices)

    assert admitted.response.deployment_run_id == "run_1"
    assert [sorted(p) for p in platform.posts] == [
        ["projectName", "sourceDeploymentIds", "sourceEnvironmentName", "targetEnvironmentName"],
        ["projectName", "sourceEnvironmentName", "targetEnvironmentName"],
    ]
    assert "cannot check the plan itself" in notices.lines[0]


async def test_without_plan_support_a_changed_source_is_refused_and_nothing_sent() -> None:
    platform = Platform(active="dep_web_2")

    with pytest.raises(ApiRefused) as refused:
        await promote_checked(client(platform), REQUEST, PLANNED, Notices())

    assert refused.value.code == "plan_stale"
    assert refused.value.exit_code == ExitCode.REFUSED
    assert "web: dep_web_1 is no longer active (now dep_web_2)" in refused.value.message
    assert len(platform.posts) == 1  # only the refused first attempt


async def test_bake_on_a_control_plane_without_it_is_a_usage_error() -> None:
    platform = Platform(active="dep_web_1")
    api = client(platform)
    request = msgspec.structs.replace(
        promote_request("shop", "staging", "production"), bake_ms=5000
    )

    with pytest.raises(UsageError) as refused:
        await send_when_free(api, lambda: api.promote(request), Notices(), Lifecycle(bake_ms=5000))

    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.code == "bake_not_supported"
    assert "does not support baking" in refused.value.message
    assert "nothing was started" in refused.value.message


def test_the_busy_run_is_read_from_the_message() -> None:
    error = ApiRefused(
        "production is busy: run run_0a1b-2 is promoting web", code="deployment_target_busy"
    )
    assert busy_run_id(error) == "run_0a1b-2"
    assert busy_run_id(ApiRefused("busy", code="deployment_target_busy")) is None
