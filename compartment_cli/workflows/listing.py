"""``compartment deployment list``: one read of an environment's deployments."""

from __future__ import annotations

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.models.api import ListResponse

__all__ = ["list_deployments"]


async def list_deployments(
    connection: Connection,
    project: str,
    *,
    environment: str | None = None,
    service: str | None = None,
    limit: int | None = None,
) -> ListResponse:
    """The deployments of ``environment`` (the API's default: production), newest first."""
    async with open_client(connection) as http:
        return await ApiClient(http).list_deployments(
            project, environment=environment, service=service, limit=limit
        )
