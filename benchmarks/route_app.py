"""A fast deployment for the route benchmarks: keep-alive HTTP/1.1 on bare asyncio.

Python's ``http.server`` tops out near a few hundred requests/s on a small
machine, which would hide the route's own cost behind it. This app answers
``GET /port`` with the port it listens on (so the benchmark can also call it
directly) and anything else with ``ok <deployment id>``.
"""

import asyncio
import os

PORT = os.environ["PORT"]
DEPLOYMENT = os.environ.get("COMPARTMENT_DEPLOYMENT_ID", "")


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            body = PORT.encode() if path == b"/port" else f"ok {DEPLOYMENT}\n".encode()
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
    await server.serve_forever()


asyncio.run(main())
