"""The lifecycle flags of promote, deploy and rollback, and what they turn into.

``--dry-run``, ``--plan FILE`` and ``--only-changed`` (promote),
``--wait-for-target DURATION`` and ``--bake DURATION`` (promote, deploy, rollback):
their typer options, and ``lifecycle_of``, which checks them (usage errors, exit 2)
and builds the workflows' ``Lifecycle``. Light at import: typer only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compartment_cli.errors import UsageError

if TYPE_CHECKING:
    from compartment_cli.client.connection import Connection
    from compartment_cli.models.api import PromoteRequest
    from compartment_cli.models.plan import PromotionPlan
    from compartment_cli.workflows.lifecycle import Lifecycle

DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Show the plan (per service: source and target deployment, artifact digest, "
        "action) and change nothing. With --output json, a plan for --plan.",
    ),
]
PlanOpt = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Apply exactly this plan (saved from --dry-run --output json); refused with "
        "plan_stale (exit 3) if the source changed since.",
        show_default=False,
        dir_okay=False,
    ),
]
OnlyChangedOpt = Annotated[
    bool,
    typer.Option(
        "--only-changed",
        help="Leave out services whose artifact is already active in the target "
        "(nothing left: exit 0, no run).",
    ),
]
WaitForTargetOpt = Annotated[
    str | None,
    typer.Option(
        "--wait-for-target",
        help="If the target is busy with another run, wait up to DURATION for it to end, "
        "then go ahead (default: refuse at once, exit 3).",
        metavar="DURATION",
        show_default=False,
    ),
]
BakeOpt = Annotated[
    str | None,
    typer.Option(
        "--bake",
        help="After the switch, watch the new deployments for DURATION with the previous ones "
        "kept running; a failure switches back (exit 1). Local control plane only.",
        metavar="DURATION",
        show_default=False,
    ),
]

MAX_BAKE_SECONDS = 3600.0


Durations = Callable[[str, str], "float | None"]
"""``cli.app.parse_duration``: seconds of a DURATION flag, None for 0."""


def _seconds(parse: Durations, text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    seconds = parse(text, flag)
    if seconds is None:
        raise UsageError(f"{flag} must be above 0, not {text!r}", code="invalid_duration")
    return seconds


def lifecycle_of(
    parse: Durations,
    wait_for_target: str | None = None,
    bake: str | None = None,
    plan: Path | None = None,
    only_changed: bool = False,
    flags: tuple[str, str, str, str | None] | None = None,
) -> Lifecycle:
    """The checked lifecycle options; a plan file is read and must match ``flags``
    (``--from``, ``--to``, the project and ``--service``)."""
    from compartment_cli.workflows.lifecycle import Lifecycle
    from compartment_cli.workflows.plan import load_plan

    bake_seconds = _seconds(parse, bake, "--bake")
    if bake_seconds is not None and bake_seconds > MAX_BAKE_SECONDS:
        raise UsageError(f"--bake {bake!r} is over the limit of 1h", code="invalid_duration")
    loaded = None
    if plan is not None and flags is not None:
        source, target, project, service = flags
        loaded = load_plan(plan)
        mismatches = [
            f"{flag} {given!r} but the plan's is {planned!r}"
            for flag, given, planned in (
                ("--from", source, loaded.source_environment.name),
                ("--to", target, loaded.environment.name),
                ("--project", project, loaded.project.name),
            )
            if given != planned
        ]
        if service is not None and service != loaded.service_name:
            mismatches.append(f"--service {service!r} but the plan's is {loaded.service_name!r}")
        if mismatches:
            raise UsageError(
                f"--plan {str(plan)!r} does not match the flags: {'; '.join(mismatches)}",
                code="plan_mismatch",
            )
    return Lifecycle(
        plan=loaded,
        only_changed=only_changed,
        wait_for_target=_seconds(parse, wait_for_target, "--wait-for-target"),
        bake_ms=None if bake_seconds is None else max(1, round(bake_seconds * 1000)),
    )


def check_dry_run(**flags: object) -> None:
    """``--dry-run`` changes nothing, so flags that act on a run mean nothing with it."""
    given = [flag for flag, value in flags.items() if value not in (None, False)]
    if given:
        raise UsageError(
            f"--dry-run changes nothing; it cannot be combined with {', '.join(given)}",
            code="usage_error",
        )


def dry_run_plan(request: PromoteRequest, connection: Connection) -> PromotionPlan:
    """``promote --dry-run``: the plan, read from the control plane; nothing changes."""
    import anyio

    from compartment_cli.workflows.promote import run_dry_run

    return anyio.run(run_dry_run, connection, request)
