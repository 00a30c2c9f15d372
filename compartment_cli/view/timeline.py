"""A run's timeline: one bar per service, its steps on a shared time axis.

A pure function of the run's step events: the bars are scaled to ``width``
so that a reader sees at a glance which service held the run up. Each step a
service went through (starting, readiness, switch, drain) has its own mark; a
service that was ready early waits (``·``) for the others before the switch,
which moves every route at once; a step that failed ends with ``✗``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from compartment_cli.models.api import parse_timestamp
from compartment_cli.models.events import StepEvent
from compartment_cli.render import format_duration, paint

__all__ = ["timeline_lines"]

# step → (mark, name in the legend, style when coloured)
STEPS = {
    "starting_candidate": ("▓", "starting", "running"),
    "checking_readiness": ("░", "readiness", "running"),
    "switching_route": ("█", "switch", "succeeded"),
    "draining_previous": ("▒", "drain", "dim"),
}
WAITING = "·"
FAILED = "✗"


@dataclass
class _Bar:
    service: str
    start: datetime | None = None
    end: datetime | None = None
    steps: dict[str, list[datetime]] = field(default_factory=dict)
    """step → [start, end] (one time while it has not ended)."""
    failed: str | None = None

    def see(self, event: StepEvent, at: datetime) -> None:
        self.start = at if self.start is None else min(self.start, at)
        self.end = at if self.end is None else max(self.end, at)
        if event.status == "failed":
            self.failed = event.step
        if event.step not in STEPS or event.status == "skipped":
            return
        times = self.steps.setdefault(event.step, [])
        times.append(at)


def timeline_lines(
    events: Sequence[StepEvent], *, width: int = 80, color: bool = False
) -> list[str]:
    """The timeline of the run whose step events are ``events``: a title, one line per
    service, the time axis and a legend; nothing when there are no steps."""
    bars: dict[str, _Bar] = {}
    for event in events:
        at = parse_timestamp(event.at)
        if at is not None:
            bars.setdefault(event.deployment_id, _Bar(event.service_name)).see(event, at)
    timed = [b for b in bars.values() if b.start is not None and b.end is not None]
    if not timed:
        return []
    t0 = min(b.start for b in timed if b.start is not None)
    t1 = max(b.end for b in timed if b.end is not None)
    total = max((t1 - t0).total_seconds(), 0.001)
    label = max(len(b.service) for b in timed)
    suffix = 8  # "  12.3s"
    cells = max(10, width - label - 2 - suffix)
    lines = [f"Timeline ({_seconds(total)}, one column = {_seconds(total / cells)})"]
    for bar in sorted(timed, key=lambda b: b.service):
        marks = _marks(bar, t0, total, cells)
        text = "".join(paint(mark, style, color) for mark, style in marks)
        took = ((bar.end or t0) - (bar.start or t0)).total_seconds()
        lines.append(f"{bar.service.ljust(label)}  {text}  {_seconds(took).rjust(suffix - 2)}")
    axis_end = _seconds(total)
    lines.append(" " * (label + 2) + "0s".ljust(cells - len(axis_end)) + axis_end)
    legend = "  ".join(f"{mark} {name}" for mark, name, _ in STEPS.values())
    lines.append(f"{legend}  {WAITING} waiting  {FAILED} failed")
    return lines


def _marks(bar: _Bar, t0: datetime, total: float, cells: int) -> list[tuple[str, str]]:
    def cell(at: datetime) -> int:
        return min(cells - 1, int((at - t0).total_seconds() / total * cells))

    marks = [(" ", "")] * cells
    if bar.start is None or bar.end is None:
        return marks
    for i in range(cell(bar.start), cell(bar.end) + 1):
        marks[i] = (WAITING, "dim")
    for step, times in bar.steps.items():
        mark, _, style = STEPS[step]
        first, last = cell(min(times)), cell(max(times))
        if step == "switching_route" and len(times) == 1:
            first = last  # one event: the moment every route moved
        for i in range(first, last + 1):
            marks[i] = (mark, style)
    if bar.failed is not None:
        marks[cell(bar.end)] = (FAILED, "failed")
    return marks


def _seconds(value: float) -> str:
    return format_duration(round(value * 1000))
