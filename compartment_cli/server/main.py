"""``compartment server``: run the local control plane in the foreground.

Start-up order matters: take the data dir's lock, stop whatever a previous
life of the server left running for this data dir, fail the runs it left in
flight, reopen every route on its port, restart every active deployment, and
only then accept requests.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from compartment_cli.models.config import (
    LOCAL_ORGANIZATION,
    LOCAL_REMOTE,
    ConfigFileError,
    config_path,
    record_remote,
)

if TYPE_CHECKING:
    from compartment_cli.server.runs import RunHook

log = logging.getLogger("compartment.server")


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
    event_retention: int = 100_000  # events kept in the log; older ones are pruned
    keep: int = 10  # deployments whose artifacts and logs are kept, per service and environment


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "compartment"


def load_or_create_token(data_dir: Path) -> str:
    path = data_dir / "token"
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _lock(data_dir: Path) -> IO[str] | None:
    handle = (data_dir / "server.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _bind_problem(host: str, port: int) -> str | None:
    """Why the API port cannot be bound, checked before any deployment is restarted."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def serve(options: ServerOptions, *, before_start: RunHook | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the process exit code.

    ``before_start`` is for benchmarks (``benchmarks/flood_server.py``): the
    ``compartment server`` command never sets it.
    """
    import uvicorn

    from compartment_cli.server.app import State, create_app
    from compartment_cli.server.artifacts import ArtifactStore
    from compartment_cli.server.bus import EventBus
    from compartment_cli.server.orchestrator import Orchestrator
    from compartment_cli.server.routes import RouteTable
    from compartment_cli.server.runs import Services
    from compartment_cli.server.runtime import Supervisor
    from compartment_cli.server.store import Store
    from compartment_cli.server.summaries import Summaries

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s compartment server: %(message)s", stream=sys.stderr
    )
    problem = _bind_problem(options.host, options.port)
    if problem:
        print(
            f"compartment server: cannot listen on {options.host}:{options.port}: {problem}",
            file=sys.stderr,
        )
        return 1
    data_dir = (options.data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = _lock(data_dir)
    if lock is None:
        print(f"compartment server: another server is already using {data_dir}", file=sys.stderr)
        return 1
    token = options.token or load_or_create_token(data_dir)
    supervisor = Supervisor(data_dir)
    leftovers = supervisor.reap_leftovers()
    if leftovers:
        log.info("stopped %d process(es) a previous server left running", len(leftovers))
    tmp_dir = data_dir / "tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    store = Store(data_dir / "state.db")
    bus = EventBus(store)
    routes = RouteTable(options.route_host)
    artifacts = ArtifactStore(data_dir / "artifacts")
    route_host = _url_host(options.route_host)
    summaries = Summaries(store, route_host, artifacts)
    services = Services(
        store=store,
        bus=bus,
        summaries=summaries,
        supervisor=supervisor,
        routes=routes,
        artifacts=artifacts,
        data_dir=data_dir,
        route_host=route_host,
        drain_timeout=options.drain_timeout,
        event_retention=options.event_retention,
    )
    orchestrator = Orchestrator(services, before_start=before_start, keep=options.keep)
    api_url = f"http://{_url_host(options.host)}:{options.port}"

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        try:
            async with orchestrator.running():
                if options.login:
                    path = config_path()
                    try:
                        record_remote(path, LOCAL_REMOTE, api_url, token, LOCAL_ORGANIZATION)
                        log.info("recorded remote %r in %s", LOCAL_REMOTE, path)
                    except (ConfigFileError, OSError) as exc:
                        log.warning("could not record remote %r: %s", LOCAL_REMOTE, exc)
                log.info("listening on %s (data in %s)", api_url, data_dir)
                yield
        finally:
            bus.close_all()
            await supervisor.stop_all(grace=3.0)
            await routes.close()

    state = State(
        store=store,
        summaries=summaries,
        bus=bus,
        orchestrator=orchestrator,
        artifacts=artifacts,
        token=token,
        data_dir=data_dir,
        tmp_dir=tmp_dir,
        events_enabled=options.events,
        max_upload_bytes=options.max_upload_bytes,
        ping_interval=options.ping_interval,
    )
    config = uvicorn.Config(
        create_app(state, lifespan=lifespan),
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; a handler of
    # our own turns that into a clean exit 0 after an orderly shutdown.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind after all
        pass
    finally:
        store.close()
        lock.close()
    if not server.started:
        print(
            f"compartment server: could not start on {options.host}:{options.port}",
            file=sys.stderr,
        )
        return 1
    log.info("stopped")
    return 0
