"""`open_upstreams`: what the app's lifespan opens for the external sources (metrics, the
shared cache, the adapters and, in the demo, the simulators) and closes again."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from hub.errors import SourceUnavailable
from hub.observability.metrics import Metrics
from hub.settings import SOURCE_NAMES, Settings
from hub.sources.cache import Cache, create_cache, subject_tag
from hub.sources.redis_link import RedisLink
from hub.sources.registry import Sources, build_sources
from hub.sources.shared import SharedCircuits, SharedState
from hub.sources.social import account_tag

logger = logging.getLogger("hub.sources")

IN_PROCESS_URLS = {name: f"http://{name}.simulator" for name in SOURCE_NAMES}
"""Where `build_in_process_simulators` serves each simulator behind its transport."""


@dataclass
class Upstreams:
    """The metrics registry, the shared cache and the adapters of one hub process."""

    metrics: Metrics
    cache: Cache
    sources: Sources
    simulators: object | None = None
    circuits: SharedCircuits | None = None

    async def forget_subject(self, subject: str) -> None:
        """Purge every cached entry of a data subject, on every replica (Redis pub/sub); while
        the shared cache is away, here at once and everywhere when it is back."""
        try:
            purged = await self.cache.purge_tag(subject_tag(subject))
        except SourceUnavailable:
            return
        logger.info("purged %d cached entries of a subject", purged)

    async def forget_contact(self, contact_id: str, crm_id: str) -> None:
        """A sync changed the contact: what is cached of it, and of its CRM record, goes."""
        await self.forget_subject(contact_id)
        await self.forget_subject(crm_id)

    async def forget_account_days(self, external_id: str, _days: object) -> None:
        """Drop every cached window of an account's metrics, on every replica: its days in
        the store changed (a webhook, ingestion)."""
        try:
            await self.cache.purge_tag(account_tag(external_id))
        except SourceUnavailable:
            return  # replayed to the shared cache once it answers again

    async def aclose(self) -> None:
        if self.circuits is not None:
            await self.circuits.aclose()
        await self.sources.aclose()
        await self.cache.aclose()
        stop = getattr(self.simulators, "stop", None)
        if stop is not None:
            await stop()


async def open_upstreams(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None,
    link: RedisLink | None = None,
    metrics: Metrics | None = None,
) -> Upstreams:
    """Build the adapters, their cache on `link` when Redis is the cache; in the demo with no
    source URL configured, the simulators stand in (started here, or reached through
    `transport` when one is given)."""
    metrics = metrics or Metrics()
    cache = create_cache(
        settings.cache_url,
        namespace=settings.cache_namespace,
        metrics=metrics,
        max_bytes=settings.cache_max_bytes,
        local_ttl_s=settings.cache_local_ttl_s,
        link=link,
    )
    urls: dict[str, str] | None = None
    simulators = None
    if settings.demo and not settings.has_source_urls:
        if transport is not None:
            urls = IN_PROCESS_URLS
        else:
            from hub.simulators import SimulatorConfig, start_simulators
            from hub.store.seed import SeedPlan

            plan = SeedPlan.demo()
            config = SimulatorConfig(seed=plan.seed, influencers=plan.influencers)
            simulators = await start_simulators({name: config for name in SOURCE_NAMES})
            urls = simulators.urls
            logger.info("demo simulators started: %s", urls)
    shared = None if link is None else SharedState(link, settings.cache_namespace)
    sources = build_sources(
        settings, transport=transport, cache=cache, metrics=metrics, urls=urls, shared=shared
    )
    circuits = None
    if shared is not None:
        breakers = [
            (client.breaker, client.settings.breaker_reset_s) for client in sources.clients.values()
        ]
        circuits = SharedCircuits(shared, breakers)
        circuits.start()
    return Upstreams(metrics, cache, sources, simulators, circuits)
