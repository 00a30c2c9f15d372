"""Deployment logs, ``GET /v1/deployments/logs``, in the platform's shapes.

The platform's query is ``projectName``, ``environmentName``, ``serviceName``,
``since`` (ISO-8601) and ``tailLines`` (1 to 500); its answer holds the
deployments read and their ``lines``. Ours adds ``deploymentId`` and
``deploymentRunId`` (deployments that are not active, e.g. a failed
candidate) and ``follow=true`` (server-sent events: one ``log`` event per
line, then ``end`` once every deployment followed has ended).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from compartment_cli.models.api import NameRef, ReadSummary, Wire
from compartment_cli.models.base import EnvironmentName, ProjectName, ServiceName

LOG_TAIL_LIMIT: Final = 500
DEFAULT_TAIL_LINES: Final = 100
LOG_EVENT: Final = "log"
END_EVENT: Final = "end"

LogStream = Literal["compartment", "stdout", "stderr"]
TailLines = Annotated[int, msgspec.Meta(ge=1, le=LOG_TAIL_LIMIT)]


class LogLine(Wire):
    deployment_id: str
    environment_name: str
    message: str
    service_name: str
    stream: LogStream
    timestamp: str


class LogsResponse(Wire):
    deployments: list[ReadSummary]
    environment: NameRef
    lines: list[LogLine]
    project: NameRef


class LogsQuery(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    project_name: ProjectName
    environment_name: EnvironmentName | None = None
    service_name: ServiceName | None = None
    since: str | None = None
    tail_lines: TailLines | None = None
    deployment_id: str | None = None
    deployment_run_id: str | None = None
    follow: bool = False
