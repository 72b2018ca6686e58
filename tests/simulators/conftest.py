"""Simulator apps behind in-process clients that send the configured API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette

from hub.simulators import SimulatorConfig

OpenClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def open_client() -> AsyncIterator[OpenClient]:
    """`open_client(app, *, api_key=...)`: a client on the app; closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def open_one(
        app: Starlette, *, api_key: str | None = SimulatorConfig().api_key
    ) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://simulator.test",
            headers=headers,
        )
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        await client.aclose()
