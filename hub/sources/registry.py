"""`Sources`: the configured external sources of one hub process, built from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from hub.observability.metrics import Metrics
from hub.settings import SOURCE_NAMES, Settings
from hub.sources.cache import Cache
from hub.sources.crm import CrmLookup, CrmSource
from hub.sources.discovery import DiscoveryLookup, DiscoverySource
from hub.sources.http import SourceClient
from hub.sources.shared import SharedState
from hub.sources.social import SocialLookup, SocialSource


@dataclass
class Sources:
    """Each source's adapter, or None when it has no URL (its fields then fail with
    SOURCE_UNAVAILABLE); `clients` are the HTTP clients to report on and to close."""

    crm: CrmLookup | None = None
    social: SocialLookup | None = None
    discovery: DiscoveryLookup | None = None
    clients: dict[str, SourceClient] = field(default_factory=dict)

    def states(self) -> dict[str, dict[str, Any]]:
        """What /readyz reports: each source's circuit, or that it is not configured."""
        return {
            name: (
                self.clients[name].state().as_json()
                if name in self.clients
                else {"breaker": "not_configured"}
            )
            for name in SOURCE_NAMES
        }

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def build_sources(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None,
    cache: Cache | None,
    metrics: Metrics | None,
    urls: Mapping[str, str] | None = None,
    shared: SharedState | None = None,
) -> Sources:
    """The adapters of every source with a URL (from `urls`, else the settings); their rate
    limits shared with the other replicas when `shared` is given."""
    clients: dict[str, SourceClient] = {}
    for name in SOURCE_NAMES:
        url = (urls or {}).get(name) or getattr(settings, f"{name}_url")
        if url is not None:
            clients[name] = SourceClient(
                settings.source_settings(name, base_url=url),
                transport=transport,
                cache=cache,
                metrics=metrics,
                shared=shared,
            )
    return Sources(
        crm=CrmSource(clients["crm"]) if "crm" in clients else None,
        social=SocialSource(clients["social"]) if "social" in clients else None,
        discovery=DiscoverySource(clients["discovery"]) if "discovery" in clients else None,
        clients=clients,
    )
