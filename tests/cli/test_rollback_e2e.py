"""`compartment rollback` and `--bake` as a user runs them: the installed executable against a
real control plane, with the routes' answers showing which version serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_lifecycle_e2e import serves
from tests.cli.test_promote_e2e import PROMOTE, cli, parse_result, staged
from tests.support import ControlPlane, cli_json, plane_state


def two_versions(plane: ControlPlane, project: Any, **v1: Any) -> tuple[Path, str, str]:
    """production ran 1.0.0 (run one), then 2.0.0 (run two): the project dir and both runs."""
    one = plane.deploy_and_wait(project("1.0.0", **v1), "production")
    directory = project("2.0.0")
    two = plane.deploy_and_wait(directory, "production")
    assert (one["status"], two["status"]) == ("succeeded", "succeeded")
    return directory, one["deploymentRunId"], two["deploymentRunId"]


def test_rollback_in_each_mode(control_plane: ControlPlane, project: Any) -> None:
    directory, run_one, run_two = two_versions(control_plane, project)
    api_one = next(
        d["id"] for d in control_plane.run(run_one)["deployments"] if d["serviceName"] == "api"
    )

    previous = cli(control_plane, "rollback", "--env", "production", "-o", "json", cwd=directory)
    assert previous.returncode == 0, previous.stderr
    result = parse_result(previous.stdout)
    assert result["status"] == "succeeded"
    assert sorted(d["serviceName"] for d in result["deployments"]) == ["api", "web"]
    assert serves(control_plane, "production") == {"api": "1.0.0", "web": "1.0.0"}

    whole_run = cli(
        control_plane, "rollback", "--env", "production", "--run", run_two, cwd=directory
    )
    assert whole_run.returncode == 0, whole_run.stderr
    assert whole_run.stdout.splitlines()[0].split()[1:3] == ["rollback", "of"]
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}

    one_service = cli(
        control_plane, "rollback", "--env", "production", "--service", "api", "--to", api_one,
        "--verbose", cwd=directory,
    )  # fmt: skip
    assert one_service.returncode == 0, one_service.stderr
    assert "rollback to production" in one_service.stderr
    assert serves(control_plane, "production") == {"api": "1.0.0", "web": "2.0.0"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run", "run_x", "--to", "dep_x"), "--run and --to exclude each other"),
        (("--run", "run_x", "--service", "api"), "cannot be combined with --service"),
        (("--to", "dep_x"), "--to needs --service: project 'shop' has 2 services"),
    ],
)
def test_rollback_usage_errors(
    control_plane: ControlPlane, project: Any, args: tuple[str, ...], message: str
) -> None:
    directory = project("1.0.0")
    before = plane_state(control_plane)

    done = cli(control_plane, "rollback", "--env", "production", *args, "-o", "json", cwd=directory)

    assert done.returncode == 2
    assert message in cli_json(done.stdout)["error"]["message"]
    assert plane_state(control_plane) == before


def test_a_failing_rollback_leaves_the_current_version_serving(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    directory, _, _ = two_versions(
        control_plane, project, web={"broken_if": broken}, api={"broken_if": broken}
    )
    broken.write_text("1.0.0 no longer starts\n")

    done = cli(control_plane, "rollback", "--env", "production", "-o", "json", cwd=directory)

    assert done.returncode == 1, done.stderr
    assert parse_result(done.stdout)["status"] == "failed"
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}


def test_a_bake_that_fails_switches_back_and_exits_1(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = staged(control_plane, project, "2.0.0", web={"fail_after": 1}, api={})

    done = cli(control_plane, *PROMOTE, "--bake", "5s", "--verbose", "-o", "json", cwd=directory)

    assert done.returncode == 1, done.stderr
    result = parse_result(done.stdout)
    assert result["status"] == "failed"
    failures = " ".join(d["failureMessage"] or "" for d in result["deployments"])
    assert "switched back after" in failures
    assert "  baking" in done.stderr
    assert "  switching_back" in done.stderr
    assert serves(control_plane, "production") == {"api": "1.0.0", "web": "1.0.0"}


def test_a_bake_that_passes(control_plane: ControlPlane, project: Any) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "production")
    directory = staged(control_plane, project, "2.0.0")

    done = cli(control_plane, *PROMOTE, "--bake", "1s", "--verbose", cwd=directory)
    deployed = cli(control_plane, "deploy", "--env", "qa", "--bake", "500ms", cwd=directory)

    assert done.returncode == 0, done.stderr
    assert "  baking" in done.stderr
    assert serves(control_plane, "production") == {"api": "2.0.0", "web": "2.0.0"}
    assert deployed.returncode == 0, deployed.stderr
    assert serves(control_plane, "qa") == {"api": "2.0.0", "web": "2.0.0"}
