"""The fault proxy of tests/faults.py does what its table says, checked with raw sockets
against a tiny upstream that answers every request line with a fixed body."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults import FaultProxy, Mode

BODY = b"x" * 10_000


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Answer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline():
            self.wfile.write(BODY)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    upstream = _Upstream(("127.0.0.1", 0), _Answer)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    with FaultProxy(upstream.server_address[1]) as proxy:
        yield proxy
    upstream.shutdown()
    upstream.server_close()


def exchange(proxy: FaultProxy, request: bytes = b"GET /a\n", timeout: float = 2) -> bytes:
    """Send ``request``, read until the answer is whole or the connection ends."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while len(received) < len(BODY):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_pass_forwards_and_counts(proxy: FaultProxy) -> None:
    assert exchange(proxy) == BODY
    assert exchange(proxy, b"POST /b\n") == BODY
    assert proxy.connections == 2
    assert proxy.requests == [b"GET /a\n", b"POST /b\n"]


def test_down_refuses_and_comes_back_on_the_same_port(proxy: FaultProxy) -> None:
    proxy.set(Mode.DOWN)
    with pytest.raises(ConnectionRefusedError):
        exchange(proxy)
    proxy.set(Mode.PASS)
    assert exchange(proxy) == BODY


def test_down_after_refuses_only_what_connects_next(proxy: FaultProxy) -> None:
    proxy.down_after(1, 0.3)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as first:
        time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            exchange(proxy)
        first.sendall(b"GET /a\n")
        assert first.recv(65536)  # the first connection goes on
    time.sleep(0.4)
    assert exchange(proxy) == BODY


def test_close_and_reset(proxy: FaultProxy) -> None:
    proxy.set(Mode.CLOSE)
    assert exchange(proxy) == b""  # FIN: an orderly end, nothing received
    proxy.set(Mode.RESET)
    with pytest.raises(ConnectionResetError):
        exchange(proxy)


def test_cut_after_n_bytes_only_where_matched(proxy: FaultProxy) -> None:
    proxy.set(Mode.CUT, cut_after=1000, match=b"/events")
    assert exchange(proxy, b"GET /events\n") == BODY[:1000]
    assert exchange(proxy, b"GET /other\n") == BODY


def test_delay_each_chunk(proxy: FaultProxy) -> None:
    proxy.set(Mode.DELAY, delay=0.2)
    started = time.monotonic()
    assert exchange(proxy) == BODY
    assert time.monotonic() - started >= 0.4  # the request, then the answer


def test_stall_holds_everything_until_the_mode_changes(proxy: FaultProxy) -> None:
    proxy.set(Mode.STALL)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5) as sock:
        sock.sendall(b"GET /a\n")
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        proxy.set(Mode.PASS)
        sock.settimeout(2)
        assert sock.recv(65536)  # nothing was lost, only held
