"""`deployment watch` of a run that has ended: its events replayed from the control plane's
event log (same output as live), its timeline, and its failure told in the past."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.test_promote_e2e import PROMOTE, cli
from tests.support import ControlPlane, result_rows


def test_watch_verbose_of_a_finished_run_replays_it_as_it_was_live(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = project("2.0.0", web={}, api={"ready_after": 1})
    control_plane.deploy_and_wait(directory, "staging")
    live = cli(control_plane, *PROMOTE, "--verbose", "-o", "json", cwd=directory)
    assert live.returncode == 0, live.stderr
    run_id = json.loads(live.stdout)["deploymentRunId"]

    replayed = cli(control_plane, "deployment", "watch", run_id, "--verbose", cwd=directory)

    assert replayed.returncode == 0, replayed.stderr
    live_lines = live.stderr.splitlines()
    replayed_lines = replayed.stderr.splitlines()
    assert f"run {run_id}" in replayed_lines[0]
    # Every step line, in the same order, with the same times and words.
    assert replayed_lines[1:] == live_lines[1:]
    assert any("checking_readiness succeeded" in line for line in replayed_lines)
    assert [row[0] for row in result_rows(replayed.stdout)] == ["api", "web"]


def test_watch_timeline_of_a_finished_run(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = project("2.0.0", web={}, api={"ready_after": 1})
    control_plane.deploy_and_wait(directory, "staging")
    done = cli(control_plane, *PROMOTE, "-o", "json", cwd=directory)
    run_id = json.loads(done.stdout)["deploymentRunId"]

    watched = cli(control_plane, "deployment", "watch", run_id, "--timeline", cwd=directory)

    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[0].startswith("Timeline (")
    api, web = lines[1], lines[2]
    assert api.startswith("api  ")
    assert web.startswith("web  ")
    assert "░" in api
    assert "█" in api
    assert "█" in web
    assert web.count("·") > api.count("·")  # web was ready first and waited for api
    assert [row[0] for row in result_rows(watched.stdout)] == ["api", "web"]


def test_watch_of_a_failed_run_that_ended_says_what_happened_then(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = project(
        "2.0.0",
        web={
            "health_status": 503,
            "readiness": {"type": "http", "path": "/healthz", "timeoutMs": 1000},
        },
        api={},
    )
    done = cli(control_plane, "deploy", "--env", "production", "-o", "json", cwd=directory)
    assert done.returncode == 1
    run_id = json.loads(done.stdout)["deploymentRunId"]

    watched = cli(control_plane, "deployment", "watch", run_id, cwd=directory)

    assert watched.returncode == 1
    assert "production kept serving its previous deployments" in watched.stderr
    assert "keeps serving" not in watched.stderr
