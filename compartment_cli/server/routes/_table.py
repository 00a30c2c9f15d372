"""The routes of one control plane: listeners, their targets, what is in flight on each backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from compartment_cli.server.routes._exchange import ClientConnection
from compartment_cli.server.routes._upstream import CHUNK, Pool


@dataclass(frozen=True)
class Timeouts:
    """Seconds the route gives a client (and a deployment to accept); tests shorten them."""

    idle: float = 60.0  # a keep-alive connection between requests
    head: float = 10.0  # a request head, from its first byte
    body: float = 30.0  # silence while a request body arrives
    connect: float = 5.0  # a deployment accepting a connection


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _listing(requests: int, tunnels: int) -> str:
    parts = [_count(requests, "request")] if requests else []
    return " and ".join([*parts, _count(tunnels, "tunnel")] if tunnels else parts)


@dataclass(frozen=True)
class InFlight:
    """What a backend is busy with now: requests being answered, open tunnels."""

    requests: int
    tunnels: int

    def __str__(self) -> str:  # "2 requests and 1 tunnel in flight"
        return f"{_listing(self.requests, self.tunnels) or 'nothing'} in flight"


@dataclass(frozen=True)
class DrainReport:
    """What ``drain`` waited for (in flight when it began), for how long, and what it cut."""

    requests: int
    tunnels: int
    seconds: float
    cut: int  # connections cut at the bound, ``cut_tunnels`` of them tunnels
    cut_tunnels: int = 0

    def __str__(self) -> str:  # "drained in 0.003 s (waited for 2 requests, 1 tunnel)"
        waited = _listing(self.requests, self.tunnels).replace(" and ", ", ")
        what = f"waited for {waited}" if waited else "nothing in flight"
        return f"drained in {self.seconds:.3f} s ({what})"

    @property
    def cut_text(self) -> str:  # "; 1 tunnel cut", or nothing
        listing = _listing(self.cut - self.cut_tunnels, self.cut_tunnels)
        return f"; {listing} cut" if listing else ""


@dataclass(eq=False)
class Flight:
    """One request (or tunnel) of a client connection, on the backend chosen for it."""

    backend: int
    connection: ClientConnection
    tunnel: bool = False


@dataclass
class _Route:
    key: str
    server: asyncio.Server
    port: int
    target: int | None = None


@dataclass
class _Backend:
    flights: set[Flight] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class RouteTable:
    """The routes of one control plane. All methods run on one event loop."""

    def __init__(self, host: str = "127.0.0.1", timeouts: Timeouts | None = None) -> None:
        self.host = host
        self.timeouts = timeouts or Timeouts()
        self.pool = Pool("127.0.0.1", self.timeouts.connect, self._serves)
        self._routes: dict[str, _Route] = {}
        self._backends: dict[int, _Backend] = {}
        self._connections: set[ClientConnection] = set()
        self._closed = False

    async def open(self, key: str, port: int = 0) -> int:
        """Start listening for a route (0 = any free port); returns the port.

        OSError when the port is taken. Opening an open route again returns
        its port (ValueError if a different port is asked for).
        """
        if self._closed:
            raise RuntimeError("route table is closed")
        existing = self._routes.get(key)
        if existing is not None:
            if port not in (0, existing.port):
                raise ValueError(f"route {key} already listens on port {existing.port}")
            return existing.port
        server = await asyncio.start_server(
            partial(self._accept, key), self.host, port, limit=CHUNK
        )
        bound: int = server.sockets[0].getsockname()[1]
        self._routes[key] = _Route(key, server, bound)
        return bound

    def port(self, key: str) -> int | None:
        """The port a route listens on, None when it is not open."""
        route = self._routes.get(key)
        return route.port if route is not None else None

    def target(self, key: str) -> int | None:
        route = self._routes.get(key)
        return route.target if route is not None else None

    def switch(self, targets: Mapping[str, int | None]) -> dict[str, int | None]:
        """Point several routes at new backends at once; returns the previous targets.

        Synchronous on purpose: no request head can be routed half-way. The
        next request of every connection goes to the new target. A KeyError
        for a route that is not open changes nothing.
        """
        for key in targets:
            if key not in self._routes:
                raise KeyError(key)
        previous: dict[str, int | None] = {}
        for key, backend in targets.items():
            route = self._routes[key]
            previous[key] = route.target
            route.target = backend
        return previous

    def in_flight(self, backend_port: int) -> InFlight:
        flights = self._backends.get(backend_port, _Backend()).flights
        tunnels = sum(1 for flight in flights if flight.tunnel)
        return InFlight(len(flights) - tunnels, tunnels)

    def open_connections(self, backend_port: int) -> int:
        """Requests and tunnels in flight on that backend (idle connections hold none)."""
        backend = self._backends.get(backend_port)
        return len(backend.flights) if backend is not None else 0

    async def drain(self, backend_port: int, timeout: float) -> DrainReport:  # noqa: ASYNC109 (the interface)
        """Wait until nothing is in flight on that backend, at most ``timeout``; then cut the rest.

        Idle pooled connections to it are closed at once and none is pooled
        again once no route targets it.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        waited = self.in_flight(backend_port)
        self.pool.close_backend(backend_port)
        backend = self._backends.get(backend_port)
        if backend is not None and backend.flights:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await backend.idle.wait()
        left = list(backend.flights) if backend is not None else []
        tunnels = sum(1 for flight in left if flight.tunnel)
        await self._cut({flight.connection for flight in left})
        self.pool.close_backend(backend_port)
        seconds = loop.time() - started
        return DrainReport(waited.requests, waited.tunnels, seconds, len(left), tunnels)

    async def close(self) -> None:
        """Stop every listener and close every connection. Idempotent."""
        self._closed = True
        routes = list(self._routes.values())
        self._routes.clear()
        for route in routes:
            route.server.close()
        await self._cut(set(self._connections))
        self.pool.close()
        for route in routes:
            await route.server.wait_closed()

    # --- for the client connections ------------------------------------------------------

    def begin(self, key: str, connection: ClientConnection) -> Flight | None:
        """A request head was read: it goes to the route's target now (None: no target)."""
        route = self._routes.get(key)
        if route is None or route.target is None:
            return None
        flight = Flight(route.target, connection)
        backend = self._backends.get(route.target)
        if backend is None:
            backend = self._backends[route.target] = _Backend()
        backend.flights.add(flight)
        backend.idle.clear()
        return flight

    def to_tunnel(self, flight: Flight) -> None:
        flight.tunnel = True

    def end(self, flight: Flight) -> None:
        backend = self._backends.get(flight.backend)
        if backend is None:
            return
        backend.flights.discard(flight)
        if not backend.flights:
            backend.idle.set()
            del self._backends[flight.backend]

    def _serves(self, backend_port: int) -> bool:
        return not self._closed and any(
            route.target == backend_port for route in self._routes.values()
        )

    async def _cut(self, connections: set[ClientConnection]) -> None:
        for connection in connections:
            connection.abort()
        if connections:
            await asyncio.gather(
                *(connection.task for connection in connections), return_exceptions=True
            )

    async def _accept(
        self, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._closed or key not in self._routes:
            writer.transport.abort()
            return
        connection = ClientConnection(self, key, reader, writer)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
