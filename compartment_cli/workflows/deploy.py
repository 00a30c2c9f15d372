"""``compartment deploy``: pack compartment.yml's services, upload them, follow the run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.models.descriptor import Descriptor
from compartment_cli.models.result import RunResult
from compartment_cli.workflows.follow import (
    Progress,
    RunTarget,
    WaitOptions,
    follow_run,
    target_of,
)
from compartment_cli.workflows.pack import pack_services

__all__ = ["DeployOptions", "deploy", "run_deploy"]


@dataclass(frozen=True)
class DeployOptions:
    project_dir: Path
    descriptor: Descriptor
    environment: str = "production"
    service: str | None = None


def _pack(options: DeployOptions, archive: Path) -> None:
    with archive.open("wb") as out:
        pack_services(
            options.project_dir,
            options.descriptor,
            environment=options.environment,
            service=options.service,
            out=out,
        )


async def deploy(
    http: httpx.AsyncClient, options: DeployOptions, progress: Progress, wait: WaitOptions
) -> RunResult:
    """Pack, then subscribe to the environment's events, upload, and wait for the run."""
    with tempfile.TemporaryDirectory(prefix="compartment-deploy-") as scratch:
        archive = Path(scratch) / "deploy.tar.gz"
        await anyio.to_thread.run_sync(_pack, options, archive)

        async def start(api: ApiClient) -> RunTarget:
            response = await api.deploy(archive)
            return target_of(response, source_environment=None, kind="deploy")

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
