"""Results and events as text lines or JSON: pure functions, no I/O.

Colour is an argument: the front end decides whether the stream is a
terminal and whether ``NO_COLOR`` is set; these functions only obey.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime, tzinfo

import msgspec

from compartment_cli.models.api import ListResponse, NameRef, ReadSummary, parse_timestamp
from compartment_cli.models.events import StepEvent
from compartment_cli.models.logs import LogLine, LogsResponse
from compartment_cli.models.plan import NothingToPromote, PromotionPlan
from compartment_cli.models.result import ErrorDetail, ErrorDocument, RunResult

__all__ = [
    "clock",
    "deployment_change_line",
    "error_json",
    "failure_lines",
    "format_duration",
    "header_line",
    "list_json",
    "list_lines",
    "log_json",
    "log_line",
    "logs_command",
    "logs_json",
    "paint",
    "plan_json",
    "plan_lines",
    "result_json",
    "result_lines",
    "step_line",
]

_RESET = "\x1b[0m"
_STYLES = {
    "succeeded": "\x1b[32m",
    "active": "\x1b[32m",
    "healthy": "\x1b[32m",
    "failed": "\x1b[31m",
    "unhealthy": "\x1b[31m",
    "stopped": "\x1b[2m",
    "skipped": "\x1b[2m",
    "running": "\x1b[33m",
    "queued": "\x1b[2m",
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
}


def paint(text: str, style: str, color: bool) -> str:
    """``text`` in ``style`` (a status, ``dim``, ``bold``) when ``color``."""
    code = _STYLES.get(style)
    return f"{code}{text}{_RESET}" if color and code else text


def clock(at: datetime, tz: tzinfo | None = None) -> str:
    """``12:00:01.204``: the time of day of ``at`` in ``tz`` (default: local)."""
    local = at.astimezone(tz)
    return local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def format_duration(ms: int | None) -> str:
    """``850ms``, ``4.2s``, ``1m05s``, ``2h03m``; ``-`` when unknown."""
    if ms is None or ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def deployment_duration_ms(deployment: ReadSummary) -> int | None:
    started = parse_timestamp(deployment.created_at)
    ended = parse_timestamp(deployment.completed_at)
    if started is None or ended is None:
        return None
    return int((ended - started).total_seconds() * 1000)


def _table(rows: Sequence[Sequence[tuple[str, str]]], color: bool) -> list[str]:
    """Rows of (text, style) cells, columns padded to their widest cell."""
    if not rows:
        return []
    widths = [max(len(row[i][0]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = []
        for i, (text, style) in enumerate(row):
            padded = text if i == len(row) - 1 else text.ljust(widths[i])
            cells.append(paint(padded, style, color))
        lines.append("  ".join(cells).rstrip())
    return lines


# --- results ---------------------------------------------------------------------------------

RESULT_COLUMNS = ("SERVICE", "DEPLOYMENT", "STATUS", "ROUTE", "DURATION")
_BECAUSE = re.compile(r"^(?P<service>[^:]+): not (?P<verb>\w+), because (?P<cause>[^:]+): ")


def header_line(result: RunResult, *, color: bool = False) -> str:
    """``shop  staging → production  run run_1  succeeded  4.2s``: what the run was and how it
    ended. Names the environment a new one when the result says this run created it, and says
    so when the command joined a run already in progress."""
    target = result.environment.name
    if result.environment_created:
        target += " (new environment)"
    if result.source_environment is not None:
        move = f"{result.source_environment.name} → {target}"
    elif {d.operation.type for d in result.deployments} == {"rollback"}:
        move = f"rollback of {target}"
    else:
        move = f"deploy to {target}"
    run = f"run {result.deployment_run_id}"
    if result.joined:
        run = f"joined run {result.deployment_run_id} already in progress"
    parts = [
        paint(result.project.name, "bold", color),
        move,
        run,
        paint(result.status, result.status, color),
        format_duration(result.duration_ms),
    ]
    return "  ".join(parts)


def _route_cell(deployment: ReadSummary, previous: ReadSummary | None) -> str:
    if deployment.is_active:
        return deployment.route_url or "-"
    if deployment.status == "failed":
        route = (previous.route_url if previous else None) or deployment.route_url
        if previous is not None and route:
            return f"not switched: {route} still serves {previous.id}"
        return "not switched"
    return "-"


def result_lines(result: RunResult, *, color: bool = False) -> list[str]:
    """The header line, then one row per service under column headers: service, deployment,
    status, route (only for an active deployment), duration."""
    active = {d.service_name: d for d in result.active_deployments}
    rows = [[(title, "dim") for title in RESULT_COLUMNS]]
    for d in sorted(result.deployments, key=lambda d: d.service_name):
        previous = active.get(d.service_name)
        if previous is not None and previous.id == d.id:
            previous = None
        rows.append(
            [
                (d.service_name, "bold"),
                (d.id, ""),
                (d.status, d.status),
                (_route_cell(d, previous), ""),
                (format_duration(deployment_duration_ms(d)), ""),
            ]
        )
    return [header_line(result, color=color), *_table(rows, color)]


def logs_command(deployment_id: str) -> str:
    return f"compartment deployment logs {deployment_id}"


def failure_lines(
    result: RunResult, *, verb: str = "promotion", color: bool = False, ended: bool = False
) -> list[str]:
    """What went wrong in a failed run, for stderr; nothing for a run that succeeded.

    The cause is printed once, under the service that caused it, with the command that
    shows that deployment's whole log; every other service gets one line. ``ended``: the
    run ended before it was looked at, so what the environment did is told in the past.
    """
    if result.status == "succeeded":
        return []
    keeps = "kept" if ended else "keeps"
    lines = [
        paint(
            f"The {verb} failed: {result.environment.name} {keeps} serving its previous "
            "deployments.",
            "failed",
            color,
        )
    ]
    failed = [
        d
        for d in sorted(result.deployments, key=lambda d: d.service_name)
        if d.status in ("failed", "stopped") or d.failure_message
    ]
    causes = {d.service_name for d in failed if not _BECAUSE.match(d.failure_message or "")}
    for d in failed:
        reason = d.failure_message or d.status
        because = _BECAUSE.match(reason)
        if because is not None and because["cause"] in causes:
            lines.append(f"  {d.service_name}: not {because['verb']}: {because['cause']} failed")
            continue
        if because is not None:  # the cause is not in this result: keep its reason here
            reason = reason[len(because["service"]) + 2 :]
        # The platform's failure messages usually name the service already.
        prefix = "" if reason.startswith(f"{d.service_name}: ") else f"{d.service_name}: "
        lines.extend(f"  {line}" for line in f"{prefix}{reason}".splitlines())
        if d.status == "failed":
            lines.append(f"    all of its output: {logs_command(d.id)}")
    return lines


def result_json(result: RunResult) -> bytes:
    """The result as ``--output json`` prints it (CONTRACT.md section 5), newline-ended."""
    return msgspec.json.encode(result) + b"\n"


def error_json(
    code: str,
    message: str,
    exit_code: int,
    *,
    run_id: str | None = None,
    project: str | None = None,
    environment: str | None = None,
) -> bytes:
    """``{"error": {"code", "message", "exitCode"}}``, newline-ended; with
    ``deploymentRunId``, ``project`` and ``environment`` when the error happened to a run."""
    detail = ErrorDetail(
        code=code,
        message=message,
        exit_code=exit_code,
        deployment_run_id=run_id,
        project=None if project is None else NameRef(name=project),
        environment=None if environment is None else NameRef(name=environment),
    )
    return msgspec.json.encode(ErrorDocument(error=detail)) + b"\n"


# --- progress --------------------------------------------------------------------------------


def step_line(event: StepEvent, *, tz: tzinfo | None = None, color: bool = False) -> str:
    """``12:00:01.204  api  checking_readiness  GET /healthz answered 503, retrying``."""
    when = _clock_of(event.at, tz)
    step = event.step if event.status == "running" else f"{event.step} {event.status}"
    if event.step == "queued" and event.status == "succeeded":
        step = "queued"  # the run took it in; "queued succeeded" says nothing more
    parts = [
        paint(when, "dim", color),
        paint(event.service_name, "bold", color),
        paint(step, event.status, color),
    ]
    if event.message:
        parts.append(event.message)
    return "  ".join(parts)


@functools.lru_cache(maxsize=256)
def _clock_of(at: str, tz: tzinfo | None) -> str:
    """``clock`` of an event's ``at``, or ``at`` itself when it is not a time. Cached: the
    events of a burst share a few timestamps, and converting one costs more than the rest
    of its line."""
    parsed = parse_timestamp(at)
    return clock(parsed, tz) if parsed is not None else at


def deployment_change_line(
    deployment: ReadSummary, at: datetime, *, tz: tzinfo | None = None, color: bool = False
) -> str:
    """``12:00:01.204  api  running  awaiting_readiness  health pending``: a new status or stage."""
    parts = [
        paint(clock(at, tz), "dim", color),
        paint(deployment.service_name, "bold", color),
        paint(deployment.status, deployment.status, color),
        deployment.promotion_stage,
        "health " + paint(deployment.health, deployment.health, color),
    ]
    line = "  ".join(parts)
    if deployment.failure_message:
        line += f"  {deployment.failure_message}"
    return line


# --- deployment list -------------------------------------------------------------------------


LIST_COLUMNS = ("SERVICE", "DEPLOYMENT", "STATUS", "STAGE", "ACTIVE", "CREATED", "ROUTE")


def list_lines(listing: ListResponse, *, color: bool = False) -> list[str]:
    """A header row, then one line per deployment, newest first: service, id, status, stage,
    active, created, and the route for an active deployment (no other is reached through it)."""
    rows = [[(title, "dim") for title in LIST_COLUMNS]]
    rows.extend(
        [
            (d.service_name, "bold"),
            (d.id, ""),
            (d.status, d.status),
            (d.promotion_stage, ""),
            ("active" if d.is_active else "-", "active" if d.is_active else "dim"),
            (d.created_at, "dim"),
            ((d.route_url or "-") if d.is_active else "-", ""),
        ]
        for d in listing.deployments
    )
    return _table(rows, color)


def log_line(line: LogLine, *, tz: tzinfo | None = None, color: bool = False) -> str:
    """``12:00:01.204  web  stderr  Traceback (most recent call last):``."""
    style = {"compartment": "dim", "stderr": "running"}.get(line.stream, "")
    return "  ".join(
        [
            paint(_clock_of(line.timestamp, tz), "dim", color),
            paint(line.service_name, "bold", color),
            paint(line.stream.ljust(6), style, color),
            line.message,
        ]
    )


def log_json(line: LogLine) -> bytes:
    """One line as one JSON document on one line (``--follow --output json``)."""
    return msgspec.json.encode(line) + b"\n"


def list_json(listing: ListResponse) -> bytes:
    return msgspec.json.encode(listing) + b"\n"


def logs_json(logs: LogsResponse) -> bytes:
    return msgspec.json.encode(logs) + b"\n"


# --- promotion plans (promote --dry-run) -----------------------------------------------------

PLAN_COLUMNS = ("SERVICE", "ACTION", "SOURCE", "DIGEST", "LABEL", "CREATED", "TARGET", "DIGEST")
_ACTION_STYLES = {"promote": "running", "new": "running", "unchanged": "dim"}


def _short_digest(digest: str | None) -> str:
    if not digest:
        return "-"
    algorithm, _, hexdigest = digest.rpartition(":")
    return f"{algorithm}:{hexdigest[:12]}" if algorithm else hexdigest[:12]


def plan_lines(plan: PromotionPlan, *, color: bool = False) -> list[str]:
    """What ``promote --dry-run`` would do: a header line, then one row per service."""
    target = plan.environment
    state = "exists" if target.exists else "new environment"
    if target.busy:
        state += f", busy with run {target.deployment_run_id}"
    header = (
        f"{paint(plan.project.name, 'bold', color)}  {plan.source_environment.name} → "
        f"{target.name} ({state})  plan, nothing changed"
    )
    rows = [[(title, "dim") for title in PLAN_COLUMNS]]
    for s in plan.services:
        rows.append(
            [
                (s.service_name, "bold"),
                (s.action, _ACTION_STYLES.get(s.action, "")),
                (s.source.deployment_id, ""),
                (_short_digest(s.source.artifact_digest), "dim"),
                (s.source.label or "-", ""),
                (s.source.created_at or "-", "dim"),
                (s.target.deployment_id if s.target else "-", ""),
                (_short_digest(s.target.artifact_digest if s.target else None), "dim"),
            ]
        )
    lines = [header, *_table(rows, color)]
    if not plan.digests_known:
        lines.append("(the control plane tells no artifact digests: no service shows as unchanged)")
    return lines


def plan_json(document: PromotionPlan | NothingToPromote) -> bytes:
    return msgspec.json.encode(document) + b"\n"
