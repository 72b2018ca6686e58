"""`Idempotency-Key` on mutations: the same key and body return the first answer, once applied.

A key is claimed only when its mutation is about to run (after limits, validation, cost and
budget), so a request refused before that leaves nothing behind, and only an executed answer
is kept. A kept answer records the people (contacts) it names; erasing one of them replaces
the answer, so that no replay outlives an erasure.

An answer the store could not take when its mutation ended is held by its process and
written again until it is: a claim left without its answer would be taken over as abandoned
a minute later, and the mutation applied twice. Meanwhile the process replays it itself, and
shutting down writes what is still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from hub.auth import Principal
from hub.errors import BadRequest, IdempotencyConflict
from hub.sources.store import Store
from hub.store.tables import ContactRow, ErasureRow, IdempotencyRow, IdempotencySubjectRow
from hub.store.tenancy import as_system

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
ABANDONED_AFTER = timedelta(seconds=60)
MAX_WAITERS_PER_KEY = 8
"""Requests of one process that may wait for one key's first request; more are refused."""
MAX_HELD_ANSWERS = 1000
"""Answers a process holds while the store cannot take them; beyond, the oldest is let go
(and its claim left to be taken over, as a crashed process's would be)."""

ERASED_ANSWER: dict[str, Any] = {
    "status": 200,
    "body": {
        "data": None,
        "errors": [
            {
                "message": "The first answer to this request named a person who has since been "
                "erased; it is no longer kept.",
                "extensions": {"code": "NOT_FOUND"},
            }
        ],
    },
}


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]


def scoped_key(header: str, principal: Principal) -> str:
    """The stored key: a hash of the caller's every identifying claim and the header, so that
    no two callers' keys can meet, whatever their claims contain."""
    if not _KEY.match(header):
        raise BadRequest("`Idempotency-Key` must be 1-200 letters, digits, '.', '_', ':' or '-'.")
    caller = [principal.tenant, principal.subject, principal.client_id, header]
    return hashlib.sha256(json.dumps(caller).encode()).hexdigest()


def request_hash(query: str | None, operation_name: str | None, variables: Any) -> str:
    canonical = json.dumps([query, operation_name, variables], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class IdempotencyKeys:
    """The keys of one hub process, kept in the own store (shared by every replica)."""

    def __init__(
        self,
        store: Store,
        *,
        ttl_s: float,
        wait_s: float = 10.0,
        poll_s: float = 0.05,
        max_waiters: int = MAX_WAITERS_PER_KEY,
        retry_s: float = 1.0,
        max_held: int = MAX_HELD_ANSWERS,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.max_waiters = max_waiters
        self.retry_s = retry_s
        self.max_held = max_held
        self._waiting: dict[str, int] = {}
        self._held: dict[str, tuple[str, StoredAnswer, list[str]]] = {}
        """Answers the store has not taken yet, by key: (request digest, answer, subjects)."""
        self._writer: asyncio.Task[None] | None = None

    async def claim(self, key: str, digest: str) -> StoredAnswer | None:
        """None when this request is first and must run; else the first request's answer.

        A key whose first request is still running is waited for (by at most `max_waiters`
        requests of this process); one abandoned for longer than a minute is taken over. A
        key reused with another body is refused. A key older than `ttl_s` is forgotten: the
        request runs again, as a new one.
        """
        deadline = asyncio.get_running_loop().time() + self.wait_s
        waiting = False
        try:
            while True:
                now = datetime.now(UTC)
                try:
                    async with self.store.sessions.begin() as session:
                        session.add(IdempotencyRow(key=key, request_hash=digest, created_at=now))
                    return None
                except IntegrityError:
                    pass
                async with self.store.sessions() as session:
                    row = await session.get(IdempotencyRow, key)
                if row is None:
                    continue
                if now - row.created_at > timedelta(seconds=self.ttl_s):
                    await self.release(key)
                    continue
                if row.request_hash != digest:
                    raise IdempotencyConflict(
                        "This Idempotency-Key was already used with a different request."
                    )
                if row.response is not None:
                    return StoredAnswer(row.response["status"], row.response["body"])
                if key in self._held:
                    return await self._replay_held(key)
                if now - row.created_at > ABANDONED_AFTER and await self._take_over(row, now):
                    return None
                if not waiting:
                    if self._waiting.get(key, 0) >= self.max_waiters:
                        raise IdempotencyConflict(
                            "Too many requests wait for this Idempotency-Key; retry later."
                        )
                    self._waiting[key] = self._waiting.get(key, 0) + 1
                    waiting = True
                if asyncio.get_running_loop().time() > deadline:
                    raise IdempotencyConflict(
                        "A request with this Idempotency-Key is still running."
                    )
                await asyncio.sleep(self.poll_s)
        finally:
            if waiting:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]

    async def finish(
        self, key: str, digest: str, answer: StoredAnswer, *, subjects: Iterable[str]
    ) -> None:
        """Keep `answer` as the key's, with the people it names; if one of them was erased
        meanwhile, keep the erased answer instead. When the store cannot take it now, the
        process holds it and writes it again every `retry_s` until it does."""
        named = sorted(set(subjects))
        try:
            await self._write(key, digest, answer, named)
        except Exception as error:
            logger.warning(
                "an idempotent answer was not kept (%s); it is held and written again",
                type(error).__name__,
            )
            self._hold(key, digest, answer, named)

    async def aclose(self) -> None:
        """Write the answers still held, once more each (at shutdown)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._write_held()
        if self._held:
            logger.error(
                "%d idempotent answers were not kept; their keys will be taken over as abandoned",
                len(self._held),
            )

    def _hold(self, key: str, digest: str, answer: StoredAnswer, named: list[str]) -> None:
        while len(self._held) >= self.max_held:
            dropped = next(iter(self._held))
            del self._held[dropped]
            logger.error("an idempotent answer held too long was let go")
        self._held[key] = (digest, answer, named)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_until_kept())

    async def _write_until_kept(self) -> None:
        while self._held:
            await asyncio.sleep(self.retry_s)
            await self._write_held()

    async def _write_held(self) -> None:
        """Each held answer written once more; one that fails waits for the next round,
        without holding back the others. In system mode: the answers are every tenant's,
        and whether a person they name was erased is read across tenants."""
        with as_system():
            for key, (digest, answer, named) in list(self._held.items()):
                try:
                    await self._write(key, digest, answer, named)
                except Exception:
                    continue
                self._held.pop(key, None)

    async def _replay_held(self, key: str) -> StoredAnswer:
        """A held answer, to a request of this process with its key and body: the erased
        answer once a person it names was erased."""
        _digest, answer, named = self._held[key]
        if named:
            async with self.store.sessions() as session:
                if await _any_erased(session, named):
                    return StoredAnswer(ERASED_ANSWER["status"], ERASED_ANSWER["body"])
        return answer

    async def _write(self, key: str, digest: str, answer: StoredAnswer, named: list[str]) -> None:
        """The answer kept for the key's claim, if the key is still claimed for the same body
        (one made anew for another body since keeps its own). Written again, it replaces what
        it wrote before."""
        async with self.store.sessions.begin() as session:
            if named:
                # Waits for an erasure of one of them that is under way (PostgreSQL row locks;
                # SQLite writes one transaction at a time), so that it is seen below.
                await session.execute(
                    select(col(ContactRow.id))
                    .where(col(ContactRow.id).in_(named))
                    .with_for_update(read=True)
                )
            kept = {"status": answer.status, "body": answer.body}
            erased = bool(named) and await _any_erased(session, named)
            written = await session.execute(
                update(IdempotencyRow)
                .where(col(IdempotencyRow.key) == key)
                .where(col(IdempotencyRow.request_hash) == digest)
                .values(response=ERASED_ANSWER if erased else kept)
            )
            if not named or not getattr(written, "rowcount", 0):
                return
            await session.execute(
                delete(IdempotencySubjectRow).where(col(IdempotencySubjectRow.key) == key)
            )
            session.add_all(IdempotencySubjectRow(key=key, subject=s) for s in named)

    async def release(self, key: str) -> None:
        """Forget a claim whose request did not run to an answer, so that a retry may run it."""
        self._held.pop(key, None)
        async with self.store.sessions.begin() as session:
            await session.execute(
                delete(IdempotencySubjectRow).where(col(IdempotencySubjectRow.key) == key)
            )
            await session.execute(delete(IdempotencyRow).where(col(IdempotencyRow.key) == key))

    async def _take_over(self, row: IdempotencyRow, now: datetime) -> bool:
        async with self.store.sessions.begin() as session:
            result = await session.execute(
                update(IdempotencyRow)
                .where(col(IdempotencyRow.key) == row.key)
                .where(col(IdempotencyRow.created_at) == row.created_at)
                .where(col(IdempotencyRow.response).is_(None))
                .values(created_at=now)
            )
        return bool(getattr(result, "rowcount", 0))


async def _any_erased(session: AsyncSession, contact_ids: list[str]) -> bool:
    found = await session.scalar(
        select(col(ErasureRow.contact_id))
        .where(col(ErasureRow.contact_id).in_(contact_ids))
        .limit(1)
    )
    return found is not None


async def forget_answers_naming(session: AsyncSession, subject: str) -> None:
    """Within an erasure's transaction: every kept answer that names `subject` is replaced by
    the erased answer (the keys stay claimed, so that a retry still changes nothing)."""
    keys = select(col(IdempotencySubjectRow.key)).where(
        col(IdempotencySubjectRow.subject) == subject
    )
    await session.execute(
        update(IdempotencyRow)
        .where(col(IdempotencyRow.key).in_(keys))
        .where(col(IdempotencyRow.response).is_not(None))
        .values(response=ERASED_ANSWER)
    )


@dataclass
class Claim:
    """One request's `Idempotency-Key`, taken by the executor when its mutation is about to
    run: then it is either `claimed` (this request runs) or has a `replay` (it does not)."""

    keys: IdempotencyKeys
    key: str
    digest: str
    claimed: bool = False
    replay: StoredAnswer | None = None
    subjects: set[str] = field(default_factory=set)
    """The contacts the answer names, collected as it is built."""
    applied: bool = False
    """A root field of the mutation returned: something may be written, so the key is kept
    with whatever answer follows, never released for a retry to write it again."""

    async def take(self) -> bool:
        """Claim the key; False when the first request's answer is to be replayed instead."""
        stored = await self.keys.claim(self.key, self.digest)
        if stored is not None:
            self.replay = stored
            return False
        self.claimed = True
        return True


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
