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
AccessMode = Literal["authenticated", "public"]
RestartPolicy = Literal["no", "on-failure", "unless-stopped"]
ResourcePreset = Literal["postgres"]
SERVICE_KINDS: Final[tuple[str, ...]] = get_args(ServiceKind)
BUILD_STRATEGIES: Final[tuple[str, ...]] = get_args(BuildStrategy)
READINESS_TYPES: Final[tuple[str, ...]] = get_args(ReadinessType)
DOCKERFILE: Final[BuildStrategy] = "dockerfile"
"""The strategy that builds from a Dockerfile: no build.command, packages or run.command."""
ROUTED_KINDS: Final[frozenset[str]] = frozenset({"web", "api"})
STATIC_KIND: Final = "static"
MAX_READINESS_TIMEOUT_MS: Final = 300_000
DEFAULT_READINESS_TIMEOUT_MS: Final = 30_000
DEFAULT_READINESS_PATH: Final = "/healthz"

VARIABLE_NAME_PATTERN: Final = "^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_VARIABLE_PREFIX: Final = "COMPARTMENT_"
PACKAGE_NAME_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9.+:=~-]*$"
RESOURCE_OUTPUT_NAME_PATTERN: Final = "^[a-z0-9][a-z0-9_.-]{0,62}$"

VARIABLE_NAME_RULE: Final = (
    f"letters, digits and '_', not starting with a digit, and not starting with "
    f"{RESERVED_VARIABLE_PREFIX} (reserved)"
)
PACKAGE_NAME_RULE: Final = "letters, digits and . + : = ~ -, starting with a letter or digit"
RESOURCE_OUTPUT_NAME_RULE: Final = (
    "lowercase letters, digits, '_', '.' and '-', starting with a letter or digit, "
    "at most 63 characters"
)
BACKUP_VOLUME: Final = "backup-artifacts"
"""A resource volume name the platform keeps for its managed backups."""
INCLUDE_GLOB_CHARACTERS: Final = "*?["
"""``build.include`` entries are literal paths: none of these."""

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
VariableName = Annotated[str, msgspec.Meta(pattern=VARIABLE_NAME_PATTERN)]
PackageName = Annotated[str, msgspec.Meta(pattern=PACKAGE_NAME_PATTERN)]
ResourceOutputName = Annotated[str, msgspec.Meta(pattern=RESOURCE_OUTPUT_NAME_PATTERN)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]

# The deploy archive (written by workflows/pack.py, read by server/artifacts.py).
MANIFEST_NAME: Final = "manifest.json"
SERVICES_DIR: Final = "services"

NOT_USED_LOCALLY: Final = (
    "ports",
    "accessMode",
    "release",
    "connections",
    "build.env",
    "build.include",
    "build.outputDirectory",
    "build.packages",
    "build.strategy",
    "run.restart",
)
"""Keys of a service the platform acts on that the local control plane accepts and ignores
(so is the top-level ``resources``).

``build.env`` names variables the platform hands a build; a local build sees
the control plane's own environment (minus its secrets) anyway.
"""


class BuildPackages(Request):
    build: list[PackageName] = msgspec.field(default_factory=list)
    runtime: list[PackageName] = msgspec.field(default_factory=list)


class BuildConfig(Request):
    command: NonEmpty | None = None
    env: list[VariableName] = msgspec.field(default_factory=list)
    include: list[NonEmpty] = msgspec.field(default_factory=list)
    output_directory: NonEmpty | None = None
    packages: BuildPackages | None = None
    strategy: BuildStrategy = "auto"


class RestartConfig(Request):
    """Deprecated on the platform, still accepted."""

    policy: RestartPolicy
    max_retries: Annotated[int, msgspec.Meta(gt=0)] | None = None


class RunConfig(Request):
    command: NonEmpty | None = None
    restart: RestartConfig | None = None


class ReleaseConfig(Request):
    command: NonEmpty


class ReadinessConfig(Request):
    type: ReadinessType = "http"
    path: NonEmpty = DEFAULT_READINESS_PATH
    """Probed as given; without a leading ``/`` one is put in front (the platform's rule)."""
    timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=MAX_READINESS_TIMEOUT_MS)] = (
        DEFAULT_READINESS_TIMEOUT_MS
    )

    @property
    def url_path(self) -> str:
        return self.path if self.path.startswith("/") else "/" + self.path


class ConnectionConfig(Request):
    env: dict[VariableName, ResourceOutputName]


class ServiceConfig(Request):
    path: NonEmpty
    kind: ServiceKind = "web"
    access_mode: AccessMode | None = None
    build: BuildConfig | None = None
    run: RunConfig | None = None
    release: ReleaseConfig | None = None
    readiness: ReadinessConfig | None = None
    connections: dict[ServiceName, ConnectionConfig] | None = None
    ports: list[Port] | None = None


class ResourceReadiness(Request):
    type: Literal["tcp"]
    port: Port
    timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=MAX_READINESS_TIMEOUT_MS)] | None = None


class ResourceOutput(Request):
    sensitive: bool
    value: NonEmpty


class ResourceConfig(Request):
    """A resource of compartment.yml (a database, a cache): accepted, not run locally.

    ``generatedVariables``, ``operations``, ``restart`` and ``volumes`` are
    checked as mappings only.
    """

    command: list[NonEmpty] | None = None
    env: dict[VariableName, str] | None = None
    generated_variables: dict[str, Any] | None = None
    image: NonEmpty | None = None
    operations: dict[str, Any] | None = None
    outputs: dict[ResourceOutputName, ResourceOutput] | None = None
    ports: list[Port] | None = None
    preset: ResourcePreset | None = None
    readiness: ResourceReadiness | None = None
    restart: dict[str, Any] | None = None
    volumes: dict[str, Any] | None = None


class Descriptor(Request):
    """A validated compartment.yml (the platform's authored descriptor)."""

    name: ProjectName
    services: dict[ServiceName, ServiceConfig]
    resources: dict[ServiceName, ResourceConfig] = msgspec.field(default_factory=dict)


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


def keys_not_used_locally(descriptor: Descriptor, services: list[str]) -> list[str]:
    """The keys of ``NOT_USED_LOCALLY`` that ``descriptor`` sets, as key paths."""
    found = ["resources"] if descriptor.resources else []
    for name in services:
        data = msgspec.to_builtins(descriptor.services[name])
        for key in NOT_USED_LOCALLY:
            parent, _, child = key.rpartition(".")
            holder = data.get(parent, {}) if parent else data
            if child in holder:
                found.append(f"services.{name}.{key}")
    return found
