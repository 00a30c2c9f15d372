"""The CLI's errors and the one place that decides exit codes (CONTRACT.md section 5).

::

    CompartmentError            every failure the CLI expects and explains
    ├── UsageError          2   flags, names, compartment.yml, config file
    ├── ApiRefused          3   the API refused the request (not found, busy, validation)
    ├── NotAuthorized       4   no or wrong token, not allowed
    ├── Unavailable         5   network or server failure after retries
    ├── WaitTimedOut      124   --timeout passed; the run goes on in the control plane
    └── Interrupted       130   Ctrl-C; the run goes on in the control plane

A promotion that ran and failed is not an error: it is a result whose status
is ``failed`` and it exits 1 (``exit_code_for_status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self


class ExitCode(IntEnum):
    OK = 0
    PROMOTION_FAILED = 1
    USAGE = 2
    REFUSED = 3
    NOT_AUTHORIZED = 4
    UNAVAILABLE = 5
    INTERNAL = 70
    TIMED_OUT = 124
    INTERRUPTED = 130


def exit_code_help(run: str | None = "promotion") -> str:
    """The exit codes a command's ``--help`` lists: its own. ``run``: what the command waits
    for (``promotion``, ``deployment``, ``run``), None for a command that waits for none."""
    lines = ["Exit codes:"]
    if run == "promotion":
        lines.append("  0    every promoted deployment is active")
        lines.append(
            "  1    the promotion failed; the target keeps serving its previous deployments"
        )
    elif run == "deployment":
        lines.append("  0    every deployed service is active")
        lines.append(
            "  1    the deployment failed; the environment keeps serving its previous deployments"
        )
    elif run is not None:
        lines.append(f"  0    the {run} succeeded: every deployment of it is active")
        lines.append(f"  1    the {run} failed; its environment kept its previous deployments")
    else:
        lines.append("  0    done")
    lines += [
        "  2    usage or input error (flags, names, compartment.yml)",
        "  3    the API refused the request (not found, busy, validation)",
        "  4    not authenticated or not allowed",
        "  5    network or server failure after retries",
        "  70   a bug in compartment-cli (the message says how to report it)",
    ]
    if run is not None:
        lines.append(f"  124  the wait timed out (the {run} goes on in the control plane)")
        lines.append(f"  130  interrupted (the {run} goes on in the control plane)")
    else:
        lines.append("  130  interrupted")
    return "\n".join(lines)


EXIT_CODE_HELP = exit_code_help("promotion")


@dataclass(frozen=True)
class RunRef:
    """The run an error happened to, once there is one: for the JSON error document."""

    run_id: str
    project: str | None = None
    environment: str | None = None


class CompartmentError(Exception):
    """An expected failure: a code for JSON, a message for people, an exit code, and the
    run it happened to, if one had started."""

    exit_code: ExitCode = ExitCode.UNAVAILABLE
    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, run: RunRef | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.run = run

    def about(self, run: RunRef | None) -> Self:
        """This error, naming ``run`` in its JSON document."""
        self.run = run
        return self


class UsageError(CompartmentError):
    exit_code = ExitCode.USAGE
    default_code = "usage_error"


class ApiRefused(CompartmentError):
    exit_code = ExitCode.REFUSED
    default_code = "request_refused"


class NotAuthorized(CompartmentError):
    exit_code = ExitCode.NOT_AUTHORIZED
    default_code = "unauthorized"


class Unavailable(CompartmentError):
    exit_code = ExitCode.UNAVAILABLE
    default_code = "unavailable"


class _RunContinues(CompartmentError):
    """The wait ended but the run goes on; the message says how to follow it again."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        code: str | None = None,
        kind: str = "promotion",
        run: RunRef | None = None,
    ) -> None:
        if run is None and run_id is not None:
            run = RunRef(run_id)
        if run is not None:
            message = (
                f"{message} The {kind} goes on in the control plane; "
                f"follow it again with: compartment deployment watch {run.run_id}"
            )
        super().__init__(message, code=code, run=run)
        self.run_id = None if run is None else run.run_id


class WaitTimedOut(_RunContinues):
    exit_code = ExitCode.TIMED_OUT
    default_code = "timeout"


class Interrupted(_RunContinues):
    exit_code = ExitCode.INTERRUPTED
    default_code = "interrupted"


def exit_code_for_status(status: str) -> ExitCode:
    """Exit code of a run that reached a final status."""
    return ExitCode.OK if status == "succeeded" else ExitCode.PROMOTION_FAILED


def error_for_response(status_code: int, code: str, message: str) -> CompartmentError:
    """Map an API error response to the error kind whose exit code it deserves."""
    if status_code in (401, 403):
        return NotAuthorized(message, code=code)
    if status_code >= 500 or status_code in (408, 429):
        return Unavailable(message, code=code)
    return ApiRefused(message, code=code)
