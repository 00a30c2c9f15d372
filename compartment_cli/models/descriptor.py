"""A project's services as the deploy endpoint receives them (CONTRACT.md section 2).

``compartment_cli.project`` reads compartment.yml, reports every problem with
its line, and builds these. The control plane decodes them strictly from the
deploy manifest, so both sides share one definition of a valid service.

These Structs are the schema of compartment.yml: the validator takes its keys
(``wire_keys``), enums (``SERVICE_KINDS``, ...) and limits from here, and a test
compares them with the platform's descriptor schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from compartment_cli.models.base import (
    BakeMs,
    EnvironmentName,
    ProjectName,
    Request,
    ServiceName,
)

ServiceKind = Literal["web", "api", "static", "worker", "job", "cron"]
BuildStrategy = Literal["auto", "dockerfile", "railpack"]
ReadinessType = Literal["http"]
SERVICE_KINDS: Final[tuple[str, ...]] = get_args(ServiceKind)
BUILD_STRATEGIES: Final[tuple[str, ...]] = get_args(BuildStrategy)
READINESS_TYPES: Final[tuple[str, ...]] = get_args(ReadinessType)
ROUTED_KINDS: Final[frozenset[str]] = frozenset({"web", "api"})
MAX_READINESS_TIMEOUT_MS: Final = 300_000
DEFAULT_READINESS_TIMEOUT_MS: Final = 30_000

# The deploy archive (written by workflows/pack.py, read by server/artifacts.py).
MANIFEST_NAME: Final = "manifest.json"
SERVICES_DIR: Final = "services"


class BuildConfig(Request):
    command: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    include: list[str] = msgspec.field(default_factory=list)
    output_directory: str | None = None
    packages: list[str] = msgspec.field(default_factory=list)
    strategy: BuildStrategy = "auto"


class RunConfig(Request):
    command: str | None = None


class ReadinessConfig(Request):
    type: ReadinessType = "http"
    path: Annotated[str, msgspec.Meta(pattern=r"^/")] = "/healthz"
    timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=MAX_READINESS_TIMEOUT_MS)] = (
        DEFAULT_READINESS_TIMEOUT_MS
    )


class ServiceConfig(Request):
    path: str
    kind: ServiceKind = "web"
    access_mode: str | None = None
    build: BuildConfig | None = None
    run: RunConfig | None = None
    readiness: ReadinessConfig | None = None
    connections: list[Any] | dict[str, Any] | None = None


class Descriptor(msgspec.Struct, kw_only=True):
    """A validated compartment.yml."""

    name: ProjectName
    services: dict[str, ServiceConfig]
    resources: dict[str, Any] = msgspec.field(default_factory=dict)


class DeployManifest(Request):
    """``manifest.json``, the first member of the deploy archive.

    The archive (``POST /v1/deployments``, ``Content-Type: application/gzip``)
    is a gzipped tar holding ``manifest.json`` and, for every service named in
    ``services``, its directory under ``services/<name>/``.
    """

    project_name: ProjectName
    services: dict[ServiceName, ServiceConfig]
    environment_name: EnvironmentName = "production"
    service_name: ServiceName | None = None
    bake_ms: BakeMs | None = None
    """(ours) As ``bakeMs`` of promote: watch the new deployments this long after the switch."""
