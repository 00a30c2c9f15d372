"""``compartment server``: run the local control plane in the foreground."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8787
    data_dir: Path | None = None  # None: $XDG_DATA_HOME/compartment (or ~/.local/share/compartment)
    token: str | None = None  # None: read or generate <data dir>/token (mode 0600)
    login: bool = True  # record the remote `local` in the CLI config file
    events: bool = True  # False: /v1/events answers 404 (a control plane without the stream)
    route_host: str = "127.0.0.1"
    max_upload_bytes: int = 200 * 1024 * 1024
    ping_interval: float = 15.0
    drain_timeout: float = 10.0


def serve(options: ServerOptions) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the process exit code."""
    raise NotImplementedError
