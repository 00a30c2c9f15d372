"""Every child process of the control plane starts here, builds and runs alike, with one policy.

* A cleaned environment: the server's own, minus its secrets (any
  ``COMPARTMENT_*`` variable whose name holds ``TOKEN`` or ``SECRET``, such as
  ``COMPARTMENT_TOKEN`` and ``COMPARTMENT_SERVER_TOKEN``), plus the
  deployment's identity and what the spec adds. A ``build.command`` of
  ``env`` shows no token.
* Its own session, so the whole process group (``/bin/sh -c <command>`` and
  whatever it started) is signalled at once (``end_group``).
* The leftover marker ``COMPARTMENT_CONTROL_PLANE=<data dir>``: a later life of
  the server finds what an earlier one left behind by it (``reap_leftovers``).
* On Linux the direct child dies with the server (``PR_SET_PDEATHSIG``); its
  own children do not, which is why the marker exists. The death signal is
  set by util-linux's ``setpriv`` where it is installed (Debian: always), else
  by a ``preexec_fn``: a ``preexec_fn`` makes Python fork the whole server
  instead of using vfork, which blocks the event loop for 4-13 ms per start
  against 0.3 ms. With setpriv the signal is set a few milliseconds after the
  start returns (setpriv's own start-up): a server killed within that window
  leaves the child running, and the next life's ``reap_leftovers`` stops it.

The runtime (deployments) and the artifact store (builds) import this
module; it imports neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

MARKER_ENV = "COMPARTMENT_CONTROL_PLANE"

_PR_SET_PDEATHSIG = 1
_REAP_GRACE = 1.0  # seconds leftovers get between SIGTERM and SIGKILL
_KILL_WAIT = 5.0  # seconds a group gets to vanish after SIGKILL


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


def is_secret(name: str) -> bool:
    """A variable of the server that no child may see."""
    upper = name.upper()
    return upper.startswith("COMPARTMENT_") and ("TOKEN" in upper or "SECRET" in upper)


@dataclass(frozen=True)
class ProcessSpec:
    """One child of the control plane: a deployment's run or build command."""

    deployment_id: str
    project: str
    environment: str
    service: str
    command: str  # run through /bin/sh -c
    cwd: Path  # the artifact directory
    log_path: Path  # stdout+stderr appended here (parents are created)
    port: int | None  # exported as PORT when set
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Variables the project asks for (``build.env``); the deployment's identity wins."""


def child_environment(
    spec: ProcessSpec, marker: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a child starts with: the server's, minus its secrets."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not is_secret(k)}
    env.pop("PORT", None)
    env.update(spec.extra_env)
    if spec.port is not None:
        env["PORT"] = str(spec.port)
    env["COMPARTMENT_PROJECT"] = spec.project
    env["COMPARTMENT_ENVIRONMENT"] = spec.environment
    env["COMPARTMENT_SERVICE"] = spec.service
    env["COMPARTMENT_DEPLOYMENT_ID"] = spec.deployment_id
    env[MARKER_ENV] = marker
    # Python children otherwise buffer their output and the log (and the
    # tail shown when they fail) stays empty.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Spawner:
    """Starts the children of one control plane (one data directory, one marker)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.setpriv = _find_setpriv()
        """None: the death signal is set by a ``preexec_fn`` (slower; see the module docstring)."""

    async def start(
        self, spec: ProcessSpec, *, output: tuple[int, int] | None = None
    ) -> asyncio.subprocess.Process:
        """Start ``/bin/sh -c <command>``; output is appended to the spec's log, or goes to
        ``output``, the write ends of two pipes (stdout, stderr) whose other ends the caller
        reads. OSError when it cannot start."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        shell = ["/bin/sh", "-c", spec.command]
        if self.setpriv is not None:
            argv = [self.setpriv, "--pdeathsig", "KILL", "--", *shell]
            setup = None
        else:
            argv, setup = shell, _child_setup(os.getpid())
        with spec.log_path.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=spec.cwd,
                env=child_environment(spec, self.marker),
                stdin=subprocess.DEVNULL,
                stdout=log if output is None else output[0],
                stderr=subprocess.STDOUT if output is None else output[1],
                start_new_session=True,
                preexec_fn=setup,
            )

    def reap_leftovers(self) -> list[int]:
        """Stop processes an earlier life of this control plane left running.

        Finds them by ``MARKER_ENV=<marker>`` in ``/proc/*/environ`` (an exact
        match: another data directory's processes are spared), sends their
        groups SIGTERM, then SIGKILL to what is still alive after a short
        wait. Never signals the caller or its own process group. Returns the
        pids found. Blocking: it runs before the server serves.
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
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _signal_leftovers(groups, singles, sig)
            deadline = time.monotonic() + _REAP_GRACE
            while time.monotonic() < deadline and _leftovers_alive(groups, singles):
                time.sleep(0.05)
            if not _leftovers_alive(groups, singles):
                break
        return sorted(found)


async def end_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """Stop a child's shell and everything in its group, and reap the shell.

    SIGTERM to the group when anything of it runs, SIGKILL after ``grace``
    seconds. Returns once nothing of the group runs any more. Not
    interruptible: the caller decides what may cancel it by shielding.
    """
    pgid = process.pid  # start_new_session: the shell leads its own group
    if process.returncode is None or group_alive(pgid):
        signal_group(pgid, signal.SIGTERM)
        if not await _wait_group(process, grace):
            signal_group(pgid, signal.SIGKILL)
            await _wait_group(process, _KILL_WAIT)
    await process.wait()


async def _wait_group(process: asyncio.subprocess.Process, seconds: float) -> bool:
    """Wait until the shell is reaped and no process of its group runs."""
    deadline = time.monotonic() + seconds
    # Most processes are gone a millisecond after SIGTERM: look again soon, then less often
    # (a first look after 10 ms made every promotion wait that long for the old process).
    delay = 0.001
    while process.returncode is None or group_alive(process.pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await anyio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)
    return True


# --- process groups ----------------------------------------------------------


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
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


def _read_environ(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def _signal_leftovers(groups: Iterable[int], singles: Iterable[int], sig: signal.Signals) -> None:
    for pgid in groups:
        signal_group(pgid, sig)
    for pid in singles:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _leftovers_alive(groups: Iterable[int], singles: Iterable[int]) -> bool:
    if any(group_alive(pgid) for pgid in groups):
        return True
    for pid in singles:
        stat = _proc_stat(pid)
        if stat is not None and stat[0] not in ("Z", "X"):
            return True
    return False
