"""The live view's model: what each service of a run is doing, built from the run's events.

A pure state machine: ``RunView`` takes the run's start, its step events and
its deployments' status changes (the event stream's, or what polling saw,
which has no steps), each with the time it happened, and ``frame`` turns it
into the lines a terminal shows at a given moment. Nothing here prints,
sleeps or reads a clock: the caller passes ``now``.

Events may come twice or late (a reconnect replays from ``Last-Event-ID``; a
poll sees a deployment after the fact): a step older than what a service has
already reached never moves it back, and a finished service stays finished.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from compartment_cli.models.api import ReadSummary, parse_timestamp
from compartment_cli.models.events import StepEvent

__all__ = ["RunView", "ServiceRow", "frame"]

# The states a service goes through, in order; a later one never goes back to an earlier one.
ORDER = (
    "queued",
    "building",
    "starting",
    "waiting for readiness",
    "ready",
    "switching",
    "baking",
    "switching back",
    "draining",
    "active",
)
FINAL = ("active", "failed", "not promoted", "not deployed", "stopped")

_STEP_STATES = {
    "queued": "queued",
    "preparing_source": "building",
    "building_image": "building",
    "publishing_image": "building",
    "release": "building",
    "starting_candidate": "starting",
    "checking_readiness": "waiting for readiness",
    "switching_route": "switching",
    "baking": "baking",
    "switching_back": "switching back",
    "draining_previous": "draining",
}
_STAGE_STATES = {
    "queued": "queued",
    "building": "building",
    "preparing_source": "building",
    "building_image": "building",
    "publishing_image": "building",
    "release": "building",
    "releasing": "starting",
    "kube_apply": "starting",
    "awaiting_readiness": "waiting for readiness",
    "activating": "switching",
    "restoring": "switching",
}
_ATTEMPT = re.compile(r"^(?P<answer>.*?) \(attempt (?P<n>\d+)\), retrying$")
_BECAUSE = re.compile(r"^[^:]+: not (?P<verb>\w+), because (?P<cause>[^:]+): ")


@dataclass
class ServiceRow:
    service: str
    deployment_id: str
    state: str = "queued"
    detail: str = ""
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def elapsed(self, now: datetime) -> float | None:
        """Seconds since this service's first event, up to its end."""
        if self.started is None:
            return None
        return max(0.0, ((self.ended or now) - self.started).total_seconds())

    def _reach(self, state: str) -> bool:
        """Move to ``state`` unless it would go back; whether it moved (or stayed)."""
        if self.finished:
            return False
        if state in ORDER and self.state in ORDER and ORDER.index(state) < ORDER.index(self.state):
            return False
        self.state = state
        return True


@dataclass
class RunView:
    """One run as the live view shows it."""

    project: str
    target: str
    source: str | None = None
    run_id: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    outcome: str | None = None
    rows: dict[str, ServiceRow] = field(default_factory=dict)
    """By deployment id."""

    @classmethod
    def begin(
        cls,
        *,
        project: str,
        target: str,
        source: str | None,
        run_id: str,
        services: dict[str, str],
        started: datetime | None,
    ) -> RunView:
        """The run is known: ``services`` maps deployment id → service name."""
        view = cls(project=project, target=target, source=source, run_id=run_id, started=started)
        for deployment_id, service in sorted(services.items(), key=lambda item: item[1]):
            view.rows[deployment_id] = ServiceRow(service, deployment_id, started=started)
        return view

    def _row(self, deployment_id: str, service: str) -> ServiceRow:
        row = self.rows.get(deployment_id)
        if row is None:
            row = self.rows[deployment_id] = ServiceRow(service, deployment_id)
        return row

    def step(self, event: StepEvent, now: datetime) -> None:
        """A ``deployment.step`` event (``now``: when it arrived, if its own time is unreadable)."""
        at = parse_timestamp(event.at) or now
        row = self._row(event.deployment_id, event.service_name)
        if row.started is None or (event.step == "queued" and at < row.started):
            row.started = at
        if self.started is None or at < self.started:
            self.started = at
        if row.finished:
            return
        if event.step == "completed":
            self._complete(row, event.status, event.message, at)
            return
        if event.status == "failed":
            row.state, row.ended = "failed", at
            row.detail = _first_line(event.message)
            return
        state = _STEP_STATES.get(event.step)
        if state is None:
            return
        if event.step == "checking_readiness" and event.status in ("succeeded", "skipped"):
            state = "ready"
        if not row._reach(state):
            return
        if state == "waiting for readiness":
            attempt = _ATTEMPT.match(event.message)
            if attempt is not None:
                row.attempts = max(row.attempts, int(attempt["n"]))
                row.detail = f"attempt {row.attempts} · {attempt['answer']}"
            elif not row.detail.startswith("attempt"):
                row.detail = event.message
        elif state == "ready":
            row.detail = event.message
        elif event.status == "running" or state in ("queued", "building", "starting"):
            row.detail = event.message if event.status == "running" else ""

    def deployment(self, deployment: ReadSummary, now: datetime) -> None:
        """A deployment's status or stage changed (an event, or polling without steps)."""
        row = self._row(deployment.id, deployment.service_name)
        row.started = row.started or parse_timestamp(deployment.created_at) or now
        if row.finished:
            return
        if deployment.status == "failed":
            self._complete(row, "failed", deployment.failure_message or "", _ended(deployment, now))
        elif deployment.status == "stopped":
            row.state, row.ended = "stopped", _ended(deployment, now)
        elif deployment.status == "succeeded" and deployment.promotion_stage in (
            "active",
            "rolled_back",
        ):
            self._complete(row, "succeeded", "", _ended(deployment, now))
        else:
            state = _STAGE_STATES.get(deployment.promotion_stage)
            if (
                deployment.promotion_stage == "awaiting_readiness"
                and deployment.health == "healthy"
            ):
                state = "ready"
            if state is not None:
                row._reach(state)

    def finish(self, outcome: str, now: datetime) -> None:
        """The run ended (its ``run.completed``, or the last poll)."""
        self.outcome = outcome
        self.ended = self.ended or now

    def _complete(self, row: ServiceRow, status: str, message: str, at: datetime) -> None:
        row.ended = at
        if status == "succeeded":
            row.state, row.detail = "active", ""
            return
        because = _BECAUSE.match(message)
        if because is not None:
            row.state, row.detail = f"not {because['verb']}", f"{because['cause']} failed"
        else:
            row.state, row.detail = "failed", _first_line(message)

    def elapsed(self, now: datetime) -> float | None:
        if self.started is None:
            return None
        return max(0.0, ((self.ended or now) - self.started).total_seconds())


def _ended(deployment: ReadSummary, now: datetime) -> datetime:
    return parse_timestamp(deployment.completed_at) or now


def _first_line(text: str) -> str:
    first = text.split("\n", 1)[0]
    return first.removesuffix("; last log lines:")


def seconds(value: float | None) -> str:
    """``0.4s``, ``12.3s``, ``2m05s``; ``-`` when unknown."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def header(view: RunView, now: datetime) -> str:
    """``shop  staging → production  run run_1  4.2s``."""
    move = f"{view.source} → {view.target}" if view.source else f"deploy to {view.target}"
    parts = [view.project, move]
    if view.run_id:
        parts.append(f"run {view.run_id}")
    if view.outcome:
        parts.append(view.outcome)
    parts.append(seconds(view.elapsed(now)))
    return "  ".join(parts)


STATE_STYLES = {
    "active": "succeeded",
    "ready": "succeeded",
    "failed": "failed",
    "not promoted": "dim",
    "not deployed": "dim",
    "stopped": "dim",
    "queued": "dim",
}


def frame(
    view: RunView, now: datetime, *, width: int = 100, height: int = 0
) -> list[list[tuple[str, str]]]:
    """The view at ``now``: the header, then one row per service of (text, style) cells:
    service, state, its own elapsed time, detail. ``height`` (when above 0) caps the rows;
    what does not fit is counted on a last line. Cells are cut to fit ``width``."""
    lines: list[list[tuple[str, str]]] = [[(header(view, now), "bold")]]
    rows = sorted(view.rows.values(), key=lambda r: r.service)
    room = len(rows) if height <= 0 else max(1, height - 2)
    shown, hidden = rows[:room], rows[room:]
    if hidden:  # a row that stopped being interesting goes first
        shown = sorted(rows, key=lambda r: (r.finished, r.service))[:room]
        hidden = [r for r in rows if r not in shown]
    name_width = max((len(r.service) for r in shown), default=0)
    for row in shown:
        cells = [
            ("  " + row.service.ljust(name_width), "bold"),
            (row.state.ljust(len("waiting for readiness")), STATE_STYLES.get(row.state, "running")),
            (seconds(row.elapsed(now)).rjust(6), "dim"),
        ]
        used = sum(len(text) for text, _ in cells) + 2 * len(cells)
        if row.detail and width - used > 3:
            detail = row.detail
            if len(detail) > width - used:
                detail = detail[: width - used - 1] + "…"
            cells.append((detail, ""))
        lines.append(cells)
    if hidden:
        finished = sum(r.finished for r in hidden)
        lines.append([(f"  … and {len(hidden)} more ({finished} finished)", "dim")])
    return lines
