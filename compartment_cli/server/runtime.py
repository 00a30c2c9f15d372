"""Deployments as local child processes: start, stop, find leftovers, check readiness.

Every deployment runs ``/bin/sh -c <run.command>`` in its own session, so the
whole process group (the shell and whatever it started) can be signalled at
once. Each child carries ``COMPARTMENT_CONTROL_PLANE=<data dir>`` in its
environment: a later life of the server finds what an earlier one left behind
by that mark (``Supervisor.reap_leftovers``). On Linux the direct child also
dies with the server (``PR_SET_PDEATHSIG``); its own children do not, which is
why the mark exists. The death signal is set by util-linux's ``setpriv`` where
it is installed (Debian: always), else by a ``preexec_fn``: a ``preexec_fn``
makes Python fork the whole server instead of using vfork, which blocks the
event loop for 4-13 ms per start against 0.3 ms.

Nothing here prints: readiness progress goes through a ``report`` callback and
results are ``ReadinessResult`` values whose ``message`` is meant for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "COMPARTMENT_CONTROL_PLANE"

_PR_SET_PDEATHSIG = 1
_ATTEMPT_TIMEOUT = 2.0  # seconds for one readiness request
_REPORT_EVERY = 2.0  # seconds between two progress reports that say the same
_LOG_TAIL_LINES = 5
_REAP_GRACE = 1.0  # seconds leftovers get between SIGTERM and SIGKILL


def _load_prctl() -> Callable[[int, int], int] | None:
    """Resolve prctl once, in the parent: the child after fork only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def call(option: int, arg: int) -> int:
        return int(prctl(option, arg))

    return call


_prctl = _load_prctl()


def _find_setpriv() -> str | None:
    """util-linux's setpriv, when it can set the parent-death signal (2.33 and later)."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        usage = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage else None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """The function run in the child between fork and exec (after setsid)."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            # The parent may have died between fork and prctl: then nobody
            # would send the signal.
            if os.getppid() != parent_pid:
                os._exit(1)

    return setup


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("COMPARTMENT_") and ("TOKEN" in upper or "SECRET" in upper)


@dataclass(frozen=True)
class ProcessSpec:
    deployment_id: str
    project: str
    environment: str
    service: str
    command: str  # run.command, run through /bin/sh -c
    cwd: Path  # the artifact directory
    log_path: Path  # stdout+stderr appended here (parents are created)
    port: int | None  # exported as PORT when set


def child_environment(
    spec: ProcessSpec, marker: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment a deployment starts with: the server's, minus its secrets."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not _is_secret(k)}
    env.pop("PORT", None)
    if spec.port is not None:
        env["PORT"] = str(spec.port)
    env["COMPARTMENT_PROJECT"] = spec.project
    env["COMPARTMENT_ENVIRONMENT"] = spec.environment
    env["COMPARTMENT_SERVICE"] = spec.service
    env["COMPARTMENT_DEPLOYMENT_ID"] = spec.deployment_id
    env[MARKER_ENV] = marker
    # Python deployments otherwise buffer their output and the log (and the
    # tail shown when they fail) stays empty.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class RunningProcess:
    """One started deployment. ``pid`` is also its process group id."""

    def __init__(self, spec: ProcessSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.deployment_id = spec.deployment_id
        self.pid: int = process.pid
        self.port = spec.port
        self.log_path = spec.log_path
        self._process = process

    def returncode(self) -> int | None:
        """The shell's exit status (negative: killed by that signal), None while running."""
        return self._process.returncode

    async def wait(self) -> int:
        return await self._process.wait()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> list[str]:
        """The last few non-empty lines of the log, for failure messages."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 8192))
                data = log.read()
        except OSError:
            return []
        text = data.decode("utf-8", errors="replace").splitlines()
        tail = [line.rstrip()[:200] for line in text if line.strip()]
        return tail[-lines:] if lines > 0 else []

    def __repr__(self) -> str:
        return (
            f"RunningProcess(deployment_id={self.deployment_id!r}, pid={self.pid}, "
            f"port={self.port}, returncode={self.returncode()})"
        )


# --- process groups ----------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, pgid) of a process from /proc, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[2])
    except (IndexError, ValueError):
        return None


def _proc_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for pid in _proc_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_environ(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


# --- the supervisor ----------------------------------------------------------


class Supervisor:
    """Owns the deployment processes of one control plane (one data directory)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.marker = str(self.data_dir)
        self._processes: dict[str, RunningProcess] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._setpriv = _find_setpriv()

    def reap_leftovers(self) -> list[int]:
        """Stop processes an earlier life of this control plane left running.

        Finds them by ``MARKER_ENV=<this data dir>`` in ``/proc/*/environ`` (an
        exact match: another data directory's processes are spared), sends
        their groups SIGTERM, then SIGKILL to what is still alive after a
        short wait. Never signals the caller or its own process group.
        Returns the pids found.
        """
        needle = f"{MARKER_ENV}={self.marker}".encode()
        me = os.getpid()
        my_group = os.getpgrp()
        found: list[int] = []
        for pid in _proc_pids():
            if pid == me:
                continue
            environ = _read_environ(pid)
            if environ is None or needle not in environ.split(b"\0"):
                continue
            stat = _proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            found.append(pid)
        if not found:
            return []
        groups: set[int] = set()
        singles: list[int] = []  # in our own group: signal them one by one
        for pid in found:
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if pgid == my_group:
                singles.append(pid)
            else:
                groups.add(pgid)
        self._signal_leftovers(groups, singles, signal.SIGTERM)
        deadline = time.monotonic() + _REAP_GRACE
        while time.monotonic() < deadline and self._leftovers_alive(groups, singles):
            time.sleep(0.05)
        if self._leftovers_alive(groups, singles):
            self._signal_leftovers(groups, singles, signal.SIGKILL)
            deadline = time.monotonic() + _REAP_GRACE
            while time.monotonic() < deadline and self._leftovers_alive(groups, singles):
                time.sleep(0.05)
        return sorted(found)

    @staticmethod
    def _signal_leftovers(
        groups: Iterable[int], singles: Iterable[int], sig: signal.Signals
    ) -> None:
        for pgid in groups:
            _signal_group(pgid, sig)
        for pid in singles:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    @staticmethod
    def _leftovers_alive(groups: Iterable[int], singles: Iterable[int]) -> bool:
        if any(_group_alive(pgid) for pgid in groups):
            return True
        for pid in singles:
            stat = _proc_stat(pid)
            if stat is not None and stat[0] not in ("Z", "X"):
                return True
        return False

    async def start(self, spec: ProcessSpec) -> RunningProcess:
        """Start a deployment. ValueError if that deployment is already running."""
        current = self._processes.get(spec.deployment_id)
        if current is not None:
            if current.returncode() is None:
                raise ValueError(f"deployment {spec.deployment_id} is already running")
            await self.stop(spec.deployment_id)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = child_environment(spec, self.marker)
        with spec.log_path.open("ab") as log:
            shell = ["/bin/sh", "-c", spec.command]
            if self._setpriv is not None:
                argv = [self._setpriv, "--pdeathsig", "KILL", "--", *shell]
                setup = None
            else:
                argv, setup = shell, _child_setup(os.getpid())
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=setup,
            )
        running = RunningProcess(spec, process)
        self._processes[spec.deployment_id] = running
        return running

    def get(self, deployment_id: str) -> RunningProcess | None:
        return self._processes.get(deployment_id)

    async def stop(self, deployment_id: str, *, grace: float = 5.0) -> None:
        """SIGTERM to the deployment's group, SIGKILL after ``grace`` seconds.

        Returns once nothing of the group runs any more and the shell is
        reaped. Idempotent; concurrent calls share one stop, and a cancelled
        caller does not interrupt it.
        """
        running = self._processes.get(deployment_id)
        if running is None:
            return
        stopping = self._stopping.get(deployment_id)
        if stopping is None:
            stopping = asyncio.ensure_future(self._terminate(running, grace))
            self._stopping[deployment_id] = stopping
        try:
            await asyncio.shield(stopping)
        finally:
            if stopping.done() and self._stopping.get(deployment_id) is stopping:
                del self._stopping[deployment_id]
                del self._processes[deployment_id]

    async def stop_all(self, *, grace: float = 5.0) -> None:
        ids = list(self._processes)
        await asyncio.gather(*(self.stop(i, grace=grace) for i in ids))

    @staticmethod
    async def _terminate(running: RunningProcess, grace: float) -> None:
        pgid = running.pid
        if running.returncode() is None or _group_alive(pgid):
            _signal_group(pgid, signal.SIGTERM)
            if not await _wait_group(running, grace):
                _signal_group(pgid, signal.SIGKILL)
                await _wait_group(running, 5.0)
        await running.wait()


async def _wait_group(running: RunningProcess, seconds: float) -> bool:
    """Wait until the shell is reaped and no process of its group runs."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while running.returncode() is None or _group_alive(running.pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)
    return True


_FIRST_PORT = 10_000  # below: well-known services (5432, 8080, our own 8787, ...)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1", *, taken: Collection[int] = ()) -> int:
    """A port nobody listens on right now, outside the kernel's ephemeral range,
    and not in ``taken`` (ports promised to something that is not listening yet).

    The port is used a moment later, by a deployment or a route. A port the
    kernel hands out for ``bind(0)`` comes from the ephemeral range, the same
    range outgoing connections take their source ports from: under load one
    of them can take it first, and the deployment fails to start. Ports
    outside that range are only ever taken by other listeners.
    """
    low, high = _ephemeral_range()
    pool = [(_FIRST_PORT, low - 1), (high + 1, 65535)]
    ranges = [(a, b) for a, b in pool if a <= b]
    for _ in range(200):
        if not ranges:
            break
        first, last = random.choice(ranges)
        port = random.randint(first, last)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# --- readiness ---------------------------------------------------------------


@dataclass(frozen=True)
class ReadinessResult:
    ok: bool
    message: str  # human text, goes into events and failureMessage


def _seconds(value: float) -> str:
    if value >= 10:
        return f"{value:.0f} s"
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} s"


def _exit_message(proc: RunningProcess, when: str) -> str:
    code = proc.returncode()
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        text = f"process was killed by {name} {when}"
    else:
        text = f"process exited with code {code} {when}"
    tail = proc.log_tail()
    if tail:
        text += "; last log lines:\n" + "\n".join(f"  {line}" for line in tail)
    return text


async def _probe(port: int, path: str, seconds: float) -> int | str:
    """One GET; the status code, or a short description of what went wrong."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "User-Agent: compartment-readiness\r\nAccept: */*\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        return "no answer" if writer is not None else "connect timed out"
    except ConnectionRefusedError:
        return "connection refused"
    except ConnectionResetError:
        return "connection reset"
    except OSError as error:
        return error.strerror or type(error).__name__
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = status_line.split(maxsplit=2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    if not status_line:
        return "connection closed without an answer"
    return "invalid HTTP answer"


def _describe(path: str, outcome: int | str) -> str:
    if isinstance(outcome, int):
        return f"GET {path} answered {outcome}"
    return f"GET {path}: {outcome}"


async def _exited_within(proc: RunningProcess, seconds: float) -> bool:
    if proc.returncode() is not None:
        return True
    try:
        await asyncio.wait_for(proc.wait(), max(seconds, 0))
    except TimeoutError:
        return False
    return True


async def check_readiness(
    proc: RunningProcess,
    *,
    path: str,
    timeout_ms: int,
    report: Callable[[str], None],
    interval: float = 0.2,
) -> ReadinessResult:
    """Poll ``GET http://127.0.0.1:<port><path>`` until a 2xx, within ``timeout_ms``.

    Fails at once when the process exits first. ``report`` gets progress text
    when the answer changes, or every couple of seconds while it does not.
    """
    if proc.port is None:
        raise ValueError("readiness needs a port")
    if not path.startswith("/"):
        path = "/" + path
    timeout = timeout_ms / 1000
    started = time.monotonic()
    deadline = started + timeout
    last_reported: str | None = None
    last_report_at = 0.0
    described = f"GET {path}: no answer"
    while True:
        if proc.returncode() is not None:
            return ReadinessResult(False, _exit_message(proc, "before it was ready"))
        remaining = deadline - time.monotonic()
        outcome = await _probe(proc.port, path, max(0.05, min(_ATTEMPT_TIMEOUT, remaining)))
        if isinstance(outcome, int) and 200 <= outcome < 300:
            elapsed = time.monotonic() - started
            return ReadinessResult(True, f"{_describe(path, outcome)} after {_seconds(elapsed)}")
        described = _describe(path, outcome)
        now = time.monotonic()
        if now >= deadline:
            break
        if described != last_reported or now - last_report_at >= _REPORT_EVERY:
            report(f"{described}, retrying")
            last_reported, last_report_at = described, now
        if await _exited_within(proc, min(interval, deadline - now)):
            return ReadinessResult(False, _exit_message(proc, "before it was ready"))
    if proc.returncode() is not None:
        return ReadinessResult(False, _exit_message(proc, "before it was ready"))
    return ReadinessResult(False, f"readiness {described} for {_seconds(timeout)}")


async def check_started(proc: RunningProcess, *, grace: float) -> ReadinessResult:
    """Ok when the process is still running ``grace`` seconds after it started."""
    if await _exited_within(proc, grace):
        return ReadinessResult(False, _exit_message(proc, f"within {_seconds(grace)} of starting"))
    return ReadinessResult(True, f"process is running after {_seconds(grace)}")
