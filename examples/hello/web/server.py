"""The `web` service of the example: an HTML page naming its version and deployment."""

import html
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = Path(__file__).with_name("VERSION").read_text().strip()
DEPLOYMENT = os.environ.get("COMPARTMENT_DEPLOYMENT_ID", "?")
ENVIRONMENT = os.environ.get("COMPARTMENT_ENVIRONMENT", "?")


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body, kind = b"ok\n", "text/plain"
        else:
            text = f"hello {VERSION} from {DEPLOYMENT} in {ENVIRONMENT}"
            body, kind = (
                f"<!doctype html><title>hello</title><h1>{html.escape(text)}</h1>\n".encode(),
                "text/html",
            )
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"web {self.address_string()} {format % args}", flush=True)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
