"""Routes of the real control plane under traffic: promotions, tunnels, event streams."""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import COMPARTMENT, ControlPlane, promote_by_cli


@dataclass
class Traffic:
    """Client threads sending GET / to a route until stopped; every answer is kept."""

    url: str
    answers: list[tuple[float, str, str]] = field(default_factory=list)  # (done, client, body)
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, keep_alive: int, fresh: int) -> None:
        for n in range(keep_alive):
            self.threads.append(threading.Thread(target=self._keep_alive, args=(f"ka{n}",)))
        for n in range(fresh):
            self.threads.append(threading.Thread(target=self._fresh, args=(f"fresh{n}",)))
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _record(self, client: str, response: httpx.Response) -> None:
        done = time.monotonic()
        if response.status_code != 200:
            self.failures.append(f"{client}: {response.status_code} {response.text!r}")
        self.answers.append((done, client, response.text.strip()))

    def _keep_alive(self, client: str) -> None:
        with httpx.Client(timeout=10) as http:  # one connection, kept alive
            while not self.stopping.is_set():
                try:
                    self._record(client, http.get(self.url))
                except httpx.HTTPError as error:
                    self.failures.append(f"{client}: {error!r}")

    def _fresh(self, client: str) -> None:
        while not self.stopping.is_set():
            try:
                with httpx.Client(timeout=10) as http:
                    self._record(client, http.get(self.url, headers={"Connection": "close"}))
            except httpx.HTTPError as error:
                self.failures.append(f"{client}: {error!r}")


def test_promotions_under_keep_alive_and_fresh_traffic_lose_nothing_and_take_no_drain_time(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = project("1.0.0", web={})
    control_plane.deploy_and_wait(directory, "staging")
    control_plane.deploy_and_wait(directory, "production")
    url = control_plane.active("shop", "production")["web"]["routeUrl"]
    traffic = Traffic(url)
    traffic.start(keep_alive=4, fresh=4)
    promotions: list[tuple[float, str, str, float]] = []  # (exited, replaced, new, seconds)
    try:
        time.sleep(0.5)
        for _ in range(5):
            replaced = control_plane.active("shop", "production")["web"]["id"]
            result = promote_by_cli(control_plane, directory)
            exited = time.monotonic()
            new = result["activeDeployments"][0]["id"]
            promotions.append((exited, replaced, new, result["durationMs"] / 1000))
            time.sleep(0.5)
    finally:
        traffic.stop()

    assert traffic.failures == []
    assert len(traffic.answers) > 200
    for exited, replaced, new, seconds in promotions:
        assert new != replaced
        late = [a for a in traffic.answers if a[0] > exited and replaced in a[2]]
        assert late == [], f"{len(late)} answers from {replaced} after its promote exited"
        assert seconds < 1.0, f"promotion to {new} took {seconds:.2f} s"
    last = promotions[-1][2]
    for client in [f"ka{n}" for n in range(4)]:  # each kept-alive client moved every time
        served = [body.split()[1] for _, name, body in traffic.answers if name == client]
        assert served[-1] == last
        assert len(set(served)) >= 5, (client, set(served))


def open_tunnel(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"upgrade: line-echo" in head.lower()
    return sock


def echo(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "the tunnel closed"
        answer += chunk
    return answer


def test_a_tunnel_stays_with_its_deployment_until_the_drain_bound(
    tmp_path: Path, session_root: Path, project: Any
) -> None:
    plane = ControlPlane(
        session_root / f"tunnel-{tmp_path.name}", extra_args=["--drain-timeout", "3"]
    )
    plane.start()
    try:
        directory = project("1.0.0", web={})
        plane.deploy_and_wait(directory, "staging")
        plane.deploy_and_wait(directory, "production")
        before = plane.active("shop", "production")["web"]
        port = int(before["routeUrl"].rsplit(":", 1)[1].strip("/"))
        tunnel = open_tunnel(port)
        assert echo(tunnel, b"hello") == f"{before['id']} hello\n".encode()

        started = time.monotonic()
        process = subprocess.Popen(
            [COMPARTMENT, "promote", "--from", "staging", "--to", "production", "--verbose"],
            cwd=directory,
            env=plane.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while plane.active("shop", "production")["web"]["id"] == before["id"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        after = plane.active("shop", "production")["web"]
        with httpx.Client(timeout=5) as http:
            assert http.get(before["routeUrl"]).text.split()[1] == after["id"]
        assert echo(tunnel, b"still there") == f"{before['id']} still there\n".encode()
        assert process.poll() is None  # the drain waits for the tunnel

        tunnel.settimeout(10)
        assert tunnel.recv(4096) == b""  # closed by the route at the bound
        closed = time.monotonic() - started
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert 2.5 < closed < 6, closed
        progress = err.decode()
        assert f"{before['id']}: 1 tunnel in flight, waiting up to 3 s" in progress
        assert " s (waited for 1 tunnel) and stopped; 1 tunnel cut" in progress
        tunnel.close()
    finally:
        plane.stop()


def test_server_sent_events_reach_the_client_one_by_one(
    control_plane: ControlPlane, project: Any
) -> None:
    control_plane.deploy_and_wait(project("1.0.0", web={}), "production")
    deployment = control_plane.active("shop", "production")["web"]
    arrivals: list[tuple[float, str]] = []

    with httpx.Client(timeout=10) as http:
        started = time.monotonic()
        with http.stream("GET", deployment["routeUrl"] + "events?n=4&gap=0.4") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            for line in response.iter_lines():
                if line.startswith("id: "):
                    arrivals.append((time.monotonic() - started, line))

    assert [line for _, line in arrivals] == ["id: 0", "id: 1", "id: 2", "id: 3"]
    assert arrivals[0][0] < 0.3  # not held back until the stream ends
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.25 for gap in gaps), gaps
