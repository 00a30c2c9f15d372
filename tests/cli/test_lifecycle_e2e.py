"""The promotion lifecycle as a user runs it: plan (--dry-run), apply exactly the plan (--plan),
--only-changed, --wait-for-target, --bake, and rollback.

Every test runs the installed `compartment` executable against a real control plane on a
loopback port, with real deployments answering through real routes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_promote_e2e import PROMOTE, cli, parse_result, staged, start_cli
from tests.support import ControlPlane, cli_json, http_get, plane_state, result_rows

# The documented keys of a plan (README, "The promotion lifecycle").
PLAN_KEYS = set(
    [
        "kind",
        "version",
        "project",
        "sourceEnvironment",
        "environment",
        "serviceName",
        "services",
        "digestsKnown",
        "createdAt",
    ]
)


def serves(plane: ControlPlane, environment: str) -> dict[str, str]:
    """What each route of ``environment`` answers (its version), by service."""
    return {
        name: http_get(d["routeUrl"]).split()[1]
        for name, d in plane.active("shop", environment).items()
    }


def hold_production(plane: ControlPlane, project: Any, ready_after: float) -> tuple[Path, str]:
    """staging runs 2.0.0; a deploy to production is in flight (its web gets ready only after
    ``ready_after`` s): the project directory and the run that holds production."""
    directory = staged(plane, project, "2.0.0")
    slow = project("1.0.0", web={"ready_after": ready_after}, api={})
    return directory, plane.deploy(slow, "production").json()["deploymentRunId"]


def mixed_staging(plane: ControlPlane, project: Any) -> Path:
    """production runs 1.0.0 everywhere; staging runs web 2.0.0 and the very api of production."""
    plane.deploy_and_wait(project("1.0.0"), "production")
    return staged(plane, project, web={"version": "2.0.0"}, api={"version": "1.0.0"})


# --- plan: --dry-run -----------------------------------------------------------------------------


def test_dry_run_shows_the_plan_and_changes_nothing(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = mixed_staging(control_plane, project)
    staging = control_plane.active("shop", "staging")
    production = control_plane.active("shop", "production")
    before = plane_state(control_plane)

    done = cli(control_plane, *PROMOTE, "--dry-run", "--output", "json", cwd=directory)
    text = cli(control_plane, *PROMOTE, "--dry-run", cwd=directory)
    new_target = cli(
        control_plane, "promote", "--from", "staging", "--to", "qa", "--dry-run", "-o", "json",
        cwd=directory,
    )  # fmt: skip

    assert plane_state(control_plane) == before  # no run, no environment, no file
    assert done.returncode == 0, done.stderr
    plan = cli_json(done.stdout)
    assert set(plan) == PLAN_KEYS
    assert plan["environment"] == {
        "name": "production",
        "exists": True,
        "busy": False,
        "deploymentRunId": None,
    }
    assert plan["digestsKnown"] is True
    by_service = {s["serviceName"]: s for s in plan["services"]}
    assert {name: s["action"] for name, s in by_service.items()} == {
        "api": "unchanged",
        "web": "promote",
    }
    for name, entry in by_service.items():
        assert entry["source"]["deploymentId"] == staging[name]["id"]
        assert entry["source"]["createdAt"] == staging[name]["createdAt"]
        assert entry["source"]["artifactDigest"].startswith("sha256:")
        assert entry["target"]["deploymentId"] == production[name]["id"]
    assert (
        by_service["api"]["source"]["artifactDigest"]
        == (by_service["api"]["target"]["artifactDigest"])
    )
    assert (
        by_service["web"]["source"]["artifactDigest"]
        != (by_service["web"]["target"]["artifactDigest"])
    )

    assert text.returncode == 0, text.stderr
    rows = {row[0]: row for row in result_rows(text.stdout)}
    assert rows["api"][1] == "unchanged"
    assert rows["web"][1] == "promote"
    assert "production (exists)" in text.stdout.splitlines()[0]

    assert new_target.returncode == 0, new_target.stderr
    qa = cli_json(new_target.stdout)
    assert qa["environment"]["exists"] is False
    assert {s["action"] for s in qa["services"]} == {"new"}
    assert [s["target"] for s in qa["services"]] == [None, None]


def test_dry_run_names_the_run_that_holds_the_target(
    control_plane: ControlPlane, project: Any
) -> None:
    directory, holder = hold_production(control_plane, project, 3)

    done = cli(control_plane, *PROMOTE, "--dry-run", "-o", "json", cwd=directory)

    assert done.returncode == 0, done.stderr
    environment = cli_json(done.stdout)["environment"]
    assert environment["busy"] is True
    assert environment["deploymentRunId"] == holder
    control_plane.wait_run(holder)


# --- apply exactly a plan: --plan ----------------------------------------------------------------


def test_plan_applies_and_is_refused_once_the_source_changed(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = staged(control_plane, project, "2.0.0")
    plan_file = tmp_path / "plan.json"
    made = cli(control_plane, *PROMOTE, "--dry-run", "-o", "json", cwd=directory)
    plan_file.write_text(made.stdout)

    # Someone deploys 3.0.0 of web to staging after the plan was reviewed.
    assert control_plane.deploy_and_wait(project("3.0.0"), "staging", "web")["status"] == (
        "succeeded"
    )
    stale = cli(control_plane, *PROMOTE, "--plan", str(plan_file), "-o", "json", cwd=directory)

    assert stale.returncode == 3, stale.stderr
    error = cli_json(stale.stdout)["error"]
    assert error["code"] == "plan_stale"
    assert "web" in error["message"]
    assert "api" not in error["message"]
    assert serves(control_plane, "production") == {"api": "1.0.0", "web": "1.0.0"}

    # A plan made now applies: exactly its deployments, and nothing else.
    plan_file.write_text(
        cli(control_plane, *PROMOTE, "--dry-run", "-o", "json", cwd=directory).stdout
    )
    applied = cli(control_plane, *PROMOTE, "--plan", str(plan_file), "-o", "json", cwd=directory)

    assert applied.returncode == 0, applied.stderr
    assert parse_result(applied.stdout)["status"] == "succeeded"
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "3.0.0"}


def test_plan_must_match_the_flags(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    directory = staged(control_plane, project, "2.0.0")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(
        cli(control_plane, *PROMOTE, "--dry-run", "-o", "json", cwd=directory).stdout
    )
    before = plane_state(control_plane)

    other = cli(
        control_plane, "promote", "--from", "staging", "--to", "qa", "--plan", str(plan_file),
        cwd=directory,
    )  # fmt: skip
    plan_file_broken = tmp_path / "broken.json"
    plan_file_broken.write_text('{"kind": "something else"}')
    broken = cli(control_plane, *PROMOTE, "--plan", str(plan_file_broken), cwd=directory)

    assert other.returncode == 2
    assert "--to 'qa' but the plan's is 'production'" in other.stderr
    assert broken.returncode == 2
    assert "broken.json" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert plane_state(control_plane) == before


# --- --only-changed ------------------------------------------------------------------------------


def test_only_changed_leaves_out_what_is_already_active(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = mixed_staging(control_plane, project)
    production = control_plane.active("shop", "production")

    first = cli(control_plane, *PROMOTE, "--only-changed", "-o", "json", cwd=directory)

    assert first.returncode == 0, first.stderr
    result = parse_result(first.stdout)
    assert [d["serviceName"] for d in result["deployments"]] == ["web"]
    after = control_plane.active("shop", "production")
    assert after["api"]["id"] == production["api"]["id"]  # left alone
    assert serves(control_plane, "production") == {"api": "1.0.0", "web": "2.0.0"}

    before = plane_state(control_plane)
    again = cli(control_plane, *PROMOTE, "--only-changed", "-o", "json", cwd=directory)
    again_text = cli(control_plane, *PROMOTE, "--only-changed", cwd=directory)

    assert again.returncode == 0, again.stderr
    document = cli_json(again.stdout)
    assert document["status"] == "unchanged"
    assert document["deploymentRunId"] is None
    assert document["deployments"] == []
    assert again_text.returncode == 0
    assert "nothing to promote" in again_text.stdout
    assert plane_state(control_plane) == before  # no run


# --- --wait-for-target ---------------------------------------------------------------------------


def test_a_busy_target_is_waited_for_then_promoted(
    control_plane: ControlPlane, project: Any
) -> None:
    directory, holder = hold_production(control_plane, project, 2)

    refused = cli(control_plane, *PROMOTE, "-o", "json", cwd=directory)
    started = time.monotonic()
    waited = cli(
        control_plane, *PROMOTE, "--wait-for-target", "60s", "--verbose", "-o", "json",
        cwd=directory,
    )  # fmt: skip
    took = time.monotonic() - started

    assert refused.returncode == 3
    error = cli_json(refused.stdout)["error"]
    assert error["code"] == "deployment_target_busy"
    assert error["deploymentRunId"] == holder  # the run to follow
    assert waited.returncode == 0, waited.stderr
    assert f"busy with run {holder}" in waited.stderr
    assert f"run {holder} ended succeeded" in waited.stderr
    assert control_plane.run(holder)["status"] == "succeeded"
    assert parse_result(waited.stdout)["deploymentRunId"] != holder
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}
    assert took < 30


def test_deploy_waits_for_a_busy_target_too(control_plane: ControlPlane, project: Any) -> None:
    directory, holder = hold_production(control_plane, project, 2)

    done = cli(
        control_plane, "deploy", "--env", "production", "--wait-for-target", "60s", "--verbose",
        cwd=directory,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"busy with run {holder}" in done.stderr
    assert control_plane.run(holder)["status"] == "succeeded"
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}


def test_wait_for_target_is_bounded(control_plane: ControlPlane, project: Any) -> None:
    directory, holder = hold_production(control_plane, project, 8)

    started = time.monotonic()
    done = cli(control_plane, *PROMOTE, "--wait-for-target", "1s", "-o", "json", cwd=directory)
    took = time.monotonic() - started

    assert done.returncode == 3
    error = cli_json(done.stdout)["error"]
    assert error["code"] == "deployment_target_busy"
    assert "still busy after waiting 1s" in error["message"]
    assert error["deploymentRunId"] == holder
    assert took < 6  # the holder needs 8 s

    started = time.monotonic()
    bounded = cli(
        control_plane, *PROMOTE, "--wait-for-target", "60s", "--timeout", "3s", "-o", "json",
        cwd=directory,
    )  # fmt: skip
    assert bounded.returncode == 3  # still busy, not a timeout: nothing was started
    assert "--wait-for-target and --timeout" in cli_json(bounded.stdout)["error"]["message"]
    assert time.monotonic() - started < 6
    control_plane.wait_run(holder)


def test_second_of_two_promotes_waits_for_the_first(
    control_plane: ControlPlane, project: Any
) -> None:
    """Two different moves into production: qa → production holds it; staging → production
    waits for it with --wait-for-target and then goes ahead."""
    directory = staged(control_plane, project, "2.0.0")
    assert (
        control_plane.deploy_and_wait(project("3.0.0", web={"ready_after": 2}, api={}), "qa")[
            "status"
        ]
        == "succeeded"
    )
    first = start_cli(
        control_plane, "promote", "--from", "qa", "--to", "production", "-o", "json",
        cwd=directory,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not control_plane.get(
        "/v1/deployments/status", projectName="shop", environmentName="production"
    ).is_success or all(
        d["status"] not in ("queued", "running")
        for d in control_plane.get(
            "/v1/deployments/status", projectName="shop", environmentName="production"
        ).json()["deployments"]
    ):
        assert time.monotonic() < deadline, "the first promotion never started"
        time.sleep(0.02)

    second = cli(control_plane, *PROMOTE, "--wait-for-target", "60s", "-o", "json", cwd=directory)
    out, err = first.communicate(timeout=60)

    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert parse_result(second.stdout)["deploymentRunId"] != cli_json(out)["deploymentRunId"]
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}


# --- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dry-run", "--only-changed"), "--dry-run changes nothing"),
        (("--wait-for-target", "soon"), "--wait-for-target 'soon' is not a duration"),
        (("--bake", "0"), "--bake must be above 0"),
        (("--bake", "2h"), "--bake '2h' is over the limit of 1h"),
    ],
)
def test_lifecycle_flags_refused_before_anything(
    control_plane: ControlPlane, project: Any, args: tuple[str, ...], message: str
) -> None:
    directory = project("1.0.0")
    before = plane_state(control_plane)

    done = cli(control_plane, *PROMOTE, *args, cwd=directory)

    assert done.returncode == 2
    assert message in done.stderr
    assert plane_state(control_plane) == before
