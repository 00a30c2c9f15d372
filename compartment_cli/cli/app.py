"""The typer app: commands parse and validate their flags, then hand over.

Each command builds its options, then runs one workflow with anyio inside
``Output.run``, which prints the result or the error and decides the exit
code (``compartment_cli.errors.ExitCode``). Heavy modules (httpx, the
workflows, the server) are imported inside command bodies only.

``run`` calls typer in non-standalone mode so that usage errors typer itself
finds (a missing ``--to``, ``--output yaml``) still give one JSON document on
stdout when ``--output json`` was asked for, and exit 2 either way.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from compartment_cli import __version__
from compartment_cli.cli import lifecycle as lc
from compartment_cli.cli.coercion import DirectCommand, DirectGroup
from compartment_cli.cli.extras import prepare_completion
from compartment_cli.cli.extras import register as register_extras
from compartment_cli.errors import ExitCode, UsageError, exit_code_help

if TYPE_CHECKING:
    from compartment_cli.cli.output import Output
    from compartment_cli.client.connection import Connection
    from compartment_cli.models.descriptor import Descriptor
    from compartment_cli.workflows.follow import WaitOptions

if TYPE_CHECKING:
    from typer._click.exceptions import ClickException
else:
    # The usage errors typer finds itself (typer.BadParameter and its kin): their common
    # base, found through the public name, whatever typer calls its vendored click.
    ClickException = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")


def exit_codes_epilog(run: str | None) -> str:
    """A command's own exit codes, for its ``--help`` (``\b`` keeps click from re-wrapping)."""
    return "\b\n" + exit_code_help(run)


app = typer.Typer(
    name="compartment",
    cls=DirectGroup,
    help="Deploy and promote Compartment services, and run a local control plane.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
deployment_app = typer.Typer(
    cls=DirectGroup,
    help="Look at deployments and follow deployment runs.",
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(deployment_app, name="deployment")


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"compartment {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Show the version and exit.", callback=_version),
    ] = False,
) -> None:
    """Deploy and promote Compartment services, and run a local control plane."""


# --- shared options ------------------------------------------------------------------------

ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="Project slug. If omitted, read from compartment.yml.",
        show_default=False,
        metavar="<name>",
    ),
]
ServiceOpt = Annotated[
    str | None,
    typer.Option(
        "--service",
        help="One service only. If omitted, all services.",
        show_default=False,
        metavar="<name>",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print progress events as they occur (stderr).")
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        help="text, or json: one JSON document on stdout whatever happens.",
        case_sensitive=False,
    ),
]
TimeoutOpt = Annotated[
    str,
    typer.Option(
        "--timeout",
        metavar="<duration>",
        help="How long to wait for the run to finish (e.g. 90s, 15m, 1h); 0 waits forever. "
        "Bounds the wait, not the run.",
    ),
]
EnvironmentOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        help="Environment (default: production).",
        show_default=False,
        metavar="<env>",
    ),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        help="Remote of the CLI config file to use.",
        show_default=False,
        metavar="<name>",
    ),
]
CreateEnvOpt = Annotated[
    bool,
    typer.Option(
        "--create-env",
        help="Create the target environment even if its name is close to an existing one's "
        "(without it, a near-typo such as prodution is refused).",
    ),
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="<url>",
        help="Control plane URL (overrides COMPARTMENT_API_URL and the config file).",
        show_default=False,
    ),
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str, flag: str = "--timeout") -> float | None:
    """Seconds in ``text`` (``90``, ``90s``, ``15m``, ``1h30m``, ``500ms``); ``0``: None."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not value or "".join(n + u for n, u in parts) != value:
            raise UsageError(
                f"{flag} {text!r} is not a duration (e.g. 30s, 15m, 1h, or 0 for no limit)",
                code="invalid_duration",
            )
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * scale[u] for n, u in parts)
    return None if seconds == 0 else seconds


def _output(output: OutputFormat, verbose: bool) -> Output:
    from compartment_cli.cli.output import Output

    return Output.create(json=output is OutputFormat.json, verbose=verbose)


def _connection(api_url: str | None, remote: str | None, out: Output) -> Connection:
    from compartment_cli.client.connection import DEFAULT_API_URL, resolve_connection

    connection = resolve_connection(api_url=api_url, remote=remote)
    out.connection = connection
    if connection.token is None and connection.api_url == DEFAULT_API_URL:
        out.not_configured = True
    return connection


def _project(
    project: str | None, service: str | None
) -> tuple[str, Descriptor | None, Path | None]:
    """The project slug and, when there is one, the validated compartment.yml and its directory.

    compartment.yml is always validated when found, even with ``--project``,
    like the official CLI; ``--service`` must then name one of its services.
    """
    from compartment_cli.project import NOT_FOUND_MESSAGE, find_project_file, load_project_file

    path = find_project_file(Path.cwd())
    descriptor = load_project_file(path) if path is not None else None
    if project is None:
        if descriptor is None:
            raise UsageError(NOT_FOUND_MESSAGE, code="project_file_not_found")
        project = descriptor.name
    if (
        service is not None
        and descriptor is not None
        and descriptor.name == project
        and service not in descriptor.services
    ):
        known = ", ".join(sorted(descriptor.services))
        raise UsageError(
            f"--service {service!r} is not a service of compartment.yml (services: {known})",
            code="service_not_in_project",
        )
    return project, descriptor, None if path is None else path.parent


def environment_flag(flag: str, value: str) -> None:
    """An environment flag names one: empty is a usage error that says so."""
    if not value:
        raise UsageError(f"{flag}: an environment name cannot be empty", code="invalid_name")


# Hidden, for tests and odd networks: how long the event stream may stay silent (no
# event, no ping) before it is re-opened with Last-Event-ID. Default 45s; keep it
# above the control plane's ping interval (15s; `compartment server --ping-interval`).
STALL_TIMEOUT_ENV = "COMPARTMENT_STREAM_STALL_TIMEOUT"


def _wait_options(timeout: str) -> WaitOptions:
    from compartment_cli.client.events import DEFAULT_STALL_TIMEOUT
    from compartment_cli.workflows.follow import WaitOptions

    stall_timeout = DEFAULT_STALL_TIMEOUT
    if value := os.environ.get(STALL_TIMEOUT_ENV, "").strip():
        parsed = parse_duration(value, STALL_TIMEOUT_ENV)
        if parsed is None:
            raise UsageError(f"{STALL_TIMEOUT_ENV} must be above 0", code="invalid_duration")
        stall_timeout = parsed
    return WaitOptions(timeout=parse_duration(timeout), stall_timeout=stall_timeout)


# --- promote ---------------------------------------------------------------------------------


@app.command(cls=DirectCommand, epilog=exit_codes_epilog("promotion"))
def promote(
    source: Annotated[
        str,
        typer.Option("--from", help="Source environment.", show_default=False, metavar="<env>"),
    ],
    target: Annotated[
        str, typer.Option("--to", help="Target environment.", show_default=False, metavar="<env>")
    ],
    project: ProjectOpt = None,
    service: ServiceOpt = None,
    verbose: VerboseOpt = False,
    output: OutputOpt = OutputFormat.text,
    timeout: TimeoutOpt = "15m",
    create_env: CreateEnvOpt = False,
    dry_run: lc.DryRunOpt = False,
    plan: lc.PlanOpt = None,
    only_changed: lc.OnlyChangedOpt = False,
    wait_for_target: lc.WaitForTargetOpt = None,
    bake: lc.BakeOpt = None,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Make the deployment active in one environment the active one in another.

    No new build runs: the same artifact is promoted, and traffic switches as
    soon as the promoted deployment passes its readiness checks. All services
    move together unless --service names one.
    """
    out = _output(output, verbose)

    def body() -> object:
        from compartment_cli.workflows.promote import promote_request, run_promote

        environment_flag("--from", source)
        environment_flag("--to", target)
        if source == target:
            raise UsageError(
                f"--from and --to both name {source!r}; promote between two environments",
                code="same_environment",
            )
        wait = _wait_options(timeout)
        project_name, _, _ = _project(project, service)
        request = promote_request(project_name, source, target, service)
        if dry_run:
            lc.check_dry_run(**{"--plan": plan, "--only-changed": only_changed, "--bake": bake})
            return lc.dry_run_plan(request, _connection(api_url, remote, out))
        flags = (source, target, project_name, service)
        life = lc.lifecycle_of(parse_duration, wait_for_target, bake, plan, only_changed, flags)
        if life.plan is not None:
            request = promote_request(project_name, source, target, life.plan.service_name)
        connection = _connection(api_url, remote, out)
        return out.wait_for_run(
            lambda progress: run_promote(
                connection, request, progress, wait, create_env=create_env, lifecycle=life
            )
        )

    raise typer.Exit(out.run(body))


# --- deploy ----------------------------------------------------------------------------------


@app.command(cls=DirectCommand, epilog=exit_codes_epilog("deployment"))
def deploy(
    environment: Annotated[
        str, typer.Option("--env", "-e", help="Environment to deploy to.", metavar="<env>")
    ] = "production",
    project: ProjectOpt = None,
    service: ServiceOpt = None,
    verbose: VerboseOpt = False,
    output: OutputOpt = OutputFormat.text,
    timeout: TimeoutOpt = "15m",
    create_env: CreateEnvOpt = False,
    wait_for_target: lc.WaitForTargetOpt = None,
    bake: lc.BakeOpt = None,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Pack the services of compartment.yml, upload them and wait for them to be active."""
    out = _output(output, verbose)

    def body() -> object:
        from compartment_cli.project import NOT_FOUND_MESSAGE
        from compartment_cli.workflows.deploy import DeployOptions, run_deploy

        environment_flag("--env", environment)
        wait = _wait_options(timeout)
        project_name, descriptor, project_dir = _project(project, service)
        if descriptor is None or project_dir is None:
            raise UsageError(NOT_FOUND_MESSAGE, code="project_file_not_found")
        if project_name != descriptor.name:
            raise UsageError(
                f"--project {project_name!r} differs from the name {descriptor.name!r} in "
                "compartment.yml; deploy uses the file's project",
                code="project_mismatch",
            )
        options = DeployOptions(
            project_dir=project_dir,
            descriptor=descriptor,
            environment=environment,
            service=service,
            create_env=create_env,
            lifecycle=lc.lifecycle_of(parse_duration, wait_for_target, bake),
        )
        connection = _connection(api_url, remote, out)
        return out.wait_for_run(lambda progress: run_deploy(connection, options, progress, wait))

    raise typer.Exit(out.run(body))


# --- deployment list / watch -----------------------------------------------------------------


@deployment_app.command("list", cls=DirectCommand, epilog=exit_codes_epilog(None))
def deployment_list(
    project: ProjectOpt = None,
    environment: EnvironmentOpt = None,
    service: ServiceOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many.")] = 20,
    output: OutputOpt = OutputFormat.text,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """List an environment's deployments, newest first."""
    out = _output(output, verbose=False)

    def body() -> object:
        import anyio

        from compartment_cli.workflows.listing import list_deployments

        project_name, _, _ = _project(project, service)
        connection = _connection(api_url, remote, out)
        return anyio.run(
            lambda: list_deployments(
                connection, project_name, environment=environment, service=service, limit=limit
            )
        )

    raise typer.Exit(out.run(body))


@deployment_app.command("watch", cls=DirectCommand, epilog=exit_codes_epilog("run"))
def deployment_watch(
    run_id: Annotated[str, typer.Argument(help="The deploymentRunId to follow.", metavar="RUN_ID")],
    verbose: VerboseOpt = False,
    timeline: Annotated[
        bool,
        typer.Option(
            "--timeline", help="End with the run's timeline: one bar per service, its steps."
        ),
    ] = False,
    output: OutputOpt = OutputFormat.text,
    timeout: TimeoutOpt = "15m",
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Follow a deployment run that is going on, or report one that has ended (with
    --verbose or --timeline, its events are read back from the control plane's event log)."""
    out = _output(output, verbose)
    out.timeline = timeline

    def body() -> object:
        from compartment_cli.workflows.watch import run_watch

        wait = _wait_options(timeout)
        connection = _connection(api_url, remote, out)
        replay = verbose or timeline
        return out.wait_for_run(
            lambda progress: run_watch(connection, run_id, progress, wait, replay=replay)
        )

    raise typer.Exit(out.run(body))


# --- entry -----------------------------------------------------------------------------------


def wants_json(args: Sequence[str]) -> bool:
    """Whether ``--output json`` is among ``args``, read before typer parses them."""
    for index, arg in enumerate(args):
        if arg == "--":
            return False
        if arg in ("--output", "-o") and index + 1 < len(args):
            if args[index + 1].lower() == "json":
                return True
        elif arg.lower() in ("--output=json", "-ojson"):
            return True
    return False


register_extras(app)


def run(args: Sequence[str]) -> int:
    """Parse ``args`` with typer, run the command, return the exit code."""
    prepare_completion()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(args), prog_name="compartment", standalone_mode=False)
    except ClickException as exc:
        if wants_json(args):
            from compartment_cli.render import error_json

            document = error_json("usage_error", exc.format_message(), exc.exit_code)
            sys.stdout.write(document.decode())
            sys.stdout.flush()
        else:
            exc.show()
        return exc.exit_code
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        return int(ExitCode.INTERRUPTED)
    return result if isinstance(result, int) else 0
