"""The response cache: whole query answers per caller, until the next write through the hub.

A query's answer is kept when `HUB_RESPONSE_CACHE_TTL_S` is above 0, the answer has no
errors and no denials, and the operation reads nothing written outside mutations (the access
log, erasure reports). Keys hold the document, the operation name, the variables, the
caller's every claim and the schema and policies in force, so an answer only ever goes back
to the same caller asking the same thing under the same rules. Every mutation empties the
cache on every replica (a replica that cannot reach the shared cache to do so serves none
until it can), and an answer read while a mutation committed is not kept. An answer
lives at most the TTL, and never past the moment a consent it relied on expires. A hit
records the answer's consent decisions on the audit trail again, as reading it did.

An answer holding personal data (one with consent decisions) is served only while the cache
hears every purge, and only after the store says that none of its subjects changed (contact
row or consents, written on any replica) since it was read: a withdrawal holds on the next
request even where the purge that should have dropped the answer could not be delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.auth import Principal
from hub.errors import SourceUnavailable
from hub.observability.metrics import Metrics
from hub.policy.access import Coordinate
from hub.policy.rows import RowScope
from hub.sources.base import Clock, SystemClock
from hub.sources.cache import Cache, cache_key
from hub.sources.store import Store

logger = logging.getLogger("hub.responses")

RETRY_S = 1.0
"""How often a failed drop of every kept answer is tried again."""

CLOCK_SKEW_S = 1.0
"""Replicas' clocks may disagree by this much: a subject changed this close before an answer
was read counts as changed after it."""

UNCACHEABLE: frozenset[Coordinate] = frozenset(
    {
        ("Query", "personalDataAccessLog"),  # grows with every read of personal data
        ("Query", "exportContactData"),  # holds the access log
        ("Query", "erasureReport"),  # the erasure retrier updates it in the background
    }
)
"""Fields whose data changes without a mutation: an operation touching one is never kept."""

ANSWERS_TAG = "responses"
"""The tag of every kept answer; a mutation purges it."""

AuditedDecision = tuple[str, str, str, str | None]
"""A consent decision of an answer: (coordinate, subject, decision, reason)."""


@dataclass(frozen=True, slots=True)
class Answer:
    data: dict[str, Any]
    decisions: Sequence[AuditedDecision]


class ResponseCache:
    """Answers in the shared cache (in-process, or Redis shared by replicas); `store`, when
    given, is asked whether the subjects of an answer holding personal data changed."""

    def __init__(
        self,
        cache: Cache,
        *,
        ttl_s: float,
        fingerprint: str,
        metrics: Metrics,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        self.cache = cache
        self.ttl_s = ttl_s
        self.fingerprint = fingerprint
        self.clock = clock or SystemClock()
        self.store = store
        self._lookups = metrics.response_cache_lookups
        self._unpurged = False
        self._retry: asyncio.Task[None] | None = None

    def key(
        self,
        principal: Principal,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> str:
        """The key of one caller's one question under the rules in force."""
        question = json.dumps(
            [self.fingerprint, query, operation_name, variables, _claims(principal)],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        digest = hashlib.sha256(question.encode()).hexdigest()
        return cache_key("hub", "response", digest, tenant=principal.tenant)

    async def get(self, key: str) -> Answer | None:
        if self._unpurged:
            self._lookups.labels("miss").inc()
            return None
        entry = (await self.cache.get_many([key])).get(key)
        if entry is None or not entry.is_fresh(self.clock.time()):
            self._lookups.labels("miss").inc()
            return None
        value = entry.value
        decisions = [tuple(decision) for decision in value["decisions"]]
        if decisions and await self._outdated(key, decisions, value.get("read_at")):
            self._lookups.labels("miss").inc()
            return None
        self._lookups.labels("hit").inc()
        return Answer(value["data"], decisions)

    async def put(
        self, key: str, answer: Answer, *, read_at: float, valid_until: datetime | None
    ) -> None:
        """Keep `answer` (read from `read_at` on) for the TTL, and not past `valid_until`;
        not at all if a mutation emptied the cache since `read_at`."""
        if self._unpurged:
            return
        ttl_s = self.ttl_s
        if valid_until is not None:
            ttl_s = min(ttl_s, (valid_until - datetime.now(UTC)).total_seconds())
        if ttl_s <= 0:
            return
        kept = {
            "data": answer.data,
            "decisions": [list(d) for d in answer.decisions],
            "read_at": read_at,
        }
        await self.cache.set_many(
            {key: kept},
            ttl_s=ttl_s,
            stale_ttl_s=0,
            tags={key: [ANSWERS_TAG]},
            read_at=read_at,
        )

    async def forget_all(self) -> None:
        """Drop every kept answer, on every replica. When the shared cache cannot be reached
        the write stands all the same: this replica then serves and keeps no answer, and tries
        again every second, until a drop succeeds."""
        if not await self._purge():
            self._unpurged = True
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._purge_until_done())

    async def aclose(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)

    async def _outdated(self, key: str, decisions: Sequence[Any], read_at: float | None) -> bool:
        """Whether an answer holding personal data may no longer be true: purges go unheard,
        or a subject's contact row or consents were written since `read_at` (or the store
        cannot tell)."""
        if self.cache.status() != "ok":
            return True
        if self.store is None:
            return False
        tenant = _tenant_of(key)
        if read_at is None or tenant is None:
            return True
        subjects = sorted({str(decision[1]) for decision in decisions})
        since = read_at - CLOCK_SKEW_S
        scope = RowScope(tenant=tenant)
        try:
            contacts = await self.store.contacts_by_id(scope, subjects)
            consents = await self.store.consents_by_contact(scope, subjects)
        except Exception:
            logger.warning("kept answer not served: the store could not be asked", exc_info=True)
            return True
        if len(contacts) != len(subjects):
            return True
        changes = [row.updated_at for row in contacts.values()]
        changes += [row.recorded_at for rows in consents.values() for row in rows]
        return any(_epoch_s(at) >= since for at in changes)

    async def _purge(self) -> bool:
        try:
            await self.cache.purge_tag(ANSWERS_TAG)
        except SourceUnavailable:
            logger.warning("kept answers could not be dropped; none served until they are")
            return False
        return True

    async def _purge_until_done(self) -> None:
        while self._unpurged:
            await asyncio.sleep(RETRY_S)
            if await self._purge():
                self._unpurged = False


def rules_fingerprint(schema_sdl: str, policies_dir: Path) -> str:
    """A digest of the schema and the policy files: answers kept under other rules (another
    replica's, during a deploy) are never served under these."""
    digest = hashlib.sha256(schema_sdl.encode())
    for path in sorted(policies_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _tenant_of(key: str) -> str | None:
    """The tenant a `key` was made for (see `cache_key`), or None."""
    parts = key.split(":")
    if len(parts) != 4 or not parts[2].startswith("t="):
        return None
    return parts[2][2:].replace("%3A", ":").replace("%25", "%")


def _epoch_s(at: datetime) -> float:
    """Epoch seconds of a stored time (naive ones, as SQLite returns them, are UTC)."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def _claims(principal: Principal) -> list[Any]:
    return [sorted(part) if isinstance(part, frozenset) else part for part in astuple(principal)]
