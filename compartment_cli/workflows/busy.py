"""``--wait-for-target``: when the target is busy, wait for the run that holds it, then ask again.

A 409 ``deployment_target_busy`` names the run that holds the target in its
message; the error then names that run (``deploymentRunId`` of the JSON error), so a
script can follow it with ``compartment deployment watch``. With ``--wait-for-target``
that run is followed through ``GET /v1/deployments/runs/{id}`` (its deployments'
changes are notices, shown with ``--verbose``) until it ends;
a control plane without that endpoint is asked again every ``retry_interval``.
The whole wait is bounded by ``wait_for`` and by what is left of ``--timeout`` (the
deadline of the scope around the command); still busy then: the 409, exit 3.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from compartment_cli.client.api import ApiClient
from compartment_cli.errors import ApiRefused, RunRef
from compartment_cli.workflows.follow import FINAL_STATUSES, Progress

__all__ = ["BUSY_CODE", "busy_run_id", "request_when_free"]

T = TypeVar("T")

BUSY_CODE = "deployment_target_busy"
TIMEOUT_MARGIN = 1.0
"""Seconds of ``--timeout`` left for the last request when the wait ends."""
_RUN_ID = re.compile(r"\brun_[A-Za-z0-9_-]+")


def busy_run_id(error: ApiRefused) -> str | None:
    """The run that holds the target, from a busy refusal: our control plane names it in
    a header (the client puts it in ``error.run``), the message is the fallback."""
    if error.run is not None:
        return error.run.run_id
    found = _RUN_ID.search(error.message)
    return found.group(0) if found else None


async def request_when_free(
    api: ApiClient,
    send: Callable[[], Awaitable[T]],
    progress: Progress,
    wait_for: float | None,
    *,
    poll_interval: float = 0.2,
    retry_interval: float = 1.0,
) -> T:
    """``send()``; while it is refused as busy and ``wait_for`` seconds have not passed,
    wait for the holding run to end and ``send()`` again. ``wait_for`` None: no waiting."""
    if wait_for is not None:
        # Within --timeout too (the deadline of the scope around the command): stop waiting
        # a moment before it, so that a target still busy is exit 3, not a timeout.
        in_timeout = anyio.current_effective_deadline() - anyio.current_time() - TIMEOUT_MARGIN
        wait_for = max(0.0, min(wait_for, in_timeout))
    deadline = None if wait_for is None else time.monotonic() + wait_for
    while True:
        try:
            return await send()
        except ApiRefused as exc:
            if exc.code != BUSY_CODE:
                raise
            holder = busy_run_id(exc)
            named = None if holder is None else RunRef(holder)
            if deadline is None:
                raise exc.about(named) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiRefused(
                    f"{exc.message} (still busy after waiting {wait_for:.3g}s, as long as "
                    "--wait-for-target and --timeout allow)",
                    code=BUSY_CODE,
                    run=named,
                ) from None
            progress.notice(
                f"the target is busy with run {holder or '(unnamed)'}; waiting for it to end "
                f"(up to {left:.0f}s more)"
            )
            with anyio.move_on_after(left):
                if holder is None or not await _follow(api, holder, progress, poll_interval):
                    await anyio.sleep(min(retry_interval, left))


async def _follow(api: ApiClient, run_id: str, progress: Progress, interval: float) -> bool:
    """Wait for ``run_id`` to end, telling its changes; False if the control plane cannot
    show runs (the caller then retries after a pause)."""
    seen: dict[str, tuple[str, str]] = {}
    while True:
        try:
            run = await api.get_run(run_id)
        except ApiRefused:
            return False
        for d in run.deployments:
            key = (d.status, d.promotion_stage)
            if seen.get(d.id) != key:
                seen[d.id] = key
                progress.notice(
                    f"run {run_id} (holds the target): {d.service_name} {d.status} "
                    f"{d.promotion_stage}"
                )
        if run.status in FINAL_STATUSES:
            progress.notice(f"run {run_id} ended {run.status}; asking again")
            return True
        await anyio.sleep(interval)
