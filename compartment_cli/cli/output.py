"""Where things go: the result to stdout, progress and errors to stderr.

``Output`` knows the two streams, whether stderr is a terminal, whether colour is
allowed (a terminal, no ``NO_COLOR``), and the format. One progress reporter per command:

- ``--verbose``: one line per event on stderr, the moment it arrives
  (also with ``--output json``: stdout stays one JSON document);
- otherwise, on a terminal and in text mode: the live view on stderr, one row per service;
- otherwise: nothing but warnings and errors.

``Output.run`` is the one place where a command's outcome becomes an exit
code: results by their status, errors by their kind (``errors.ExitCode``),
anything unexpected as a bug report, traceback only with ``COMPARTMENT_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO, TypeVar

from compartment_cli import __version__, render
from compartment_cli.cli.streams import PipeSafe
from compartment_cli.errors import (
    CompartmentError,
    ExitCode,
    Interrupted,
    NotAuthorized,
    RunRef,
    Unavailable,
    exit_code_for_status,
)

if TYPE_CHECKING:
    from compartment_cli.cli.github import GitHubActions
    from compartment_cli.client.connection import Connection
    from compartment_cli.models.api import ListResponse, ReadSummary
    from compartment_cli.models.events import StepEvent
    from compartment_cli.models.logs import LogLine, LogsResponse
    from compartment_cli.models.result import RunResult
    from compartment_cli.workflows.follow import Progress, RunTarget

T = TypeVar("T")

REPORT_TO = "the compartment-cli issue tracker"
NOT_CONFIGURED_HINT = (
    "No control plane is configured here: start the local one with `compartment server` "
    "(it logs this CLI in as the remote 'local'), or point at yours with "
    "COMPARTMENT_API_URL and COMPARTMENT_TOKEN."
)
DEBUG_ENV = "COMPARTMENT_DEBUG"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_allowed(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour on a terminal only, never with ``NO_COLOR`` (any non-empty value) or TERM=dumb."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("TERM") == "dumb":
        return False
    return _is_tty(stream)


@dataclass
class Output:
    stdout: TextIO
    stderr: TextIO
    json: bool = False
    verbose: bool = False
    timeline: bool = False
    """Draw the run's timeline at its end (``deployment watch --timeline``)."""
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    not_configured: bool = False
    """No login, no URL: the default local control plane was tried (for the hint)."""
    connection: Connection | None = None
    """The control plane the command talks to, once known (for the hints of its errors)."""
    _progress: _Reporter | None = None

    @classmethod
    def create(
        cls,
        *,
        json: bool,
        verbose: bool,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Output:
        # A reader that leaves early (`| head`) must not change the exit code.
        return cls(
            stdout=PipeSafe.wrap(sys.stdout) if stdout is None else stdout,
            stderr=PipeSafe.wrap(sys.stderr) if stderr is None else stderr,
            json=json,
            verbose=verbose,
            environ=dict(os.environ) if environ is None else environ,
        )

    @property
    def stderr_color(self) -> bool:
        return color_allowed(self.stderr, self.environ)

    @property
    def stdout_color(self) -> bool:
        return not self.json and color_allowed(self.stdout, self.environ)

    @property
    def debug(self) -> bool:
        return self.environ.get(DEBUG_ENV, "") not in ("", "0")

    # --- running a command ----------------------------------------------------------------

    def run(self, body: Callable[[], object]) -> int:
        """Run a command's body; print what it returns or raises; return the exit code."""
        try:
            try:
                value = body()
            except KeyboardInterrupt:
                run = self._progress.run if self._progress is not None else None
                raise Interrupted("Interrupted.", run=run) from None
        except CompartmentError as exc:
            return self.error(exc)
        except Exception as exc:
            return self.unexpected(exc)
        return self.show(value)

    def wait_for_run(self, workflow: Callable[[Progress], Awaitable[T]]) -> T:
        """Run an async workflow with anyio, reporting its progress as chosen for this output."""
        import anyio

        reporter = self._reporter()
        if self._wants_timeline():
            reporter.steps = []
        self._progress = reporter
        try:
            return anyio.run(workflow, reporter)
        finally:
            reporter.close()

    @functools.cached_property
    def github(self) -> GitHubActions | None:
        """GitHub Actions' files and commands, when ``GITHUB_ACTIONS=true``."""
        from compartment_cli.cli.github import GitHubActions

        return GitHubActions.from_environ(self.environ)

    def _reporter(self) -> _Reporter:
        if self.verbose:
            return _LineReporter(self.stderr, color=self.stderr_color, group=bool(self.github))
        if not self.json and _is_tty(self.stderr):
            return _LiveReporter(self.stderr, color=self.stderr_color)
        return _Reporter(self.stderr, color=self.stderr_color)

    # --- what a command ends with ---------------------------------------------------------

    def show(self, value: object) -> int:
        from compartment_cli.models.api import ListResponse
        from compartment_cli.models.logs import LogsResponse
        from compartment_cli.models.result import RunResult

        if isinstance(value, RunResult):
            return self.result(value)
        if isinstance(value, ListResponse):
            return self.listing(value)
        if isinstance(value, LogsResponse):
            return self.logs(value)
        return self.lifecycle(value)

    def lifecycle(self, value: object) -> int:
        """A promotion plan (``--dry-run``), or nothing to promote (``--only-changed``)."""
        from compartment_cli.models.plan import NothingToPromote, PromotionPlan

        if isinstance(value, PromotionPlan | NothingToPromote) and self.json:
            self._write_json(render.plan_json(value))
        elif isinstance(value, PromotionPlan):
            self._write_lines(self.stdout, render.plan_lines(value, color=self.stdout_color))
        elif isinstance(value, NothingToPromote):
            self._write_lines(self.stdout, [value.message])
        return int(ExitCode.OK)

    def logs(self, logs: LogsResponse) -> int:
        if self.json:
            self._write_json(render.logs_json(logs))
        else:
            color = self.stdout_color
            self._write_lines(self.stdout, [render.log_line(ln, color=color) for ln in logs.lines])
            if not logs.deployments:
                self.stderr.write(
                    f"No deployments to show the logs of in {logs.project.name}"
                    f" {logs.environment.name}.\n"
                )
        return int(ExitCode.OK)

    def log_line(self, line: LogLine) -> None:
        """One line of a followed log, the moment it comes (JSON: one document per line)."""
        if self.json:
            self._write_json(render.log_json(line))
        else:
            self._write_lines(self.stdout, [render.log_line(line, color=self.stdout_color)])

    def result(self, result: RunResult) -> int:
        code = exit_code_for_status(result.status)
        self._timeline()
        if self.json:
            self._write_json(render.result_json(result))
        else:
            self._write_lines(self.stdout, render.result_lines(result, color=self.stdout_color))
        verb = "promotion" if result.source_environment is not None else "deployment"
        ended = self._progress is not None and self._progress.ended_before
        lines = render.failure_lines(result, verb=verb, color=self.stderr_color, ended=ended)
        self._write_lines(self.stderr, lines)
        if self.github is not None:
            self._write_lines(self.stderr, self.github.failure_lines(result, f"compartment {verb}"))
            self.github.record(result)
        return int(code)

    def _wants_timeline(self) -> bool:
        """``--timeline``, or at the end of a ``--verbose`` run on a terminal."""
        return self.timeline or (self.verbose and _is_tty(self.stderr))

    def _timeline(self) -> None:
        steps = self._progress.steps if self._progress is not None else None
        if not steps or not self._wants_timeline():
            return
        from compartment_cli.view.timeline import timeline_lines

        # --timeline asked for it as output; after --verbose it ends the progress on stderr.
        stream = self.stdout if self.timeline and not self.json else self.stderr
        color = self.stdout_color if stream is self.stdout else self.stderr_color
        width = shutil.get_terminal_size().columns - 1
        self._write_lines(stream, [*timeline_lines(steps, width=width, color=color), ""])

    def listing(self, listing: ListResponse) -> int:
        if self.json:
            self._write_json(render.list_json(listing))
        elif listing.deployments:
            self._write_lines(self.stdout, render.list_lines(listing, color=self.stdout_color))
        else:
            self.stderr.write(
                f"No deployments of {listing.project.name} in {listing.environment.name}.\n"
            )
        return int(ExitCode.OK)

    def error(self, error: CompartmentError) -> int:
        code = int(error.exit_code)
        message = error.message
        hint_line = ""
        if self.not_configured and isinstance(error, Unavailable | NotAuthorized):
            hint_line = NOT_CONFIGURED_HINT
            message = f"{message}\n{NOT_CONFIGURED_HINT}"
        elif (hint := self._hint(error)) is not None:
            # One line, like every message: a script may read the first line only.
            end = "" if message.rstrip().endswith((".", "?", "!")) else "."
            message = f"{message.rstrip()}{end} {hint}"
        if self.json:
            run = error.run
            document = render.error_json(
                error.code,
                message,
                code,
                run_id=None if run is None else run.run_id,
                project=None if run is None else run.project,
                environment=None if run is None else run.environment,
            )
            self._write_json(document)
        else:
            self._write_error(message.removesuffix(f"\n{hint_line}"), hint=hint_line)
        if self.github is not None:
            self._write_lines(self.stderr, [self.github.error_line(error, message)])
            self.github.record(None, error)
        return code

    def _hint(self, error: CompartmentError) -> str | None:
        """What to do about a connection or auth error, the same for every command."""
        return None if self.connection is None else self.connection.hint_for(error)

    def unexpected(self, exc: BaseException) -> int:
        code = int(ExitCode.INTERNAL)
        message = (
            f"unexpected {type(exc).__name__}: {exc}. This is a bug in compartment-cli "
            f"{__version__}; please report it on {REPORT_TO}, with what this prints when run "
            f"again with {DEBUG_ENV}=1."
        )
        if self.debug:
            traceback.print_exception(exc, file=self.stderr)
        if self.json:
            self._write_json(render.error_json("internal_error", message, code))
        else:
            self._write_error(message)
        return code

    # --- writing ----------------------------------------------------------------------------

    def _write_json(self, document: bytes) -> None:
        self.stdout.write(document.decode())
        self.stdout.flush()

    def _write_lines(self, stream: TextIO, lines: list[str]) -> None:
        if lines:
            stream.write("".join(line + "\n" for line in lines))
            stream.flush()

    def _write_error(self, message: str, hint: str = "") -> None:
        """Every line of ``message`` as an ``error:`` line (several problems of compartment.yml
        give several lines), then ``hint`` as it is."""
        prefix = "\x1b[31merror:\x1b[0m " if self.stderr_color else "error: "
        lines = [prefix + line for line in message.rstrip("\n").splitlines() or [""]]
        if hint:
            lines.append(hint)
        self.stderr.write("\n".join(lines) + "\n")
        self.stderr.flush()


# --- progress reporters ------------------------------------------------------------------------


class _Reporter:
    """The quiet reporter: warnings only. Base of the others (implements ``Progress``)."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.run: RunRef | None = None
        """The run being followed, once known."""
        self.ended_before = False
        """The run had ended before it was looked at (``deployment watch`` of an old run)."""
        self.steps: list[StepEvent] | None = None
        """The run's step events, kept when a timeline is to be drawn of them."""
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.run_id

    def run_started(self, target: RunTarget) -> None:
        self.run = RunRef(target.run_id, target.project, target.environment)
        self.ended_before = target.final_status is not None

    def step(self, event: StepEvent) -> None:
        self.keep(event)

    def keep(self, event: StepEvent) -> None:
        if self.steps is not None:
            self.steps.append(event)

    def deployment_changed(self, deployment: ReadSummary, *, polled: bool) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _LineReporter(_Reporter):
    """``--verbose``: every event, one line each, as it arrives.

    Within the event loop, the step lines of events that arrive together (a
    burst the workflow handles in one go) are written together when the
    workflow next waits (``flush``): one write per burst instead of one per
    line, which a flood of events is mostly made of. Any other line first
    writes out the pending ones; outside the event loop every line goes at once.
    """

    def __init__(self, stream: TextIO, *, color: bool, group: bool = False) -> None:
        super().__init__(stream, color=color)
        self._pending: list[str] = []
        self._group = group
        """Fold each run's lines in a GitHub Actions group."""
        self._in_group = False

    def _line(self, text: str) -> None:
        self._pending.append(text)
        self.flush()

    def _fold(self, title: str | None) -> None:
        """End the open group, and begin one titled ``title`` (if any)."""
        if self._in_group:
            self._line("::endgroup::")
        self._in_group = self._group and title is not None
        if self._in_group:
            self._line(f"::group::{title}")

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            with self._lock:
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()

    def close(self) -> None:
        self._fold(None)
        self.flush()

    def run_started(self, target: RunTarget) -> None:
        super().run_started(target)
        from compartment_cli.models.api import parse_timestamp

        # The control plane's time, like the step lines that follow (they may have
        # arrived while the request was still being answered).
        at = parse_timestamp(target.requested_at or target.created_at) or datetime.now(UTC)
        now = render.clock(at)
        services = ", ".join(f"{s} {d}" for d, s in sorted(target.services.items(), key=_by_svc))
        if target.source_environment is not None:
            what = f"promote {target.source_environment} → {target.environment}"
        else:
            what = f"{target.kind} to {target.environment}"
        self._fold(f"compartment {what}: run {target.run_id}")
        self._line(f"{now}  run {target.run_id}  {what}: {services or 'no deployments'}")

    def step(self, event: StepEvent) -> None:
        self.keep(event)
        line = render.step_line(event, color=self.color)
        if self._pending or _in_event_loop():
            self._pending.append(line)
        else:
            self._line(line)

    def deployment_changed(self, deployment: ReadSummary, *, polled: bool) -> None:
        # With the event stream, the step events already tell this, and why.
        if polled:
            line = render.deployment_change_line(deployment, datetime.now(UTC), color=self.color)
            self._line(line)

    def notice(self, message: str) -> None:
        self._line(f"{render.clock(datetime.now(UTC))}  {message}")


def _in_event_loop() -> bool:
    import anyio

    try:
        anyio.get_current_task()
    except RuntimeError:  # anyio's NoEventLoopError
        return False
    return True


def _by_svc(item: tuple[str, str]) -> str:
    return item[1]


class _LiveReporter(_Reporter):
    """On a terminal: the live view (``compartment_cli.view``), one row per service, redrawn in
    place; erased at the end, so the final result is what stays."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        super().__init__(stream, color=color)
        from compartment_cli.view.terminal import LiveScreen

        self._screen = LiveScreen(stream, color=color)

    def _line(self, text: str) -> None:
        self._screen.line(text)

    def run_started(self, target: RunTarget) -> None:
        super().run_started(target)
        self._screen.begin(
            project=target.project,
            target=target.environment,
            source=target.source_environment,
            run_id=target.run_id,
            services=target.services,
            started_at=target.created_at or target.requested_at,
        )

    def step(self, event: StepEvent) -> None:
        self.keep(event)
        self._screen.step(event)

    def deployment_changed(self, deployment: ReadSummary, *, polled: bool) -> None:
        self._screen.deployment(deployment)

    def close(self) -> None:
        self._screen.close()
