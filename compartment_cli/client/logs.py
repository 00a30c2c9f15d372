"""Following deployment logs: ``GET /v1/deployments/logs?follow=true`` (ours), or polling.

Our control plane answers ``follow=true`` with server-sent events: one ``log``
event per line, then ``end`` once every deployment followed has ended. A
control plane without it (the platform refuses the unknown parameter) is
asked once a second for the lines ``since`` the last one seen instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import anyio
import httpx
import msgspec
from httpx_sse import aconnect_sse

from compartment_cli.client.api import ApiClient, error_from_response
from compartment_cli.errors import ApiRefused, Unavailable
from compartment_cli.models.logs import END_EVENT, LOG_EVENT, LogLine

__all__ = ["follow_logs"]

POLL_INTERVAL = 1.0


async def follow_logs(api: ApiClient, query: Mapping[str, str | None]) -> AsyncIterator[LogLine]:
    """The lines of ``query`` so far, then each new one as it is written; ends when every
    deployment followed has ended (or never, while one runs)."""
    params = {key: value for key, value in query.items() if value is not None}
    try:
        async with aconnect_sse(
            api.http,
            "GET",
            "/v1/deployments/logs",
            params={**params, "follow": "true"},
            headers={"Accept": "text/event-stream"},
            timeout=httpx.Timeout(10.0, read=None),
        ) as source:
            response = source.response
            if not response.is_success:
                await response.aread()
                raise error_from_response(response, where=api.where)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                raise ApiRefused("no log stream here", code="no_log_stream")
            async for event in source.aiter_sse():
                if event.event == LOG_EVENT:
                    yield msgspec.json.decode(event.data, type=LogLine)
                elif event.event == END_EVENT:
                    return
    except ApiRefused as refused:
        if refused.code not in ("no_log_stream", "invalid_deployment_logs_request"):
            raise
    except httpx.TransportError as exc:
        raise Unavailable(
            f"the log stream of {api.where} ended: {type(exc).__name__}", code="network_error"
        ) from None
    async for line in _poll(api, params):
        yield line


async def _poll(api: ApiClient, params: dict[str, str]) -> AsyncIterator[LogLine]:
    seen: set[tuple[str, str, str]] = set()
    since: str | None = params.get("since")
    while True:
        answer = await api.logs({**params, "since": since})
        for line in answer.lines:
            key = (line.deployment_id, line.timestamp, line.message)
            if key in seen:
                continue
            seen.add(key)
            since = line.timestamp
            yield line
        await anyio.sleep(POLL_INTERVAL)
