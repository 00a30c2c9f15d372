"""Bad input to a route of the real control plane leaves it serving everyone else."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from compartment_cli.server.routes import RouteTable, Timeouts
from tests.support import ControlPlane, open_fds, proc_status


@pytest.fixture
def route(control_plane: ControlPlane, project: Any) -> Iterator[tuple[int, httpx.Client]]:
    """The production route of a one-service project, and a kept-alive client of it."""
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    url = control_plane.active("shop", "production")["web"]["routeUrl"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/").status_code == 200
        yield port, client


def exchange(port: int, raw: bytes) -> bytes:
    """Send raw bytes, read until the route closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def still_serves(client: httpx.Client) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.text.startswith("1.0.0 ")


def test_a_malformed_request_line_is_400(route: tuple[int, httpx.Client]) -> None:
    port, client = route

    answer = exchange(port, b"GET\x00 nonsense\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in answer
    still_serves(client)


def test_oversized_headers_are_431(route: tuple[int, httpx.Client]) -> None:
    port, client = route

    answer = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 431 ")
    still_serves(client)


def test_broken_chunked_encoding_is_400_and_closed(route: tuple[int, httpx.Client]) -> None:
    port, client = route

    answer = exchange(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz-not-hex\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 400 "), answer
    still_serves(client)
    # a well-formed chunked body goes through
    assert client.post("/upload", content=iter([b"hello ", b"world"])).text.endswith(" 11\n")


def test_a_thousand_idle_connections_cost_bounded_memory_and_give_their_fds_back(
    control_plane: ControlPlane, route: tuple[int, httpx.Client]
) -> None:
    port, client = route
    assert control_plane.process is not None
    pid = control_plane.process.pid
    fds_before, rss_before = open_fds(pid), proc_status(pid, "VmRSS")

    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(1000)]
    try:
        deadline = time.monotonic() + 20
        while open_fds(pid) < fds_before + 1000:
            assert time.monotonic() < deadline, open_fds(pid) - fds_before
            time.sleep(0.05)
        grown_kb = proc_status(pid, "VmRSS") - rss_before
        still_serves(client)
        assert grown_kb < 40 * 1024, f"{grown_kb} kB for 1000 idle connections"
    finally:
        for sock in idle:
            sock.close()

    deadline = time.monotonic() + 20
    while open_fds(pid) > fds_before + 5:
        assert time.monotonic() < deadline, open_fds(pid) - fds_before
        time.sleep(0.05)
    still_serves(client)


@pytest.mark.anyio
async def test_half_a_request_then_silence_is_closed_after_the_head_timeout(
    control_plane: ControlPlane, route: tuple[int, httpx.Client]
) -> None:
    # The control plane's head timeout is 10 s: this route in front of its route uses 0.5 s.
    port, _ = route
    table = RouteTable(timeouts=Timeouts(head=0.5))
    try:
        front = await table.open("front")
        table.switch({"front": port})
        reader, writer = await asyncio.open_connection("127.0.0.1", front)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        started = time.monotonic()

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{front}") as other:
            assert (await other.get("/")).status_code == 200  # meanwhile, others are served

        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < time.monotonic() - started < 3
        writer.close()
    finally:
        await table.close()
