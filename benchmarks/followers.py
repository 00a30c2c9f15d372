"""Fan-out: many followers of one environment's event stream, in one process.

``python -m benchmarks.followers API_URL TOKEN PROJECT ENVIRONMENT N RUNS``
opens N event streams (plain asyncio sockets: HTTP/1.1 chunked decoding and
SSE framing by hand, a few microseconds per event, so that the delay measured
is the control plane's and not this process's), prints ``subscribed`` when
every stream has sent its first block, then records for every event that
carries an ``at`` timestamp (steps and ``run.completed``) when it arrived,
until each follower has seen RUNS ``run.completed`` events. It prints the
delays from ``at`` (the control plane's clock when it committed the event,
to the millisecond) to arrival, in milliseconds, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from datetime import datetime
from urllib.parse import urlencode, urlsplit

_AT = re.compile(rb'"at":"([^"]+)"')


class Follower(asyncio.Protocol):
    """One event stream: HTTP/1.1 chunked body, SSE frames, arrival times."""

    def __init__(self, runs: int, done: asyncio.Future[None]) -> None:
        self.runs = runs
        self.done = done
        self.raw = b""  # bytes not decoded yet
        self.body = b""  # SSE text not split into frames yet
        self.headers_done = False
        self.chunk_left = -1  # of the current chunk; 0: its CRLF next; -1: a size line next
        self.first_block = False
        self.completed = 0
        self.arrivals: list[tuple[bytes, float]] = []

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.raw.startswith(b"HTTP/1.1 200"):
                self._fail(self.raw[:200].decode(errors="replace"))
                return
            self.raw = self.raw[end + 4 :]
            self.headers_done = True
        self._dechunk()
        self.body = self.body.replace(b"\r\n", b"\n")  # SSE lines may end either way
        while (end := self.body.find(b"\n\n")) >= 0:
            frame, self.body = self.body[:end], self.body[end + 2 :]
            self._frame(frame, now)

    def _dechunk(self) -> None:
        while True:
            if self.chunk_left < 0:
                line_end = self.raw.find(b"\r\n")
                if line_end < 0:
                    return
                self.chunk_left = int(self.raw[:line_end].split(b";")[0], 16)
                self.raw = self.raw[line_end + 2 :]
            if self.chunk_left > 0:
                take = self.raw[: self.chunk_left]
                if not take:
                    return
                self.body += take
                self.raw = self.raw[len(take) :]
                self.chunk_left -= len(take)
                if self.chunk_left:
                    return
            if len(self.raw) < 2:
                return
            self.raw = self.raw[2:]
            self.chunk_left = -1

    def _frame(self, frame: bytes, now: float) -> None:
        self.first_block = True
        if frame.startswith(b"event: run.completed") or b"\nevent: run.completed" in frame:
            self.completed += 1
        match = _AT.search(frame)
        if match is not None:
            self.arrivals.append((match.group(1), now))
        if self.completed >= self.runs and not self.done.done():
            self.done.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"the stream closed: {exc}")


async def follow(
    api_url: str, token: str, project: str, environment: str, count: int, runs: int
) -> list[float]:
    url = urlsplit(api_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    query = urlencode({"projectName": project, "environmentName": environment})
    request = (
        f"GET /v1/events?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    followers: list[Follower] = []
    transports = []
    for _ in range(count):
        follower = Follower(runs, loop.create_future())
        transport, _ = await loop.create_connection(lambda f=follower: f, host, port)  # type: ignore[misc]
        transport.write(request)
        followers.append(follower)
        transports.append(transport)
    for _ in range(2000):
        if all(f.first_block for f in followers):
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("not every follower got its first block within 20 s")
    sys.stdout.write("subscribed\n")
    sys.stdout.flush()
    await asyncio.gather(*(f.done for f in followers))
    for transport in transports:
        transport.close()
    return [
        (arrived - datetime.fromisoformat(at.decode().replace("Z", "+00:00")).timestamp()) * 1000
        for follower in followers
        for at, arrived in follower.arrivals
    ]


def main() -> None:
    api_url, token, project, environment = sys.argv[1:5]
    count, runs = int(sys.argv[5]), int(sys.argv[6])
    delays = asyncio.run(follow(api_url, token, project, environment, count, runs))
    sys.stdout.write(json.dumps({"delays_ms": delays}) + "\n")


if __name__ == "__main__":
    main()
