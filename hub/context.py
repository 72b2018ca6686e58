"""The per-request context: settings, principal, row scope, loaders and sources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from hub.audit import AuditLog
from hub.auth import Principal
from hub.budget import Bucket
from hub.engine.fallback import QueryEngine
from hub.errors import Forbidden
from hub.idempotency import Claim
from hub.loaders import Loaders
from hub.observability.metrics import Metrics
from hub.policy.access import Coordinate
from hub.policy.consent import ConsentPolicy
from hub.policy.cost import CostPolicy
from hub.policy.rows import RowScope, row_scope
from hub.policy.sync import SyncPolicy
from hub.realtime import Subscriber
from hub.responses import AuditedDecision, ResponseCache
from hub.schema.documents import Document
from hub.settings import Settings
from hub.sources.registry import Sources
from hub.sources.store import Store


@dataclass
class Context:
    """Everything a resolver may use; built once per request."""

    settings: Settings
    principal: Principal
    store: Store
    granted: frozenset[str] = frozenset()
    denied: frozenset[Coordinate] = frozenset()
    audit: AuditLog | None = None
    consent: ConsentPolicy | None = None
    sync: SyncPolicy | None = None
    """Which contact fields a write sends on to the CRM (`policies/sync.yaml`)."""
    cost: CostPolicy | None = None
    bucket: Bucket | None = None
    request_id: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)
    denials: set[Coordinate] = field(default_factory=set)
    personal_paths: list[tuple[str | int, ...]] = field(default_factory=list)
    """Response paths of the personal-data values this request resolved."""
    on_subject_change: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    sources: Sources = field(default_factory=Sources)
    responses: ResponseCache | None = None
    answer_key: str | None = None
    """The response cache's key of this request's answer; None when it is not kept."""
    decisions: list[AuditedDecision] = field(default_factory=list)
    """The consent decisions this request made, in order."""
    answer_valid_until: datetime | None = None
    """When the first consent this request's answer relied on expires."""
    client_address: str | None = None
    """Where an anonymous request comes from: anonymous budgets are per address."""
    document: Document | None = None
    """The request's parsed document, once the HTTP layer has it."""
    idempotency: Claim | None = None
    """The request's `Idempotency-Key`, taken when its mutation is about to run."""
    query_engine: QueryEngine | None = None
    """The planned executor; None runs every operation on graphql-core's."""
    resolved: list[tuple[Any, list[Any], int]] | None = None
    """What the planned executor resolved: (type, field nodes, objects) per step; None when
    graphql-core's executor ran (the cost used is then read from the answer)."""
    metrics: Metrics | None = None
    """Where the request's cost refusals and consent decisions are counted."""
    subscriber: Subscriber | None = None
    """The WebSocket connection a subscription runs on; None over HTTP."""

    @property
    def budget_key(self) -> str:
        """Whose cost bucket this request draws on: the client, or for a caller without a
        token, its address."""
        client = self.principal.client_id
        if self.principal.is_anonymous and self.client_address is not None:
            return f"{client}@{self.client_address}"
        return client

    @cached_property
    def scope(self) -> RowScope | None:
        return row_scope(self.principal.tenant, self.principal.campaigns)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.store, self.scope, sources=self.sources)

    def forget_loaded(self) -> None:
        """Drop the request's loaders and what they hold; the next read loads afresh."""
        self.__dict__.pop("loaders", None)

    async def forget_subject(self, subject: str) -> None:
        """Drop what this request (and, through the hooks, every cache) holds of a subject."""
        self.loaders.consents_by_contact.clear(subject)
        if self.responses is not None:
            await self.responses.forget_all()  # now, not when the whole mutation ends
        for hook in self.on_subject_change:
            await hook(subject)

    def require_scope(self) -> RowScope:
        """The caller's row scope, or FORBIDDEN when the token names no tenant."""
        if self.scope is None:
            raise Forbidden("Your token names no tenant; tenant data is not available.")
        return self.scope
