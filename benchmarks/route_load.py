"""``python -m benchmarks.route_load PORT --sequential N | --connections C --seconds S``.

A load generator in a process of its own: raw keep-alive HTTP/1.1 ``GET /``
on asyncio (an HTTP client library would cost more than what is measured).
Prints one JSON line: requests answered, seconds, and every latency in
seconds (``--sequential``: one connection, one request after the other, so
no request waits for another; ``--connections``: that many connections as
fast as they are answered, for throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"answer: {head!r}")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)


async def _client(port: int, until: float, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(5):  # warm-up: the route's connection to the deployment is open
        await _get(reader, writer)
    clock = time.perf_counter
    done = 0
    while done < count and clock() < until:
        started = clock()
        await _get(reader, writer)
        latencies.append(clock() - started)
        done += 1
    writer.close()


async def measure(port: int, connections: int, seconds: float, count: int) -> dict[str, object]:
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_client(port, until, count, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--sequential", type=int, default=0)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args()
    count = args.sequential or sys.maxsize
    result = asyncio.run(measure(args.port, args.connections, args.seconds, count))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
