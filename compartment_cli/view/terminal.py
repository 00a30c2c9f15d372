"""The live view on a terminal: ``RunView`` redrawn in place on stderr.

A thread redraws it every ``interval`` (elapsed times grow), and every event
redraws it at once, so a state change shows within one frame of its event.
The view is drawn with plain VT100 sequences (cursor up, erase line), cut to
the terminal's width and height so that no line wraps and the cursor always
finds the view's first line again. ``close`` erases it: the final result
printed after it is what stays on screen.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from typing import TextIO

from compartment_cli.models.api import ReadSummary, parse_timestamp
from compartment_cli.models.events import StepEvent
from compartment_cli.render import paint
from compartment_cli.view.state import RunView, frame

__all__ = ["LiveScreen"]

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_HIDE_CURSOR, _SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


class LiveScreen:
    """Draws one run's ``RunView`` on ``stream``, a terminal."""

    def __init__(self, stream: TextIO, *, color: bool, interval: float = 0.1) -> None:
        self.stream = stream
        self.color = color
        self.view: RunView | None = None
        self._label = "connecting"
        self._drawn = 0  # lines of the view now on screen
        self._tick = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()

    # --- what happened ---------------------------------------------------------------------

    def begin(
        self,
        *,
        project: str,
        target: str,
        source: str | None,
        run_id: str,
        services: dict[str, str],
        started_at: str | None,
    ) -> None:
        with self._lock:
            self.view = RunView.begin(
                project=project,
                target=target,
                source=source,
                run_id=run_id,
                services=services,
                started=parse_timestamp(started_at) or datetime.now(UTC),
            )
            self._draw()

    def step(self, event: StepEvent) -> None:
        with self._lock:
            if self.view is not None:
                self.view.step(event, datetime.now(UTC))
                self._draw()

    def deployment(self, deployment: ReadSummary) -> None:
        with self._lock:
            if self.view is not None:
                self.view.deployment(deployment, datetime.now(UTC))
                self._draw()

    def line(self, text: str) -> None:
        """A line that stays (a warning): printed above the view."""
        with self._lock:
            self._erase()
            self.stream.write(text + "\n")
            self._draw()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        with self._lock:
            self._erase()
            self.stream.write(_SHOW_CURSOR)
            self.stream.flush()

    # --- drawing ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._tick += 1
                self._draw()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}A\r\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if self._stop.is_set() and self._drawn == 0 and self.view is None:
            return
        size = shutil.get_terminal_size()
        width = max(20, size.columns - 1)
        spinner = _FRAMES[self._tick % len(_FRAMES)]
        if self.view is None:
            lines = [f"{spinner} {self._label}"]
        else:
            rows = frame(self.view, datetime.now(UTC), width=width, height=size.lines - 1)
            lines = [self._paint(cells, width) for cells in rows]
            lines[0] = f"{spinner} {lines[0]}"
        out = [_HIDE_CURSOR]
        if self._drawn:
            out.append(f"\x1b[{self._drawn}A\r")
        out.extend(f"\x1b[2K{line}\n" for line in lines)
        if len(lines) < self._drawn:
            out.append("\x1b[J")
        self._drawn = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def _paint(self, cells: list[tuple[str, str]], width: int) -> str:
        parts: list[str] = []
        room = width - 2  # the spinner of the first line
        for text, style in cells:
            if room <= 0:
                break
            text = text[:room]
            room -= len(text) + 2
            parts.append(paint(text, style, self.color))
        return "  ".join(parts).rstrip()
