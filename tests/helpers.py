"""Small helpers shared by the tests: posting GraphQL, reading codes, store faults."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audit import AuditEvent, AuditLog


async def gql(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
    accept: str = "application/graphql-response+json",
) -> tuple[int, dict[str, Any]]:
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers["Content-Type"] = "application/json"
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    # ASCII JSON, as `json.dumps` writes it: lone surrogates travel as `\ud800` escapes.
    response = await client.post("/graphql", content=json.dumps(body), headers=headers)
    payload: dict[str, Any] = response.json()
    return response.status_code, payload


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in payload.get("errors", [])]


@contextlib.asynccontextmanager
async def refusing_audit_writes(engine: AsyncEngine) -> AsyncIterator[None]:
    """The store refuses every insert into `audit_events` (an outage of the audit trail's
    writes), while everything else, reads of the trail included, works."""
    sqlite = engine.dialect.name == "sqlite"
    setup = (
        [
            "CREATE TRIGGER hub_test_refuse BEFORE INSERT ON audit_events"
            " BEGIN SELECT RAISE(ABORT, 'audit store down'); END"
        ]
        if sqlite
        else [
            "CREATE FUNCTION hub_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit store down'; END $$",
            "CREATE TRIGGER hub_test_refuse BEFORE INSERT ON audit_events"
            " FOR EACH ROW EXECUTE FUNCTION hub_test_refuse()",
        ]
    )
    teardown = (
        ["DROP TRIGGER hub_test_refuse"]
        if sqlite
        else ["DROP TRIGGER hub_test_refuse ON audit_events", "DROP FUNCTION hub_test_refuse()"]
    )
    async with engine.begin() as connection:
        for statement in setup:
            await connection.execute(text(statement))
    try:
        yield
    finally:
        async with engine.begin() as connection:
            for statement in teardown:
                await connection.execute(text(statement))


def fill_audit_buffer(audit: AuditLog) -> int:
    """Record events of the principal `filler` until the buffer refuses one (counted as
    dropped); returns how many it kept."""
    filler = AuditEvent(
        at=datetime.now(UTC), coordinate="Query.me", decision="denied", principal="filler"
    )
    kept = 0
    while audit.record(filler):
        kept += 1
    return kept


@contextlib.asynccontextmanager
async def served(app: Any, *, ws: str = "none") -> AsyncIterator[str]:
    """`app` under uvicorn on a free loopback port, with its lifespan: its base URL, for
    what must reach it over real HTTP (a simulator's webhooks) or WebSocket (`ws="auto"`)."""
    import asyncio
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, ws=ws)
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the app stopped while starting")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
