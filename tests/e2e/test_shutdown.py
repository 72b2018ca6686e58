"""A SIGTERM under load loses no audit event: shutdown flushes what is buffered."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import httpx

from hub.auth import issue_token
from hub.settings import Settings
from tests.e2e.conftest import running_hub

QUERY = """{ influencers(first: 60) { edges { node { contacts { id email fullName phone } } } } }"""


async def _load(base_url: str, token: str, stop: asyncio.Event) -> list[int]:
    """Keep 8 clients reading personal data until `stop`; count the values each answer had."""
    counted: list[int] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await client.post(
                    "/graphql",
                    json={"query": QUERY},
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError:
                return
            if response.status_code != 200:
                return
            counted.append(
                sum(
                    1
                    for edge in response.json()["data"]["influencers"]["edges"]
                    for contact in edge["node"]["contacts"]
                    for field in ("email", "fullName", "phone")
                    if contact[field] is not None
                )
            )

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(8)))
    return counted


def test_sigterm_under_load_writes_every_audit_event(tmp_path: Path) -> None:
    token = issue_token(
        Settings(),
        subject="load",
        tenant="acme",
        roles=["manager"],
        purpose="campaign_management",
        client_id="graphiql-demo",
    )
    with running_hub(tmp_path) as (process, base_url):

        async def scenario() -> list[int]:
            stop = asyncio.Event()
            load = asyncio.create_task(_load(base_url, token, stop))
            await asyncio.sleep(1.5)
            process.send_signal(signal.SIGTERM)
            counted = await load
            stop.set()
            return counted

        counted = asyncio.run(scenario())
        # uvicorn shuts down gracefully, then re-raises the signal: -15 is a clean exit here.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    with sqlite3.connect(tmp_path / "hub.db") as db:
        (written,) = db.execute(
            "select count(*) from audit_events where principal = 'load'"
            " and decision in ('allowed', 'masked')"
        ).fetchone()
    assert len(counted) >= 3, "the load must have completed requests before the SIGTERM"
    # Requests cut off by the shutdown never answered; every answered value was audited.
    assert written >= sum(counted)
    assert written - sum(counted) <= max(counted) * 8
