"""ApiClient against httpx.MockTransport: error mapping, retries, the token kept out."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from compartment_cli.client.api import (
    TIME_SCALE_ENV,
    ApiClient,
    RetryPolicy,
    open_http_client,
    time_scale,
)
from compartment_cli.errors import ApiRefused, NotAuthorized, Unavailable, UsageError
from compartment_cli.models.api import PromoteRequest

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token-value"
NO_WAIT = RetryPolicy(attempts=3, first_delay=0.0, max_delay=0.0)

SUMMARY = {
    "id": "dep_1",
    "serviceName": "api",
    "deploymentRunId": "run_1",
    "status": "succeeded",
    "promotionStage": "active",
    "health": "healthy",
    "isActive": True,
    "label": None,
    "routeUrl": "http://127.0.0.1:9000",
    "failureMessage": None,
    "createdAt": "2025-01-01T12:00:00Z",
    "completedAt": "2025-01-01T12:00:04Z",
    "rollbackAvailable": False,
    "operation": {
        "type": "promote",
        "status": "succeeded",
        "createdAt": "2025-01-01T12:00:00Z",
        "completedAt": "2025-01-01T12:00:04Z",
    },
    "someFieldFromTheFuture": 1,
}
STATUS = {
    "activeDeployments": [SUMMARY],
    "deployments": [SUMMARY],
    "environment": {"name": "production"},
    "project": {"name": "shop"},
}


def client_for(handler, retry: RetryPolicy = NO_WAIT) -> ApiClient:
    http = open_http_client(
        "http://cp.test/",
        {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
        transport=httpx.MockTransport(handler),
    )
    return ApiClient(http, retry=retry)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_status_sends_query_and_headers_and_ignores_unknown_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=STATUS)

    api = client_for(handler)
    status = await api.status("shop", "production", deployment_id="dep_1")
    assert status.deployments[0].route_url == "http://127.0.0.1:9000"
    (request,) = seen
    assert request.url.path == "/v1/deployments/status"
    assert dict(request.url.params) == {
        "projectName": "shop",
        "environmentName": "production",
        "deploymentId": "dep_1",
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_api_error_body_keeps_code_and_picks_the_error_kind() -> None:
    cases = {
        404: ("project_not_found", ApiRefused),
        409: ("deployment_target_busy", ApiRefused),
        401: ("unauthorized", NotAuthorized),
        403: ("forbidden", NotAuthorized),
    }
    for status, (code, kind) in cases.items():

        def handler(request: httpx.Request, status=status, code=code) -> httpx.Response:
            return httpx.Response(status, json={"error": {"code": code, "message": "nope"}})

        with pytest.raises(kind) as info:
            await client_for(handler).status("shop", "production")
        assert info.value.code == code
        assert info.value.message == "nope"


async def test_html_5xx_is_retried_then_unavailable_with_a_clear_message() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            502,
            text="<html><body>Bad gateway</body></html>",
            headers={"content-type": "text/html", "x-request-id": "req-9"},
        )

    with pytest.raises(Unavailable) as info:
        await client_for(handler).status("shop", "production")
    assert calls == 3
    assert "HTML page" in info.value.message
    assert "502" in info.value.message
    assert "req-9" in info.value.message


async def test_5xx_then_success_recovers() -> None:
    answers = [httpx.Response(503, text="busy"), httpx.Response(200, json=STATUS)]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    status = await client_for(handler).status("shop", "production")
    assert status.project.name == "shop"


async def test_non_api_404_is_refused_and_names_what_answered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found", headers={"content-type": "text/plain"})

    with pytest.raises(ApiRefused) as info:
        await client_for(handler).list_deployments("shop")
    assert "GET /v1/deployments" in info.value.message
    assert "Compartment control plane" in info.value.message


async def test_unreadable_success_body_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text='{"deployments": [', headers={"content-type": "application/json"}
        )

    with pytest.raises(Unavailable) as info:
        await client_for(handler).list_deployments("shop")
    assert info.value.code == "bad_response"


async def test_get_retries_network_errors_then_gives_up() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadError("connection reset", request=request)

    with pytest.raises(Unavailable) as info:
        await client_for(handler).get_run("run_1")
    assert calls == 3
    assert "after 3 attempts" in info.value.message


async def test_get_run_quotes_the_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"error": {"code": "run_not_found", "message": "no"}})

    with pytest.raises(ApiRefused):
        await client_for(handler).get_run("../x y")
    assert seen[0].url.raw_path == b"/v1/deployments/runs/..%2Fx%20y"


PROMOTE = PromoteRequest(
    project_name="shop", source_environment_name="staging", target_environment_name="production"
)


async def test_post_is_sent_again_only_when_the_connection_never_opened() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(
            409, json={"error": {"code": "deployment_target_busy", "message": "busy"}}
        )

    with pytest.raises(ApiRefused):
        await client_for(handler).promote(PROMOTE)
    assert calls == 2


async def test_post_is_not_sent_again_once_it_may_have_arrived() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(Unavailable) as info:
        await client_for(handler).promote(PROMOTE)
    assert calls == 1
    assert "not sent again" in info.value.message


async def test_post_5xx_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}})

    with pytest.raises(Unavailable):
        await client_for(handler).promote(PROMOTE)
    assert calls == 1


async def test_promote_body_is_the_strict_request() -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["content-type"] == "application/json"
        return httpx.Response(500, text="x")

    with pytest.raises(Unavailable):
        await client_for(handler).promote(PROMOTE)
    assert bodies == [
        {
            "projectName": "shop",
            "sourceEnvironmentName": "staging",
            "targetEnvironmentName": "production",
        }
    ]


async def test_deploy_streams_the_archive_with_its_length(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"x" * 600_000)
    received: list[tuple[str, int]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        received.append((request.headers["content-type"], len(body)))
        assert request.headers["content-length"] == "600000"
        return httpx.Response(400, json={"error": {"code": "invalid_archive", "message": "bad"}})

    with pytest.raises(ApiRefused):
        await client_for(handler).deploy(archive)
    assert received == [("application/gzip", 600_000)]


async def test_token_never_in_messages_even_when_the_server_echoes_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"error": {"code": "unauthorized", "message": f"bad token {TOKEN}"}}
        )

    with pytest.raises(NotAuthorized) as info:
        await client_for(handler).status("shop", "production")
    assert TOKEN not in info.value.message
    assert "***" in info.value.message


async def test_unsupported_scheme_is_a_usage_error() -> None:
    http = open_http_client("ftp://cp.test", {})
    with pytest.raises(UsageError):
        await ApiClient(http, retry=NO_WAIT).status("shop", "production")


def test_retry_policy_backs_off_and_is_bounded() -> None:
    policy = RetryPolicy(attempts=5, first_delay=1.0, max_delay=3.0)
    delays = list(policy.delays())
    assert len(delays) == 4
    assert 0.8 <= delays[0] <= 1.0
    assert all(d <= 3.0 for d in delays)
    assert delays[-1] >= 2.4


@pytest.mark.parametrize(
    ("value", "scale"),
    [("0.1", 0.1), (" 0.5 ", 0.5), ("1", 1.0), ("", 1.0), ("0", 1.0), ("-1", 1.0),
     ("10", 1.0), ("nan", 1.0), ("fast", 1.0)],
)  # fmt: skip
def test_the_hidden_time_scale_only_shortens(value: str, scale: float) -> None:
    assert time_scale({TIME_SCALE_ENV: value}) == scale


def test_the_time_scale_shortens_a_real_commands_retries(tmp_path: Path) -> None:
    # Nothing listens on the port: every attempt is refused at once, so the command's
    # length is its retry pauses (0.25 + 0.5 + 1 s, less jitter, at full length).
    import socket
    import subprocess
    import time

    from tests.support import COMPARTMENT, clean_environ

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    args = [COMPARTMENT, "deployment", "list", "--project", "shop", "--api-url", url]
    lengths = []
    for scale in ("1", "0.01"):
        started = time.monotonic()
        env = clean_environ(COMPARTMENT_CLI_CONFIG_DIR=str(tmp_path), **{TIME_SCALE_ENV: scale})
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        lengths.append(time.monotonic() - started)
        assert done.returncode == 5, done.stderr
        assert "after 4 attempts" in done.stderr
    assert lengths[0] >= 1.4
    assert lengths[1] < lengths[0] - 1.0
