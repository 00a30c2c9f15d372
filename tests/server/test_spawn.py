"""Builds are started like deployments: no secret of the server, reaped after a crash."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from tests.support import ControlPlane, write_project

TOKEN = "server-Token-5c1d9e77aa"
SECRET = "exported-Secret-0b7f31"


def with_build(project_dir: Path, command: str) -> Path:
    """The project's ``web`` service gets ``build.command``."""
    descriptor_path = project_dir / "compartment.yml"
    descriptor: dict[str, Any] = json.loads(descriptor_path.read_text())
    descriptor["services"]["web"]["build"] = {"command": command}
    descriptor_path.write_text(json.dumps(descriptor, indent=2) + "\n")
    return project_dir


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_build_that_prints_its_environment_shows_no_token(tmp_path: Path) -> None:
    plane = ControlPlane(
        tmp_path / "plane",
        server_env={
            "COMPARTMENT_SERVER_TOKEN": TOKEN,
            "COMPARTMENT_TOKEN": TOKEN,
            "COMPARTMENT_DEPLOY_SECRET": SECRET,
        },
    )
    plane.data_dir.mkdir(parents=True)
    (plane.data_dir / "token").write_text(TOKEN + "\n")  # what `plane.token` reads
    project = with_build(write_project(tmp_path / "project", web={}), "env; echo built")
    plane.start()
    try:
        run = plane.deploy_and_wait(project, "staging")
        status = plane.get(
            "/v1/deployments/status", projectName="shop", environmentName="staging"
        ).text
    finally:
        plane.stop()

    assert run["status"] == "succeeded", run
    logs = {path.name: path.read_text() for path in (plane.data_dir / "logs").glob("*.log")}
    built = [text for text in logs.values() if "==> build finished" in text]
    assert len(built) == 1
    assert "COMPARTMENT_DEPLOYMENT_ID=" in built[0]  # `env` ran and printed
    assert "COMPARTMENT_CONTROL_PLANE=" in built[0]  # the leftover marker
    for text in [*logs.values(), status, json.dumps(run), plane.log_path.read_text()]:
        assert TOKEN not in text
        assert SECRET not in text


def test_a_build_left_running_by_a_killed_server_is_reaped_on_restart(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    pid_file = tmp_path / "build-child.pid"
    command = f"sleep 300 & echo $! > {shlex.quote(str(pid_file))}; wait"
    project = with_build(write_project(tmp_path / "project", web={}), command)
    response = control_plane.deploy(project, "staging")
    assert response.status_code == 200, response.text
    run_id = response.json()["deploymentRunId"]
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())

    control_plane.kill()
    time.sleep(0.2)
    assert alive(child)  # the build's shell died with the server; its child did not

    control_plane.start()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    run = control_plane.run(run_id)
    assert run["status"] == "failed"
    assert "control plane stopped" in run["deployments"][0]["failureMessage"]
