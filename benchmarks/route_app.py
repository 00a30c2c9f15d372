"""A fast deployment for the route benchmarks: keep-alive HTTP/1.1 on bare asyncio.

Python's ``http.server`` tops out near a few hundred requests/s on a small
machine, which would hide the route's own cost behind it. This app answers
``GET /port`` with the port it listens on (so the benchmark can also call it
directly), ``GET /stamps`` with its own timestamps (``time.time()``: when its
process started, when it listened, its first 2xx to ``/healthz``, the first
``GET /`` it answered), and anything else with ``ok <deployment id>``.
"""

import asyncio
import json
import os
import time


def process_start() -> float:
    """When this process started (``time.time()``), from /proc: a clock tick's precision."""
    with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
        ticks = int(stat.read().rpartition(")")[2].split()[19])
        since_boot = float(uptime.read().split()[0])
    return time.time() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))


PORT = os.environ["PORT"]
DEPLOYMENT = os.environ.get("COMPARTMENT_DEPLOYMENT_ID", "")
STAMPS: dict[str, float] = {"started": process_start()}


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/port":
                body = PORT.encode()
            elif path == b"/stamps":
                body = json.dumps(STAMPS).encode()
            else:
                body = f"ok {DEPLOYMENT}\n".encode()
                STAMPS.setdefault("first_ok" if path == b"/healthz" else "first_get", time.time())
            close = b"\r\nconnection: close" in head.lower()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"Connection: close\r\n" if close else b"", body)
            )
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", int(PORT))
    STAMPS["listening"] = time.time()
    await server.serve_forever()


asyncio.run(main())
