"""Retention (``compartment server --keep N``): artifacts and logs do not pile up for ever.

Kept: the newest N deployments of each service in each environment, and whatever is
active, part of a run in flight, replaced by one (it may still drain) or still running.
An artifact stays while any kept deployment runs it, whatever its environment (a
promotion shares its source's artifact). Everything else goes: each other deployment's
log, and each artifact no kept deployment runs, which is then ``cleaned``: its
deployments report ``reusableImageState: cleaned`` and ``rollbackAvailable: false``, and a
rollback to one is refused (409 ``deployment_image_cleaned``).

It runs when the server starts and after every run. The rows stay: the history of
deployments is small, and it is what ``reusableImageState`` tells the truth from.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections import Counter
from pathlib import Path

import anyio.to_thread

from compartment_cli.server.artifacts import built_marker
from compartment_cli.server.logs import lines_path
from compartment_cli.server.runs import Services
from compartment_cli.server.store import Deployment

log = logging.getLogger("compartment.server")

DEFAULT_KEEP = 10


class Retention:
    def __init__(self, services: Services, keep: int = DEFAULT_KEEP) -> None:
        self._services = services
        self._store = services.store
        self._keep = keep

    def kept(self) -> tuple[list[Deployment], list[Deployment]]:
        """(kept, removable) deployments, by the rules above."""
        store = self._store
        in_flight: set[str] = set()
        for run in store.unfinished_runs():
            for deployment in store.run_deployments(run.id):
                in_flight.add(deployment.id)
                if deployment.previous_id:
                    in_flight.add(deployment.previous_id)
        seen: Counter[tuple[str, str]] = Counter()
        kept, removable = [], []
        for deployment in store.all_deployments():  # newest first per (environment, service)
            key = (deployment.environment_id, deployment.service_name)
            seen[key] += 1
            if (
                seen[key] <= self._keep
                or deployment.is_active
                or deployment.id in in_flight
                or self._services.supervisor.get(deployment.id) is not None
            ):
                kept.append(deployment)
            else:
                removable.append(deployment)
        return kept, removable

    async def sweep(self) -> None:
        """Remove what is not kept; never fails the caller (a problem is logged)."""
        try:
            await self._sweep()
        except Exception:
            log.exception("retention failed; it runs again after the next run")

    async def _sweep(self) -> None:
        kept, removable = self.kept()
        artifacts = self._services.artifacts
        kept_digests = {d.artifact_digest for d in kept}
        doomed: list[Path] = []
        for digest in sorted({d.artifact_digest for d in removable} - kept_digests):
            if not artifacts.exists(digest):
                continue
            # Renamed at once, so that nothing starts from it; deleted off the event loop.
            trash = artifacts.root / f".removed-{uuid.uuid4().hex}"
            artifacts.path(digest).rename(trash)
            built_marker(artifacts.path(digest)).unlink(missing_ok=True)
            self._store.mark_cleaned(digest)
            doomed.append(trash)
        logs = 0
        for deployment in removable:
            path = self._services.log_path(deployment)
            if path.exists():
                path.unlink(missing_ok=True)
                logs += 1
            lines_path(path).unlink(missing_ok=True)  # its lines for the logs endpoint
        # What a sweep interrupted by a stop of the server left behind.
        doomed += [p for p in artifacts.root.glob(".removed-*") if p not in doomed]
        if doomed or logs:
            log.info(
                "retention (--keep %d): removed %d artifact(s) and %d log(s)",
                self._keep,
                len(doomed),
                logs,
            )
        for trash in doomed:
            await anyio.to_thread.run_sync(shutil.rmtree, trash, True)
