"""Deployment processes and readiness, with real processes and real sockets."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compartment_cli.server.runtime import (
    RunningProcess,
    Supervisor,
    check_readiness,
    check_started,
    free_port,
)
from compartment_cli.server.spawn import MARKER_ENV, ProcessSpec

PYTHON = shlex.quote(sys.executable)

# A deployment: answers /healthz (always 503 in mode "503", 503 for its first
# 0.6 s in mode "slow"), /probes with how many /healthz requests it had, /env
# with its environment, and logs one line.
SERVER = textwrap.dedent(
    """
    import http.server, json, os, sys, time

    port = int(os.environ["PORT"])
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    started = time.monotonic()

    probes = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            global probes
            if self.path == "/probes":
                code, body = 200, str(probes).encode()
            elif self.path == "/healthz":
                probes += 1
                warming = mode == "slow" and time.monotonic() - started < 0.6
                code = 503 if mode == "503" or warming else 200
                body = b"ok" if code == 200 else b"not yet"
            elif self.path == "/env":
                code, body = 200, json.dumps(dict(os.environ)).encode()
            else:
                code, body = 404, b"nothing here"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    print(f"listening on {port}")
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "artifact"
    directory.mkdir()
    (directory / "srv.py").write_text(SERVER)
    return directory


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(tmp_path / "data")
    yield sup
    await sup.stop_all(grace=1.0)


def spec(
    app_dir: Path, command: str, *, port: int | None = None, deployment_id: str = "dep-1"
) -> ProcessSpec:
    return ProcessSpec(
        deployment_id=deployment_id,
        project="shop",
        environment="staging",
        service="web",
        command=command,
        cwd=app_dir,
        log_path=app_dir.parent / "data" / "logs" / f"{deployment_id}.log",
        port=port,
    )


def live_group_members(pgid: int) -> list[int]:
    """Pids of the group that still run (zombies waiting for init do not count)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
        body: bytes = answer.read()
        return body


async def ready(proc: RunningProcess, timeout_ms: int = 5000) -> None:
    result = await check_readiness(proc, path="/healthz", timeout_ms=timeout_ms, report=print)
    assert result.ok, result.message


# --- start and stop ----------------------------------------------------------


@pytest.mark.anyio
async def test_stop_ends_the_shell_and_its_grandchild(
    supervisor: Supervisor, app_dir: Path
) -> None:
    port = free_port()
    proc = await supervisor.start(spec(app_dir, f"{PYTHON} srv.py & wait", port=port))
    await ready(proc)
    members = live_group_members(proc.pid)
    assert proc.pid in members
    assert len(members) >= 2  # the shell and the server it started

    await supervisor.stop("dep-1", grace=2.0)

    assert proc.returncode() is not None  # the shell is reaped: no zombie of ours
    assert not any(is_running(pid) for pid in members)
    assert supervisor.get("dep-1") is None
    await supervisor.stop("dep-1")  # idempotent
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.anyio
async def test_stop_kills_what_ignores_sigterm_after_grace(
    supervisor: Supervisor, app_dir: Path
) -> None:
    proc = await supervisor.start(spec(app_dir, "trap '' TERM; sleep 30 & wait"))
    assert (await check_started(proc, grace=0.2)).ok
    members = live_group_members(proc.pid)

    started = time.monotonic()
    await asyncio.gather(supervisor.stop("dep-1", grace=0.3), supervisor.stop("dep-1", grace=0.3))

    assert 0.3 <= time.monotonic() - started < 3
    assert proc.returncode() == -signal.SIGKILL
    assert not any(is_running(pid) for pid in members)


@pytest.mark.anyio
async def test_stop_ends_what_outlives_its_shell(supervisor: Supervisor, app_dir: Path) -> None:
    port = free_port()
    proc = await supervisor.start(spec(app_dir, f"{PYTHON} srv.py &", port=port))
    assert await proc.wait() == 0
    await wait_answering(port)  # the shell is gone, its child serves on
    orphans = live_group_members(proc.pid)
    assert orphans

    await supervisor.stop("dep-1", grace=2.0)

    assert not any(is_running(pid) for pid in orphans)


@pytest.mark.anyio
async def test_output_is_appended_to_the_log(supervisor: Supervisor, app_dir: Path) -> None:
    command = "echo to-stdout; echo to-stderr >&2"
    first = await supervisor.start(spec(app_dir, command))
    assert await first.wait() == 0
    second = await supervisor.start(spec(app_dir, command))  # same id: replaces the first
    assert await second.wait() == 0

    log = (app_dir.parent / "data" / "logs" / "dep-1.log").read_text()
    assert log.splitlines() == ["to-stdout", "to-stderr"] * 2


@pytest.mark.anyio
async def test_environment_has_the_deployment_and_not_the_token(
    supervisor: Supervisor, app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPARTMENT_TOKEN", "secret-token")
    monkeypatch.setenv("COMPARTMENT_WEBHOOK_SECRET", "other-secret")
    monkeypatch.setenv("COMPARTMENT_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    port = free_port()
    proc = await supervisor.start(spec(app_dir, f"exec {PYTHON} srv.py", port=port))
    await ready(proc)

    env = json.loads(http_get(port, "/env"))

    assert env["PORT"] == str(port)
    assert env["COMPARTMENT_PROJECT"] == "shop"
    assert env["COMPARTMENT_ENVIRONMENT"] == "staging"
    assert env["COMPARTMENT_SERVICE"] == "web"
    assert env["COMPARTMENT_DEPLOYMENT_ID"] == "dep-1"
    assert env[MARKER_ENV] == str((app_dir.parent / "data").resolve())
    assert env["SOMETHING_ELSE"] == "kept"
    assert env["COMPARTMENT_API_URL"] == "http://127.0.0.1:1"
    assert "COMPARTMENT_TOKEN" not in env
    assert "COMPARTMENT_WEBHOOK_SECRET" not in env
    assert "secret" not in repr(env)


# --- readiness ---------------------------------------------------------------


@pytest.mark.anyio
async def test_readiness_succeeds_and_reports_only_changes(
    supervisor: Supervisor, app_dir: Path
) -> None:
    proc = await supervisor.start(spec(app_dir, f"exec {PYTHON} srv.py slow", port=free_port()))
    reports: list[str] = []

    result = await check_readiness(
        proc, path="/healthz", timeout_ms=10_000, report=reports.append, interval=0.05
    )

    assert result.ok
    assert result.message.startswith("GET /healthz answered 200 after ")
    assert result.message.endswith(" s")
    # Each report counts the attempts so far (the live view shows it).
    answered = re.compile(r"GET /healthz answered 503 \(attempt \d+\), retrying")
    assert any(answered.fullmatch(r) for r in reports)
    assert all(r.endswith(", retrying") for r in reports)
    # About 12 attempts in 0.6 s; one report per distinct answer.
    assert len(reports) <= 3


@pytest.mark.anyio
async def test_readiness_probes_often_at_first_then_backs_off(
    supervisor: Supervisor, app_dir: Path
) -> None:
    # Ready 0.6 s after it starts: probed every 200 ms that is at most 4 requests
    # (and up to 200 ms late); pauses from 5 ms growing with the wait, about 15
    # (at least 6 even if the interpreter took 0.5 s to start).
    soon = await supervisor.start(spec(app_dir, f"exec {PYTHON} srv.py slow", port=free_port()))
    assert (await check_readiness(soon, path="/healthz", timeout_ms=10_000, report=print)).ok
    assert int(http_get(soon.port or 0, "/probes")) >= 6

    # Never ready: after the first fraction of a second, at most one request per 200 ms.
    never = await supervisor.start(
        spec(app_dir, f"exec {PYTHON} srv.py 503", port=free_port(), deployment_id="dep-2")
    )
    result = await check_readiness(never, path="/healthz", timeout_ms=3000, report=lambda _: None)
    assert not result.ok
    assert int(http_get(never.port or 0, "/probes")) <= 60  # 5 ms apart would be 600


@pytest.mark.anyio
async def test_readiness_fails_on_503_until_timeout(supervisor: Supervisor, app_dir: Path) -> None:
    proc = await supervisor.start(spec(app_dir, f"exec {PYTHON} srv.py 503", port=free_port()))
    started = time.monotonic()

    result = await check_readiness(proc, path="/healthz", timeout_ms=1500, report=lambda _: None)

    assert not result.ok
    assert result.message == "readiness GET /healthz answered 503 for 1.5 s"
    assert 1.4 <= time.monotonic() - started < 3.5


@pytest.mark.anyio
async def test_readiness_says_connection_refused(supervisor: Supervisor, app_dir: Path) -> None:
    proc = await supervisor.start(spec(app_dir, "sleep 30", port=free_port()))

    result = await check_readiness(proc, path="healthz", timeout_ms=500, report=lambda _: None)

    assert not result.ok
    assert result.message == "readiness GET /healthz: connection refused for 0.5 s"


@pytest.mark.anyio
async def test_readiness_fails_at_once_when_the_process_exits(
    supervisor: Supervisor, app_dir: Path
) -> None:
    command = "echo 'starting up'; sleep 0.2; echo 'fatal: no database' >&2; exit 3"
    proc = await supervisor.start(spec(app_dir, command, port=free_port()))
    started = time.monotonic()

    result = await check_readiness(proc, path="/healthz", timeout_ms=30_000, report=lambda _: None)

    assert not result.ok
    assert result.message.startswith("process exited with code 3 before it was ready")
    assert "fatal: no database" in result.message
    assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_check_started(supervisor: Supervisor, app_dir: Path) -> None:
    worker = await supervisor.start(spec(app_dir, "sleep 30", deployment_id="worker"))
    crashing = await supervisor.start(spec(app_dir, "exit 2", deployment_id="crashing"))

    alive, crashed = await asyncio.gather(
        check_started(worker, grace=0.3), check_started(crashing, grace=5)
    )

    assert alive.ok
    assert not crashed.ok
    assert crashed.message.startswith("process exited with code 2 within 5 s of starting")


# --- leftovers of a server killed with SIGKILL -------------------------------

KILLED_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from compartment_cli.server.runtime import Supervisor
    from compartment_cli.server.spawn import ProcessSpec

    async def main() -> None:
        data_dir, cwd, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
        supervisor = Supervisor(data_dir)
        if sys.argv[5:] == ["preexec"]:
            supervisor.spawner.setpriv = None  # the fallback where setpriv is missing
        proc = await supervisor.start(ProcessSpec(
            "dep-old", "shop", "staging", "web", sys.argv[4], cwd,
            data_dir / "logs" / "dep-old.log", port,
        ))
        print(proc.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)

REAPER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from compartment_cli.server.runtime import Supervisor

    print(Supervisor(Path(sys.argv[1])).reap_leftovers())
    """
)


async def wait_answering(port: int) -> None:
    for _ in range(100):
        try:
            http_get(port, "/healthz")
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answers on {port}")


@pytest.mark.parametrize("launcher", ["setpriv", "preexec"])
def test_the_deployment_dies_with_a_killed_server(tmp_path: Path, launcher: str) -> None:
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_SERVER,
            str(tmp_path / "data"),
            str(tmp_path),
            str(free_port()),
            "exec sleep 3600",
            launcher,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    deployment_pid = int(killed.stdout.readline())
    assert is_running(deployment_pid)
    # setpriv sets the death signal and then execs the command: kill the server once it has
    # (a kill in the first milliseconds of a start is left to the reaper of the next life).
    cmdline = Path(f"/proc/{deployment_pid}/cmdline")
    for _ in range(100):
        if b"sleep" in cmdline.read_bytes():
            break
        time.sleep(0.01)

    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()

    for _ in range(40):
        if not is_running(deployment_pid):
            break
        time.sleep(0.05)
    assert not is_running(deployment_pid)


@pytest.mark.anyio
async def test_reap_leftovers_after_sigkill_spares_other_data_dirs(
    tmp_path: Path, app_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    command = f"{PYTHON} srv.py & wait"
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_SERVER, str(data_dir), str(app_dir), str(port), command],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    shell_pid = int(killed.stdout.readline())
    await wait_answering(port)
    grandchildren = [pid for pid in live_group_members(shell_pid) if pid != shell_pid]
    assert grandchildren

    # Another control plane whose data dir shares the prefix: must be spared.
    other = Supervisor(tmp_path / "data-other")
    other_port = free_port()
    other_proc = await other.start(spec(app_dir, f"{PYTHON} srv.py & wait", port=other_port))
    try:
        await ready(other_proc)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        killed.stdout.close()
        for _ in range(40):  # PR_SET_PDEATHSIG takes the shell down with it
            if not is_running(shell_pid):
                break
            await asyncio.sleep(0.05)
        assert not is_running(shell_pid)
        assert all(is_running(pid) for pid in grandchildren)
        http_get(port, "/healthz")  # the leftover still serves

        # The reaper carries the marker itself: it must not stop itself.
        reaper = subprocess.run(
            [sys.executable, "-c", REAPER, str(data_dir)],
            env={**os.environ, MARKER_ENV: str(data_dir.resolve())},
            capture_output=True,
            text=True,
            timeout=20,
        )

        assert reaper.returncode == 0, reaper.stderr
        assert set(grandchildren) <= set(ast.literal_eval(reaper.stdout))
        assert not any(is_running(pid) for pid in grandchildren)
        assert other_proc.returncode() is None
        http_get(other_port, "/healthz")
    finally:
        if killed.poll() is None:
            killed.kill()
        await other.stop_all(grace=1.0)
        for pid in grandchildren:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def test_free_ports_are_outside_the_range_outgoing_connections_use() -> None:
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {free_port() for _ in range(50)}
    assert all(port >= 10_000 and not low <= port <= high for port in ports)
    assert len(ports) > 1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))  # really free
