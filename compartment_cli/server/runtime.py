"""Deployments as local child processes: start, stop, check readiness.

Every deployment runs ``/bin/sh -c <run.command>``, started by ``spawn`` with
the one policy every child of the control plane gets (a cleaned environment,
its own process group, the leftover marker, the parent-death signal). The
``Supervisor`` keeps the running ones by deployment id.

Nothing here prints: readiness progress goes through a ``report`` callback and
results are ``ReadinessResult`` values whose ``message`` is meant for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from compartment_cli.server.logs import OutputLog
from compartment_cli.server.spawn import ProcessSpec, Spawner, end_group

_ATTEMPT_TIMEOUT = 2.0  # seconds for one readiness request
_FIRST_PAUSE = 0.005  # the shortest pause between two readiness requests (seconds)
_REPORT_EVERY = 2.0  # seconds between two progress reports that say the same
_LOG_TAIL_LINES = 5
_OUTPUT_FLUSH = 1.0  # seconds an ended process's last output may take to reach the log


class RunningProcess:
    """One started deployment. ``pid`` is also its process group id."""

    def __init__(
        self,
        spec: ProcessSpec,
        process: asyncio.subprocess.Process,
        output: tuple[int, int] | None = None,
    ) -> None:
        self.spec = spec
        self.deployment_id = spec.deployment_id
        self.pid: int = process.pid
        self.port = spec.port
        self.log_path = spec.log_path
        self.process = process
        # Its output, line by line with stream and time (``server.logs``), from the read
        # ends of its stdout and stderr pipes.
        self._output = asyncio.ensure_future(
            OutputLog(spec.log_path).pump(*output) if output else asyncio.sleep(0)
        )

    def returncode(self) -> int | None:
        """The shell's exit status (negative: killed by that signal), None while running."""
        return self.process.returncode

    async def wait(self) -> int:
        """The exit status, once its output (what it wrote before it ended) is in the log."""
        code = await self.process.wait()
        # A grandchild may hold the pipes open: its output is not waited for.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._output), _OUTPUT_FLUSH)
        return code

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


# --- the supervisor ----------------------------------------------------------


class Supervisor:
    """Owns the deployment processes of one control plane (one data directory)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.spawner = Spawner(str(self.data_dir))
        self._processes: dict[str, RunningProcess] = {}
        self._stopping: dict[str, anyio.Event] = {}

    def reap_leftovers(self) -> list[int]:
        """Stop what an earlier life of this control plane left running (see ``Spawner``)."""
        return self.spawner.reap_leftovers()

    async def start(self, spec: ProcessSpec) -> RunningProcess:
        """Start a deployment. ValueError if that deployment is already running."""
        current = self._processes.get(spec.deployment_id)
        if current is not None:
            if current.returncode() is None:
                raise ValueError(f"deployment {spec.deployment_id} is already running")
            await self.stop(spec.deployment_id)
        # Pipes of our own, not asyncio's: its Process.wait() waits for them to close too,
        # which a grandchild that outlives the shell would put off for ever.
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            process = await self.spawner.start(spec, output=(out_write, err_write))
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        running = RunningProcess(spec, process, (out_read, err_read))
        self._processes[spec.deployment_id] = running
        return running

    def get(self, deployment_id: str) -> RunningProcess | None:
        return self._processes.get(deployment_id)

    async def stop(self, deployment_id: str, *, grace: float = 5.0) -> None:
        """SIGTERM to the deployment's group, SIGKILL after ``grace`` seconds.

        Returns once nothing of the group runs any more and the shell is
        reaped. Idempotent; concurrent calls share one stop (the first does
        the work, shielded, so a cancelled caller does not interrupt it).
        """
        running = self._processes.get(deployment_id)
        if running is None:
            return
        stopped = self._stopping.get(deployment_id)
        if stopped is not None:
            await stopped.wait()
            return
        stopped = self._stopping[deployment_id] = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await end_group(running.process, grace)
        finally:
            del self._stopping[deployment_id]
            if self._processes.get(deployment_id) is running:
                del self._processes[deployment_id]
            stopped.set()

    async def stop_all(self, *, grace: float = 5.0) -> None:
        async with anyio.create_task_group() as group:
            for deployment_id in list(self._processes):
                group.start_soon(partial(self.stop, deployment_id, grace=grace))


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


async def _exit_message(proc: RunningProcess, when: str) -> str:
    code = await proc.wait()  # and its last output is in the log
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
        with anyio.fail_after(seconds):
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
    with anyio.move_on_after(max(seconds, 0)):
        await proc.wait()
    return proc.returncode() is not None


async def check_readiness(
    proc: RunningProcess,
    *,
    path: str,
    timeout_ms: int,
    report: Callable[[str], None],
    interval: float = 0.2,
) -> ReadinessResult:
    """Poll ``GET http://127.0.0.1:<port><path>`` until a 2xx, within ``timeout_ms``.

    The first attempt goes out at once; then the pause between attempts is an
    eighth of the time waited so far, at least 5 ms and at most ``interval``:
    a service is seen ready at most about 12% (and at least 5 ms) after its
    first 2xx, and a slow one gets a request every ``interval``. (Doubling
    pauses would see a service ready at 80 ms only at 155 ms.) Each attempt is
    bounded (2 s, or what is left of the timeout).
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
    attempts = 0
    while True:
        if proc.returncode() is not None:
            return ReadinessResult(False, await _exit_message(proc, "before it was ready"))
        remaining = deadline - time.monotonic()
        outcome = await _probe(proc.port, path, max(0.05, min(_ATTEMPT_TIMEOUT, remaining)))
        attempts += 1
        if isinstance(outcome, int) and 200 <= outcome < 300:
            elapsed = time.monotonic() - started
            return ReadinessResult(True, f"{_describe(path, outcome)} after {_seconds(elapsed)}")
        described = _describe(path, outcome)
        now = time.monotonic()
        if now >= deadline:
            break
        if described != last_reported or now - last_report_at >= _REPORT_EVERY:
            report(f"{described} (attempt {attempts}), retrying")
            last_reported, last_report_at = described, now
        pause = min(max(_FIRST_PAUSE, (now - started) / 8), interval, deadline - now)
        if await _exited_within(proc, pause):
            return ReadinessResult(False, await _exit_message(proc, "before it was ready"))
    if proc.returncode() is not None:
        return ReadinessResult(False, await _exit_message(proc, "before it was ready"))
    return ReadinessResult(False, f"readiness {described} for {_seconds(timeout)}")


async def check_started(proc: RunningProcess, *, grace: float) -> ReadinessResult:
    """Ok when the process is still running ``grace`` seconds after it started."""
    if await _exited_within(proc, grace):
        message = await _exit_message(proc, f"within {_seconds(grace)} of starting")
        return ReadinessResult(False, message)
    return ReadinessResult(True, f"process is running after {_seconds(grace)}")


# --- after the switch: what the bake watches ----------------------------------


async def probe_ready(proc: RunningProcess, path: str, seconds: float) -> str | None:
    """One readiness GET to the process's own port: None when it answered 2xx, else what
    went wrong in words (``GET /healthz answered 503``)."""
    if proc.port is None:
        raise ValueError("readiness needs a port")
    if not path.startswith("/"):
        path = "/" + path
    outcome = await _probe(proc.port, path, seconds)
    if isinstance(outcome, int) and 200 <= outcome < 300:
        return None
    return _describe(path, outcome)


async def exited_within(proc: RunningProcess, seconds: float) -> str | None:
    """Wait up to ``seconds``; None while the process runs, else how it ended."""
    if await _exited_within(proc, seconds):
        return await _exit_message(proc, "after the switch")
    return None
