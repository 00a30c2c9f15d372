"""What every figure needs: a local control plane, timed child processes, statistics.

``Plane`` is one ``compartment server`` on a free loopback port with its own
data dir, its own CLI config dir (a login you have is never read or changed)
and ``examples/hello`` deployed to staging. Its deployments start with the
virtual environment's ``python3`` first on ``PATH``, not a pyenv shim.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx

from compartment_cli.server.runtime import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hello"
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
COMPARTMENT = str(BIN / "compartment")


# --- statistics --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank: a value that was measured."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_time(value: str) -> float:
    """Seconds since the epoch of an API timestamp (``2024-01-01T12:00:00.123Z``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- child processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A child process that ran to its end."""

    returncode: int
    started: float  # time.time() just before it was started
    ended: float  # time.time() as soon as it was reaped
    max_rss_kib: int  # rusage of wait4: on Linux at least this process's size (benchmarks.peak)
    cpu: float  # its user + system CPU seconds
    stdout: bytes = b""

    @property
    def wall(self) -> float:
        return self.ended - self.started


@dataclass
class Running:
    """A child process started by ``spawn``."""

    process: subprocess.Popen[bytes]
    started: float
    files: Sequence[IO[bytes]]

    def expect_subscribed(self, name: str) -> None:
        """Block until the follower ``name`` prints ``subscribed``; kill it if it prints else."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"subscribed":
            self.process.kill()
            raise RuntimeError(f"{name} did not subscribe: {line!r}")

    def wait(self, timeout: float = 600.0) -> Finished:
        """Reap it the moment it exits (a blocking ``wait4``); kill it after ``timeout``."""
        watchdog = threading.Timer(timeout, self.process.kill)
        watchdog.start()
        output = b""
        try:
            if self.process.stdout is not None:
                output = self.process.stdout.read()  # until it closes stdout: at its exit
            _, status, usage = os.wait4(self.process.pid, 0)
            ended = time.time()
        finally:
            watchdog.cancel()
            for handle in self.files:
                handle.close()
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        return Finished(
            self.process.returncode, self.started, ended, int(usage.ru_maxrss), cpu, output
        )


def spawn(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    capture: bool = False,
) -> Running:
    """Start ``args``; its stdout to a file, captured (``capture``), or nowhere."""
    files = [path.open("wb") for path in (stdout, stderr) if path is not None]
    out = files[0] if stdout is not None else (subprocess.PIPE if capture else subprocess.DEVNULL)
    err = files[-1] if stderr is not None else subprocess.DEVNULL
    started = time.time()
    process = subprocess.Popen(
        list(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
    )
    return Running(process, started, files)


def run_timed(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    capture: bool = False,
    timeout: float = 600.0,
) -> Finished:
    """Run ``args`` to its end: its wall time, exit time and peak RSS (``wait4``)."""
    running = spawn(args, env=env, cwd=cwd, stdout=stdout, stderr=stderr, capture=capture)
    return running.wait(timeout)


def rss_kib(pid: int) -> int:
    """Resident memory of a running process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def base_environ() -> dict[str, str]:
    """Our environment minus anything that points at a real login; the venv first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMPARTMENT_") and k not in ("XDG_CONFIG_HOME", "NO_COLOR")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- a control plane -----------------------------------------------------------------------


@dataclass
class Plane:
    """One local control plane for the benchmarks."""

    root: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    command: list[str] = field(default_factory=lambda: [COMPARTMENT, "server"])
    """How the control plane starts: ``compartment server``, or a benchmark's own entry."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def env(self) -> dict[str, str]:
        """The environment of a CLI process that talks to this control plane."""
        env = base_environ()
        env.update(
            COMPARTMENT_CLI_CONFIG_DIR=str(self.root / "config"),
            COMPARTMENT_API_URL=self.api_url,
            COMPARTMENT_TOKEN=self.token,
        )
        return env

    def start(self) -> Plane:
        self.root.mkdir(parents=True, exist_ok=True)
        env = base_environ()
        env["COMPARTMENT_CLI_CONFIG_DIR"] = str(self.root / "config")
        args = [*self.command, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*args, "--no-login", *self.extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"compartment server exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"compartment server did not start:\n{self.log()}")

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Plane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- API --------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def deploy_example(self, directory: Path = EXAMPLE, environment: str = "staging") -> None:
        """``compartment deploy --env staging`` of examples/hello (or another project), as a
        user runs it."""
        done = run_timed(
            [COMPARTMENT, "deploy", "--env", environment, "--output", "json"],
            env=self.env,
            cwd=directory,
            capture=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"deploy failed ({done.returncode}): {done.stdout!r}\n{self.log()}")

    def post_promote(
        self, source: str = "staging", target: str = "production", project: str = "hello"
    ) -> str:
        """Start a promotion through the API; its run id."""
        with self.client() as client:
            response = client.post(
                "/v1/deployments/promote",
                json={
                    "projectName": project,
                    "sourceEnvironmentName": source,
                    "targetEnvironmentName": target,
                },
            )
        response.raise_for_status()
        run_id: str = response.json()["deploymentRunId"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v1/deployments/runs/{run_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    @staticmethod
    def run_seconds(run: dict[str, Any]) -> float:
        """How long a finished run took on the server (its creation to its completion)."""
        return parse_time(run["completedAt"]) - parse_time(run["createdAt"])

    def wait_run(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in ("succeeded", "failed"):
                return run
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} did not finish in {timeout:g} s")

    # --- the event log, read-only --------------------------------------------------------

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        database = self.data_dir / "state.db"
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
        try:
            return list(db.execute(sql, params))
        finally:
            db.close()

    def completed_at(self, run_id: str) -> float:
        """The control plane's own timestamp of the run's ``run.completed`` event."""
        rows = self.query(
            "SELECT data FROM events WHERE type = 'run.completed'"
            " AND json_extract(data, '$.deploymentRunId') = ?",
            run_id,
        )
        if not rows:
            raise RuntimeError(f"no run.completed for {run_id}")
        return parse_time(json.loads(rows[0][0])["at"])
