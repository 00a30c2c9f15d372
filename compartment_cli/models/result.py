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
    """The run's duration as the control plane timed it: from the creation of its first
    deployment to the completion of its last (the same in promote, deploy and watch)."""
    environment_created: bool = False
    """This run created its target environment (it did not exist before the request)."""
    joined: bool = False
    """The request joined an identical run already in progress instead of starting one."""


class ErrorDetail(Wire, omit_defaults=True):
    """``deploymentRunId``, ``project`` and ``environment`` are there once a run exists
    (a timeout, an interruption, a network failure while it went on)."""

    code: str
    message: str
    exit_code: int
    deployment_run_id: str | None = None
    project: NameRef | None = None
    environment: NameRef | None = None


class ErrorDocument(Wire):
    error: ErrorDetail
