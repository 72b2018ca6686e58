"""SQL conditions that keep a store query inside the caller's row scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, false, select
from sqlmodel import col

from hub.policy.rows import RowScope
from hub.store.tables import CampaignMemberRow, CampaignRow, ContactRow


def campaign_scope(scope: RowScope) -> list[ColumnElement[bool]]:
    where = [col(CampaignRow.tenant_id) == scope.tenant]
    if scope.campaigns is not None:
        where.append(
            col(CampaignRow.id).in_(sorted(scope.campaigns)) if scope.campaigns else false()
        )
    return where


def contact_scope(scope: RowScope) -> list[ColumnElement[bool]]:
    """Same tenant; with a `campaigns` claim, only contacts of those campaigns' members."""
    where = [col(ContactRow.tenant_id) == scope.tenant]
    if scope.campaigns is not None:
        members = select(col(CampaignMemberRow.influencer_id)).where(
            col(CampaignMemberRow.campaign_id).in_(scoped_campaign_ids(scope, None))
        )
        where.append(col(ContactRow.influencer_id).in_(members))
    return where


def scoped_campaign_ids(scope: RowScope, ids: Sequence[str] | None) -> Select[Any]:
    """The ids among `ids` (all when None) of campaigns the caller sees, as a subquery."""
    stmt = select(col(CampaignRow.id)).where(*campaign_scope(scope))
    if ids is not None:
        stmt = stmt.where(col(CampaignRow.id).in_(ids))
    return stmt
