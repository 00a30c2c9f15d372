"""The promotion lifecycle on the real control plane (issue 13): a promotion of exactly a
reviewed plan, a busy target that names its run, rollback in its three modes, the bake with
its switch-back, and retention. Routes are checked through their real TCP ports."""

from __future__ import annotations

from typing import Any

from compartment_cli.models.api import BUSY_RUN_HEADER
from tests.support import ControlPlane, http_get, plane_state

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
