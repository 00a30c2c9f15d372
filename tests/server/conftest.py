"""Fixtures of the server tests that run on an event loop: anyio on asyncio, a route table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from compartment_cli.server.routes import RouteTable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def table() -> AsyncIterator[RouteTable]:
    routes = RouteTable()
    yield routes
    await routes.close()
