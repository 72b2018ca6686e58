"""Signed webhooks in: `POST /webhooks/{source}`, kept before they are answered, processed after.

sender ── POST /webhooks/social ──▶ verify: X-Hub-Timestamp within 300 s,
                                    X-Hub-Signature-256 = HMAC-SHA256(secret,
                                    "{timestamp}.{body}"), compared in constant time
                                    (401, nothing stored, otherwise)
                              ──▶ read the payload (400 if it is not one we know)
                              ──▶ INSERT webhook_events (source, X-Hub-Event-Id): the
                                  same id again is 200 and changes nothing
       ◀── 202 accepted ──────
after the answer: the event is claimed and processed (metric days kept, caches of the
account dropped); a failure is retried with backoff by the inbox job, which one replica
at a time runs (a lease), until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from hub.errors import BadRequest, RequestError, Unauthenticated
from hub.metric_history import COUNTERS, store_days
from hub.sources.social import MetricRecord
from hub.sources.store import Store
from hub.store.leases import Leases
from hub.store.tables import WebhookEventRow
from hub.text import invalid_text_at

logger = logging.getLogger("hub.webhooks")

TOLERANCE_S = 300
"""How far a delivery's timestamp may be from now, either way."""
MAX_EVENT_ID = 200
MAX_DAYS = 400
"""The most days one delivery may carry."""
CLAIM_S = 60.0
"""How long a processor holds an event before another may take it over."""
RETRY_BACKOFF_S = (5, 30, 120, 600, 1800)


class UnknownWebhookSource(RequestError):
    code = "NOT_FOUND"
    default_message = "No webhooks are received from that source."
    http_status = 404


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `"{timestamp}.{body}"`: what a sender puts in
    `X-Hub-Signature-256`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str | None, headers: dict[str, str], body: bytes, *, now: float
) -> tuple[str, datetime]:
    """The delivery's event id and send time, or `Unauthenticated` (nothing said of why
    beyond what the sender can fix)."""
    if not secret:
        raise Unauthenticated("Webhooks from this source are not configured.")
    timestamp = headers.get("x-hub-timestamp", "")
    given = headers.get("x-hub-signature-256", "")
    event_id = headers.get("x-hub-event-id", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthenticated("X-Hub-Timestamp must be Unix seconds.")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise Unauthenticated(f"X-Hub-Timestamp is more than {TOLERANCE_S} s from now.")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode()):
        raise Unauthenticated("X-Hub-Signature-256 does not match the body.")
    if not event_id or len(event_id) > MAX_EVENT_ID or invalid_text_at(event_id) is not None:
        raise BadRequest(f"X-Hub-Event-Id must be 1 to {MAX_EVENT_ID} characters of text.")
    return event_id, datetime.fromtimestamp(int(timestamp), UTC)


def social_days(payload: Any) -> list[MetricRecord]:
    """The days of a social `metrics.updated` payload, or `BadRequest`."""
    try:
        account = payload["accountId"]
        days = payload["days"]
        if not isinstance(account, str) or not 0 < len(account) <= 64:
            raise ValueError("accountId")
        if not isinstance(days, list) or len(days) > MAX_DAYS:
            raise ValueError("days")
        if "occurredAt" in payload and occurred_at(payload) is None:
            raise ValueError("occurredAt")
        records = []
        for day in days:
            figures = [day[_camel(name)] for name in COUNTERS]
            if not all(type(value) is int and 0 <= value < 2**62 for value in figures):
                raise ValueError("counters")
            records.append(MetricRecord(account, date.fromisoformat(day["date"]), *figures))
    except (KeyError, TypeError, ValueError):
        raise BadRequest(
            "A metrics.updated event needs accountId and days: [{date, "
            + ", ".join(_camel(name) for name in COUNTERS)
            + f"}}] (at most {MAX_DAYS})."
        ) from None
    return records


def occurred_at(payload: dict[str, Any]) -> datetime | None:
    """When the sender made the statement (`occurredAt`, ISO 8601 with an offset), if it
    says: a delivery retried or held back is signed later than it was made."""
    value = payload.get("occurredAt")
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check_payload(source: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """The event's type and payload, if this hub knows what to do with it (`BadRequest`)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise BadRequest("The body must be a JSON object with a `type`.")
    kind = payload["type"]
    if (source, kind) not in HANDLED:
        raise BadRequest(f"Events of type {kind[:100]!r} are not received from {source}.")
    if kind == "metrics.updated":
        social_days(payload)
    return kind, payload


HANDLED = frozenset({("social", "metrics.updated")})
SOURCES = frozenset(source for source, _ in HANDLED)


async def keep(
    store: Store,
    source: str,
    event_id: str,
    kind: str,
    payload: dict[str, Any],
    *,
    sent_at: datetime,
    now: datetime,
) -> bool:
    """Store the event; False when its id was stored before (nothing changes then)."""
    row = WebhookEventRow(
        source=source,
        event_id=event_id,
        type=kind,
        payload=payload,
        sent_at=sent_at,
        received_at=now,
        next_attempt_at=now,
    )
    try:
        async with store.sessions.begin() as session:
            session.add(row)
    except IntegrityError:
        return False
    return True


Handler = Callable[[WebhookEventRow], Awaitable[None]]


@dataclass
class Inbox:
    """Processes kept events: right after their answer, and again until each succeeds."""

    store: Store
    on_days: Callable[[str, list[MetricRecord]], Awaitable[None]] | None = None
    """Told of each account's days once they are kept (caches to drop, subscribers)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    leases: Leases | None = None
    interval_s: float = 10.0

    def __post_init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[bool]] = set()

    async def process(self, source: str, event_id: str) -> bool:
        """Claim the event and run its handler; False if another holds it, it is done, or it
        failed (then it waits for its next attempt)."""
        now = self.clock()
        async with self.store.sessions.begin() as session:
            claimed = await session.execute(
                update(WebhookEventRow)
                .where(col(WebhookEventRow.source) == source)
                .where(col(WebhookEventRow.event_id) == event_id)
                .where(col(WebhookEventRow.processed_at).is_(None))
                .where(
                    or_(
                        col(WebhookEventRow.claimed_until).is_(None),
                        col(WebhookEventRow.claimed_until) < now,
                    )
                )
                .values(claimed_until=now + timedelta(seconds=CLAIM_S))
            )
            if not getattr(claimed, "rowcount", 0):
                return False
            event = await session.get(WebhookEventRow, (source, event_id))
        assert event is not None
        try:
            await self._handle(event)
        except Exception as error:
            attempts = event.attempts + 1
            delay = RETRY_BACKOFF_S[min(attempts - 1, len(RETRY_BACKOFF_S) - 1)]
            logger.warning(
                "webhook event %s/%s failed (attempt %d, next in %d s): %s",
                source,
                event_id,
                attempts,
                delay,
                type(error).__name__,
            )
            await self._mark(
                event,
                attempts=attempts,
                next_attempt_at=self.clock() + timedelta(seconds=delay),
                claimed_until=None,
                last_error=type(error).__name__,
            )
            return False
        await self._mark(event, processed_at=self.clock(), claimed_until=None, last_error=None)
        return True

    def process_soon(self, source: str, event_id: str) -> None:
        """Process after the answer went out; what fails waits for the inbox job."""
        task = asyncio.get_running_loop().create_task(self.process(source, event_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def run_once(self, limit: int = 100) -> int:
        """Process the events due now (a failed one past its backoff); how many succeeded."""
        async with self.store.sessions() as session:
            due = (
                await session.execute(
                    select(col(WebhookEventRow.source), col(WebhookEventRow.event_id))
                    .where(col(WebhookEventRow.processed_at).is_(None))
                    .where(col(WebhookEventRow.next_attempt_at) <= self.clock())
                    .order_by(col(WebhookEventRow.next_attempt_at))
                    .limit(limit)
                )
            ).all()
        done = 0
        for source, event_id in due:
            done += await self.process(source, event_id)
        return done

    async def run_leased(self) -> int | None:
        if self.leases is not None and not await self.leases.acquire(
            "webhook-inbox", ttl_s=3 * self.interval_s
        ):
            return None
        return await self.run_once()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhook-inbox")

    async def aclose(self) -> None:
        """Stop the job; the events being processed finish first (a shutdown loses none:
        one cut short is claimed again once its claim expires)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await self.leases.release("webhook-inbox")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_leased()
            except Exception:
                logger.exception("webhook inbox round failed; trying again later")

    async def _handle(self, event: WebhookEventRow) -> None:
        if (event.source, event.type) == ("social", "metrics.updated"):
            days = social_days(event.payload)
            observed_at = occurred_at(event.payload) or event.sent_at
            kept = await store_days(self.store, days, observed_at=observed_at, now=self.clock())
            if self.on_days is not None and kept:
                await self.on_days(kept[0].external_id, kept)

    async def _mark(self, event: WebhookEventRow, **values: Any) -> None:
        async with self.store.sessions.begin() as session:
            await session.execute(
                update(WebhookEventRow)
                .where(col(WebhookEventRow.source) == event.source)
                .where(col(WebhookEventRow.event_id) == event.event_id)
                .values(**values)
            )
