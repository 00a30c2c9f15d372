"""How soon a promotion switches: readiness seen, route moved, the app's own start-up.

A project of one ``web`` service, a small asyncio HTTP app that is ready as
soon as it listens. It writes to its log the wall time of the first 2xx it
answers (a readiness probe) and of the first request it answers that is not
one (a client's, through the route). Promotions staging → production run
while a client requests the route without pause, each request on a fresh
connection. For each promotion:

- switch lag: the candidate's first 2xx → the first client request it
  answered (readiness seen, route switched, the next request routed);
- server-side time: the run's ``completedAt - createdAt``, against the
  reference measured in the same run: the app's own time from start to
  ready, the same app started directly (no control plane) and probed every
  millisecond until it answers 200.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import PYTHON, Plane, parse_time
from compartment_cli.server.runtime import free_port

PROJECT = "switch"

APP = """\
import asyncio, os, sys, time

logged = set()
KEPT = b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"
CLOSING = b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n"


def log_once(what):
    if what not in logged:
        logged.add(what)
        print(f"{what} {time.time():.6f}", flush=True)


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            path = head.split(b" ", 2)[1]
            if path == b"/healthz":
                log_once("first-2xx")
            else:
                log_once("first-client")
            closing = b"connection: close" in head.lower()
            writer.write(CLOSING if closing else KEPT)
            await writer.drain()
            if closing:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "web").mkdir(exist_ok=True)
    (root / "web" / "app.py").write_text(APP)
    descriptor = {
        "name": PROJECT,
        "services": {
            "web": {
                "path": "web",
                "kind": "web",
                "run": {"command": f"exec {PYTHON} app.py"},
                "readiness": {"type": "http", "path": "/healthz", "timeoutMs": 15000},
            }
        },
    }
    (root / "compartment.yml").write_text(json.dumps(descriptor, indent=2) + "\n")
    return root


@dataclass
class Samples:
    switch_lag: list[float] = field(default_factory=list)  # s
    server: list[float] = field(default_factory=list)  # s
    app_ready: list[float] = field(default_factory=list)  # s


class Hammer:
    """Requests a URL without pause, each on a fresh connection, until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(request)
                    while sock.recv(65536):
                        pass
            except OSError:
                time.sleep(0.001)


def _logged(log: Path, what: str) -> float:
    for line in log.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == what:
            return float(value)
    raise RuntimeError(f"{log} has no {what} line")


def app_ready_time(app: Path) -> float:
    """The app started directly: seconds from spawning it to its first 200."""
    port = free_port()
    request = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    started = time.monotonic()
    process = subprocess.Popen(
        [PYTHON, str(app)],
        env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        cwd=app.parent,
    )
    try:
        while time.monotonic() - started < 15:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(request)
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.001)
        raise RuntimeError("the app never answered")
    finally:
        process.terminate()
        process.wait(10)


def measure(plane: Plane, project: Path, count: int) -> Samples:
    """``count`` promotions under a client's load, each beside one direct start of the app."""
    samples = Samples()
    plane.deploy_project(project, "staging")
    run = plane.wait_run(plane.post_promote(project=PROJECT))  # production exists from here on
    route = run["deployments"][0]["routeUrl"]
    port = int(route.rstrip("/").rpartition(":")[2])
    with Hammer(port):
        for _ in range(count):
            samples.app_ready.append(app_ready_time(project / "web" / "app.py"))
            run = plane.wait_run(plane.post_promote(project=PROJECT))
            if run["status"] != "succeeded":
                raise RuntimeError(f"promotion failed: {run}")
            deployment = run["deployments"][0]
            log = plane.data_dir / "logs" / f"{deployment['id']}.log"
            deadline = time.monotonic() + 10
            while "first-client" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.01)
            samples.switch_lag.append(_logged(log, "first-client") - _logged(log, "first-2xx"))
            samples.server.append(parse_time(run["completedAt"]) - parse_time(run["createdAt"]))
    return samples
