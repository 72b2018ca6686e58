"""`Idempotency-Key` on mutations: the same key and body return the first answer, once applied."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from hub.auth import Principal
from hub.errors import BadRequest, IdempotencyConflict
from hub.sources.store import Store
from hub.store.tables import IdempotencyRow

_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
ABANDONED_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]


def is_mutation(query: str | None, operation_name: str | None) -> bool:
    if not query:
        return False
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return False
    return operation is not None and operation.operation == OperationType.MUTATION


def scoped_key(header: str, principal: Principal) -> str:
    """The stored key: the caller's own namespace, so two callers' keys never meet."""
    if not _KEY.match(header):
        raise BadRequest("`Idempotency-Key` must be 1-200 letters, digits, '.', '_', ':' or '-'.")
    return f"{principal.tenant or '-'}|{principal.subject or '-'}|{header}"


def request_hash(query: str | None, operation_name: str | None, variables: Any) -> str:
    canonical = json.dumps([query, operation_name, variables], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    store: Store,
    key: str,
    digest: str,
    *,
    ttl_s: float,
    wait_s: float = 10.0,
    poll_s: float = 0.05,
) -> StoredAnswer | None:
    """None when this request is first and must run; else the first request's answer.

    A key whose first request is still running is waited for; one abandoned for longer than
    a minute is taken over. A key reused with another body is refused. A key older than
    `ttl_s` is forgotten: the request runs again, as a new one.
    """
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        now = datetime.now(UTC)
        try:
            async with store.sessions.begin() as session:
                session.add(IdempotencyRow(key=key, request_hash=digest, created_at=now))
            return None
        except IntegrityError:
            pass
        async with store.sessions() as session:
            row = await session.get(IdempotencyRow, key)
        if row is None:
            continue
        if now - row.created_at > timedelta(seconds=ttl_s):
            await release(store, key)
            continue
        if row.request_hash != digest:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request."
            )
        if row.response is not None:
            return StoredAnswer(row.response["status"], row.response["body"])
        if now - row.created_at > ABANDONED_AFTER and await _take_over(store, row, now):
            return None
        if asyncio.get_running_loop().time() > deadline:
            raise IdempotencyConflict("A request with this Idempotency-Key is still running.")
        await asyncio.sleep(poll_s)


async def _take_over(store: Store, row: IdempotencyRow, now: datetime) -> bool:
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(IdempotencyRow)
            .where(col(IdempotencyRow.key) == row.key)
            .where(col(IdempotencyRow.created_at) == row.created_at)
            .where(col(IdempotencyRow.response).is_(None))
            .values(created_at=now)
        )
    return bool(getattr(result, "rowcount", 0))


def without_personal_data(
    body: dict[str, Any], paths: list[tuple[str | int, ...]]
) -> dict[str, Any]:
    """The answer to keep for replays: personal-data values nulled, so that a replay can never
    serve a person's data past a withdrawal or an erasure (nor keep it in the store)."""
    if not paths:
        return body
    kept = copy.deepcopy(body)
    for path in paths:
        node: Any = kept.get("data")
        for step in path[:-1]:
            if isinstance(node, dict):
                node = node.get(step)
            elif isinstance(node, list) and isinstance(step, int) and step < len(node):
                node = node[step]
            else:
                node = None
                break
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = None
    kept["extensions"] = {**kept.get("extensions", {}), "personalDataOmitted": True}
    return kept


async def finish(store: Store, key: str, answer: StoredAnswer) -> None:
    async with store.sessions.begin() as session:
        await session.execute(
            update(IdempotencyRow)
            .where(col(IdempotencyRow.key) == key)
            .values(response={"status": answer.status, "body": answer.body})
        )


async def release(store: Store, key: str) -> None:
    """Forget a claim whose request failed unexpectedly, so that a retry may run it."""
    async with store.sessions.begin() as session:
        await session.execute(delete(IdempotencyRow).where(col(IdempotencyRow.key) == key))
