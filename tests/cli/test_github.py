"""GitHub Actions (GITHUB_ACTIONS=true): groups, annotations, the job summary, the step
outputs, and action.yml's steps run as a runner runs them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from compartment_cli.cli.github import command
from tests.cli.test_promote_e2e import PROMOTE, cli, failing_in_production, staged
from tests.support import BIN, REPO, ControlPlane, cli_json

ACTION = REPO / "action.yml"


def actions_env(tmp_path: Path) -> dict[str, str]:
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    summary.write_text("")
    output.write_text("")
    return {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output)}  # fmt: skip


def promote_in_actions(
    plane: ControlPlane, directory: Path, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """``compartment promote`` as a GitHub Actions step runs it: how it ended, and the step's
    summary and output files."""
    env = actions_env(tmp_path)
    done = cli(plane, *PROMOTE, *args, cwd=directory, env=env)
    return done, Path(env["GITHUB_STEP_SUMMARY"]), Path(env["GITHUB_OUTPUT"])


def step_outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def summary_rows(path: Path) -> dict[str, list[str]]:
    """The Markdown table of the job summary, by service."""
    rows = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header, *body = ([c.strip() for c in row.strip("|").split(" | ")] for row in rows)
    assert header == ["service", "deployment", "status", "route", "duration",
                      "failure reason", "run"]  # fmt: skip
    return {cells[0]: cells for cells in body}


def test_a_promotion_in_github_actions(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    directory = staged(control_plane, project)
    done, summary, output = promote_in_actions(
        control_plane, directory, tmp_path, "--verbose", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    result = cli_json(done.stdout)  # stdout is still one JSON document
    run_id = result["deploymentRunId"]

    lines = done.stderr.splitlines()
    assert lines[0] == f"::group::compartment promote staging → production: run {run_id}"
    assert lines[-1] == "::endgroup::"
    assert not [line for line in lines if line.startswith("::error")]

    outputs = step_outputs(output)
    routes = {d["serviceName"]: d["routeUrl"] for d in result["deployments"]}
    assert outputs["deployment-run-id"] == run_id
    assert outputs["status"] == "succeeded"
    assert outputs["route-url-api"] == routes["api"]
    assert outputs["route-url-web"] == routes["web"]
    rows = summary_rows(summary)
    assert sorted(rows) == ["api", "web"]
    assert rows["api"][2:4] == ["succeeded", routes["api"]]
    assert rows["web"][6] == run_id


def test_a_failed_promotion_is_annotated_and_summarised(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    directory = failing_in_production(control_plane, project)
    done, summary, output = promote_in_actions(control_plane, directory, tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("::error ")]
    annotated = dict(
        (m[1], m[2]) for line in errors if (m := re.match(r"::error title=([^:]*)::(.*)", line))
    )
    assert len(annotated) == len(errors) == 2, done.stderr  # one per service, named
    web = next(message for title, message in annotated.items() if title.endswith("web failed"))
    assert "readiness" in web or "healthz" in web
    assert step_outputs(output)["status"] == "failed"
    rows = summary_rows(summary)
    assert rows["web"][2] == "failed"
    assert rows["web"][5] != "-"  # the reason


def test_an_error_is_annotated_and_names_the_run_in_the_outputs(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    plane = control_plane
    directory = staged(plane, project, "2.0.0", web={"ready_after": 3}, api={})
    done, summary, output = promote_in_actions(plane, directory, tmp_path, "--timeout", "1s")
    assert done.returncode == 124
    assert done.stderr.splitlines()[-1].startswith("::error title=compartment%3A timeout::")
    outputs = step_outputs(output)
    assert outputs["status"] == "timeout"
    assert outputs["deployment-run-id"].startswith("run_")
    assert summary.read_text() == ""
    plane.wait_run(outputs["deployment-run-id"])


def test_nothing_of_this_outside_github_actions(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    plane = control_plane
    directory = failing_in_production(plane, project)
    env = {**actions_env(tmp_path), "GITHUB_ACTIONS": ""}
    done = cli(plane, *PROMOTE, "--verbose", cwd=directory, env=env)
    assert done.returncode == 1
    assert "::" not in done.stderr
    assert Path(env["GITHUB_OUTPUT"]).read_text() == ""
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text() == ""


def test_workflow_commands_escape_what_would_end_them() -> None:
    assert command("error", "50% done\nnext", title="a: b, c") == (
        "::error title=a%3A b%2C c::50%25 done%0Anext"
    )


# --- action.yml ------------------------------------------------------------------------------


def _expand(text: str, inputs: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: inputs[m[1]], str(text))


def test_the_actions_steps_run_locally_as_a_runner_runs_them(
    control_plane: ControlPlane, project: Any, tmp_path: Path
) -> None:
    plane = control_plane
    directory = staged(plane, project)
    action = YAML(typ="safe").load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    given = {"from": "staging", "to": "production", "working-directory": str(directory)}
    inputs = {name: given.get(name, spec.get("default", "")) for name, spec in
              action["inputs"].items()}  # fmt: skip
    env = {**plane.env, **actions_env(tmp_path), "GITHUB_ACTION_PATH": str(REPO),
           "PATH": f"{BIN}:/usr/bin:/bin"}  # fmt: skip
    install, promote = action["runs"]["steps"]

    # The install step as written, from a copy of the action (as a runner checks it out),
    # into a scratch target: the suite's own environment is left as it is, and no
    # dependency is fetched (only the build backend, from the package index's cache).
    checkout = tmp_path / "action"
    shutil.copytree(REPO / "compartment_cli", checkout / "compartment_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md", "action.yml"):
        shutil.copy(REPO / name, checkout / name)
    target = tmp_path / "installed"
    installed = subprocess.run(
        ["bash", "-e", "-c", install["run"]], capture_output=True, text=True, timeout=300,
        env={**env, "GITHUB_ACTION_PATH": str(checkout), "PIP_NO_DEPS": "1",
             "PIP_TARGET": str(target)},
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (target / "compartment_cli" / "schemas" / "result.json").is_file()

    step_env = {**env, **{k: _expand(v, inputs) for k, v in promote["env"].items()}}
    done = subprocess.run(
        ["bash", "-e", "-c", promote["run"]], capture_output=True, text=True, timeout=120,
        cwd=_expand(promote["working-directory"], inputs), env=step_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs = step_outputs(Path(env["GITHUB_OUTPUT"]))
    assert outputs["status"] == "succeeded"
    for name, spec in action["outputs"].items():  # every output the action maps is written
        step_output = re.fullmatch(r"\$\{\{ steps\.promote\.outputs\.([\w-]+) \}\}", spec["value"])
        assert step_output is not None
        assert step_output[1] in outputs, name
    assert "::group::compartment promote staging → production" in done.stderr
    assert sorted(summary_rows(Path(env["GITHUB_STEP_SUMMARY"]))) == ["api", "web"]
