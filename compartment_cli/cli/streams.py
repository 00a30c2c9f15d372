"""stdout and stderr that a closed pipe cannot turn into a failure.

``compartment promote --verbose 2>&1 | head -2`` closes the pipe while the
promotion goes on; the next write raises ``BrokenPipeError``. That must not
change the exit code, which tells how the promotion ended, nor print a
traceback: ``PipeSafe`` drops what nobody reads any more and points the file
descriptor at ``/dev/null``, so that no later flush (the interpreter's own, at
exit) fails either. It passes everything else through.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from typing import Any, TextIO, cast

__all__ = ["PipeSafe"]


def _gone(exc: BaseException) -> bool:
    """A write to a reader that has left: a broken pipe, or a stream closed under us."""
    if isinstance(exc, BrokenPipeError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.EPIPE, errno.EINVAL)
    return isinstance(exc, ValueError)  # I/O operation on closed file


class PipeSafe:
    """A text stream whose writes and flushes never fail because the reader has gone."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self.broken = False

    @classmethod
    def wrap(cls, stream: TextIO) -> TextIO:
        return stream if isinstance(stream, PipeSafe) else cast(TextIO, cls(stream))

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._inner.write(text)
            except (OSError, ValueError) as exc:
                if not _gone(exc):
                    raise
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._inner.flush()
            except (OSError, ValueError) as exc:
                if not _gone(exc):
                    raise
                self._break()

    def isatty(self) -> bool:
        try:
            return not self.broken and self._inner.isatty()
        except ValueError:
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _break(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._inner.fileno())
            finally:
                os.close(devnull)
