"""``compartment deploy``: pack compartment.yml's services, upload them, follow the run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.models.descriptor import Descriptor, keys_not_used_locally
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.environments import check_target
from compartment_cli.workflows.follow import (
    Progress,
    RunTarget,
    WaitOptions,
    follow_run,
    target_of,
)
from compartment_cli.workflows.lifecycle import NO_LIFECYCLE, Lifecycle, send_when_free
from compartment_cli.workflows.pack import PackStats, pack_services

__all__ = ["DeployOptions", "deploy", "run_deploy"]


@dataclass(frozen=True)
class DeployOptions:
    project_dir: Path
    descriptor: Descriptor
    environment: str = "production"
    service: str | None = None
    create_env: bool = False
    """Create ``environment`` even when its name is close to an existing one's."""
    lifecycle: Lifecycle = NO_LIFECYCLE
    """``--wait-for-target`` and ``--bake``."""


def _pack(options: DeployOptions, archive: Path) -> PackStats:
    with archive.open("wb") as out:
        return pack_services(
            options.project_dir,
            options.descriptor,
            environment=options.environment,
            service=options.service,
            bake_ms=options.lifecycle.bake_ms,
            out=out,
        )


async def deploy(
    http: httpx.AsyncClient, options: DeployOptions, progress: Progress, wait: WaitOptions
) -> RunResult:
    """Pack, then subscribe to the environment's events, upload, and wait for the run."""
    with tempfile.TemporaryDirectory(prefix="compartment-deploy-") as scratch:
        archive = Path(scratch) / "deploy.tar.gz"
        stats = await anyio.to_thread.run_sync(_pack, options, archive)
        progress.notice(stats.summary())
        services = [options.service] if options.service else list(options.descriptor.services)
        unused = keys_not_used_locally(options.descriptor, services)
        if unused:
            progress.notice("not used by the local control plane: " + ", ".join(unused))

        async def start(api: ApiClient) -> RunTarget:
            check = await check_target(
                api,
                options.descriptor.name,
                options.environment,
                flag="--env",
                create=options.create_env,
                progress=progress,
            )
            admitted = await send_when_free(
                api, lambda: api.deploy(archive), progress, options.lifecycle
            )
            return target_of(admitted, source_environment=None, kind="deploy", existed=check.exists)

        return await follow_run(
            http,
            project=options.descriptor.name,
            environment=options.environment,
            start=start,
            progress=progress,
            wait=wait,
            kind="deploy",
        )


async def run_deploy(
    connection: Connection, options: DeployOptions, progress: Progress, wait: WaitOptions
) -> RunResult:
    async with open_client(connection) as http:
        return await deploy(http, options, progress, wait)
