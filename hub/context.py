"""The per-request context: settings, principal, row scope, loaders and sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from hub.auth import Principal
from hub.errors import Forbidden, Unauthenticated
from hub.loaders import Loaders
from hub.policy.rows import RowScope, row_scope
from hub.settings import Settings
from hub.sources.store import Store


@dataclass
class Context:
    """Everything a resolver may use; built once per request."""

    settings: Settings
    principal: Principal
    store: Store
    granted: frozenset[str] = frozenset()
    request_id: str = ""
    idempotency_key: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @cached_property
    def scope(self) -> RowScope | None:
        return row_scope(self.principal.tenant, self.principal.campaigns)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.store, self.scope)

    def require_scope(self) -> RowScope:
        """The caller's row scope, or FORBIDDEN when the token names no tenant."""
        if self.scope is None:
            raise Forbidden("Your token names no tenant; tenant data is not available.")
        return self.scope

    def require(self, scope_name: str) -> None:
        """UNAUTHENTICATED without a token, FORBIDDEN unless roles and scopes grant `scope_name`."""
        if scope_name in self.granted:
            return
        if self.principal.is_anonymous:
            raise Unauthenticated("This needs a bearer token.")
        raise Forbidden(f"This needs the `{scope_name}` scope.", scope=scope_name)
