"""The cache shared by replicas (`redis://…`), with a short-lived local tier kept honest by
pub/sub purges."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from hub.errors import SourceUnavailable
from hub.observability.metrics import Metrics
from hub.sources.base import Clock
from hub.sources.cache import DEFAULT_MAX_BYTES, Entry, PurgeFeed
from hub.sources.cache_base import BaseCache
from hub.sources.memory_cache import PURGE_MEMORY_S, LocalEntries
from hub.sources.redis_link import HEALTH_CHECK_S, UNREACHABLE, RedisLink

logger = logging.getLogger("hub.sources.cache")

CLOCK_SKEW_S = 1.0
"""Replicas' clocks may disagree by this much: loads read this close to a purge are not stored."""

CACHE_SOURCE = "cache"
SUBSCRIBE_TIMEOUT_S = 5.0
RESUBSCRIBE_S = 1.0
MAX_PENDING_PURGES = 10_000
"""Purges kept while Redis is away; past this many, the shared entries all go when it is back."""


# Both scripts touch keys they compute, so they suit a single Redis, not a cluster.
# Stores entries (ARGV: prefix, read_at or '', then key, body, px, ntags, tags… per entry) unless a
# tag of theirs was purged at or after read_at; returns the keys stored.
_SET_MANY = """
local prefix = ARGV[1]
local read_at = tonumber(ARGV[2])
local stored = {}
local i = 3
while i <= #ARGV do
  local key, body, px, ntags = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local first, last = i + 4, i + 3 + ntags
  local refused = false
  if read_at then
    for j = first, last do
      local purged = redis.call('GET', prefix .. 'p:' .. ARGV[j])
      if purged and tonumber(purged) >= read_at then
        refused = true
        break
      end
    end
  end
  if not refused then
    redis.call('SET', prefix .. 'e:' .. key, body, 'PX', px)
    for j = first, last do
      local tag_key = prefix .. 't:' .. ARGV[j]
      redis.call('SADD', tag_key, key)
      if redis.call('PTTL', tag_key) < px then
        redis.call('PEXPIRE', tag_key, px)
      end
    end
    stored[#stored + 1] = key
  end
  i = last + 1
end
return stored
"""

# Deletes every entry of a tag and remembers when (ARGV: prefix, tag, now, memory_ms).
_PURGE = """
local prefix, tag = ARGV[1], ARGV[2]
local tag_key = prefix .. 't:' .. tag
local deleted = 0
for _, key in ipairs(redis.call('SMEMBERS', tag_key)) do
  deleted = deleted + redis.call('DEL', prefix .. 'e:' .. key)
end
redis.call('DEL', tag_key)
redis.call('SET', prefix .. 'p:' .. tag, ARGV[3], 'PX', ARGV[4])
return deleted
"""


class RedisCache(BaseCache):
    """Entries, tag sets and purge marks live in Redis under `namespace:`; purges are
    broadcast on the `namespace:purge` channel.

    While its purge subscription is up, a replica keeps fresh entries it has seen in process
    (`local`) for at most `local_ttl_s` (0: not at all); losing the subscription empties them.
    While Redis is unreachable (`link` down) the replica serves and keeps entries in the same
    place for their whole TTL, but only untagged ones: a tagged entry (a subject's personal
    data, a kept answer) may be purged by another replica, which this one cannot hear then.
    Once subscribed again, it starts from an empty `local`.
    A purge that cannot reach Redis is done here, kept (`MAX_PENDING_PURGES`, beyond which the
    whole namespace is emptied instead) and replayed before the link counts as up again; it
    raises `SourceUnavailable("cache")` so that the caller knows it is not yet done everywhere.
    The cache closes `link` when it owns it.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        namespace: str,
        clock: Clock,
        metrics: Metrics | None = None,
        local_max_bytes: int = DEFAULT_MAX_BYTES,
        local_ttl_s: float = 5.0,
        owns_link: bool = False,
    ) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self.link = link
        self.redis = link.redis
        self.local_ttl_s = local_ttl_s
        self.local = LocalEntries(max_bytes=local_max_bytes, clock=clock)
        self._owns_link = owns_link
        self._prefix = f"{namespace}:"
        self._channel = f"{namespace}:purge"
        self._replica = uuid.uuid4().hex
        self._set_script = self.redis.register_script(_SET_MANY)
        self._purge_script = self.redis.register_script(_PURGE)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._purges_lost = False
        self._pending: dict[str, None] = {}
        self._empty_all = False
        link.on_return(self._replay_purges)

    def status(self) -> str:
        self._ensure_listener()
        if not self.link.is_up:
            return "unreachable"
        return "purges_lost" if self._purges_lost else "ok"

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        self._ensure_listener()
        if not self.link.is_up:
            return self._untagged(keys)
        now = self._clock.time()
        local = self._local_tier()
        found: dict[str, Entry] = {}
        if local is not None:
            found = {key: e for key, e in local.get_many(keys).items() if e.is_fresh(now)}
        rest = [key for key in keys if key not in found]
        if not rest:
            return found
        try:
            raws = await self.redis.mget([f"{self._prefix}e:{key}" for key in rest])
        except UNREACHABLE:
            self.link.failed("cache read")
            return found | self._untagged(rest)
        for key, raw in zip(rest, raws, strict=True):
            entry = _decode(raw)
            if entry is None or not entry.is_servable(now):
                continue
            found[key] = entry
            if local is not None and entry.is_fresh(now):
                keep_until = min(entry.fresh_until, now + self.local_ttl_s)
                local.put(key, entry, keep_until=keep_until, read_at=now)
        return found

    async def set_many(
        self,
        entries: Mapping[str, Any],
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags: Mapping[str, Iterable[str]] | None = None,
        read_at: float | None = None,
    ) -> None:
        if not entries:
            return
        now = self._clock.time()
        made = {
            key: Entry(
                value,
                now + ttl_s,
                now + ttl_s + stale_ttl_s,
                tuple(tags.get(key, ())) if tags else (),
            )
            for key, value in entries.items()
        }
        if self.link.is_up:
            try:
                stored = await self._store_shared(made, ttl_s + stale_ttl_s, read_at)
            except UNREACHABLE:
                self.link.failed("cache write")
            else:
                local = self._local_tier()
                if local is not None:
                    for key in stored:
                        entry = made[key]
                        keep_until = min(entry.fresh_until, now + self.local_ttl_s)
                        local.put(key, entry, keep_until=keep_until, read_at=read_at)
                return
        for key, entry in made.items():
            if not entry.tags:
                self.local.put(key, entry, keep_until=entry.stale_until, read_at=read_at)

    async def purge_tag(self, tag: str) -> int:
        dropped = self._drop_local(tag)
        if self.link.is_up:
            try:
                deleted = await self._purge_shared(tag)
            except UNREACHABLE:
                self.link.failed("cache purge")
            else:
                return deleted
        raise self._keep_pending(tag, dropped)

    async def publish_purge(self, tag: str) -> None:
        # This replica drops its own entries now; the others when the message reaches them.
        dropped = self._drop_local(tag)
        if self.link.is_up:
            try:
                await self.redis.publish(self._channel, f"{self._replica}|{tag}")
            except UNREACHABLE:
                self.link.failed("purge message")
            else:
                return
        raise self._keep_pending(tag, dropped)

    async def subscribe_purges(self) -> PurgeFeed:
        self._ensure_listener()
        feed = await super().subscribe_purges()
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await self._subscribed.wait()
        except TimeoutError:
            await feed.aclose()
            raise
        return feed

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await super().aclose()
        if self._owns_link:
            await self.link.aclose()

    # -- the shared store -----------------------------------------------------------------

    async def _store_shared(
        self, made: Mapping[str, Entry], lifetime_s: float, read_at: float | None
    ) -> list[str]:
        """Store `made` in Redis (unless purged since `read_at`); the keys stored."""
        ttl_ms = max(1, math.ceil(lifetime_s * 1000))
        args: list[str | int | float] = [
            self._prefix,
            "" if read_at is None else read_at - CLOCK_SKEW_S,
        ]
        for key, entry in made.items():
            args += [key, _encode(entry), ttl_ms, len(entry.tags), *entry.tags]
        stored = await self._set_script(args=args)
        return [raw.decode() for raw in stored]

    async def _purge_shared(self, tag: str) -> int:
        deleted = await self._purge_script(
            args=[self._prefix, tag, self._clock.time(), int(PURGE_MEMORY_S * 1000)]
        )
        await self.redis.publish(self._channel, f"{self._replica}|{tag}")
        return int(deleted)

    def _keep_pending(self, tag: str, dropped: int) -> SourceUnavailable:
        """Keep a purge to replay when Redis is back; the error that says so."""
        if not self._empty_all and tag not in self._pending:
            logger.warning("purge kept until the shared cache is back (%d dropped here)", dropped)
            self._pending[tag] = None
            if len(self._pending) > MAX_PENDING_PURGES:
                logger.warning("too many purges pending; the shared cache is emptied when back")
                self._pending.clear()
                self._empty_all = True
        return SourceUnavailable(
            CACHE_SOURCE, "The shared cache is unavailable; the purge reaches it when it is back."
        )

    async def _replay_purges(self) -> None:
        """Before the link is up again: what was purged while Redis was away, purged there."""
        if self._empty_all:
            for kind in ("e", "t"):
                async for batch in _batches(self.redis.scan_iter(match=f"{self._prefix}{kind}:*")):
                    await self.redis.unlink(*batch)
            self._empty_all = False
        while self._pending:
            tag = next(iter(self._pending))
            await self._purge_shared(tag)
            self._pending.pop(tag, None)

    def _untagged(self, keys: Sequence[str]) -> dict[str, Entry]:
        """What this process holds of `keys` while purges go unheard: untagged entries only
        (tagged ones may linger from before, until the lost subscription empties `local`)."""
        return {key: entry for key, entry in self.local.get_many(keys).items() if not entry.tags}

    # -- purge subscription ---------------------------------------------------------------

    def _local_tier(self) -> LocalEntries | None:
        """The in-process tier beside Redis: only while every purge is heard."""
        if self.local_ttl_s > 0 and self._subscribed.is_set() and self.link.is_up:
            return self.local
        return None

    def _drop_local(self, tag: str) -> int:
        dropped = self.local.drop_tag(tag)
        self._announce(tag)
        return dropped

    def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            await self.link.wait_up()
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    while True:
                        # Polling (not `listen()`) so that health-check pings go out.
                        message = await pubsub.get_message(timeout=HEALTH_CHECK_S)
                        if message is not None:
                            self._on_message(message)
            except UNREACHABLE:
                self.link.failed("purge subscription")
            if self._subscribed.is_set():
                logger.warning("purge subscription lost; in-process tier off until back")
                self._subscribed.clear()
                self.local.clear()
            self._purges_lost = True
            await asyncio.sleep(RESUBSCRIBE_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # What was kept while purges went unheard goes: entries come from Redis again.
            self.local.clear()
            self._subscribed.set()
            self._purges_lost = False
        elif message["type"] == "message":
            origin, _, tag = bytes(message["data"]).decode().partition("|")
            if origin != self._replica:
                self._drop_local(tag)


async def _batches(keys: AsyncIterator[bytes], size: int = 500) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode(entry: Entry) -> str:
    body = {"v": entry.value, "f": entry.fresh_until, "s": entry.stale_until, "t": entry.tags}
    return json.dumps(body, separators=(",", ":"))


def _decode(raw: bytes | str | None) -> Entry | None:
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        return Entry(body["v"], float(body["f"]), float(body["s"]), tuple(body["t"]))
    except (ValueError, TypeError, KeyError):
        logger.warning("unreadable cache entry ignored")
        return None
