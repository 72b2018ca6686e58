"""Per-request DataLoaders: one store query per distinct batch, whatever the list length."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from aiodataloader import DataLoader

from hub.policy.rows import RowScope
from hub.sources.store import Page, Store
from hub.store.tables import CampaignRow

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
PageKey = tuple[str, int, str | None]
"""(parent id, first, after) of a nested connection."""


def _loader(
    fetch: Callable[[list[K]], Awaitable[dict[K, V]]], missing: Any
) -> DataLoader[Any, Any]:
    async def batch(keys: list[K]) -> list[V]:
        found = await fetch(list(dict.fromkeys(keys)))
        return [found.get(key, missing) for key in keys]

    return DataLoader(batch)


def _page_loader(
    fetch: Callable[[Sequence[str], int, str | None], Awaitable[dict[str, Page[V]]]],
) -> DataLoader[Any, Any]:
    """Pages keyed by (parent, first, after): one query per distinct (first, after)."""

    async def batch(keys: list[PageKey]) -> list[Page[V]]:
        by_args: dict[tuple[int, str | None], list[str]] = defaultdict(list)
        for parent, first, after in keys:
            by_args[(first, after)].append(parent)
        found: dict[PageKey, Page[V]] = {}
        for (first, after), parents in by_args.items():
            pages = await fetch(list(dict.fromkeys(parents)), first, after)
            for parent in parents:
                found[(parent, first, after)] = pages.get(parent, Page([], False))
        return [found[key] for key in keys]

    return DataLoader(batch)


class Loaders:
    """The loaders of one request; tenant-owned ones see only `scope`'s rows."""

    def __init__(self, store: Store, scope: RowScope | None) -> None:
        self.store = store
        self.scope = scope or RowScope(tenant="")

    @cached_property
    def influencer_by_id(self) -> DataLoader[Any, Any]:
        return _loader(self.store.influencers_by_id, None)

    @cached_property
    def accounts_by_influencer(self) -> DataLoader[Any, Any]:
        return _loader(self.store.accounts_by_influencer, [])

    @cached_property
    def campaign_by_id(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.campaigns_by_id(self.scope, ids), None)

    @cached_property
    def member_page_by_campaign(self) -> DataLoader[Any, Any]:
        return _page_loader(
            lambda ids, first, after: self.store.member_pages(
                self.scope, ids, first=first, after=after
            )
        )

    @cached_property
    def member_count_by_campaign(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.member_counts(self.scope, ids), 0)

    @cached_property
    def campaign_page_by_influencer(self) -> DataLoader[Any, Any]:
        return _page_loader(
            lambda ids, first, after: self.store.campaign_pages_by_influencer(
                self.scope, ids, first=first, after=after
            )
        )

    @cached_property
    def campaign_count_by_influencer(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.campaign_counts_by_influencer(self.scope, ids), 0)

    @cached_property
    def contact_by_id(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.contacts_by_id(self.scope, ids), None)

    @cached_property
    def contacts_by_influencer(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.contacts_by_influencer(self.scope, ids), [])

    @cached_property
    def consents_by_contact(self) -> DataLoader[Any, Any]:
        return _loader(lambda ids: self.store.consents_by_contact(self.scope, ids), [])

    def prime_campaign(self, row: CampaignRow) -> None:
        self.campaign_by_id.prime(row.id, row)
