"""A run's timeline: one bar per service, its steps on a shared time axis.

A pure function of the run's step events: the bars are scaled to ``width``
so that a reader sees at a glance which service held the run up. Each step a
service went through (starting, readiness, switch, drain) has its own mark; a
service that was ready early waits (``·``) for the others before the switch,
which moves every route at once; a step that failed ends with ``✗``.
"""

from __future__ import annotations

import itertools
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
    "baking": ("≈", "bake", "running"),
    "switching_back": ("◀", "switch back", "failed"),
    "draining_previous": ("▒", "drain", "dim"),
}
ONLY_WHEN_SEEN = ("baking", "switching_back")
"""Steps of ``--bake``: in the legend only when a bar has them."""
INSTANT = ("switching_route", "switching_back")
"""Steps that move every route at one moment."""
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
    failed_at: datetime | None = None

    def see(self, event: StepEvent, at: datetime) -> None:
        self.start = at if self.start is None else min(self.start, at)
        self.end = at if self.end is None else max(self.end, at)
        if event.status == "failed" and self.failed is None:  # the first failure, the cause
            self.failed, self.failed_at = event.step, at
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
    legend = "  ".join(
        f"{mark} {name}"
        for step, (mark, name, _) in STEPS.items()
        if step not in ONLY_WHEN_SEEN or any(step in b.steps for b in timed)
    )
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
    spans: list[list[int]] = []  # [first, last] of each step the service went through
    for step in STEPS:  # in the order they happen
        times = bar.steps.get(step)
        if times:
            first, last = cell(min(times)), cell(max(times))
            if step in INSTANT:
                first = last  # the moment every route moved
            spans.append([first, last])
    # Every step keeps one column at least, after the one before it.
    for before, after in itertools.pairwise(spans):
        after[0] = max(after[0], before[0] + 1)
    for before, after in reversed(list(itertools.pairwise(spans))):
        after[0] = min(after[0], cells - 1)
        before[0] = min(before[0], after[0] - 1)
    steps = [step for step in STEPS if bar.steps.get(step)]
    for step, (first, last) in zip(steps, spans, strict=True):
        mark, _, style = STEPS[step]
        for i in range(max(first, 0), max(last, first) + 1):
            marks[min(i, cells - 1)] = (mark, style)
    for step, (first, _) in zip(steps, spans, strict=True):  # no later step hides a start
        marks[max(0, min(first, cells - 1))] = STEPS[step][0], STEPS[step][2]
    if bar.failed is not None:  # where it failed (a bake's switch back comes after)
        marks[cell(bar.failed_at or bar.end)] = (FAILED, "failed")
    return marks


def _seconds(value: float) -> str:
    return format_duration(round(value * 1000))
