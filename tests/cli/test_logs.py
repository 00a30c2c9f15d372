"""`compartment logs` and `compartment deployment logs` against the real control plane."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cli.test_promote_e2e import cli
from tests.support import COMPARTMENT, ControlPlane

LINE_KEYS = {"deploymentId", "environmentName", "serviceName", "stream", "message", "timestamp"}


def with_command(directory: Path, service: str, command: str) -> None:
    config = json.loads((directory / "compartment.yml").read_text())
    config["services"][service]["run"]["command"] = command
    (directory / "compartment.yml").write_text(json.dumps(config))


def chatty(project: Any) -> Path:
    """web writes a line to stdout and one to stderr, then ticks on stdout every 0.1 s."""
    directory = project("1.0.0", web={}, api={})
    serve = json.loads((directory / "compartment.yml").read_text())["services"]["web"]["run"]
    with_command(
        directory,
        "web",
        "echo hello on stdout; echo careful on stderr >&2; "
        "(n=0; while true; do n=$((n+1)); echo tick $n; sleep 0.1; done) & "
        f"exec {serve['command']}",
    )
    return directory


def test_logs_of_an_environment_in_the_platforms_shape(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = chatty(project)
    run = control_plane.deploy_and_wait(directory, "staging")
    assert run["status"] == "succeeded"
    web = next(d for d in run["deployments"] if d["serviceName"] == "web")

    done = cli(control_plane, "logs", "--env", "staging", "-o", "json", cwd=directory)

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"deployments", "environment", "lines", "project"}
    assert document["environment"] == {"name": "staging"}
    assert {d["serviceName"] for d in document["deployments"]} == {"api", "web"}
    lines = document["lines"]
    assert all(set(line) == LINE_KEYS for line in lines)
    assert all(line["environmentName"] == "staging" for line in lines)
    mine = [
        (line["stream"], line["message"]) for line in lines if line["deploymentId"] == web["id"]
    ]
    assert ("stdout", "hello on stdout") in mine
    assert ("stderr", "careful on stderr") in mine
    assert any(stream == "compartment" and "checking_readiness" in m for stream, m in mine)
    assert [line["timestamp"] for line in lines] == sorted(line["timestamp"] for line in lines)

    text = cli(control_plane, "logs", "--env", "staging", "--service", "web", cwd=directory)
    assert text.returncode == 0, text.stderr
    rows = text.stdout.splitlines()
    assert all(row.split()[1] == "web" for row in rows)
    assert any(
        re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  web  stderr  careful on stderr", r) for r in rows
    )
    tail = cli(control_plane, "logs", "--env", "staging", "--tail", "3", cwd=directory)
    assert len(tail.stdout.splitlines()) == 3


def test_logs_follow_a_deployments_output_live(control_plane: ControlPlane, project: Any) -> None:
    directory = chatty(project)
    assert control_plane.deploy_and_wait(directory, "staging")["status"] == "succeeded"

    follower = subprocess.Popen(
        [COMPARTMENT, "logs", "--env", "staging", "--service", "web", "--follow"],
        cwd=directory,
        env=control_plane.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        ticks: list[tuple[float, int]] = []
        while len(ticks) < 40:
            line = follower.stdout.readline()
            assert line, follower.stderr.read() if follower.stderr else ""
            if match := re.search(r"  stdout  tick (\d+)$", line):
                ticks.append((time.monotonic(), int(match[1])))
        # New lines keep coming while it runs, in order: it follows, it does not re-read.
        numbers = [n for _, n in ticks]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert ticks[-1][0] - ticks[0][0] > 1.0
    finally:
        follower.send_signal(signal.SIGINT)
        _, errors = follower.communicate(timeout=30)
    assert follower.returncode == 130, errors


def test_a_crashing_candidate_names_the_logs_command_and_its_last_output(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0"), "qa")
    directory = project("2.0.0", web={}, api={"exit_code": 3})

    done = cli(control_plane, "deploy", "--env", "qa", cwd=directory)

    assert done.returncode == 1, done.stderr
    api_id = next(row.split()[1] for row in done.stdout.splitlines() if row.startswith("api "))
    assert "exiting on purpose" in done.stderr  # its last output line
    command = f"compartment deployment logs {api_id}"
    assert f"all of its output: {command}" in done.stderr
    assert done.stderr.count("exiting on purpose") == 1  # under api only, not under web

    shown = cli(control_plane, *command.split()[1:], cwd=directory)
    assert shown.returncode == 0, shown.stderr
    assert any(
        row.endswith("  api  stdout  exiting on purpose") for row in shown.stdout.splitlines()
    )
    # Following a deployment that has ended prints what it wrote and ends by itself.
    followed = cli(control_plane, *command.split()[1:], "--follow", cwd=directory, timeout=30)
    assert followed.returncode == 0, followed.stderr
    assert "exiting on purpose" in followed.stdout
    run_id = json.loads(
        cli(control_plane, "deployment", "list", "--env", "qa", "-o", "json", cwd=directory).stdout
    )["deployments"][0]["deploymentRunId"]
    by_run = cli(control_plane, "deployment", "logs", "--run", run_id, "-o", "json", cwd=directory)
    assert {line["serviceName"] for line in json.loads(by_run.stdout)["lines"]} == {"api", "web"}


def test_deployment_logs_needs_one_of_a_deployment_or_a_run(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = project("1.0.0")
    control_plane.deploy_and_wait(directory, "production")
    done = cli(control_plane, "deployment", "logs", cwd=directory)
    assert done.returncode == 2
    assert "name a deployment" in done.stderr
    missing = cli(control_plane, "deployment", "logs", "dep_nope", cwd=directory)
    assert missing.returncode == 3
    assert "dep_nope" in missing.stderr
