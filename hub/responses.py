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
from hub.policy.access import Coordinate
from hub.sources.base import Clock, SystemClock
from hub.sources.cache import Cache, cache_key
from hub.sources.metrics import Metrics

logger = logging.getLogger("hub.responses")

RETRY_S = 1.0
"""How often a failed drop of every kept answer is tried again."""

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
    """Answers in the shared cache (in-process, or Redis shared by replicas)."""

    def __init__(
        self,
        cache: Cache,
        *,
        ttl_s: float,
        fingerprint: str,
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        self.cache = cache
        self.ttl_s = ttl_s
        self.fingerprint = fingerprint
        self.clock = clock or SystemClock()
        self._lookups = metrics.counter(
            "hub_response_cache_lookups_total", "Response cache lookups by result.", ("result",)
        )
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
            self._lookups.inc("miss")
            return None
        entry = (await self.cache.get_many([key])).get(key)
        if entry is None or not entry.is_fresh(self.clock.time()):
            self._lookups.inc("miss")
            return None
        self._lookups.inc("hit")
        value = entry.value
        return Answer(value["data"], [tuple(decision) for decision in value["decisions"]])

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
        await self.cache.set_many(
            {key: {"data": answer.data, "decisions": [list(d) for d in answer.decisions]}},
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


def _claims(principal: Principal) -> list[Any]:
    return [sorted(part) if isinstance(part, frozenset) else part for part in astuple(principal)]
