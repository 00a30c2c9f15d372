"""The throughput reference: bare httpx-sse parsing of an environment's event stream.

``python -m benchmarks.bare_sse API_URL TOKEN PROJECT ENVIRONMENT`` subscribes,
prints ``subscribed`` once the response headers are in, then reads events as
httpx-sse parses them, with no work of its own beyond counting, until the
first ``run.completed``; it prints the counts as JSON and exits.
"""

from __future__ import annotations

import json
import sys

import anyio
import httpx
from httpx_sse import aconnect_sse


async def follow(api_url: str, token: str, project: str, environment: str) -> dict[str, int]:
    events = flood = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=api_url, headers=headers, timeout=600) as client,
        aconnect_sse(
            client,
            "GET",
            "/v1/events",
            params={"projectName": project, "environmentName": environment},
        ) as source,
    ):
        source.response.raise_for_status()
        sys.stdout.write("subscribed\n")
        sys.stdout.flush()
        async for sse in source.aiter_sse():
            events += 1
            if "bench flood" in sse.data:
                flood += 1
            elif sse.event == "run.completed":
                break
    return {"events": events, "flood": flood}


def main() -> None:
    api_url, token, project, environment = sys.argv[1:5]
    counts = anyio.run(follow, api_url, token, project, environment)
    sys.stdout.write(json.dumps(counts) + "\n")


if __name__ == "__main__":
    main()
