"""The shared source cache: its protocol, its keys and tags, and the URL that picks a backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hub.observability.metrics import Metrics
from hub.sources.base import Clock, SystemClock

if TYPE_CHECKING:
    from hub.sources.redis_link import RedisLink

Loader = Callable[[list[str]], Awaitable[Mapping[str, Any]]]
"""Loads cache keys from the source in one batch; keys it leaves out were not found."""

DEFAULT_MAX_BYTES = 128 * 1024 * 1024
"""What the in-process tier of a cache may hold when not told (`HUB_CACHE_MAX_BYTES`)."""

TagsFor = Callable[[str, Any], Iterable[str]]
"""The tags of one loaded entry, from its key and value (e.g. `subject_tag(contact_id)`)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached value with its wall-clock deadlines: fresh until `fresh_until`, servable
    (stale, while a refresh runs) until `stale_until`, then gone."""

    value: Any
    fresh_until: float
    stale_until: float
    tags: tuple[str, ...] = ()

    def is_fresh(self, now_s: float) -> bool:
        return now_s < self.fresh_until

    def is_servable(self, now_s: float) -> bool:
        return now_s < self.stale_until


class PurgeFeed:
    """The tags purged on any replica from the moment of subscribing; `aclose()` ends it.

    Unbounded on purpose: a purge must never be dropped, so a subscriber must keep reading.
    """

    def __init__(self, unsubscribe: Callable[[PurgeFeed], None]) -> None:
        self._unsubscribe = unsubscribe
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def push(self, tag: str) -> None:
        self._queue.put_nowait(tag)

    def __aiter__(self) -> PurgeFeed:
        return self

    async def __anext__(self) -> str:
        tag = await self._queue.get()
        if tag is None:
            raise StopAsyncIteration
        return tag

    async def aclose(self) -> None:
        self._unsubscribe(self)
        self._queue.put_nowait(None)


class Cache(Protocol):
    """A cache of JSON-serialisable source answers shared by every request (and, on Redis, by
    every replica).

    Values are shared, not copied: never mutate a value that came from the cache. Keys come
    from `cache_key`, tags from `subject_tag`. Wall-clock times come from the cache's clock.
    """

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The servable entries (fresh or stale) among `keys`; expired or absent ones left out."""
        ...

    async def set_many(
        self,
        entries: Mapping[str, Any],
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags: Mapping[str, Iterable[str]] | None = None,
        read_at: float | None = None,
    ) -> None:
        """Store values fresh for `ttl_s`, then stale for `stale_ttl_s` more.

        `tags` maps a key to its tags. With `read_at` (the clock's time when the values were
        read from the source) an entry whose tag was purged since then is not stored, so that
        a load racing an erasure cannot bring the erased data back.
        """
        ...

    async def load_many(
        self,
        keys: Sequence[str],
        loader: Loader,
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags_for: TagsFor | None = None,
    ) -> dict[str, Any]:
        """Values for `keys` (those found), loading the missing ones through `loader`.

        Fresh entries are served; stale ones are served while one background refresh runs;
        missing keys go to `loader` in one batch, and keys another caller in this process is
        already loading are awaited rather than loaded twice (single flight).
        """
        ...

    async def purge_tag(self, tag: str) -> int:
        """Delete every entry tagged `tag` everywhere (the shared store, this replica's local
        entries, and by `publish_purge` every other replica's); the number deleted."""
        ...

    async def publish_purge(self, tag: str) -> None:
        """Tell every replica (this one included) to drop its local entries tagged `tag` and
        every `PurgeFeed` to yield it."""
        ...

    async def subscribe_purges(self) -> PurgeFeed:
        """A feed of every tag purged from now on, on any replica."""
        ...

    def status(self) -> str:
        """What /readyz reports: `ok`, `unreachable` (Redis is away: local fallbacks serve) or
        `purges_lost` (Redis answers but its purge channel does not: no in-process tier)."""
        ...

    async def aclose(self) -> None:
        """Stop background refreshes and release connections."""
        ...


def cache_key(source: str, kind: str, key: str, *, tenant: str | None) -> str:
    """The cache key of one source answer; `tenant` is required for tenant-owned or personal
    data (None only for global data) so that no entry is ever shared across tenants.

    Keys start with `source:`, which is how the cache labels its metrics. Parts are escaped,
    so two different (source, kind, tenant, key) tuples never give the same string.
    """
    if tenant == "":
        raise ValueError("tenant must be a tenant id or None (global data), not empty")
    scope = "g" if tenant is None else "t=" + _escape(tenant)
    return f"{_escape(source)}:{_escape(kind)}:{scope}:{_escape(key)}"


def subject_tag(subject_id: str) -> str:
    """The tag of every entry holding a data subject's (e.g. a contact's) personal data."""
    return f"subject:{subject_id}"


def source_of(key: str) -> str:
    return key.split(":", 1)[0]


def create_cache(
    url: str,
    *,
    namespace: str,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    local_ttl_s: float = 5.0,
    link: RedisLink | None = None,
) -> Cache:
    """`memory://` (this process only) or `redis://…`/`rediss://…` (shared by replicas).

    On Redis, `namespace` prefixes every key and the purge channel, `local_ttl_s` bounds
    how long a replica keeps a fresh entry in process (0 turns the local tier off), and `link`
    is the process's Redis (one of the cache's own when None); `max_bytes` bounds what the
    process holds either way (the entries and what memos derive from them).
    """
    clock = clock or SystemClock()
    # Imported here: the backends build on this module, and redis is only needed for redis://.
    if url.startswith("memory://"):
        from hub.sources.memory_cache import MemoryCache

        return MemoryCache(max_bytes=max_bytes, clock=clock, metrics=metrics)
    if url.startswith(("redis://", "rediss://")):
        from hub.sources.redis_cache import RedisCache
        from hub.sources.redis_link import RedisLink

        return RedisCache(
            link or RedisLink.from_url(url),
            namespace=namespace,
            clock=clock,
            metrics=metrics,
            local_max_bytes=max_bytes,
            local_ttl_s=local_ttl_s,
            owns_link=link is None,
        )
    raise ValueError(f"unknown cache URL {url!r}: use memory:// or redis://host:port/db")


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")
