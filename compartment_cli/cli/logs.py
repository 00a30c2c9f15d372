"""``compartment logs`` and ``compartment deployment logs``: registered on the app by
``cli.app``, which imports this module once its groups exist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compartment_cli.cli.app import (
    ApiUrlOpt,
    EnvironmentOpt,
    OutputFormat,
    OutputOpt,
    ProjectOpt,
    RemoteOpt,
    ServiceOpt,
    _connection,
    _output,
    _project,
    app,
    deployment_app,
    exit_codes_epilog,
)
from compartment_cli.cli.coercion import DirectCommand
from compartment_cli.errors import UsageError

if TYPE_CHECKING:
    from compartment_cli.cli.output import Output
    from compartment_cli.workflows.logs import LogsRequest

FollowOpt = Annotated[
    bool,
    typer.Option(
        "--follow",
        "-f",
        help="Keep printing new lines as they are written, until the deployments end (or Ctrl-C).",
    ),
]
TailOpt = Annotated[
    int,
    typer.Option("--tail", min=1, max=500, metavar="<lines>", help="How many of the last lines."),
]


@app.command("logs", cls=DirectCommand, epilog=exit_codes_epilog(None))
def logs(
    service: ServiceOpt = None,
    environment: EnvironmentOpt = None,
    project: ProjectOpt = None,
    follow: FollowOpt = False,
    tail: TailOpt = 100,
    output: OutputOpt = OutputFormat.text,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Show the logs of an environment's active deployments: their output (stdout, stderr)
    and the control plane's lines about them, oldest first."""
    out = _output(output, verbose=False)

    def body() -> object:
        from compartment_cli.workflows.logs import LogsRequest

        if environment == "":
            raise UsageError("--env: an environment name cannot be empty", code="invalid_name")
        project_name, _, _ = _project(project, service)
        request = LogsRequest(
            project=project_name, environment=environment, service=service, tail_lines=tail
        )
        return _read(out, remote, api_url, request, follow)

    raise typer.Exit(out.run(body))


@deployment_app.command("logs", cls=DirectCommand, epilog=exit_codes_epilog(None))
def deployment_logs(
    deployment_id: Annotated[
        str | None,
        typer.Argument(help="The deployment whose logs to show.", metavar="DEPLOYMENT_ID"),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Every deployment of this run instead.",
            show_default=False,
            metavar="<run id>",
        ),
    ] = None,
    project: ProjectOpt = None,
    follow: FollowOpt = False,
    tail: TailOpt = 100,
    output: OutputOpt = OutputFormat.text,
    remote: RemoteOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Show the logs of one deployment (a failed one too), or of every deployment of a run."""
    out = _output(output, verbose=False)

    def body() -> object:
        from compartment_cli.workflows.logs import LogsRequest

        if (deployment_id is None) == (run_id is None):
            raise UsageError(
                "name a deployment (compartment deployment logs <deploymentId>) or a run "
                "(--run <deploymentRunId>), not both",
                code="usage_error",
            )
        project_name = None
        if run_id is None:
            project_name, _, _ = _project(project, None)
        request = LogsRequest(
            project=project_name, deployment_id=deployment_id, run_id=run_id, tail_lines=tail
        )
        return _read(out, remote, api_url, request, follow)

    raise typer.Exit(out.run(body))


def _read(
    out: Output, remote: str | None, api_url: str | None, request: LogsRequest, follow: bool
) -> object:
    import anyio

    from compartment_cli.workflows.logs import read_logs

    connection = _connection(api_url, remote, out)
    return anyio.run(lambda: read_logs(connection, request, follow=follow, on_line=out.log_line))
