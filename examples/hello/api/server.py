"""The `api` service of the example: JSON naming its version and deployment."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

IDENTITY = {
    "service": "api",
    "version": Path(__file__).with_name("VERSION").read_text().strip(),
    "deploymentId": os.environ.get("COMPARTMENT_DEPLOYMENT_ID"),
    "environment": os.environ.get("COMPARTMENT_ENVIRONMENT"),
}


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, payload = (200, {"status": "ok"}) if self.path == "/healthz" else (200, IDENTITY)
        body = json.dumps(payload).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"api {self.address_string()} {format % args}", flush=True)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Api).serve_forever()
