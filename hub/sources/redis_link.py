"""`RedisLink`: the one Redis client of a hub process, and whether Redis answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger("hub.redis")

SOCKET_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 128
"""Connections to Redis one process holds at most (pub/sub subscriptions included)."""
HEALTH_CHECK_S = 10.0
PROBE_INTERVAL_S = 1.0
"""How often a link that is down pings Redis."""

ReturnHook = Callable[[], Awaitable[None]]

UNREACHABLE = (RedisError, OSError)
"""What a Redis command raises when Redis cannot serve it."""


def is_redis(url: str) -> bool:
    """Whether a cache URL names a Redis."""
    return url.startswith(("redis://", "rediss://"))


def connect_redis(url: str) -> Redis:
    """A client that gives up on a hung server in a second, retries a command once on a fresh
    connection (a restarted server leaves the pooled ones dead), and pings idle connections
    (the purge subscription included) so that a dead one is noticed. At most
    `MAX_CONNECTIONS` at once: a command past them waits for one (as long as a command may
    take) rather than failing, which would send the process to its local fallbacks."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(NoBackoff(), 1),
    )
    client = Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # closing the client closes its pool
    return client


class RedisLink:
    """Redis as the shared cache, the budgets and the persisted queries of a process reach it.

    Each user catches `UNREACHABLE`, calls `failed()` and serves from its local fallback; while
    the link is down (`is_up` false) they skip Redis altogether, so an outage costs a request
    no wait. A background probe pings Redis every `probe_interval_s`; once it answers, the
    `on_return` hooks run in order (replaying what must reach the shared state first), and only
    when they all succeed is the link up again. The link owns the client and closes it.
    """

    def __init__(self, redis: Redis, *, probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self.redis = redis
        self.probe_interval_s = probe_interval_s
        self._up = asyncio.Event()
        self._up.set()
        self._hooks: list[ReturnHook] = []
        self._probe: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisLink:
        return cls(connect_redis(url))

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def on_return(self, hook: ReturnHook) -> None:
        """Run `hook` when Redis answers again, before the link counts as up; an `UNREACHABLE`
        error from it keeps the link down until the next probe."""
        self._hooks.append(hook)

    def failed(self, what: str) -> None:
        """Redis did not answer `what`: serve from local fallbacks until it does again."""
        if not self._up.is_set():
            return
        self._up.clear()
        logger.warning("Redis unreachable (%s): serving from local caches and budgets", what)
        self._probe = asyncio.create_task(self._reconnect())

    async def wait_up(self) -> None:
        await self._up.wait()

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.redis.aclose()

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await self.redis.ping()
                for hook in self._hooks:
                    await hook()
            except UNREACHABLE as error:
                logger.debug("Redis still unreachable: %s", type(error).__name__)
                continue
            except Exception:
                logger.exception("returning to Redis failed; trying again")
                continue
            break
        self._up.set()
        logger.info("Redis answers again: back on the shared caches and budgets")
