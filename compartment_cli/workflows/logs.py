"""``compartment logs`` and ``compartment deployment logs``: read or follow deployment logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compartment_cli.client.api import ApiClient, open_client
from compartment_cli.client.connection import Connection
from compartment_cli.client.logs import follow_logs
from compartment_cli.models.logs import LogLine, LogsResponse

__all__ = ["LogsRequest", "read_logs"]


@dataclass(frozen=True)
class LogsRequest:
    """Whose logs: an environment's active deployments (``service`` narrows them), one
    deployment, or every deployment of one run."""

    project: str | None
    environment: str | None = None
    service: str | None = None
    deployment_id: str | None = None
    run_id: str | None = None
    since: str | None = None
    tail_lines: int | None = None


async def read_logs(
    connection: Connection,
    request: LogsRequest,
    *,
    follow: bool = False,
    on_line: Callable[[LogLine], None] | None = None,
) -> LogsResponse | None:
    """The lines asked for; with ``follow``, each line goes to ``on_line`` as it is written
    until every deployment followed has ended (then None)."""
    async with open_client(connection) as http:
        api = ApiClient(http)
        project, environment = request.project, request.environment
        if request.run_id is not None:
            run = await api.get_run(request.run_id)  # the run knows where it went
            project, environment = run.project.name, run.environment.name
        assert project is not None, "the command names a project or a run"
        query = {
            "projectName": project,
            "environmentName": environment,
            "serviceName": request.service,
            "deploymentId": request.deployment_id,
            "deploymentRunId": request.run_id,
            "since": request.since,
            "tailLines": None if request.tail_lines is None else str(request.tail_lines),
        }
        if not follow:
            return await api.logs(query)
        async for line in follow_logs(api, query):
            if on_line is not None:
                on_line(line)
        return None
