"""SQL conditions that keep a store query inside the caller's row scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, false, select
from sqlmodel import col

from hub.policy.rows import RowScope
from hub.store.tables import CampaignMemberRow, CampaignRow, ContactRow


@dataclass(frozen=True, slots=True)
class ScopeParameters:
    """A row scope as parameters of a statement built once for every caller: the tenant
    (`:scope_tenant`) and, for a caller `restricted` to some campaigns, their ids
    (`:scope_campaigns`, a list). `scope_parameters` gives a caller's."""

    restricted: bool

    @property
    def tenant(self) -> BindParameter[Any]:
        return bindparam("scope_tenant")

    @property
    def campaigns(self) -> BindParameter[Any] | None:
        return bindparam("scope_campaigns", expanding=True) if self.restricted else None


def scope_parameters(scope: RowScope) -> tuple[ScopeParameters, dict[str, Any]]:
    """The statement variant for `scope`, and the values of its parameters."""
    values: dict[str, Any] = {"scope_tenant": scope.tenant}
    if scope.campaigns is not None:
        values["scope_campaigns"] = sorted(scope.campaigns)  # none: an empty list, no rows
    return ScopeParameters(scope.campaigns is not None), values


def campaign_scope(scope: RowScope | ScopeParameters) -> list[ColumnElement[bool]]:
    where = [col(CampaignRow.tenant_id) == scope.tenant]
    if isinstance(scope, ScopeParameters):
        if scope.campaigns is not None:
            where.append(col(CampaignRow.id).in_(scope.campaigns))
    elif scope.campaigns is not None:
        where.append(
            col(CampaignRow.id).in_(sorted(scope.campaigns)) if scope.campaigns else false()
        )
    return where


def contact_scope(scope: RowScope | ScopeParameters) -> list[ColumnElement[bool]]:
    """Same tenant; with a `campaigns` claim, only contacts of those campaigns' members."""
    where = [col(ContactRow.tenant_id) == scope.tenant]
    if scope.campaigns is not None:
        members = select(col(CampaignMemberRow.influencer_id)).where(
            col(CampaignMemberRow.campaign_id).in_(scoped_campaign_ids(scope, None))
        )
        where.append(col(ContactRow.influencer_id).in_(members))
    return where


def scoped_campaign_ids(
    scope: RowScope | ScopeParameters, ids: Sequence[str] | BindParameter[Any] | None
) -> Select[Any]:
    """The ids among `ids` (all when None) of campaigns the caller sees, as a subquery."""
    stmt = select(col(CampaignRow.id)).where(*campaign_scope(scope))
    if ids is not None:
        stmt = stmt.where(col(CampaignRow.id).in_(ids))
    return stmt
