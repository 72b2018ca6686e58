"""Per-request DataLoaders: one store query per distinct batch, whatever the list length."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import date, timedelta
from functools import cached_property
from typing import Any, TypeVar

from aiodataloader import DataLoader

from hub.errors import SourceUnavailable
from hub.metric_history import stored_days
from hub.policy.rows import RowScope
from hub.sources.registry import Sources
from hub.sources.social import MetricRecord, SocialLookup
from hub.sources.store import Page, Store
from hub.store.tables import CampaignRow

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
PageKey = tuple[str, int, str | None]
"""(parent id, first, after) of a nested connection."""
MetricsKey = tuple[str, date, date]
"""(account external id, since, until) of a daily metric series."""


class Loader(DataLoader[Any, Any]):
    """A DataLoader whose keys can also be loaded all at once (`load_all`, the planned
    executor's way): what the request holds already, the rest in one call of the loader's
    own fetch, kept as plain values (no future per key); `load` answers from those too."""

    def __init__(
        self, fetch: Callable[[list[Any]], Awaitable[Mapping[Any, Any]]], missing: Any
    ) -> None:
        self._fetch = fetch
        self._missing = missing
        self._held: dict[Any, asyncio.Future[Any]] = {}
        self._values: dict[Any, Any] = {}
        values = self._values

        # Not a bound method: a loader that refers to itself would live until the collector
        # runs, and with it all it holds.
        async def batch(keys: list[Any]) -> list[Any]:
            wanted = [key for key in dict.fromkeys(keys) if key not in values]
            found = await fetch(wanted) if wanted else {}
            return [values[key] if key in values else found.get(key, missing) for key in keys]

        super().__init__(batch, cache_map=self._held)

    async def load_all(self, keys: Sequence[Any]) -> list[Any]:
        """The value of each key, in order; an exception stands for a key that failed.

        A key another caller is loading is awaited, not fetched again; the keys this call
        fetches are held as futures while it runs, so that callers meanwhile share them. A
        failure is the answer of this call only: the next one fetches the key again."""
        held, values = self._held, self._values
        # What is held now: a key cleared while this call waits still answers it.
        waiting = {key: held[key] for key in keys if key in held}
        missing = [key for key in dict.fromkeys(keys) if key not in waiting and key not in values]
        if missing:
            waiting.update(await self._fetch_held(missing))
        pending = {future for future in waiting.values() if not future.done()}
        if pending:
            await asyncio.wait(pending)
        return [_outcome(waiting[key]) if key in waiting else values[key] for key in keys]

    async def _fetch_held(self, keys: list[Any]) -> dict[Any, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        held, values = self._held, self._values
        mine = {key: loop.create_future() for key in keys}
        held.update(mine)
        outcome: Mapping[Any, Any] | Exception
        try:
            outcome = await self._fetch(keys)
        except Exception as error:
            outcome = error
        except BaseException:
            outcome = LoadCancelled("The load of these keys was cancelled.")
            raise
        finally:
            for key, future in mine.items():
                kept = held.get(key) is future
                if kept:
                    del held[key]
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                    future.exception()  # read: the callers sharing it see it, no one else must
                else:
                    future.set_result(outcome.get(key, self._missing))
                    if kept:
                        values[key] = future.result()
        return mine

    def clear(self, key: Any) -> Loader:
        self._values.pop(key, None)
        super().clear(key)
        return self

    def clear_all(self) -> Loader:
        self._values.clear()
        super().clear_all()
        return self


class LoadCancelled(Exception):
    """The answer of keys whose fetch was cancelled, to the callers that shared it."""


def _outcome(future: asyncio.Future[Any]) -> Any:
    return future.exception() or future.result()


def _loader(fetch: Callable[[list[K]], Awaitable[dict[K, V]]], missing: Any) -> Loader:
    return Loader(fetch, missing)


def _page_loader(
    fetch: Callable[[Sequence[str], int, str | None], Awaitable[dict[str, Page[V]]]],
) -> DataLoader[Any, Any]:
    """Pages keyed by (parent, first, after): one query per distinct `after`, for the largest
    `first` asked, the smaller pages cut from it. A first page this request already read
    answers a later first page it holds, without a query (a campaign's 20 members, then all
    of them for its metrics)."""
    first_pages: dict[str, Page[V]] = {}

    async def batch(keys: list[PageKey]) -> list[Page[V]]:
        found: dict[PageKey, Page[V] | None] = dict.fromkeys(keys)
        sizes: dict[str | None, dict[str, int]] = defaultdict(dict)
        for key in found:
            parent, first, after = key
            held = first_pages.get(parent) if after is None else None
            if held is not None and (first <= len(held.rows) or not held.has_next):
                found[key] = _cut(held, first)
            else:
                sizes[after][parent] = max(first, sizes[after].get(parent, 0))
        fetched: dict[tuple[str, str | None], Page[V]] = {}
        for after, firsts in sizes.items():
            pages = await fetch(list(firsts), max(firsts.values()), after)
            for parent in firsts:
                page = fetched[(parent, after)] = pages.get(parent, Page([], False))
                if after is None:
                    first_pages[parent] = page
        return [found[key] or _cut(fetched[(key[0], key[2])], key[1]) for key in keys]

    return DataLoader(batch)


def _cut(page: Page[V], first: int) -> Page[V]:
    """The first `first` rows of a page read with at least that many asked for."""
    return Page(page.rows[:first], page.has_next or len(page.rows) > first)


class Loaders:
    """The loaders of one request; tenant-owned ones see only `scope`'s rows.

    No loader refers back to this object (each takes what it reads as it is made), so that a
    request's loaders and all they hold go as soon as the request does, not at the next run
    of the collector."""

    def __init__(
        self,
        store: Store,
        scope: RowScope | None,
        *,
        sources: Sources | None = None,
        social: SocialLookup | None = None,
    ) -> None:
        self.store = store
        self.scope = scope or RowScope(tenant="")
        self.sources = sources or Sources()
        self.social = social if social is not None else self.sources.social

    @cached_property
    def influencer_by_id(self) -> Loader:
        return _loader(self.store.influencers_by_id, None)

    @cached_property
    def accounts_by_influencer(self) -> Loader:
        return _loader(self.store.accounts_by_influencer, [])

    @cached_property
    def campaign_by_id(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.campaigns_by_id(scope, ids), None)

    @cached_property
    def member_page_by_campaign(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _page_loader(
            lambda ids, first, after: store.member_pages(scope, ids, first=first, after=after)
        )

    @cached_property
    def member_count_by_campaign(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.member_counts(scope, ids), 0)

    @cached_property
    def campaign_page_by_influencer(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _page_loader(
            lambda ids, first, after: store.campaign_pages_by_influencer(
                scope, ids, first=first, after=after
            )
        )

    @cached_property
    def campaign_count_by_influencer(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.campaign_counts_by_influencer(scope, ids), 0)

    @cached_property
    def contact_by_id(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.contacts_by_id(scope, ids), None)

    @cached_property
    def contacts_by_influencer(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.contacts_by_influencer(scope, ids), [])

    @cached_property
    def consents_by_contact(self) -> DataLoader[Any, Any]:
        store, scope = self.store, self.scope
        return _loader(lambda ids: store.consents_by_contact(scope, ids), [])

    @cached_property
    def metrics_by_account(self) -> Loader:
        """Daily series keyed (external id, since, until): one `daily_metrics` call per
        distinct window, the windows fetched concurrently; a window that fails fails its
        keys only."""

        social, store = self.social, self.store

        async def fetch(keys: list[MetricsKey]) -> dict[MetricsKey, Any]:
            by_window: dict[tuple[date, date], list[str]] = defaultdict(list)
            for external_id, since, until in keys:
                by_window[(since, until)].append(external_id)
            windows = list(by_window)
            answers = await asyncio.gather(
                *(_daily_metrics(store, social, by_window[window], *window) for window in windows),
                return_exceptions=True,
            )
            found: dict[MetricsKey, Any] = {}
            for (since, until), answer in zip(windows, answers, strict=True):
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer
                for external_id in by_window[(since, until)]:
                    key = (external_id, since, until)
                    found[key] = (
                        answer if isinstance(answer, Exception) else answer.get(external_id, [])
                    )
            return found

        return Loader(fetch, [])

    @cached_property
    def account_record_by_external_id(self) -> Loader:
        """Social account figures; one upstream call per batch level."""

        sources = self.sources

        async def fetch(ids: list[str]) -> dict[str, Any]:
            social = sources.social
            if social is None:
                raise _unconfigured("social")
            return dict(await social.accounts(ids))

        return _loader(fetch, None)

    @cached_property
    def profile_record_by_influencer(self) -> Loader:
        """Discovery profiles (audience); one upstream query per batch level."""

        sources = self.sources

        async def fetch(ids: list[str]) -> dict[str, Any]:
            discovery = sources.discovery
            if discovery is None:
                raise _unconfigured("discovery")
            return dict(await discovery.profiles(ids))

        return _loader(fetch, None)

    @cached_property
    def crm_record_by_contact(self) -> DataLoader[Any, Any]:
        """CRM enrichment keyed by (crm id, contact id), within the caller's tenant."""

        sources, tenant = self.sources, self.scope.tenant

        async def fetch(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
            crm = sources.crm
            if crm is None:
                raise _unconfigured("crm")
            subjects = dict(keys)
            found = await crm.contacts(tenant, list(subjects), subjects=subjects)
            return {key: found[key[0]] for key in keys if key[0] in found}

        return _loader(fetch, None)

    def prime_campaign(self, row: CampaignRow) -> None:
        self.campaign_by_id.prime(row.id, row)


async def _daily_metrics(
    store: Store,
    social: SocialLookup | None,
    external_ids: list[str],
    since: date,
    until: date,
) -> dict[str, list[MetricRecord]]:
    """Every day `since..until` of each account: the days the store keeps (`metric_days`),
    and only the missing ones from the social API, in one call for the narrowest window that
    holds them all. An account whose days are all kept is answered with the API down."""
    kept = await stored_days(store, external_ids, since, until)
    length = (until - since).days + 1
    missing = [id_ for id_ in external_ids if len(kept[id_]) < length]
    if not missing:
        return {id_: _in_order(kept[id_]) for id_ in external_ids}
    if social is None:
        raise SourceUnavailable("social")
    first, last = until, since
    window = _days(since, until)
    for id_ in missing:
        days = kept[id_]
        if not days:  # nothing kept: the whole window is missing
            first, last = since, until
            continue
        gaps = [day for day in window if day not in days]
        first, last = min(first, gaps[0]), max(last, gaps[-1])
    fetched = await social.daily_metrics(missing, first, last)
    found: dict[str, list[MetricRecord]] = {}
    for id_ in external_ids:
        days = kept[id_]
        live = fetched.get(id_, [])
        if not days and first == since and last == until:
            found[id_] = live  # as the API (and its cache) gave it: its roll-ups are remembered
            continue
        merged = {record.day: record for record in live if since <= record.day <= until}
        merged.update(days)
        found[id_] = _in_order(merged)
    return found


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def _in_order(days: dict[date, MetricRecord]) -> list[MetricRecord]:
    return [days[day] for day in sorted(days)]


def _unconfigured(source: str) -> SourceUnavailable:
    return SourceUnavailable(source, f"The {source} source is not configured.")
