"""The CLI reads the hosted platform's answers as they are and as they may grow (issue 10).

The hosted platform cannot be real here, so a small stub of its API stands in for
it on a loopback port: it answers like the platform's newest contract (no event
stream, so the CLI polls; ``infrastructureBlocker``, ``reusableImageState`` and
``accessProtected`` present), plus keys and enum values the contract does not have
yet. The real ``compartment`` executable runs against it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conformance import assert_conforms
from tests.support import COMPARTMENT, clean_environ

AT = "2026-03-01T12:00:00.000Z"
NEW_STAGE = "warming_caches"  # a promotionStage the contract does not have (yet)
NEW_STATUS = "paused"  # a status the contract does not have (yet)


def read_summary(stage: str, status: str, *, active: bool, done: bool) -> dict[str, Any]:
    return {
        "id": "dep_1",
        "serviceName": "api",
        "deploymentRunId": "run_1",
        "status": status,
        "promotionStage": stage,
        "health": "healthy" if done else "pending",
        "isActive": active,
        "label": None,
        "routeUrl": "https://api.shop.example.com/",
        "failureMessage": None,
        "createdAt": AT,
        "completedAt": AT if done else None,
        "rollbackAvailable": False,
        "operation": {"type": "promote", "status": status, "createdAt": AT, "completedAt": None},
        "accessProtected": True,
        "reusableImageState": "available",
        "regionHint": "eu-west",  # a key a later contract may add
    }


class HostedStub:
    """The platform's answers for one promotion of ``api`` from staging to production."""

    def __init__(self) -> None:
        self.polls = 0
        self.requests: list[str] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/deployments/promote", self.promote, methods=["POST"]),
                Route("/v1/deployments/status", self.status),
                Route("/v1/deployments", self.listing),
            ]
        )

    async def promote(self, request: Request) -> JSONResponse:
        self.requests.append(f"POST {request.url.path}")
        summary = read_summary(NEW_STAGE, "running", active=False, done=False)
        del summary["deploymentRunId"]
        summary["operation"].update(id="op_1", targetType="deployment", targetId="dep_1")
        summary["build"] = {
            "env": [],
            "include": [],
            "packages": {"build": [], "runtime": []},
            "strategy": "auto",
            "cacheKey": "new",
        }
        summary["run"] = {}
        summary["readiness"] = None
        body = {
            "deploymentRunId": "run_1",
            "deployments": [summary],
            "environment": {
                "id": "env_1",
                "name": "production",
                "projectId": "prj_1",
                "createdAt": AT,
                "updatedAt": AT,
            },
            "project": {
                "id": "prj_1",
                "name": "shop",
                "organizationId": "org_1",
                "archivedAt": None,
                "createdAt": AT,
                "updatedAt": AT,
            },
            "resources": [],
            "estimatedSeconds": 12,  # a key a later contract may add
        }
        return JSONResponse(body)

    async def status(self, request: Request) -> JSONResponse:
        self.requests.append(f"GET {request.url.path}")
        self.polls += 1
        done = self.polls >= 3
        stage, status = ("active", "succeeded") if done else (NEW_STAGE, "running")
        summary = read_summary(stage, status, active=done, done=done)
        body = {
            "activeDeployments": [summary] if done else [],
            "deployments": [summary],
            "environment": {"name": "production"},
            "project": {"name": "shop"},
            "infrastructureBlocker": None,
            "quota": {"used": 1},  # a key a later contract may add
        }
        return JSONResponse(body)

    async def listing(self, request: Request) -> JSONResponse:
        self.requests.append(f"GET {request.url.path}")
        body = {
            "deployments": [read_summary(NEW_STAGE, NEW_STATUS, active=False, done=False)],
            "environment": {"name": "production"},
            "project": {"name": "shop"},
            "nextCursor": None,
        }
        return JSONResponse(body)


@pytest.fixture
def hosted() -> Iterator[tuple[HostedStub, str]]:
    stub = HostedStub()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(stub.app(), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield stub, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def run(api_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_environ(
        COMPARTMENT_API_URL=api_url,
        COMPARTMENT_TOKEN="hosted-token",
        COMPARTMENT_ORG="acme",
        COMPARTMENT_CLI_CONFIG_DIR=str(tmp_path / "config"),
        COMPARTMENT_TEST_TIME_SCALE="0.05",
        NO_COLOR="1",
    )
    return subprocess.run(
        [COMPARTMENT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_stub_answers_in_the_newest_shapes_plus_what_may_come() -> None:
    """The stub is the platform's contract with extra keys: without them, an answer passes."""
    summary = read_summary("active", "succeeded", active=True, done=True)
    del summary["regionHint"]
    assert_conforms("ReadSummary", summary)


def test_promote_follows_a_hosted_promotion_by_polling(
    hosted: tuple[HostedStub, str], tmp_path: Path
) -> None:
    stub, api_url = hosted
    completed = run(
        api_url,
        tmp_path,
        "promote",
        "--project",
        "shop",
        "--from",
        "staging",
        "--to",
        "production",
        "--output",
        "json",
        "--verbose",
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "succeeded"
    [deployment] = result["deployments"]
    assert (deployment["promotionStage"], deployment["status"]) == ("active", "succeeded")
    assert deployment["reusableImageState"] == "available"
    assert deployment["accessProtected"] is True
    assert NEW_STAGE in completed.stderr  # the stage it passed through, shown as it is
    assert stub.polls >= 3


def test_a_new_status_and_stage_are_shown_as_they_are(
    hosted: tuple[HostedStub, str], tmp_path: Path
) -> None:
    _, api_url = hosted
    completed = run(
        api_url, tmp_path, "deployment", "list", "--project", "shop", "--env", "production"
    )
    assert completed.returncode == 0, completed.stderr
    assert NEW_STATUS in completed.stdout
    assert NEW_STAGE in completed.stdout
    as_json = run(
        api_url,
        tmp_path,
        "deployment",
        "list",
        "--project",
        "shop",
        "--env",
        "production",
        "--output",
        "json",
    )
    assert as_json.returncode == 0, as_json.stderr
    [listed] = json.loads(as_json.stdout)["deployments"]
    assert (listed["status"], listed["promotionStage"]) == (NEW_STATUS, NEW_STAGE)
