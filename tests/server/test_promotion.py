"""Promotion on the real control plane: processes, readiness, routes, restarts."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support import ControlPlane, http_get, serving_processes, wait_serving

PROMOTE = {
    "projectName": "shop",
    "sourceEnvironmentName": "staging",
    "targetEnvironmentName": "production",
}


def wait_for_stage(plane: ControlPlane, run_id: str, stage: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(d["promotionStage"] == stage for d in plane.run(run_id)["deployments"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {stage}")


def test_promote_moves_the_staging_artifact_to_production_without_a_rebuild(
    control_plane: ControlPlane, project: Any
) -> None:
    assert control_plane.deploy_and_wait(project("1.0.0"), "staging")["status"] == "succeeded"
    artifacts_before = sorted(p.name for p in (control_plane.data_dir / "artifacts").iterdir())

    response = control_plane.post_promote(**PROMOTE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["environment"]["name"] == "production"
    assert body["project"]["name"] == "shop"
    assert sorted(d["serviceName"] for d in body["deployments"]) == ["api", "web"]
    run = control_plane.wait_run(body["deploymentRunId"])

    assert run["status"] == "succeeded"
    assert run["sourceEnvironment"] == {"name": "staging"}
    production = control_plane.active("shop", "production")
    staging = control_plane.active("shop", "staging")
    for service in ("web", "api"):
        deployment = production[service]
        assert deployment["status"] == "succeeded"
        assert deployment["promotionStage"] == "active"
        assert deployment["health"] == "healthy"
        assert http_get(deployment["routeUrl"]) == f"200 1.0.0 {deployment['id']}"
        assert deployment["routeUrl"] != staging[service]["routeUrl"]
    artifacts_after = sorted(p.name for p in (control_plane.data_dir / "artifacts").iterdir())
    assert artifacts_after == artifacts_before


def test_promote_of_one_service_leaves_the_others_alone(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")
    control_plane.deploy_and_wait(project("2.0.0"), "staging")

    response = control_plane.post_promote(**PROMOTE, serviceName="api")
    assert response.status_code == 200, response.text
    assert [d["serviceName"] for d in response.json()["deployments"]] == ["api"]
    assert control_plane.wait_run(response.json()["deploymentRunId"])["status"] == "succeeded"

    after = control_plane.active("shop", "production")
    assert http_get(after["api"]["routeUrl"]).startswith("200 2.0.0")
    assert after["web"]["id"] == before["web"]["id"]
    assert http_get(after["web"]["routeUrl"]).startswith("200 1.0.0")


def test_route_switches_only_after_the_candidate_is_ready(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    url = control_plane.active("shop", "production")["web"]["routeUrl"]

    response = control_plane.deploy(project("2.0.0", web={"ready_after": 2.5}), "production")
    requested = time.monotonic()
    run_id = response.json()["deploymentRunId"]
    answers_while_waiting: list[tuple[float, str]] = []
    while control_plane.run(run_id)["status"] not in ("succeeded", "failed"):
        answers_while_waiting.append((time.monotonic() - requested, http_get(url)))
        time.sleep(0.1)

    # Old version until the switch (2.5 s of failed readiness), then only the new one.
    # Timed, not counted: a loaded machine answers fewer times, never earlier.
    assert all(answer.startswith("200 ") for _, answer in answers_while_waiting)
    versions = [answer.split()[1] for _, answer in answers_while_waiting]
    old = versions.count("1.0.0")
    assert versions == ["1.0.0"] * old + ["2.0.0"] * (len(versions) - old)
    assert old >= 2
    last_old_at = answers_while_waiting[old - 1][0]
    assert last_old_at >= 2.0, f"the old version stopped answering after {last_old_at:.2f} s"
    assert control_plane.run(run_id)["status"] == "succeeded"
    assert http_get(url).startswith("200 2.0.0")


def test_failing_readiness_leaves_the_old_version_serving(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    before = control_plane.active("shop", "production")["web"]
    failing = project(
        "2.0.0",
        web={"health_status": 503, "readiness": {"type": "http", "timeoutMs": 1500}},
    )

    run = control_plane.deploy_and_wait(failing, "production")

    assert run["status"] == "failed"
    [deployment] = run["deployments"]
    assert deployment["status"] == "failed"
    assert deployment["failureMessage"].startswith("web: ")
    assert "GET /healthz answered 503" in deployment["failureMessage"]
    assert control_plane.active("shop", "production")["web"]["id"] == before["id"]
    assert http_get(before["routeUrl"]) == f"200 1.0.0 {before['id']}"
    assert deployment["id"] not in serving_processes(control_plane.data_dir)


def test_a_candidate_that_exits_fails_at_once(control_plane: ControlPlane, project: Any) -> None:
    started = time.monotonic()
    run = control_plane.deploy_and_wait(project("1.0.0", web={"exit_code": 3}), "production")

    assert run["status"] == "failed"
    assert "exited with code 3" in run["deployments"][0]["failureMessage"]
    assert time.monotonic() - started < 15  # well before the 20 s readiness timeout


def test_when_one_service_fails_no_route_moves(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")
    broken = project(
        "2.0.0",
        web={},
        api={"health_status": 500, "readiness": {"type": "http", "timeoutMs": 1500}},
    )

    run = control_plane.deploy_and_wait(broken, "production")

    assert run["status"] == "failed"
    messages = {d["serviceName"]: d["failureMessage"] for d in run["deployments"]}
    assert messages["api"].startswith("api: readiness GET /healthz answered 500")
    assert messages["web"].startswith("web: not deployed, because api:")
    after = control_plane.active("shop", "production")
    assert {s: d["id"] for s, d in after.items()} == {s: d["id"] for s, d in before.items()}
    for service in ("web", "api"):
        assert http_get(after[service]["routeUrl"]).startswith("200 1.0.0")
    assert set(serving_processes(control_plane.data_dir)) == {d["id"] for d in after.values()}


def test_restart_serves_active_deployments_on_the_same_ports(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")

    assert control_plane.stop() == 0
    assert serving_processes(control_plane.data_dir) == {}
    with pytest.raises(httpx.ConnectError):
        http_get(before["web"]["routeUrl"], timeout=1)
    control_plane.start()

    after = control_plane.active("shop", "production")
    for service in ("web", "api"):
        assert after[service]["routeUrl"] == before[service]["routeUrl"]
        assert wait_serving(after[service]["routeUrl"]) == f"200 1.0.0 {before[service]['id']}"
    assert serving_processes(control_plane.data_dir) == {d["id"]: 1 for d in before.values()}


def test_kill_9_during_a_run_fails_it_and_keeps_the_previous_deployment(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    before = control_plane.active("shop", "production")
    response = control_plane.deploy(project("2.0.0", web={"ready_after": 60}), "production")
    run_id = response.json()["deploymentRunId"]
    wait_for_stage(control_plane, run_id, "awaiting_readiness")

    control_plane.kill()
    control_plane.start()

    run = control_plane.run(run_id)
    assert run["status"] == "failed"
    for deployment in run["deployments"]:
        assert deployment["status"] == "failed"
        assert (
            "control plane stopped while this run was in flight" in (deployment["failureMessage"])
        )
    after = control_plane.active("shop", "production")
    assert {s: d["id"] for s, d in after.items()} == {s: d["id"] for s, d in before.items()}
    for service in ("web", "api"):
        assert wait_serving(after[service]["routeUrl"]) == f"200 1.0.0 {before[service]['id']}"
    # Exactly one process per active deployment: the killed server's are gone.
    assert serving_processes(control_plane.data_dir) == {d["id"]: 1 for d in before.values()}


def test_identical_promotion_joins_the_run_and_a_different_one_is_refused(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={"ready_after": 1.5}, api={}), "staging")

    first = control_plane.post_promote(**PROMOTE)
    again = control_plane.post_promote(**PROMOTE)
    other = control_plane.post_promote(**PROMOTE, serviceName="web")

    assert first.status_code == 200
    run_id = first.json()["deploymentRunId"]
    assert again.status_code == 200
    assert again.json()["deploymentRunId"] == run_id
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "deployment_target_busy"
    assert run_id in other.json()["error"]["message"]
    assert control_plane.wait_run(run_id)["status"] == "succeeded"
    # Once it is over, the same request is a new run.
    assert control_plane.post_promote(**PROMOTE).json()["deploymentRunId"] != run_id


def test_platform_errors_of_promote(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "staging")
    failing = project("1.0.0", web={"exit_code": 1}, api={"exit_code": 1})
    control_plane.deploy_and_wait(failing, "broken")

    def refused(**body: Any) -> tuple[int, str]:
        response = control_plane.post_promote(**body)
        return response.status_code, response.json()["error"]["code"]

    assert refused(**{**PROMOTE, "targetEnvironmentName": "staging"}) == (
        409,
        "source_and_target_environment_match",
    )
    assert refused(**{**PROMOTE, "projectName": "nope"}) == (404, "project_not_found")
    assert refused(**{**PROMOTE, "sourceEnvironmentName": "qa"}) == (404, "environment_not_found")
    assert refused(**PROMOTE, serviceName="db") == (404, "service_not_found")
    assert refused(**{**PROMOTE, "sourceEnvironmentName": "broken"}) == (
        404,
        "active_deployment_not_found",
    )
    assert refused(projectName="shop", sourceEnvironmentName="staging") == (
        400,
        "invalid_promote_deployment_request",
    )
