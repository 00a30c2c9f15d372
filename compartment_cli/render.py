"""Results and events as text lines or JSON: pure functions, no I/O.

Colour is an argument: the front end decides whether the stream is a
terminal and whether ``NO_COLOR`` is set; these functions only obey.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo

import msgspec

from compartment_cli.models.api import ListResponse, ReadSummary, parse_timestamp
from compartment_cli.models.events import StepEvent
from compartment_cli.models.result import ErrorDetail, ErrorDocument, RunResult

__all__ = [
    "clock",
    "deployment_change_line",
    "error_json",
    "failure_lines",
    "format_duration",
    "list_json",
    "list_lines",
    "progress_line",
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


def _paint(text: str, style: str, color: bool) -> str:
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
            cells.append(_paint(padded, style, color))
        lines.append("  ".join(cells).rstrip())
    return lines


# --- results ---------------------------------------------------------------------------------


def result_lines(result: RunResult, *, color: bool = False) -> list[str]:
    """One line per service: service, deployment id, final status, route URL, duration."""
    rows = [
        [
            (d.service_name, "bold"),
            (d.id, ""),
            (d.status, d.status),
            (d.route_url or "-", ""),
            (format_duration(deployment_duration_ms(d)), ""),
        ]
        for d in sorted(result.deployments, key=lambda d: d.service_name)
    ]
    return _table(rows, color)


def failure_lines(result: RunResult, *, verb: str = "promotion", color: bool = False) -> list[str]:
    """What went wrong in a failed run, for stderr; nothing for a run that succeeded."""
    if result.status == "succeeded":
        return []
    lines = [
        _paint(
            f"The {verb} failed: {result.environment.name} keeps serving its previous deployments.",
            "failed",
            color,
        )
    ]
    for d in sorted(result.deployments, key=lambda d: d.service_name):
        if d.status in ("failed", "stopped") or d.failure_message:
            reason = d.failure_message or d.status
            # The platform's failure messages usually name the service already.
            prefix = "" if reason.startswith(f"{d.service_name}: ") else f"{d.service_name}: "
            lines.append(f"  {prefix}{reason}")
    return lines


def result_json(result: RunResult) -> bytes:
    """The result as ``--output json`` prints it (CONTRACT.md section 5), newline-ended."""
    return msgspec.json.encode(result) + b"\n"


def error_json(code: str, message: str, exit_code: int) -> bytes:
    """``{"error": {"code", "message", "exitCode"}}``, newline-ended."""
    document = ErrorDocument(error=ErrorDetail(code=code, message=message, exit_code=exit_code))
    return msgspec.json.encode(document) + b"\n"


# --- progress --------------------------------------------------------------------------------


def step_line(event: StepEvent, *, tz: tzinfo | None = None, color: bool = False) -> str:
    """``12:00:01.204  api  checking_readiness  GET /healthz answered 503, retrying``."""
    when = _clock_of(event.at, tz)
    step = event.step if event.status == "running" else f"{event.step} {event.status}"
    parts = [
        _paint(when, "dim", color),
        _paint(event.service_name, "bold", color),
        _paint(step, event.status, color),
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
        _paint(clock(at, tz), "dim", color),
        _paint(deployment.service_name, "bold", color),
        _paint(deployment.status, deployment.status, color),
        deployment.promotion_stage,
        "health " + _paint(deployment.health, deployment.health, color),
    ]
    line = "  ".join(parts)
    if deployment.failure_message:
        line += f"  {deployment.failure_message}"
    return line


def progress_line(frame: str, label: str, steps: Mapping[str, str]) -> str:
    """The spinner's line: ``⠋ promoting to production  api checking_readiness · web queued``."""
    current = " · ".join(f"{service} {step}" for service, step in sorted(steps.items()))
    return f"{frame} {label}  {current}".rstrip()


# --- deployment list -------------------------------------------------------------------------


def list_lines(listing: ListResponse, *, color: bool = False) -> list[str]:
    """One line per deployment, newest first: service, id, status, stage, active, created, route."""
    rows = [
        [
            (d.service_name, "bold"),
            (d.id, ""),
            (d.status, d.status),
            (d.promotion_stage, ""),
            ("active" if d.is_active else "-", "active" if d.is_active else "dim"),
            (d.created_at, "dim"),
            (d.route_url or "-", ""),
        ]
        for d in listing.deployments
    ]
    return _table(rows, color)


def list_json(listing: ListResponse) -> bytes:
    return msgspec.json.encode(listing) + b"\n"
