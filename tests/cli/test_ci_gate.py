"""compartment promote as a CI gate (issue 11): a mistyped target never passes, every JSON
document names the run, a joined run says so, a closed pipe changes no exit code."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.cli.test_promote_e2e import (
    PROMOTE,
    cli,
    failing_in_production,
    parse_result,
    staged,
    start_cli,
)
from tests.support import ControlPlane, cli_json


def environments(plane: ControlPlane) -> list[str]:
    response = plane.get("/v1/environments", projectName="shop")
    response.raise_for_status()
    return [e["name"] for e in response.json()["environments"]]


# --- the target named and checked ------------------------------------------------------------


def test_a_near_typo_of_an_environment_is_refused_and_nothing_is_created(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory = staged(plane, project)
    first = cli(plane, *PROMOTE, "-o", "json", cwd=directory)
    assert first.returncode == 0, first.stderr
    assert parse_result(first.stdout)["environmentCreated"] is True  # production is new
    before = environments(plane)
    assert before == ["production", "staging"]

    for typo in ("prodution", "Production", "production_", "stagign"):
        done = cli(plane, "promote", "--from", "staging", "--to", typo, cwd=directory)
        assert done.returncode == 2, (typo, done.stderr)
        suggestion = "staging" if typo == "stagign" else "production"
        assert f"did you mean {suggestion}?" in done.stderr
        assert "--create-env" in done.stderr
        assert done.stdout == ""
    as_json = cli(plane, "promote", "--from", "staging", "--to", "prodution", "-o", "json",
                  cwd=directory)  # fmt: skip
    assert as_json.returncode == 2
    assert cli_json(as_json.stdout)["error"]["code"] == "environment_name_suspect"
    assert environments(plane) == before  # nothing was created

    created = cli(plane, "promote", "--from", "staging", "--to", "prodution", "--create-env",
                  "-o", "json", cwd=directory)  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = parse_result(created.stdout)
    assert (result["environment"], result["environmentCreated"]) == ({"name": "prodution"}, True)
    assert "prodution" in environments(plane)


def test_a_new_name_not_close_to_any_is_created_and_the_text_says_so(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory = staged(plane, project)
    new = cli(plane, "promote", "--from", "staging", "--to", "qa-east", cwd=directory)
    assert new.returncode == 0, new.stderr
    header = new.stdout.splitlines()[0]
    assert "staging → qa-east (new environment)" in header
    again = cli(plane, "promote", "--from", "staging", "--to", "qa-east", cwd=directory)
    assert again.returncode == 0, again.stderr
    assert "(new environment)" not in again.stdout
    assert "staging → qa-east" in again.stdout.splitlines()[0]
    # deploy --env is checked the same way
    typo = cli(plane, "deploy", "--env", "qa_east", cwd=directory)
    assert typo.returncode == 2
    assert "did you mean qa-east?" in typo.stderr


# --- every JSON document names the run -------------------------------------------------------


def test_a_timeout_names_the_run_in_json_and_watch_follows_it(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory = staged(plane, project, "2.0.0", web={"ready_after": 3}, api={})
    done = cli(plane, *PROMOTE, "--timeout", "1s", "-o", "json", cwd=directory)
    assert done.returncode == 124, done.stderr
    error = cli_json(done.stdout)["error"]
    run_id = error["deploymentRunId"]
    assert run_id.startswith("run_")
    assert (error["project"], error["environment"]) == ({"name": "shop"}, {"name": "production"})
    assert error["exitCode"] == 124

    watched = cli(plane, "deployment", "watch", run_id, "-o", "json", cwd=directory)
    assert watched.returncode == 0, watched.stderr
    result = parse_result(watched.stdout)
    assert result["deploymentRunId"] == run_id
    # the duration is the control plane's: its first deployment created → its last completed
    run = plane.run(run_id)
    assert result["durationMs"] == _span_ms(run["deployments"])


def _span_ms(deployments: list[dict[str, Any]]) -> int:
    from datetime import datetime

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    start = min(at(d["createdAt"]) for d in deployments)
    end = max(at(d["completedAt"]) for d in deployments)
    return int((end - start).total_seconds() * 1000)


def promotion_under_way(
    plane: ControlPlane, project: Any, *args: str
) -> tuple[Path, subprocess.Popen[str], str]:
    """A promotion whose web service takes 3 s to get ready, started with ``--verbose``:
    its directory, its process, and its run id, read from its first progress line."""
    directory = staged(plane, project, "2.0.0", web={"ready_after": 3}, api={})
    process = start_cli(plane, *PROMOTE, "--verbose", *args, cwd=directory)
    assert process.stderr is not None
    line = process.stderr.readline()
    assert " run run_" in line, line
    return directory, process, line.split(" run ")[1].split()[0]


def test_an_identical_promotion_joins_the_run_and_says_so_with_the_same_duration(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory, first, run_id = promotion_under_way(plane, project, "-o", "json")
    text_process = start_cli(plane, *PROMOTE, cwd=directory)
    as_json = cli(plane, *PROMOTE, "-o", "json", cwd=directory)
    text, _ = text_process.communicate(timeout=60)
    stdout, _ = first.communicate(timeout=60)

    assert first.returncode == 0
    assert text_process.returncode == 0
    assert f"joined run {run_id} already in progress" in text.splitlines()[0]
    started, joined = parse_result(stdout), parse_result(as_json.stdout)
    assert started["deploymentRunId"] == joined["deploymentRunId"] == run_id
    assert (started["joined"], joined["joined"]) == (False, True)
    assert joined["environmentCreated"] is False  # the first one created production
    assert started["durationMs"] == joined["durationMs"] >= 3000
    assert f"{started['durationMs'] / 1000:.1f}s" in text.splitlines()[0]
    watched = cli(plane, "deployment", "watch", run_id, "-o", "json", cwd=directory)
    assert parse_result(watched.stdout)["durationMs"] == started["durationMs"]


def test_interrupted_and_unreachable_name_the_run_only_once_it_exists(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory, process, run_id = promotion_under_way(plane, project, "-o", "json")
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    error = cli_json(stdout)["error"]
    assert (error["deploymentRunId"], error["environment"]) == (run_id, {"name": "production"})
    plane.wait_run(run_id)

    plane.stop()
    down = cli(plane, *PROMOTE, "-o", "json", cwd=directory)
    assert down.returncode == 5
    assert "deploymentRunId" not in cli_json(down.stdout)["error"]  # no run was started


# --- a closed pipe -----------------------------------------------------------------------------


def test_a_reader_that_closes_early_changes_no_exit_code(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory = staged(plane, project, "2.0.0", web={"ready_after": 1}, api={})
    # The user's pipeline: `head` leaves after two lines; pipefail reports the CLI's code.
    script = "set -o pipefail; compartment promote --from staging --to production --verbose"
    script += " 2>&1 | head -2"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=directory,
        env={**plane.env, "PATH": f"{_bin()}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    assert len(done.stdout.splitlines()) == 2

    # Both streams closed early, by a reader that stops after the first line of progress.
    back = ("promote", "--from", "production", "--to", "staging", "--verbose")
    assert exit_code_with_the_reader_gone(plane, back, directory) == 0


def exit_code_with_the_reader_gone(plane: ControlPlane, args: tuple[str, ...], cwd: Path) -> int:
    """``compartment *args``' exit code when stdout and stderr are closed after one line."""
    process = start_cli(plane, *args, cwd=cwd)
    assert process.stdout is not None
    assert process.stderr is not None
    process.stderr.readline()
    process.stderr.close()
    process.stdout.close()
    return process.wait(60)


def _bin() -> str:
    from tests.support import BIN

    return str(BIN)


def test_a_failed_promotion_still_exits_1_with_its_reader_gone(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = failing_in_production(control_plane, project)
    assert exit_code_with_the_reader_gone(control_plane, (*PROMOTE, "--verbose"), directory) == 1


# --- what to do about a connection or auth error -----------------------------------------------


def test_a_stopped_local_server_asks_whether_it_runs_from_every_command(
    control_plane: ControlPlane, project: Any
) -> None:
    plane = control_plane
    directory = staged(plane, project)
    plane.stop()
    config = plane.config_dir / "config.json"
    expected = (
        f'The control plane\'s URL {plane.api_url} came from remote "local" in {config}; '
        "is `compartment server` running?"
    )
    for args in (PROMOTE, ("deployment", "list"), ("deployment", "watch", "run_x")):
        done = cli(plane, *args, cwd=directory,
                   env={"COMPARTMENT_TEST_TIME_SCALE": "0.01"})  # fmt: skip
        assert done.returncode == 5, (args, done.stderr)
        assert done.stderr.rstrip("\n").endswith(expected), (args, done.stderr)
        as_json = cli(plane, *args, "-o", "json", cwd=directory,
                      env={"COMPARTMENT_TEST_TIME_SCALE": "0.01"})  # fmt: skip
        assert cli_json(as_json.stdout)["error"]["message"].endswith(expected)


def test_a_wrong_token_says_where_it_came_from(control_plane: ControlPlane, project: Any) -> None:
    plane = control_plane
    directory = staged(plane, project)
    wrong = {"COMPARTMENT_API_URL": plane.api_url, "COMPARTMENT_TOKEN": "wrong-token"}
    from_env = cli(plane, "deployment", "list", cwd=directory, env=wrong)
    assert from_env.returncode == 4
    assert from_env.stderr.rstrip("\n").endswith(
        f"The token came from COMPARTMENT_TOKEN: set it to a valid token for {plane.api_url}."
    )

    config = plane.config_dir / "config.json"
    login = json.loads(config.read_text())
    login["remotes"]["local"]["sessionToken"] = "stale-token"
    config.write_text(json.dumps(login))
    for args in (PROMOTE, ("deployment", "list")):
        from_file = cli(plane, *args, cwd=directory)
        assert from_file.returncode == 4, from_file.stderr
        assert from_file.stderr.rstrip("\n").endswith(
            f'The token came from remote "local" in {config}: start `compartment server` '
            "again, which records its token there, or set COMPARTMENT_TOKEN."
        )
        assert "stale-token" not in from_file.stderr
