"""The promotion lifecycle on the real control plane (issue 13): a promotion of exactly a
reviewed plan, a busy target that names its run, rollback in its three modes, the bake with
its switch-back, and retention. Routes are checked through their real TCP ports."""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from compartment_cli.models.api import BUSY_RUN_HEADER
from tests.support import ControlPlane, http_get, plane_state, serving_processes

PROMOTE = {
    "projectName": "shop",
    "sourceEnvironmentName": "staging",
    "targetEnvironmentName": "production",
}


def test_a_stale_plan_is_refused_and_changes_nothing(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "staging")
    planned = control_plane.active("shop", "staging")
    control_plane.deploy_and_wait(project("2.0.0", api={}), "staging")  # api changed since
    now_api = control_plane.active("shop", "staging")["api"]["id"]
    before = plane_state(control_plane)

    response = control_plane.post_promote(
        **PROMOTE, sourceDeploymentIds=[d["id"] for d in planned.values()]
    )

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "plan_stale"
    assert f"api: the plan has {planned['api']['id']}, {now_api} is active now" in error["message"]
    assert "web" not in error["message"]
    assert plane_state(control_plane) == before


def test_a_plan_that_still_holds_is_promoted(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "staging")
    planned = control_plane.active("shop", "staging")

    response = control_plane.post_promote(
        **PROMOTE, sourceDeploymentIds=[d["id"] for d in planned.values()]
    )

    assert response.status_code == 200, response.text
    assert control_plane.wait_run(response.json()["deploymentRunId"])["status"] == "succeeded"
    production = control_plane.active("shop", "production")
    assert http_get(production["web"]["routeUrl"]).startswith("200 1.0.0")


def test_a_busy_target_names_the_run_that_holds_it(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={"ready_after": 1.5}), "staging")
    first = control_plane.post_promote(**PROMOTE)
    control_plane.deploy_and_wait(project("2.0.0", web={}), "staging")

    busy = control_plane.post_promote(**PROMOTE)

    run_id = first.json()["deploymentRunId"]
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "deployment_target_busy"
    assert run_id in busy.json()["error"]["message"]
    assert busy.headers[BUSY_RUN_HEADER] == run_id
    # The error keeps the platform's strict shape: its CLI parses it.
    assert set(busy.json()) == {"error"}
    assert set(busy.json()["error"]) == {"code", "message"}
    control_plane.wait_run(run_id)


# --- rollback ---------------------------------------------------------------------------


def deploy_versions(plane: ControlPlane, project: Any, *versions: str) -> list[dict[str, Any]]:
    """Deploy each version to production in turn; the runs, oldest first."""
    runs = []
    for version in versions:
        run = plane.deploy_and_wait(project(version), "production")
        assert run["status"] == "succeeded", run
        runs.append(run)
    return runs


def rollback_and_wait(plane: ControlPlane, **body: Any) -> dict[str, Any]:
    response = plane.post_rollback(projectName="shop", environmentName="production", **body)
    assert response.status_code == 200, response.text
    return plane.wait_run(response.json()["deploymentRunId"])


def test_rollback_returns_each_service_to_its_previous_deployment(
    control_plane: ControlPlane, project: Any
) -> None:
    deploy_versions(control_plane, project, "1.0.0", "2.0.0")
    replaced = control_plane.active("shop", "production")
    url = replaced["web"]["routeUrl"]
    assert http_get(url).startswith("200 2.0.0")

    run = rollback_and_wait(control_plane)

    assert run["status"] == "succeeded"
    assert run["type"] == "rollback"
    active = control_plane.active("shop", "production")
    for service in ("web", "api"):
        assert http_get(active[service]["routeUrl"]) == f"200 1.0.0 {active[service]['id']}"
        assert active[service]["deploymentRunId"] == run["deploymentRunId"]
    # What it replaced was rolled back, and may itself be rolled back to now.
    [old_web] = [
        d
        for d in control_plane.get(
            "/v1/deployments/status",
            projectName="shop",
            environmentName="production",
            deploymentId=replaced["web"]["id"],
        ).json()["deployments"]
    ]
    assert old_web["promotionStage"] == "rolled_back"
    assert old_web["rollbackAvailable"] is True
    assert old_web["reusableImageState"] == "available"
    assert active["web"]["rollbackAvailable"] is False  # the active one never is


def test_rollback_of_one_service_to_one_deployment(
    control_plane: ControlPlane, project: Any
) -> None:
    first, _, _ = deploy_versions(control_plane, project, "1.0.0", "2.0.0", "3.0.0")
    target = next(d for d in first["deployments"] if d["serviceName"] == "api")

    run = rollback_and_wait(control_plane, serviceName="api", targetDeploymentId=target["id"])

    assert run["status"] == "succeeded"
    active = control_plane.active("shop", "production")
    assert http_get(active["api"]["routeUrl"]).startswith("200 1.0.0")
    assert http_get(active["web"]["routeUrl"]).startswith("200 3.0.0")


def test_rollback_to_a_whole_earlier_run(control_plane: ControlPlane, project: Any) -> None:
    first, _, _ = deploy_versions(control_plane, project, "1.0.0", "2.0.0", "3.0.0")

    run = rollback_and_wait(control_plane, targetDeploymentRunId=first["deploymentRunId"])

    assert run["status"] == "succeeded"
    active = control_plane.active("shop", "production")
    assert {s: http_get(d["routeUrl"]).split()[1] for s, d in active.items()} == {
        "web": "1.0.0",
        "api": "1.0.0",
    }


def test_a_failing_rollback_candidate_leaves_the_current_version_serving(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    control_plane.deploy_and_wait(project("1.0.0", web={"broken_if": broken}), "production")
    control_plane.deploy_and_wait(project("2.0.0", web={}), "production")
    current = control_plane.active("shop", "production")["web"]
    broken.touch()  # 1.0.0 now exits as soon as it starts

    run = rollback_and_wait(control_plane)

    assert run["status"] == "failed"
    [candidate] = run["deployments"]
    assert candidate["failureMessage"].startswith("web: process exited with code 1")
    assert control_plane.active("shop", "production")["web"]["id"] == current["id"]
    assert http_get(current["routeUrl"]) == f"200 2.0.0 {current['id']}"


def test_rollback_refusals_are_the_platform_s(control_plane: ControlPlane, project: Any) -> None:
    [only] = deploy_versions(control_plane, project, "1.0.0")

    def refused(**body: Any) -> tuple[int, str]:
        response = control_plane.post_rollback(
            **{"projectName": "shop", "environmentName": "production", **body}
        )
        return response.status_code, response.json()["error"]["code"]

    before = plane_state(control_plane)
    assert refused() == (404, "rollback_target_not_found")  # nothing before 1.0.0
    assert refused(targetDeploymentId=only["deployments"][0]["id"]) == (
        409,
        "rollback_service_required",
    )
    assert refused(targetDeploymentId="dep_x", targetDeploymentRunId="run_x") == (
        400,
        "invalid_rollback_deployment_request",
    )
    assert refused(serviceName="web", targetDeploymentRunId="run_x") == (
        400,
        "invalid_rollback_deployment_request",
    )
    active_web = next(d for d in only["deployments"] if d["serviceName"] == "web")
    assert refused(serviceName="web", targetDeploymentId=active_web["id"]) == (
        404,
        "rollback_target_not_found",
    )
    assert refused(environmentName="qa") == (404, "environment_not_found")
    assert refused(projectName="nope") == (404, "project_not_found")
    assert refused(serviceName="db") == (404, "service_not_found")
    assert plane_state(control_plane) == before


# --- the bake ---------------------------------------------------------------------------


def step_events(plane: ControlPlane, run_id: str, step: str) -> list[dict[str, Any]]:
    """The ``deployment.step`` events of one step of a run, from the control plane's log."""
    db = sqlite3.connect(f"file:{plane.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT data FROM events WHERE type = 'deployment.step' ORDER BY id")
        events = [json.loads(row[0]) for row in rows]
    finally:
        db.close()
    return [e for e in events if e["deploymentRunId"] == run_id and e["step"] == step]


def test_a_bake_that_fails_switches_back_within_a_probe(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    previous = control_plane.active("shop", "production")["web"]
    url = previous["routeUrl"]
    control_plane.deploy_and_wait(project("2.0.0", web={"fail_after": 1}), "staging")
    answers: list[tuple[float, str]] = []  # (when the answer came, the answer)

    response = control_plane.post_promote(**PROMOTE, bakeMs=20_000)
    run_id = response.json()["deploymentRunId"]
    while control_plane.run(run_id)["status"] not in ("succeeded", "failed"):
        answer = http_get(url)
        answers.append((time.time(), answer))
    answer = http_get(url)
    answers.append((time.time(), answer))

    run = control_plane.run(run_id)
    assert run["status"] == "failed"
    [deployment] = run["deployments"]
    message = deployment["failureMessage"]
    assert re.fullmatch(
        r"switched back after \d+\.\d s: web: readiness GET /healthz answered 503", message
    ), message
    assert float(message.split()[3]) < 5  # a 20 s bake, cut short at its first failure
    [failed] = [e for e in step_events(control_plane, run_id, "baking") if e["status"] == "failed"]
    failed_at = datetime.fromisoformat(failed["at"]).timestamp()
    versions = [(at, answer.split()[1]) for at, answer in answers]
    assert "2.0.0" in [v for _, v in versions]  # it served while it baked
    back_at = next(at for at, v in versions if v == "1.0.0" and at > failed_at)
    print(f"route back on 1.0.0 {back_at - failed_at:.3f} s after the failed probe")
    assert back_at - failed_at < 1.5
    assert all(answer.startswith("200 ") for _, answer in answers)  # never a gap
    assert http_get(url) == f"200 1.0.0 {previous['id']}"
    active = control_plane.active("shop", "production")["web"]
    assert active["id"] == previous["id"]
    assert active["promotionStage"] == "active"
    assert deployment["id"] not in serving_processes(control_plane.data_dir)
    assert [e["status"] for e in step_events(control_plane, run_id, "switching_back")] == [
        "succeeded"
    ]


def test_a_switch_back_lets_requests_in_flight_on_the_new_version_finish(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    url = control_plane.active("shop", "production")["web"]["routeUrl"]
    control_plane.deploy_and_wait(project("2.0.0", web={"fail_after": 1}), "staging")

    run_id = control_plane.post_promote(**PROMOTE, bakeMs=20_000).json()["deploymentRunId"]
    while not step_events(control_plane, run_id, "baking"):
        time.sleep(0.02)
    ids: list[str] = []
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", url + "events?n=6&gap=0.5") as response,
    ):
        # A 3 s stream from the baking version; it fails its probe after about 1 s.
        assert response.status_code == 200
        ids += [line for line in response.iter_lines() if line.startswith("id: ")]
    run = control_plane.wait_run(run_id)

    assert run["status"] == "failed"
    assert run["deployments"][0]["failureMessage"].startswith("switched back after ")
    assert ids == [f"id: {n}" for n in range(6)]  # drained, not cut at the switch back
    assert http_get(url).startswith("200 1.0.0")


def test_a_bake_that_passes_then_drains_the_previous(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    previous = control_plane.active("shop", "production")["web"]
    control_plane.deploy_and_wait(project("2.0.0", web={}), "staging")

    started = time.monotonic()
    response = control_plane.post_promote(**PROMOTE, bakeMs=1500)
    run_id = response.json()["deploymentRunId"]
    while not step_events(control_plane, run_id, "baking"):
        time.sleep(0.02)
    # Baking: the new version serves, the previous one still runs without traffic.
    assert http_get(previous["routeUrl"]).startswith("200 2.0.0")
    assert previous["id"] in serving_processes(control_plane.data_dir)
    run = control_plane.wait_run(run_id)

    assert run["status"] == "succeeded"
    assert time.monotonic() - started >= 1.5
    assert [e["status"] for e in step_events(control_plane, run_id, "baking")] == [
        "running",
        "succeeded",
    ]
    assert previous["id"] not in serving_processes(control_plane.data_dir)
    assert http_get(previous["routeUrl"]).startswith("200 2.0.0")


# --- retention --------------------------------------------------------------------------


def test_retention_keeps_the_newest_deployments_and_refuses_a_cleaned_rollback(
    session_root: Path, project: Any
) -> None:
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="cp-", dir=session_root)))
    plane.start("--keep", "2")
    try:
        runs = deploy_versions(plane, project, "1.0.0", "2.0.0", "3.0.0", "4.0.0")
        promoted = plane.post_promote(
            projectName="shop", sourceEnvironmentName="production", targetEnvironmentName="qa"
        )
        assert plane.wait_run(promoted.json()["deploymentRunId"])["status"] == "succeeded"
        history = plane.get(
            "/v1/deployments", projectName="shop", environmentName="production", limit=100
        ).json()["deployments"]
        qa = plane.active("shop", "qa")

        # Kept: the two newest of each service in production (3.0.0 and 4.0.0, active), and
        # qa's, which share 4.0.0's artifacts. 1.0.0 and 2.0.0 are gone.
        kept = [d for run in runs[2:] for d in run["deployments"]] + list(qa.values())
        gone = [d for run in runs[:2] for d in run["deployments"]]
        digests = all_digests(plane)
        artifacts = settled(plane.data_dir / "artifacts")
        logs = {p.name for p in (plane.data_dir / "logs").iterdir()}
        assert artifacts == {digests[d["id"]] for d in kept}
        assert logs == {f"{d['id']}.{kind}" for d in kept for kind in ("log", "lines")}
        states = {d["id"]: (d["reusableImageState"], d["rollbackAvailable"]) for d in history}
        for deployment in gone:
            assert states[deployment["id"]] == ("cleaned", False)
        for deployment in runs[2]["deployments"]:
            assert states[deployment["id"]] == ("available", True)
        for deployment in runs[3]["deployments"]:
            assert states[deployment["id"]] == ("available", False)  # active

        before = plane_state(plane)
        web_1 = next(d for d in runs[0]["deployments"] if d["serviceName"] == "web")
        refused = plane.post_rollback(
            projectName="shop",
            environmentName="production",
            serviceName="web",
            targetDeploymentId=web_1["id"],
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "deployment_image_cleaned"
        assert web_1["id"] in refused.json()["error"]["message"]
        assert plane_state(plane) == before

        # The previous one that is still stored is what a plain rollback goes back to.
        run = rollback_and_wait(plane)
        assert run["status"] == "succeeded"
        active = plane.active("shop", "production")
        assert http_get(active["web"]["routeUrl"]).startswith("200 3.0.0")
    finally:
        plane.stop()


def settled(directory: Path, timeout: float = 10) -> set[str]:
    """The names in ``directory`` once retention has finished deleting what it removed (it
    renames an artifact away at once, then deletes it in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        names = {p.name for p in directory.iterdir()}
        if not any(n.startswith(".removed-") for n in names) or time.monotonic() > deadline:
            return names
        time.sleep(0.02)


def all_digests(plane: ControlPlane) -> dict[str, str]:
    """Deployment id → the artifact digest it runs, from the control plane's rows."""
    db = sqlite3.connect(f"file:{plane.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT id, artifact_digest FROM deployments").fetchall())
    finally:
        db.close()


def test_the_openapi_document_describes_the_lifecycle(control_plane: ControlPlane) -> None:
    document = control_plane.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    assert {"baking", "switching_back"} <= set(schemas["StepEvent"]["properties"]["step"]["enum"])
    assert set(schemas["RollbackRequest"]["properties"]) == {
        "environmentName",
        "projectName",
        "serviceName",
        "targetDeploymentId",
        "targetDeploymentRunId",
        "bakeMs",
    }
    assert {"sourceDeploymentIds", "bakeMs"} <= set(schemas["PromoteRequest"]["properties"])
    assert "/v1/deployments/rollback" in document["paths"]
