"""What ``--output json`` prints (CONTRACT.md section 5): a result, or an error."""

from __future__ import annotations

from compartment_cli.models.api import NameRef, ReadSummary, RunStatus, Wire


class RunResult(Wire):
    """The final state of a promotion (or deploy) run, as the command reports it.

    ``deployments``, ``activeDeployments``, ``environment`` and ``project`` are
    the official CLI's JSON keys.
    """

    deployment_run_id: str
    status: RunStatus
    project: NameRef
    source_environment: NameRef | None
    environment: NameRef
    deployments: list[ReadSummary]
    active_deployments: list[ReadSummary]
    duration_ms: int


class ErrorDetail(Wire):
    code: str
    message: str
    exit_code: int


class ErrorDocument(Wire):
    error: ErrorDetail
