"""Stable loopback ports in front of deployments: an HTTP/1.1 proxy per route.

A route (one per project, environment and service) listens on a port that
does not change across deployments, and sends each request to the route's
target of the moment its head was read: after ``switch`` the next request of
every open keep-alive connection goes to the new deployment, while requests
in flight finish where they started. ``drain`` then waits for those (and
for ``Upgrade`` tunnels, which stay with the deployment they were opened
to), at most a bound. Idle connections hold nothing.

Without a target a request gets ``503`` with ``Retry-After: 1``; when the
deployment refuses the connection or dies before it answers, ``502``.

Why h11 over asyncio streams, and not uvicorn serving an ASGI proxy: ASGI
has no raw ``Upgrade`` tunnel besides WebSocket, and h11 (already installed
under httpx) does the HTTP/1.1 framing both ways (keep-alive, chunked,
``100-continue``, upgrades) while we keep the sockets, so memory per
connection and the moment a request is routed are ours to decide.
"""

from compartment_cli.server.routes._table import DrainReport, InFlight, RouteTable, Timeouts

__all__ = ["DrainReport", "InFlight", "RouteTable", "Timeouts"]
