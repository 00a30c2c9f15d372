"""Helpers of the fault scenarios (tests/test_faults_*.py): projects whose readiness is slow
in some environments only, the CLI in a subprocess with its peak memory, the run count."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.support import COMPARTMENT, ControlPlane, cli_json, write_project

# Stands in front of the test service: in an environment listed in SLOW_IN ("<env> <seconds>"
# per line) it listens only after that many seconds, so the readiness probes of a promotion
# there get no answer until then ("GET /healthz: no answer, retrying"). Elsewhere it is the
# test service at once, so the source environment deploys fast.
SLOW_GATE = """\
import os, sys, time
from pathlib import Path

HERE = Path(__file__).parent
slow = dict(line.split() for line in (HERE / "SLOW_IN").read_text().splitlines() if line.strip())
time.sleep(float(slow.get(os.environ["COMPARTMENT_ENVIRONMENT"], 0)))
os.execv(sys.executable, [sys.executable, str(HERE / "service.py")])
"""

# Runs a command and writes its peak resident memory (KiB) to the file named first:
# RUSAGE_CHILDREN of a process whose only child is that command.
_MEASURE = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def cli_env(plane: ControlPlane, **extra: str) -> dict[str, str]:
    """The CLI's environment: the fixture's config dir, and the token for a URL not in it."""
    return {**plane.env, "COMPARTMENT_TOKEN": plane.token, **extra}


def promote_args(api_url: str, *extra: str, target: str = "production") -> list[str]:
    """``compartment promote`` of project shop from staging, JSON out, to ``api_url``."""
    return [
        *("promote", "--from", "staging", "--to", target, "--project", "shop"),
        *("--output", "json", "--api-url", api_url),
        *extra,
    ]


def slow_project(
    directory: Path, slow_in: dict[str, float], services: list[str], version: str = "2.0.0"
) -> Path:
    """A project whose services start ``slow_in[env]`` seconds late in those environments."""
    write_project(directory, version, **{name: {} for name in services})
    descriptor = json.loads((directory / "compartment.yml").read_text())
    lines = "".join(f"{env} {seconds}\n" for env, seconds in slow_in.items())
    for name in services:
        (directory / name / "gate.py").write_text(SLOW_GATE)
        (directory / name / "SLOW_IN").write_text(lines)
        descriptor["services"][name]["run"]["command"] = f"{sys.executable} gate.py"
    (directory / "compartment.yml").write_text(json.dumps(descriptor, indent=2) + "\n")
    return directory


@dataclass
class Finished:
    """A finished CLI command: what it printed, its exit code, how long it took."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int = 0

    def json(self) -> Any:
        return cli_json(self.stdout)

    def __str__(self) -> str:
        return (
            f"compartment {' '.join(self.args)} → exit {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def start_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[str], float]:
    process = subprocess.Popen(
        [COMPARTMENT, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, time.monotonic()


def finish(
    started: tuple[subprocess.Popen[str], float], timeout: float, secret: str | None = None
) -> Finished:
    """Wait for a command of ``start_cli``; a hang is a failure, and so is a leaked ``secret``."""
    process, clock = started
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"compartment {process.args!r} hung for {timeout}s\n{stdout}\n{stderr}"
        ) from None
    done = Finished(
        [str(a) for a in process.args[1:]],  # type: ignore[union-attr]
        process.returncode,
        stdout,
        stderr,
        time.monotonic() - clock,
    )
    assert "Traceback" not in stderr, done
    if secret:
        assert secret not in stdout + stderr, "the token leaked"
    return done


def run_cli(*args: str, env: dict[str, str], timeout: float, cwd: Path | None = None) -> Finished:
    return finish(start_cli(*args, env=env, cwd=cwd), timeout)


def run_measured(*args: str, env: dict[str, str], timeout: float) -> Finished:
    """``run_cli``, also measuring the command's peak resident memory."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        process = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, rss.name, COMPARTMENT, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        done = finish((process, time.monotonic()), timeout)
        done.args = list(args)
        done.max_rss_kib = int(Path(rss.name).read_text() or 0)
    return done


def run_count(plane: ControlPlane, kind: str = "promote") -> int:
    """How many runs of ``kind`` the control plane has recorded, read from its database."""
    db = sqlite3.connect(f"file:{plane.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM runs WHERE type = ?", (kind,)).fetchone()
    finally:
        db.close()
    return int(count)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.02)


def server_events(
    plane: ControlPlane, environment: str, run_id: str, project: str = "shop"
) -> list[tuple[int, str, dict[str, Any]]]:
    """The control plane's own record: every event of ``environment`` from Last-Event-ID 0,
    straight from the server, up to ``run_id``'s ``run.completed``."""
    headers = {"Authorization": f"Bearer {plane.token}", "Last-Event-ID": "0"}
    params = {"projectName": project, "environmentName": environment}
    events = []
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(
            client, "GET", f"{plane.api_url}/v1/events", params=params, headers=headers
        ) as source,
    ):
        for sse in source.iter_sse():
            if not sse.data:
                continue
            data = json.loads(sse.data)
            events.append((int(sse.id), sse.event, data))
            if sse.event == "run.completed" and data["deploymentRunId"] == run_id:
                return events
    raise AssertionError(f"the stream ended before {run_id} completed")
