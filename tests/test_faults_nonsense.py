"""Fault scenarios of issue 4 where the control plane answers nonsense.

Each test puts a tiny HTTP server of its own (``http.server``, raw bytes on the
socket) where the control plane should be and runs the installed ``compartment
promote --output json`` against it, measuring the command's peak memory. Whatever
comes back, the command must end with the documented exit code, one JSON
document on stdout naming what went wrong, no traceback, and memory well under
100 MB even when the server sends 20 MB.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fault_scenarios import Finished, run_measured
from tests.support import REGISTRY, clean_environ

TOKEN = "nonsense-token-1234"
RUN = "run_nonsense"
DEPLOYMENT = "dep_nonsense"
AT = "2026-01-01T00:00:00.000Z"
MEMORY_LIMIT_KIB = 100 * 1024
GARBAGE_BYTES = 20 * 1024 * 1024

Handler = Callable[[BaseHTTPRequestHandler], None]


# --- the server -------------------------------------------------------------------------------


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a 20 MB answer is the point, not a problem


class FakeControlPlane:
    """``routes`` maps ``"GET /v1/events"`` (method and path, no query) to a handler that
    writes the raw response; anything else is a 404 API error."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        fake = self

        class Handle(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.routes.get(f"GET {self.path.split('?')[0]}", not_found)(self)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.routes.get(f"POST {self.path.split('?')[0]}", not_found)(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Quiet(("127.0.0.1", 0), Handle)
        self.port = self.server.server_address[1]
        REGISTRY["ports"].add(self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def fake() -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane()
    plane.thread.start()
    yield plane
    plane.server.shutdown()
    plane.server.server_close()


def promote(fake: FakeControlPlane, *extra: str) -> Finished:
    done = run_measured(
        *("promote", "--from", "staging", "--to", "production", "--project", "shop"),
        *("--output", "json", "--api-url", fake.url, *extra),
        env=clean_environ(COMPARTMENT_TOKEN=TOKEN, COMPARTMENT_CLI_CONFIG_DIR="/nonexistent"),
        timeout=60,
    )
    assert done.max_rss_kib < MEMORY_LIMIT_KIB, f"{done.max_rss_kib} KiB\n{done}"
    assert TOKEN not in done.stdout + done.stderr
    return done


# --- raw answers ------------------------------------------------------------------------------


def respond(status: int, content_type: str, body: bytes, *, length: int | None = None) -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body) if length is None else length))
        request.end_headers()
        request.wfile.write(body)

    return handle


def not_found(request: BaseHTTPRequestHandler) -> None:
    error = {"error": {"code": "not_found", "message": "no such endpoint"}}
    respond(404, "application/json", json.dumps(error).encode())(request)


def stream(*parts: bytes | Callable[[], Iterator[bytes]]) -> Handler:
    """An event stream of ``parts`` (bytes, or generators of bytes); then pings, until the
    client hangs up."""

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        try:
            request.wfile.write(b"retry: 100\n\n")
            for part in parts:
                for chunk in [part] if isinstance(part, bytes) else part():
                    request.wfile.write(chunk)
            while True:
                request.wfile.write(b": ping\n\n")
                request.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return

    return handle


def sse(event_id: int, event: str, data: object) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def summary(status: str = "succeeded", stage: str = "active") -> dict[str, Any]:
    return {
        "id": DEPLOYMENT,
        "serviceName": "web",
        "deploymentRunId": RUN,
        "status": status,
        "promotionStage": stage,
        "health": "healthy",
        "isActive": status == "succeeded",
        "label": None,
        "routeUrl": "http://127.0.0.1:9/",
        "failureMessage": None,
        "createdAt": AT,
        "completedAt": AT if status == "succeeded" else None,
        "rollbackAvailable": False,
        "operation": {"type": "promote", "status": status, "createdAt": AT, "completedAt": None},
    }


PROMOTED = {
    "deploymentRunId": RUN,
    "deployments": [
        {
            **{k: v for k, v in summary("queued", "queued").items() if k != "deploymentRunId"},
            "operation": {
                **summary("queued", "queued")["operation"],
                "id": RUN,
                "targetType": "deployment",
                "targetId": DEPLOYMENT,
            },
            "readiness": None,
            "build": {
                "env": [],
                "include": [],
                "packages": {"build": [], "runtime": []},
                "strategy": "auto",
            },
            "run": {"command": "serve"},
        }
    ],
    "environment": {
        "id": "env_1",
        "name": "production",
        "projectId": "prj_1",
        "createdAt": AT,
        "updatedAt": AT,
    },
    "project": {
        "id": "prj_1",
        "name": "shop",
        "organizationId": "org_1",
        "archivedAt": None,
        "createdAt": AT,
        "updatedAt": AT,
    },
    "resources": [],
}
STATUS = {
    "activeDeployments": [summary()],
    "deployments": [summary()],
    "environment": {"name": "production"},
    "project": {"name": "shop"},
}
STEP = {
    "deploymentRunId": RUN,
    "deploymentId": DEPLOYMENT,
    "serviceName": "web",
    "step": "checking_readiness",
    "status": "running",
    "message": "GET /healthz answered 503, retrying",
    "at": AT,
}
COMPLETED = {"deploymentRunId": RUN, "status": "succeeded", "deployments": [summary()], "at": AT}


def a_working_control_plane(fake: FakeControlPlane, events: Handler) -> None:
    fake.routes["POST /v1/deployments/promote"] = respond(
        200, "application/json", json.dumps(PROMOTED).encode()
    )
    fake.routes["GET /v1/deployments/status"] = respond(
        200, "application/json", json.dumps(STATUS).encode()
    )
    fake.routes["GET /v1/events"] = events


RUN_KEYS = ("deploymentRunId", "project", "environment")


def error_of(done: Finished, exit_code: int, code: str) -> str:
    assert done.returncode == exit_code, done
    document = done.json()
    # Once a run exists, the error names it (deploymentRunId, project, environment).
    named = {k: document["error"].pop(k) for k in RUN_KEYS if k in document["error"]}
    assert document == {
        "error": {"code": code, "message": document["error"]["message"], "exitCode": exit_code}
    }
    if named:
        assert named == {"deploymentRunId": RUN, "project": {"name": "shop"},
                         "environment": {"name": "production"}}  # fmt: skip
    message: str = document["error"]["message"]
    assert "\n" not in message.strip()
    return message


# --- the scenarios ----------------------------------------------------------------------------

HTML = b"<!doctype html><html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"


def test_an_html_error_page_everywhere(fake: FakeControlPlane) -> None:
    for route in ("GET /v1/events", "POST /v1/deployments/promote", "GET /v1/deployments/status"):
        fake.routes[route] = respond(502, "text/html", HTML)

    message = error_of(promote(fake), 5, "network_error")

    assert "HTTP 502 Bad Gateway with an HTML page" in message
    assert fake.url in message


def test_an_html_page_instead_of_the_promotion(fake: FakeControlPlane) -> None:
    # A login portal or a web site at the API URL: 200, but not the API. No stream (404).
    fake.routes["POST /v1/deployments/promote"] = respond(200, "text/html", HTML)

    message = error_of(promote(fake), 5, "bad_response")

    assert "POST /v1/deployments/promote with an HTML page" in message


def test_a_truncated_json_body(fake: FakeControlPlane) -> None:
    body = json.dumps(PROMOTED).encode()[:100]
    fake.routes["POST /v1/deployments/promote"] = respond(200, "application/json", body)

    message = error_of(promote(fake), 5, "bad_response")

    assert "answered POST /v1/deployments/promote with JSON this CLI cannot read" in message
    assert "truncated" in message


def test_a_body_cut_short_of_its_length(fake: FakeControlPlane) -> None:
    # The connection ends before Content-Length bytes came: the promotion may have started.
    body = json.dumps(PROMOTED).encode()
    fake.routes["POST /v1/deployments/promote"] = respond(
        200, "application/json", body[:100], length=len(body)
    )

    message = error_of(promote(fake), 5, "network_error")

    assert "was not sent again" in message


def test_a_wrong_content_type_on_the_event_stream(fake: FakeControlPlane) -> None:
    a_working_control_plane(fake, respond(200, "application/json", b'{"events": []}'))

    message = error_of(promote(fake), 5, "bad_response")

    assert "not an event stream" in message
    assert "'application/json'" in message


def test_an_event_larger_than_a_mebibyte(fake: FakeControlPlane) -> None:
    def huge() -> Iterator[bytes]:
        yield b"id: 1\nevent: deployment.step\ndata: "
        for _ in range(GARBAGE_BYTES // 65536):
            yield b"x" * 65536

    a_working_control_plane(fake, stream(huge))

    message = error_of(promote(fake), 5, "event_too_large")

    assert "larger than 1024 KiB" in message


def test_unknown_event_types_are_ignored_even_20_megabytes_of_them(
    fake: FakeControlPlane,
) -> None:
    line = {"line": "x" * 1000}

    def unknown() -> Iterator[bytes]:
        ids = itertools.count(1)
        for _ in range(GARBAGE_BYTES // 1050):
            yield sse(next(ids), "deployment.log", line)

    a_working_control_plane(
        fake,
        stream(
            sse(1, "deployment.step", STEP),
            unknown,
            sse(10**9, "run.completed", COMPLETED),
        ),
    )

    done = promote(fake, "--verbose")

    assert done.returncode == 0, done
    assert done.json()["status"] == "succeeded"
    assert "warning" not in done.stderr
    assert "deployment.log" not in done.stderr
    assert "GET /healthz answered 503, retrying" in done.stderr


def test_garbage_on_the_event_stream(fake: FakeControlPlane) -> None:
    # 20 MB of blocks of noise and of events without an id, between blank lines.
    noise = bytes(b for b in range(256) if b not in b"\r\n") * 4
    block = (noise + b"\n\n" + b"data: not an event\n\n" + b"id: x\ndata: {}\n\n") * 8

    def garbage() -> Iterator[bytes]:
        for _ in range(GARBAGE_BYTES // len(block)):
            yield block

    a_working_control_plane(fake, stream(garbage, sse(10**9, "run.completed", COMPLETED)))

    done = promote(fake)

    assert done.returncode == 0, done
    assert done.json()["status"] == "succeeded"
    assert len(done.stderr.splitlines()) < 10, done.stderr[:2000]


def test_a_stream_that_never_completes_the_run(fake: FakeControlPlane) -> None:
    a_working_control_plane(fake, stream(sse(1, "deployment.step", STEP)))

    done = promote(fake, "--timeout", "2s")

    message = error_of(done, 124, "timeout")
    assert f"follow it again with: compartment deployment watch {RUN}" in message
    assert done.json()["error"]["deploymentRunId"] == RUN
    assert done.seconds < 2 + 3
