"""``compartment server``: the local control plane, in the foreground.

Registered on the app by importing this module (``compartment_cli.cli`` does). The
control plane itself is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compartment_cli.cli.app import app
from compartment_cli.cli.coercion import DirectCommand


@app.command(cls=DirectCommand)
def server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the API.", min=1, max=65535)] = 8787,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where state, artifacts and the token live "
            "(default: $XDG_DATA_HOME/compartment or ~/.local/share/compartment).",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="COMPARTMENT_SERVER_TOKEN",
            help="API token (default: read or create <data dir>/token). Prefer the "
            "environment variable: a flag is visible to other users in the process list.",
            show_default=False,
        ),
    ] = None,
    no_login: Annotated[
        bool,
        typer.Option("--no-login", help="Do not record the remote 'local' in the CLI config file."),
    ] = False,
    no_events: Annotated[
        bool,
        typer.Option(
            "--no-events",
            help="Serve no event stream (/v1/events answers 404), like the hosted platform.",
        ),
    ] = False,
    keep: Annotated[
        int,
        typer.Option(
            "--keep",
            min=1,
            help="Keep the artifacts and logs of the newest N deployments of each service in"
            " each environment (and whatever is active or still in use); remove the rest.",
        ),
    ] = 10,
    ping_interval: Annotated[float, typer.Option("--ping-interval", hidden=True)] = 15.0,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout", hidden=True)] = 10.0,
    event_retention: Annotated[
        int, typer.Option("--event-retention", hidden=True, min=1)
    ] = 100_000,
    max_upload_bytes: Annotated[int, typer.Option("--max-upload-bytes", hidden=True)] = (
        200 * 1024 * 1024
    ),
) -> None:
    """Run the local control plane in the foreground until Ctrl-C."""
    from compartment_cli.server.main import ServerOptions, serve

    options = ServerOptions(
        host=host,
        port=port,
        data_dir=data_dir,
        token=token,
        login=not no_login,
        events=not no_events,
        ping_interval=ping_interval,
        drain_timeout=drain_timeout,
        event_retention=event_retention,
        max_upload_bytes=max_upload_bytes,
        keep=keep,
    )
    raise typer.Exit(serve(options))
