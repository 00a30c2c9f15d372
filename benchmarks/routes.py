"""The route in front of a deployment: its cost per request, and promotions under traffic.

A control plane runs ``benchmarks/route_app.py`` (a fast asyncio app) as
project ``routebench``, deployed to staging and production with ``compartment
deploy``. ``benchmarks.route_load`` (its own process) then sends keep-alive
``GET /`` requests to the production route and, as the reference, straight
to the deployment's own port, one after the other:

- latency: one connection, one request at a time (no queueing), p50 and p99;
- throughput: several connections as fast as they are answered.

Promotions under load: client threads of this process (kept-alive
connections and a new connection per request, httpx) send requests to the
route while production is promoted from staging again and again; every
failed request is counted, and the slowest promotion is reported.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.harness import PYTHON, REPO, Plane, run_timed

LOAD = [PYTHON, "-m", "benchmarks.route_load"]
DESCRIPTOR = """\
name: routebench
services:
  web:
    path: web
    run:
      command: python3 app.py
    readiness:
      type: http
      path: /healthz
      timeoutMs: 15000
"""


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class UnderLoad:
    answered: int
    failed: int
    failures: list[str]
    slowest: float  # s, the slowest promotion's run on the server
    promotions: int


def write_project(directory: Path) -> Path:
    (directory / "web").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "benchmarks" / "route_app.py", directory / "web" / "app.py")
    (directory / "compartment.yml").write_text(DESCRIPTOR)
    return directory


def production_url(plane: Plane) -> str:
    with plane.client() as client:
        response = client.get(
            "/v1/deployments/status",
            params={"projectName": "routebench", "environmentName": "production"},
        )
    response.raise_for_status()
    url: str = response.json()["activeDeployments"][0]["routeUrl"]
    return url


def ports(plane: Plane) -> tuple[int, int]:
    """(the production route's port, its deployment's own port)."""
    url = production_url(plane)
    route = int(url.rstrip("/").rsplit(":", 1)[1])
    direct = int(httpx.get(url + "port", timeout=10).text)
    return route, direct


def load(port: int, *args: str) -> Load:
    done = run_timed([*LOAD, str(port), *args], capture=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"route_load failed ({done.returncode})")
    result = json.loads(done.stdout)
    return Load(result["requests"], result["seconds"], result["latencies"])


@dataclass
class _Traffic:
    url: str
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def keep_alive(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                self._one(client, {})

    def fresh(self) -> None:
        while not self.stopping.is_set():
            with httpx.Client(timeout=10) as client:
                self._one(client, {"Connection": "close"})

    def _one(self, client: httpx.Client, headers: dict[str, str]) -> None:
        try:
            response = client.get(self.url, headers=headers)
        except httpx.HTTPError as error:
            self.failures.append(repr(error))
            return
        if response.status_code == 200:
            self.answered += 1
        else:
            self.failures.append(f"{response.status_code} {response.text[:80]!r}")


def promotions_under_load(plane: Plane, promotions: int, clients: int) -> UnderLoad:
    traffic = _Traffic(production_url(plane))
    threads = [
        threading.Thread(target=traffic.keep_alive if n % 2 == 0 else traffic.fresh)
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    slowest = 0.0
    try:
        for _ in range(promotions):
            run_id = plane.post_promote(source="staging", target="production", project="routebench")
            run = plane.wait_run(run_id)
            if run["status"] != "succeeded":
                raise RuntimeError(f"promotion failed: {run}")
            slowest = max(slowest, plane.run_seconds(run))
    finally:
        traffic.stopping.set()
        for thread in threads:
            thread.join(30)
    failures = traffic.failures
    return UnderLoad(traffic.answered, len(failures), failures[:5], slowest, promotions)


@dataclass(frozen=True)
class Instant:
    """Promotions of an app that is ready as soon as it listens, one client sending requests."""

    to_first_answer: list[float]  # s: the candidate's first 2xx → the first GET / it answered
    server: list[float]  # s: the run on the server, created → completed
    app: list[float]  # s: the candidate's own start → listening (from its process start)


def instant_promotions(plane: Plane, promotions: int) -> Instant:
    traffic = _Traffic(production_url(plane))
    thread = threading.Thread(target=traffic.keep_alive)
    thread.start()
    result = Instant([], [], [])
    try:
        for _ in range(promotions):
            run = plane.wait_run(plane.post_promote(project="routebench"))
            if run["status"] != "succeeded":
                raise RuntimeError(f"promotion failed: {run}")
            stamps = httpx.get(traffic.url + "stamps", timeout=10).json()  # the new deployment
            result.to_first_answer.append(stamps["first_get"] - stamps["first_ok"])
            result.server.append(plane.run_seconds(run))
            result.app.append(stamps["listening"] - stamps["started"])
    finally:
        traffic.stopping.set()
        thread.join(30)
    return result
