"""The real ``compartment`` executable under a pseudo-terminal, and the screen a person sees.

``Terminal`` starts the command with a pty as its stdin, stdout and stderr
(so it sees a terminal, as it would in a shell), feeds every byte it writes to
pyte (a VT100 emulator) from a reader thread, and lets a test read the screen
(``lines``) at a moment it chooses, or wait until the screen shows something.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyte

from tests.support import COMPARTMENT


class Terminal:
    def __init__(
        self, args: list[str], *, env: dict[str, str], cwd: Path, columns: int = 120, rows: int = 30
    ) -> None:
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Lock()
        self.raw = bytearray()
        primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            [COMPARTMENT, *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env={**env, "TERM": "xterm", "COLUMNS": str(columns), "LINES": str(rows)},
            cwd=cwd,
            start_new_session=True,
        )
        os.close(secondary)
        self._primary = primary
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._primary, 65536)
            except OSError:  # EIO: the command and all its children closed the pty
                return
            if not data:
                return
            with self._lock:
                self.raw.extend(data)
                self._stream.feed(data)

    def lines(self) -> list[str]:
        """The screen now, one string per row, trailing blanks and blank rows dropped."""
        with self._lock:
            rows = [row.rstrip() for row in self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def row(self, starts_with: str) -> str:
        """The screen row that starts with ``starts_with`` (leading blanks ignored)."""
        for line in self.lines():
            if line.strip().startswith(starts_with):
                return line
        raise AssertionError(f"no row starts with {starts_with!r}:\n" + "\n".join(self.lines()))

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if check(lines):
                return lines
            time.sleep(0.02)
        raise AssertionError("the screen never showed it:\n" + "\n".join(self.lines()))

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        os.close(self._primary)
        return code
