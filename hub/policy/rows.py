"""Row scope: which tenant's rows, and which campaigns, a caller may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowScope:
    """Rows visible to one caller: one tenant, and only `campaigns` when that is not None."""

    tenant: str
    campaigns: frozenset[str] | None = None

    def allows_campaign(self, campaign_id: str) -> bool:
        return self.campaigns is None or campaign_id in self.campaigns


def row_scope(tenant: str | None, campaigns: Iterable[str] | None) -> RowScope | None:
    """The scope for a caller's `tenant` and `campaigns` claims; None sees no tenant rows."""
    if not tenant:
        return None
    return RowScope(tenant, None if campaigns is None else frozenset(campaigns))
