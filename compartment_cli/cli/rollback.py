"""``compartment rollback``: registered on the app by importing this module (``cli.app`` does)."""

from __future__ import annotations

from typing import Annotated

import typer

from compartment_cli.cli import lifecycle as lc
from compartment_cli.cli.app import (
    ApiUrlOpt,
    OutputFormat,
    OutputOpt,
    ProjectOpt,
    RemoteOpt,
    TimeoutOpt,
    VerboseOpt,
    _connection,
    _output,
    _project,
    _wait_options,
    app,
    exit_codes_epilog,
    parse_duration,
)
from compartment_cli.cli.coercion import DirectCommand


@app.command(cls=DirectCommand, epilog=exit_codes_epilog("rollback"))
def rollback(
    environment: Annotated[
        str, typer.Option("--env", "-e", help="Environment to roll back.", show_default=False)
    ],
    project: ProjectOpt = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="One service only (needed with --to when the project has several).",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The deployment id to make active again (one service).",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="An earlier deploymentRunId: its deployments become active again "
            "(not with --service or --to).",
            show_default=False,
        ),
    ] = None,
    verbose: VerboseOpt = False,
    output: OutputOpt = OutputFormat.text,
    timeout: TimeoutOpt = "15m",
    wait_for_target: lc.WaitForTargetOpt = None,
    bake: lc.BakeOpt = None,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Make earlier deployments active again: the previous one of each service, a whole
    earlier run (--run), or one service's chosen deployment (--service --to).

    Like a promotion, the earlier deployments start, must pass readiness, and only
    then does traffic switch, all services in one step.
    """
    out = _output(output, verbose)

    def body() -> object:
        from compartment_cli.workflows.rollback import (
            RollbackOptions,
            rollback_request,
            run_rollback,
        )

        wait = _wait_options(timeout)
        project_name, descriptor, _ = _project(project, service)
        same_file = descriptor is not None and descriptor.name == project_name
        options = RollbackOptions(
            project=project_name,
            environment=environment,
            service=service,
            to=to,
            run=run,
            services_known=len(descriptor.services) if same_file and descriptor else None,
            lifecycle=lc.lifecycle_of(parse_duration, wait_for_target, bake),
        )
        rollback_request(options)  # the usage errors, before any connection
        connection = _connection(api_url, remote, out)
        return out.wait_for_run(lambda progress: run_rollback(connection, options, progress, wait))

    raise typer.Exit(out.run(body))
