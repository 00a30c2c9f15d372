"""Builds: a service's ``build.command``, run once in its stored artifact.

The artifact counts as built only after its build succeeded: the marker
``built_marker(artifact_dir)`` is removed when a build starts and written when
it ends well (see ``artifacts.py``).
"""

from __future__ import annotations

import time
from typing import Final

import anyio

from compartment_cli.server.artifacts import built_marker, write_marker
from compartment_cli.server.spawn import ProcessSpec, Spawner, end_group

BUILD_STOP_GRACE_SECONDS: Final = 2.0


async def run_build(
    spawner: Spawner,
    spec: ProcessSpec,
    *,
    timeout: float,  # noqa: ASYNC109 - the build is killed, not just abandoned
) -> tuple[bool, str]:
    """Run the build ``spec.command`` in the artifact directory ``spec.cwd``: (ok, message).

    Started by ``spawner`` like every child of the control plane (a cleaned
    environment plus ``spec.extra_env``, its own process group, the leftover
    marker, the parent-death signal). Output (stdout and stderr) is appended
    to ``spec.log_path``, between a line with the command and a line with the
    outcome. On timeout or cancellation the whole group gets SIGTERM, then
    SIGKILL after a grace period, and anything the command left running in
    its group is stopped when it ends.

    The marker ``ArtifactStore.is_built`` reads (``built_marker(spec.cwd)``)
    is removed before the command starts and written only when it succeeds, so
    a failed, timed-out or interrupted build leaves the artifact unbuilt.
    """
    marker = built_marker(spec.cwd)
    marker.unlink(missing_ok=True)
    log_path = spec.log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("ab") as log:
        log.write(f"$ {spec.command}\n".encode())
        log.flush()
        try:
            process = await spawner.start(spec)
        except OSError as exc:
            message = f"build command could not start: {exc}"
            log.write(f"==> {message}\n".encode())
            return False, message
        timed_out = False
        try:
            with anyio.move_on_after(timeout) as scope:
                await process.wait()
            timed_out = scope.cancelled_caught
        finally:
            with anyio.CancelScope(shield=True):
                await end_group(process, BUILD_STOP_GRACE_SECONDS)
        elapsed = time.monotonic() - started
        code = process.returncode
        if timed_out:
            ok, message = False, f"build timed out after {timeout:g} s and was stopped"
        elif code == 0:
            ok, message = True, f"build finished in {elapsed:.1f} s"
        elif code is not None and code < 0:
            ok, message = False, f"build command was killed by signal {-code}"
        else:
            ok, message = False, f"build command exited with code {code}"
        log.write(f"==> {message}\n".encode())
    if ok:
        write_marker(marker)
    return ok, message
