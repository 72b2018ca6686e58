"""`MetricFeed`: each day of metrics as it is kept, to the subscriptions following its account,
on this replica at once and on the others through Redis pub/sub.

    webhook / ingestion ──▶ publish(account, days) ──▶ this replica's listeners
                                     │
                                     └──▶ Redis `{namespace}:metrics` ──▶ other replicas' listeners

A listener holds at most `max_queued` days; one that falls further behind is dropped (its
`on_overflow` runs), so that a slow subscriber never makes the process keep more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from hub.sources.redis_link import HEALTH_CHECK_S, UNREACHABLE, RedisLink
from hub.sources.social import MetricRecord

logger = logging.getLogger("hub.realtime")

READY_TIMEOUT_S = 1.0
"""How long a new subscription waits for this replica to hear the others."""
RESUBSCRIBE_S = 1.0
"""How long a replica waits before subscribing again to a channel it lost."""
_COUNTERS = len(MetricRecord._fields) - 2  # every field after external_id and day


class Listener:
    """One subscription's queue of the days of the accounts it follows."""

    def __init__(
        self,
        feed: MetricFeed,
        accounts: Iterable[str],
        *,
        max_queued: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[MetricRecord] = asyncio.Queue(max_queued)
        self._on_overflow = on_overflow
        self.accounts: frozenset[str] = frozenset(accounts)
        self.overflowed = False

    async def next(self) -> MetricRecord:
        return await self._queue.get()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def follow(self, accounts: Iterable[str]) -> None:
        """Follow these accounts from now on, instead of the ones before."""
        self._feed._unindex(self)
        self.accounts = frozenset(accounts)
        if not self.overflowed:
            self._feed._index(self)

    def close(self) -> None:
        self._feed._unindex(self)

    def offer(self, record: MetricRecord) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()
            # What it held goes with it: nothing more is read from a dropped subscriber.
            self._queue = asyncio.Queue(1)
            self._on_overflow()


@dataclass(frozen=True, slots=True)
class Subscriber:
    """What a subscription's resolver has of its connection: the feed, how many events may
    wait for it, and what drops the connection when more would."""

    feed: MetricFeed
    max_queued: int
    on_overflow: Callable[[], None]

    def listen(self, accounts: Iterable[str]) -> Listener:
        return self.feed.listen(accounts, max_queued=self.max_queued, on_overflow=self.on_overflow)


class MetricFeed:
    """Kept days by account, to the listeners following the account; across replicas when
    `link` (Redis) is given. A day published while Redis is unreachable reaches this replica's
    subscribers only."""

    def __init__(self, *, link: RedisLink | None = None, namespace: str = "hub") -> None:
        self._link = link
        self._channel = f"{namespace}:metrics"
        self._replica = uuid.uuid4().hex
        self._by_account: dict[str, set[Listener]] = {}
        self._listener_task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def listen(
        self, accounts: Iterable[str], *, max_queued: int, on_overflow: Callable[[], None]
    ) -> Listener:
        listener = Listener(self, accounts, max_queued=max_queued, on_overflow=on_overflow)
        self._index(listener)
        self._start()
        return listener

    @property
    def listeners(self) -> int:
        return len({id(listener) for found in self._by_account.values() for listener in found})

    async def publish(self, external_id: str, days: Sequence[MetricRecord]) -> None:
        """Hand the account's kept days to its listeners here, then to the other replicas."""
        if not days:
            return
        self._deliver(external_id, days)
        link = self._link
        if link is None or not link.is_up:
            return
        try:
            await link.redis.publish(self._channel, _encode(self._replica, external_id, days))
        except UNREACHABLE:
            link.failed("metrics feed")

    async def ready(self, *, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Whether the other replicas' days are heard, waiting up to `timeout_s` for the
        subscription to Redis, which starts with the first use: a replica that never serves a
        subscriber holds no connection for it (a pub/sub connection is one of the pool's)."""
        link = self._link
        if link is None:
            return True
        self._start()
        if not link.is_up:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    def _start(self) -> None:
        if self._link is not None and self._listener_task is None:
            self._listener_task = asyncio.create_task(self._listen(self._link), name="metric-feed")

    async def aclose(self) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
            await asyncio.gather(self._listener_task, return_exceptions=True)
            self._listener_task = None

    def _deliver(self, external_id: str, days: Sequence[MetricRecord]) -> None:
        for listener in list(self._by_account.get(external_id, ())):
            for record in days:
                listener.offer(record)

    def _index(self, listener: Listener) -> None:
        for account in listener.accounts:
            self._by_account.setdefault(account, set()).add(listener)

    def _unindex(self, listener: Listener) -> None:
        for account in listener.accounts:
            found = self._by_account.get(account)
            if found is not None:
                found.discard(listener)
                if not found:
                    del self._by_account[account]

    async def _listen(self, link: RedisLink) -> None:
        while True:
            await link.wait_up()
            try:
                async with link.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    while True:
                        # Polling (not `listen()`) so that health-check pings go out.
                        message = await pubsub.get_message(timeout=HEALTH_CHECK_S)
                        if message is not None:
                            self._on_message(message)
            except UNREACHABLE:
                link.failed("metrics feed subscription")
            self._subscribed.clear()
            await asyncio.sleep(RESUBSCRIBE_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            self._subscribed.set()
            return
        if message["type"] != "message":
            return
        decoded = _decode(message["data"])
        if decoded is None:
            logger.warning("a message on the metrics channel is not a feed message; ignored")
            return
        origin, external_id, days = decoded
        if origin != self._replica:
            self._deliver(external_id, days)


def _encode(replica: str, external_id: str, days: Sequence[MetricRecord]) -> str:
    rows = [[record.day.isoformat(), *record[2:]] for record in days]
    return json.dumps({"o": replica, "a": external_id, "d": rows}, separators=(",", ":"))


def _decode(data: Any) -> tuple[str, str, list[MetricRecord]] | None:
    """The message's origin, account and days; None for anything else on the channel."""
    try:
        body = json.loads(data)
        origin, external_id, rows = body["o"], body["a"], body["d"]
        if not (isinstance(origin, str) and isinstance(external_id, str)):
            return None
        days = [_record(external_id, row) for row in rows]
    except (ValueError, TypeError, KeyError):
        return None
    return origin, external_id, days


def _record(external_id: str, row: list[Any]) -> MetricRecord:
    day, *counters = row
    if len(counters) != _COUNTERS or not all(type(value) is int for value in counters):
        raise ValueError("counters")
    return MetricRecord(external_id, date.fromisoformat(day), *counters)
