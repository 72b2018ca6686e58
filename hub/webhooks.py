"""Signed webhooks in: `POST /webhooks/{source}`, kept before they are answered, processed after.

sender ── POST /webhooks/{social,crm} ▶ verify: X-Hub-Timestamp within 300 s,
                                    X-Hub-Signature-256 = HMAC-SHA256(secret,
                                    "{timestamp}.{body}"), compared in constant time
                                    (401, nothing stored, otherwise)
                              ──▶ read the payload (400 if it is not one we know)
                              ──▶ INSERT webhook_events (source, X-Hub-Event-Id): the
                                  same id again is 200 and changes nothing
       ◀── 202 accepted ──────
after the answer: the event is claimed and processed (social: metric days kept, caches
of the account dropped; crm: the record read fresh and applied by `hub.crm_sync`); a
failure is retried with backoff by the inbox job, which one replica at a time runs (a
lease), until it succeeds.
"""

from __future__ import annotations

import asyncio
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

from hub.errors import BadRequest, Unauthenticated
from hub.jobs import PeriodicJob
from hub.metric_history import COUNTERS, store_days
from hub.sources.social import MetricRecord
from hub.sources.store import Store
from hub.store.leases import Leases
from hub.store.tables import WebhookEventRow
from hub.tenants import TENANT_ID
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
MAX_PROCESSING = 32
"""Events processed at once right after their answer; the rest wait for the inbox job."""
MAX_ATTEMPTS = 20
"""After this many failures (about eight hours of retries) an event is abandoned: kept
(`abandoned_at`) and logged, never retried again."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `"{timestamp}.{body}"`: what a sender puts in
    `X-Hub-Signature-256`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery: its event id, when it was signed, and a digest of its signature
    (the same signed delivery sent again, under any event id, is the same delivery)."""

    event_id: str
    sent_at: datetime
    signature: str


def verify(secret: str | None, headers: dict[str, str], body: bytes, *, now: float) -> Delivery:
    """The verified delivery, or `Unauthenticated` (nothing said of why beyond what the
    sender can fix)."""
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
    if not event_id or len(event_id) > MAX_EVENT_ID or not _storable(event_id):
        raise BadRequest(f"X-Hub-Event-Id must be 1 to {MAX_EVENT_ID} characters of text.")
    digest = hashlib.sha256(given.encode()).hexdigest()
    return Delivery(event_id, datetime.fromtimestamp(int(timestamp), UTC), digest)


def _storable(text: str) -> bool:
    """Text every store keeps: valid Unicode, and no NUL (PostgreSQL refuses it)."""
    return invalid_text_at(text) is None and "\x00" not in text


def social_days(payload: Any) -> list[MetricRecord]:
    """The days of a social `metrics.updated` payload, or `BadRequest`."""
    try:
        account = payload["accountId"]
        days = payload["days"]
        if not isinstance(account, str) or not 0 < len(account) <= 64 or not _storable(account):
            raise ValueError("accountId")
        if not isinstance(days, list) or len(days) > MAX_DAYS:
            raise ValueError("days")
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
    if len({record.day for record in records}) != len(records):
        raise BadRequest("A metrics.updated event states each day once.")
    return records


def occurred_at(payload: dict[str, Any], sent_at: datetime) -> datetime:
    """When the sender made the statement: `occurredAt` (ISO 8601 with an offset), which a
    delivery retried or held back keeps while it is signed again later; else its signing
    time. `BadRequest` for one that is not a time, or that is after the delivery was signed
    (a statement from the future would hold its day against every later one)."""
    value = payload.get("occurredAt")
    if value is None:
        return sent_at
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(value)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest("`occurredAt` must be a time with an offset (ISO 8601).") from None
    if moment > sent_at + timedelta(seconds=TOLERANCE_S):
        raise BadRequest("`occurredAt` is after the delivery was signed.")
    return moment


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check_payload(source: str, body: bytes, sent_at: datetime) -> tuple[str, dict[str, Any]]:
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
        occurred_at(payload, sent_at)
    elif kind == "contact.updated":
        crm_change(payload)
    return kind, payload


def crm_change(payload: Any) -> tuple[str, str]:
    """The tenant (the CRM's workspace) and CRM id of a `contact.updated` event, or
    `BadRequest`. The event names the record only: its data is read from the CRM."""
    tenant, crm_id = payload.get("workspace"), payload.get("contactId")
    if not (isinstance(tenant, str) and TENANT_ID.fullmatch(tenant)):
        raise BadRequest("A contact.updated event needs the `workspace` it belongs to.")
    if not (isinstance(crm_id, str) and 0 < len(crm_id) <= 64 and _storable(crm_id)):
        raise BadRequest("A contact.updated event needs the `contactId` (at most 64 characters).")
    return tenant, crm_id


HANDLED = frozenset({("social", "metrics.updated"), ("crm", "contact.updated")})
SOURCES = frozenset(source for source, _ in HANDLED)


async def keep(
    store: Store,
    source: str,
    delivery: Delivery,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime,
) -> bool:
    """Store the event; False when its id, or its signed delivery under another id, was
    stored before (nothing changes then)."""
    row = WebhookEventRow(
        source=source,
        event_id=delivery.event_id,
        signature=delivery.signature,
        type=kind,
        payload=payload,
        sent_at=delivery.sent_at,
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


class Inbox(PeriodicJob[int]):
    """Processes kept events: right after their answer, and again until each succeeds (the
    `webhook-inbox` job). `on_days` is told of each account's days once they are kept
    (caches to drop, subscribers)."""

    name = "webhook-inbox"

    def __init__(
        self,
        store: Store,
        *,
        on_days: Callable[[str, list[MetricRecord]], Awaitable[None]] | None = None,
        on_crm_change: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        leases: Leases | None = None,
        interval_s: float = 10.0,
    ) -> None:
        super().__init__(interval_s=interval_s, leases=leases)
        self.store = store
        self.on_days = on_days
        self.on_crm_change = on_crm_change
        """Told (tenant, CRM id) of a CRM record that changed; applies it."""
        self.clock = clock
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
                .where(col(WebhookEventRow.abandoned_at).is_(None))
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
            if attempts >= MAX_ATTEMPTS:
                logger.error(
                    "webhook event %s/%s abandoned after %d attempts: %s",
                    source,
                    event_id,
                    attempts,
                    type(error).__name__,
                )
                await self._mark(
                    event,
                    attempts=attempts,
                    abandoned_at=self.clock(),
                    claimed_until=None,
                    last_error=type(error).__name__,
                )
                return False
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
        """Process after the answer went out; what fails waits for the inbox job, as does
        an event past `MAX_PROCESSING` at once (a burst of deliveries must not take every
        store connection from the requests)."""
        if len(self._running) >= MAX_PROCESSING:
            return
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
                    .where(col(WebhookEventRow.abandoned_at).is_(None))
                    .where(col(WebhookEventRow.next_attempt_at) <= self.clock())
                    .order_by(col(WebhookEventRow.next_attempt_at))
                    .limit(limit)
                )
            ).all()
        done = 0
        for source, event_id in due:
            done += await self.process(source, event_id)
        return done

    async def finish(self) -> None:
        """The events being processed end first (a shutdown loses none: one cut short is
        claimed again once its claim expires)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _handle(self, event: WebhookEventRow) -> None:
        if (event.source, event.type) == ("social", "metrics.updated"):
            days = social_days(event.payload)
            observed_at = occurred_at(event.payload, event.sent_at)
            kept = await store_days(self.store, days, observed_at=observed_at, now=self.clock())
            if self.on_days is not None and kept:
                await self.on_days(kept[0].external_id, kept)
        elif (event.source, event.type) == ("crm", "contact.updated"):
            if self.on_crm_change is None:
                raise RuntimeError("CRM changes cannot be applied: the CRM is not configured")
            await self.on_crm_change(*crm_change(event.payload))

    async def _mark(self, event: WebhookEventRow, **values: Any) -> None:
        async with self.store.sessions.begin() as session:
            await session.execute(
                update(WebhookEventRow)
                .where(col(WebhookEventRow.source) == event.source)
                .where(col(WebhookEventRow.event_id) == event.event_id)
                .values(**values)
            )
