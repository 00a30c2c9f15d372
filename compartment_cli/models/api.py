"""Wire shapes of the Compartment deployments API (CONTRACT.md section 4).

Request Structs are strict (``forbid_unknown_fields``): the server decodes
bodies with them, so an unknown key is a 400. Response Structs are lenient on
decode, so that the CLI keeps working when a hosted control plane adds fields,
and exact on encode, so that our control plane serves the platform's shapes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

# Re-exported: the request and response shapes of this module are built on them.
from compartment_cli.models.base import BakeMs as BakeMs
from compartment_cli.models.base import EnvironmentName as EnvironmentName
from compartment_cli.models.base import ProjectName as ProjectName
from compartment_cli.models.base import Request as Request
from compartment_cli.models.base import ServiceName as ServiceName
from compartment_cli.models.base import Wire as Wire
from compartment_cli.models.descriptor import BuildStrategy, ReadinessType

DeploymentStatus = Literal["queued", "running", "succeeded", "failed", "stopped"]
Health = Literal["pending", "healthy", "unhealthy"]
OperationStatus = Literal["queued", "running", "succeeded", "failed"]
PromotionStage = Literal[
    "queued",
    "building",
    "preparing_source",
    "building_image",
    "publishing_image",
    "release",
    "releasing",
    "kube_apply",
    "awaiting_readiness",
    "activating",
    "active",
    "restoring",
    "rolled_back",
    "stopped",
]
PROMOTION_STAGES: Final[tuple[str, ...]] = get_args(PromotionStage)
RunStatus = Literal["queued", "running", "succeeded", "failed"]
RunType = Literal["deploy", "promote", "rollback"]
ReusableImageState = Literal["available", "cleaned", "missing"]
"""Whether a deployment's artifact can start again (rollback, promotion): ``cleaned`` once
retention removed it, ``missing`` when it is gone otherwise."""

BUSY_RUN_HEADER: Final = "x-compartment-deployment-run-id"
"""(ours) On a 409 ``deployment_target_busy``: the id of the run that holds the target
(also named in the message). A header, not a key of the error: the platform's error
shape is strict, and an extra key would break its CLI's error parsing."""


def _open_enum(values: object) -> msgspec.Meta:
    """A string the schema lists the known values of, without refusing a new one."""
    return msgspec.Meta(extra_json_schema={"enum": list(get_args(values))})


# Response fields carry the platform's enums as plain strings: the CLI decodes a
# value a newer platform adds (a new promotionStage) and shows it as it is. The
# server fills them from the Literal types above, so it sends only known values.
DeploymentStatusText = Annotated[str, _open_enum(DeploymentStatus)]
HealthText = Annotated[str, _open_enum(Health)]
OperationStatusText = Annotated[str, _open_enum(OperationStatus)]
PromotionStageText = Annotated[str, _open_enum(PromotionStage)]
ReusableImageStateText = Annotated[str, _open_enum(ReusableImageState)]

Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
"""ISO-8601 in UTC ending in ``Z``, as the platform sends and requires."""
Url = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uri"})]
Id = Annotated[str, msgspec.Meta(min_length=1)]
Message = Annotated[str, msgspec.Meta(min_length=1)]

MAX_LIST_LIMIT: Final = 100
ListLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST_LIMIT)]
"""``limit`` of ``GET /v1/deployments``."""


# --- errors ---------------------------------------------------------------


class ErrorBody(Wire):
    code: str
    message: str


class ErrorResponse(Wire):
    error: ErrorBody


# --- summaries ------------------------------------------------------------


class NameRef(Wire):
    name: str


class ReadOperationSummary(Wire):
    """A deployment's operation as the read endpoints report it."""

    type: Id
    status: OperationStatusText
    created_at: Timestamp
    completed_at: Timestamp | None


class OperationSummary(ReadOperationSummary):
    """A deployment's operation as the write endpoints report it: with what it acts on."""

    id: Id
    target_type: Id
    target_id: Id


class ReadSummary(Wire):
    """A deployment as the read endpoints and the event stream report it."""

    id: Id
    service_name: str
    deployment_run_id: Id
    status: DeploymentStatusText
    promotion_stage: PromotionStageText
    health: HealthText
    is_active: bool
    label: str | None
    route_url: Url | None
    failure_message: Message | None
    created_at: Timestamp
    completed_at: Timestamp | None
    rollback_available: bool
    operation: ReadOperationSummary
    access_protected: bool | msgspec.UnsetType = msgspec.UNSET
    reusable_image_state: ReusableImageStateText | msgspec.UnsetType = msgspec.UNSET


class BuildPackageLists(Wire):
    build: list[str] = msgspec.field(default_factory=list)
    runtime: list[str] = msgspec.field(default_factory=list)


class ResolvedBuildConfig(Wire):
    """``build`` of a deployment: every key resolved; ``command`` absent when there is none."""

    command: Message | msgspec.UnsetType = msgspec.UNSET
    env: list[str] = msgspec.field(default_factory=list)
    include: list[str] = msgspec.field(default_factory=list)
    output_directory: Message | msgspec.UnsetType = msgspec.UNSET
    packages: BuildPackageLists = msgspec.field(default_factory=BuildPackageLists)
    strategy: BuildStrategy = "auto"


class ResolvedRunConfig(Wire):
    """``run`` of a deployment: ``command`` absent when there is none."""

    command: Message | msgspec.UnsetType = msgspec.UNSET


class ResolvedReadinessConfig(Wire):
    type: ReadinessType = "http"
    path: Message = "/healthz"
    timeout_ms: int = 30000


class DeploymentSummary(Wire):
    """A deployment as the write endpoints (promote, deploy) return it."""

    id: Id
    service_name: str
    status: DeploymentStatusText
    health: HealthText
    route_url: Url | None
    failure_message: Message | None
    is_active: bool
    label: str | None
    created_at: Timestamp
    completed_at: Timestamp | None
    operation: OperationSummary
    promotion_stage: PromotionStageText
    readiness: ResolvedReadinessConfig | None
    rollback_available: bool
    build: ResolvedBuildConfig
    run: ResolvedRunConfig
    access_protected: bool | msgspec.UnsetType = msgspec.UNSET
    reusable_image_state: ReusableImageStateText | msgspec.UnsetType = msgspec.UNSET


class EnvironmentSummary(Wire):
    id: Id
    name: str
    project_id: Id
    created_at: Timestamp
    updated_at: Timestamp


class ProjectSummary(Wire):
    id: Id
    name: str
    organization_id: Id
    archived_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


# --- requests and responses -----------------------------------------------


class PromoteRequest(Request):
    """``POST /v1/deployments/promote``. The platform's four keys, plus two of ours
    (left out of the body when unset, so the platform accepts what we send without them):

    * ``sourceDeploymentIds``: the source's active deployments (for the scope) as the
      caller saw them, e.g. in a reviewed plan. Checked under the target's lock at
      admission: if they are not exactly these, 409 ``plan_stale`` names what changed.
    * ``bakeMs``: watch the promoted deployments this long after the switch, the
      previous ones kept running without traffic; a failure switches every route of the
      run back at once and the run fails. A control plane without it refuses the key
      (400 ``invalid_promote_deployment_request``: the platform's request is strict).
    """

    project_name: ProjectName
    source_environment_name: EnvironmentName
    target_environment_name: EnvironmentName
    service_name: ServiceName | None = None
    source_deployment_ids: list[Annotated[str, msgspec.Meta(min_length=1)]] | None = None
    bake_ms: BakeMs | None = None


class RollbackRequest(Request):
    """``POST /v1/deployments/rollback`` (the platform's request, plus our ``bakeMs``).

    Three modes: nothing but the environment (and maybe ``serviceName``): the previous
    deployment of each active service; ``targetDeploymentRunId``: that earlier run's
    deployments become active again (not with ``serviceName``); ``targetDeploymentId``:
    one service to that deployment (``serviceName`` needed when the project has several
    services). The response is a ``DeployResponse``, like promote's.
    """

    environment_name: EnvironmentName
    project_name: ProjectName
    service_name: ServiceName | None = None
    target_deployment_id: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    target_deployment_run_id: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    bake_ms: BakeMs | None = None


class DeployResponse(Wire):
    """Response of ``POST /v1/deployments/promote`` and ``POST /v1/deployments``."""

    deployment_run_id: str
    deployments: list[DeploymentSummary]
    environment: EnvironmentSummary
    project: ProjectSummary
    resources: list[Any] = msgspec.field(default_factory=list)


class InfrastructureBlocker(Wire):
    """What keeps the platform from acting on an environment (none locally)."""

    code: str
    message: Message
    retry_at: Timestamp


class StatusResponse(Wire):
    """``GET /v1/deployments/status``."""

    active_deployments: list[ReadSummary]
    deployments: list[ReadSummary]
    environment: NameRef
    project: NameRef
    infrastructure_blocker: InfrastructureBlocker | None = None
    """Always sent (null when nothing blocks); an older platform may leave it out."""


class ListResponse(Wire):
    """``GET /v1/deployments``."""

    deployments: list[ReadSummary]
    environment: NameRef
    project: NameRef


class EnvironmentListResponse(Wire):
    """(ours) ``GET /v1/environments?projectName=``: a project's environments, by name.

    Lets the CLI catch a mistyped target before a promotion creates it."""

    environments: list[EnvironmentSummary]
    project: NameRef


# (ours) Set to "true" on the answer to a promote or deploy that joined an identical run
# already in progress instead of starting one.
JOINED_HEADER: Final = "x-compartment-joined"


class RunResponse(Wire):
    """(ours) ``GET /v1/deployments/runs/{deploymentRunId}``: one run and where it goes.

    Lets ``compartment deployment watch <run id>`` follow a run knowing only its id.
    """

    deployment_run_id: str
    type: RunType
    status: RunStatus
    project: NameRef
    environment: NameRef
    source_environment: NameRef | None
    deployments: list[ReadSummary]
    created_at: Timestamp
    completed_at: Timestamp | None
    artifact_digests: dict[str, str] = msgspec.field(default_factory=dict)
    """Deployment id → ``sha256:`` digest of the artifact it runs (what ``promote --dry-run``
    compares: a promoted deployment runs the very artifact of its source)."""


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp of the API as an aware datetime (UTC when it names no zone);
    None when absent or unreadable: a display can do without it."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_done(deployment: ReadSummary) -> bool:
    """The official CLI's rule for a deployment that has finished, well or badly."""
    if deployment.status == "failed":
        return True
    if deployment.status == "stopped" and deployment.promotion_stage == "stopped":
        return True
    return deployment.status == "succeeded" and deployment.promotion_stage in (
        "active",
        "rolled_back",
    )
