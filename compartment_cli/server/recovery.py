"""Recovery: what a start of the control plane does with what its last life left.

Runs left in flight failed (what they replaced is active again, even if the
server died mid-switch); every route listens again on its recorded port; every
active deployment is started again and, once ready, its route serves it.
Processes an earlier life left running were stopped before (``main.py``).

The restores run in the background: the API answers at once, each route
serves as soon as its own deployment is ready (until then it answers 503),
and a run waits only for the restores of the services it changes
(``restored``), since a restore finishing after its switch would move the
route back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
from anyio.abc import TaskGroup

from compartment_cli.models.api import Health
from compartment_cli.models.descriptor import ROUTED_KINDS
from compartment_cli.server.runs import (
    Candidate,
    Recorder,
    RunContext,
    Services,
    await_ready,
    route_key,
)
from compartment_cli.server.runtime import free_port
from compartment_cli.server.store import Change, Deployment, Run

log = logging.getLogger("compartment.server")


class Recovery:
    def __init__(self, services: Services, recorder: Recorder) -> None:
        self._services = services
        self._store = services.store
        self._recorder = recorder
        self._restoring: dict[tuple[str, str], anyio.Event] = {}

    async def recover(self, group: TaskGroup) -> None:
        """Fail what was in flight and reopen the routes; then bring back what is
        active in ``group``, each deployment on its own, without waiting for them."""
        for run in self._store.unfinished_runs():
            self._fail_unfinished(run)
        for environment_id, service, port in self._store.routes():
            await self._services.open_route(environment_id, service, port)
        for deployment in self._store.all_active_deployments():
            target = (deployment.environment_id, deployment.service_name)
            self._restoring[target] = anyio.Event()
            group.start_soon(self._restore_one, deployment, target)

    async def restored(self, targets: Iterable[tuple[str, str]]) -> None:
        """Until the restores of these (environment id, service name) targets have ended."""
        for target in targets:
            restoring = self._restoring.get(target)
            if restoring is not None:
                await restoring.wait()

    async def _restore_one(self, deployment: Deployment, target: tuple[str, str]) -> None:
        try:
            await self._restore(deployment)
        finally:
            self._restoring.pop(target).set()

    def _fail_unfinished(self, run: Run) -> None:
        """A run the previous life of the server left unfinished: it failed, and
        whatever it replaced is active again (it may have died mid-switch)."""
        context = RunContext(
            run,
            self._store.project_by_id(run.project_id),
            self._store.environment_by_id(run.environment_id),
        )
        context.candidates = [Candidate(d, d.service) for d in self._store.run_deployments(run.id)]
        self._recorder.fail_run(
            context,
            "the control plane stopped while this run was in flight; what was active before"
            " it is still active",
            stopped_service=None,
        )

    async def _restore(self, deployment: Deployment) -> None:
        config = deployment.service
        command = config.run.command if config.run else None
        if command is None:
            return
        environment = self._store.environment_by_id(deployment.environment_id)
        project = self._store.project_by_id(environment.project_id)
        port = free_port()
        try:
            process = await self._services.supervisor.start(
                self._services.spec(deployment, project, environment, command, port)
            )
        except OSError as exc:
            log.error("could not restore %s: %s", deployment.id, exc)
            self._store.update_deployment(deployment.id, Change(health="unhealthy"))
            return
        result = await await_ready(process, config, report=lambda _text: None)
        health: Health = "healthy" if result.ok else "unhealthy"
        self._store.update_deployment(deployment.id, Change(health=health))
        if not result.ok:
            log.error("restored %s is not ready: %s", deployment.id, result.message)
            return
        if config.kind in ROUTED_KINDS:
            self._services.routes.switch(
                {route_key(deployment.environment_id, deployment.service_name): port}
            )
        log.info("restored %s %s/%s", deployment.id, environment.name, deployment.service_name)
