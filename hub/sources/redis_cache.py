"""The cache shared by replicas (`redis://…`), with a short-lived local tier kept honest by
pub/sub purges."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.errors import SourceUnavailable
from hub.sources.base import Clock
from hub.sources.cache import DEFAULT_MAX_BYTES, Entry, PurgeFeed
from hub.sources.cache_base import BaseCache
from hub.sources.memory_cache import PURGE_MEMORY_S, LocalEntries
from hub.sources.metrics import Metrics

logger = logging.getLogger("hub.sources.cache")

CLOCK_SKEW_S = 1.0
"""Replicas' clocks may disagree by this much: loads read this close to a purge are not stored."""

CACHE_SOURCE = "cache"
SOCKET_TIMEOUT_S = 1.0
HEALTH_CHECK_S = 10.0
SUBSCRIBE_TIMEOUT_S = 5.0
RESUBSCRIBE_S = 1.0


def connect_redis(url: str) -> Redis:
    """A client that gives up on a hung server in a second and pings idle connections
    (the purge subscription included) so that a dead one is noticed."""
    return Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_S,
    )


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

    A replica keeps fresh entries it has seen in process for at most `local_ttl_s`, and only
    while its purge subscription is up: losing it empties and bypasses the local tier. A
    Redis outage makes reads miss and writes no-ops (logged); purges raise
    `SourceUnavailable("cache")`. The cache owns `redis` and closes it.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        clock: Clock,
        metrics: Metrics | None = None,
        local_max_bytes: int = DEFAULT_MAX_BYTES,
        local_ttl_s: float = 5.0,
    ) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self.redis = redis
        self.local_ttl_s = local_ttl_s
        self.local = (
            LocalEntries(max_bytes=local_max_bytes, clock=clock) if local_ttl_s > 0 else None
        )
        self._prefix = f"{namespace}:"
        self._channel = f"{namespace}:purge"
        self._replica = uuid.uuid4().hex
        self._set_script = redis.register_script(_SET_MANY)
        self._purge_script = redis.register_script(_PURGE)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if self.local is not None:
            self._ensure_listener()
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
        except RedisError:
            logger.warning("cache read failed; treating as misses", exc_info=True)
            return found
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
        ttl_ms = max(1, math.ceil((ttl_s + stale_ttl_s) * 1000))
        made: dict[str, Entry] = {}
        args: list[str | int | float] = [
            self._prefix,
            "" if read_at is None else read_at - CLOCK_SKEW_S,
        ]
        for key, value in entries.items():
            entry_tags = tuple(tags.get(key, ())) if tags else ()
            entry = made[key] = Entry(value, now + ttl_s, now + ttl_s + stale_ttl_s, entry_tags)
            args += [key, _encode(entry), ttl_ms, len(entry_tags), *entry_tags]
        try:
            stored = await self._set_script(args=args)
        except RedisError:
            logger.warning("cache write failed; entries not stored", exc_info=True)
            return
        local = self._local_tier()
        if local is None:
            return
        for raw_key in stored:
            key = raw_key.decode()
            entry = made[key]
            keep_until = min(entry.fresh_until, now + self.local_ttl_s)
            local.put(key, entry, keep_until=keep_until, read_at=read_at)

    async def purge_tag(self, tag: str) -> int:
        try:
            deleted = await self._purge_script(
                args=[self._prefix, tag, self._clock.time(), int(PURGE_MEMORY_S * 1000)]
            )
        except RedisError:
            raise _cache_unavailable() from None
        await self.publish_purge(tag)
        return int(deleted)

    async def publish_purge(self, tag: str) -> None:
        # This replica drops its own entries now; the others when the message reaches them.
        self._drop_local(tag)
        try:
            await self.redis.publish(self._channel, f"{self._replica}|{tag}")
        except RedisError:
            raise _cache_unavailable() from None

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
        await self.redis.aclose()

    # -- purge subscription ---------------------------------------------------------------

    def _local_tier(self) -> LocalEntries | None:
        return self.local if self._subscribed.is_set() else None

    def _drop_local(self, tag: str) -> None:
        if self.local is not None:
            self.local.drop_tag(tag)
        self._announce(tag)

    def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    while True:
                        # Polling (not `listen()`) so that health-check pings go out.
                        message = await pubsub.get_message(timeout=HEALTH_CHECK_S)
                        if message is not None:
                            self._on_message(message)
            except (RedisError, OSError):
                logger.warning("purge subscription lost; local tier off until back", exc_info=True)
            self._subscribed.clear()
            if self.local is not None:
                self.local.clear()
            await asyncio.sleep(RESUBSCRIBE_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            self._subscribed.set()
        elif message["type"] == "message":
            origin, _, tag = bytes(message["data"]).decode().partition("|")
            if origin != self._replica:
                self._drop_local(tag)


def _cache_unavailable() -> SourceUnavailable:
    logger.warning("cache purge failed", exc_info=True)
    return SourceUnavailable(
        CACHE_SOURCE, "The shared cache is unavailable; the purge may be incomplete."
    )


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
