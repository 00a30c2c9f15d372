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

Why h11 on asyncio streams: h11 (also under httpx) does the HTTP/1.1
framing both ways (keep-alive, chunked, ``100-continue``, upgrades) while we
keep the sockets, so the moment a request is routed, memory per connection
and raw tunnels are ours to decide. Measured on a 2-core machine with
``benchmarks.route_load`` (one keep-alive client for latency, 8 for
throughput) against each candidate proxy alone in a process, in front of
``benchmarks/route_app.py``, and against that app's own port:

=====================================  ===========  ============
proxy                                  p50 added    requests/s
=====================================  ===========  ============
this route (h11, asyncio streams)      0.25 ms      3,300-3,600
uvicorn (h11) ASGI app + httpx pool    1.1 ms       600
the TCP splice it replaces             0.07 ms      12,900
straight to the app                    -            23,000-37,000
=====================================  ===========  ============

uvicorn's ASGI cannot make a raw ``Upgrade`` tunnel besides WebSocket and
costs five times more per request; the TCP splice is cheapest but binds a
connection to one deployment, which is what this replaces. h11's state
machine, both ways, is about 95 µs of the route's 0.25 ms of CPU per request.
``make bench`` measures the route of a real control plane the same way.
"""

from compartment_cli.server.routes._table import DrainReport, InFlight, RouteTable, Timeouts

__all__ = ["DrainReport", "InFlight", "RouteTable", "Timeouts"]
