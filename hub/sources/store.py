"""The own-store adapter: batched, row-scoped reads and the writes of the schema core."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, ColumnElement, Text, bindparam, cast, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel, col

from hub.ids import new_id
from hub.policy.rows import RowScope
from hub.sources.scoping import (
    campaign_scope,
    contact_scope,
    scope_parameters,
    scoped_campaign_ids,
)
from hub.store.reads import AnySelect, CompiledReads
from hub.store.tables import (
    CampaignMemberRow,
    CampaignRow,
    ConsentRow,
    ContactRow,
    InfluencerRow,
    PlatformAccountRow,
)

RowT = TypeVar("RowT", bound=SQLModel)
T = TypeVar("T")


class DuplicateRow(Exception):
    """An insert or update clashed with a unique key; `key` names it (`email`, `crm_id`)
    when it is one of a contact's."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ContactGone(Exception):
    """A write named a contact that is not in the caller's scope, or that was erased."""


class MissingParent(Exception):
    """An insert or update named a parent row (tenant, influencer) that does not exist."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of rows in id order; `has_next` tells whether more follow."""

    rows: list[T]
    has_next: bool


@dataclass(frozen=True, slots=True)
class InfluencerQuery:
    """The filters of `Query.influencers`."""

    country: str | None = None
    category: str | None = None
    handle_prefix: str | None = None
    platform: str | None = None


class Store:
    """Reads and writes of the own store; every tenant-owned read takes a `RowScope`."""

    def __init__(self, engine: AsyncEngine, *, reads: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.reads = reads or engine
        """Single-statement reads go here (`create_engine(..., reads=True)`)."""
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._reads = CompiledReads(self.reads, bound_at_checkout=reads is not None)
        self._statements: dict[Hashable, AnySelect] = {}

    # -- influencers (global) -------------------------------------------------------------

    async def influencers_by_id(self, ids: Sequence[str]) -> dict[str, InfluencerRow]:
        return {row.id: row for row in await self.rows(_INFLUENCERS_BY_ID, {"ids": list(ids)})}

    async def influencer_page(
        self, query: InfluencerQuery, *, first: int, after: str | None
    ) -> Page[InfluencerRow]:
        if query == InfluencerQuery() and after is None:
            rows = await self.rows(_FIRST_INFLUENCERS, {"limit": first + 1})
            return Page(rows[:first], len(rows) > first)
        stmt = select(InfluencerRow).where(*_influencer_filters(query))
        if after:
            stmt = stmt.where(col(InfluencerRow.id) > after)
        rows = await self.rows(stmt.order_by(col(InfluencerRow.id)).limit(first + 1))
        return Page(rows[:first], len(rows) > first)

    async def influencer_count(self, query: InfluencerQuery) -> int:
        stmt = select(func.count()).select_from(InfluencerRow).where(*_influencer_filters(query))
        return await self._scalar(stmt)

    async def accounts_by_influencer(
        self, influencer_ids: Sequence[str]
    ) -> dict[str, list[PlatformAccountRow]]:
        rows = await self.rows(_ACCOUNTS_BY_INFLUENCER, {"ids": list(influencer_ids)})
        return _group(rows, "influencer_id")

    # -- campaigns (tenant-owned) ---------------------------------------------------------

    async def campaigns_by_id(self, scope: RowScope, ids: Sequence[str]) -> dict[str, CampaignRow]:
        variant, values = scope_parameters(scope)

        def build() -> AnySelect:
            return select(CampaignRow).where(
                col(CampaignRow.id).in_(_IDS), *campaign_scope(variant)
            )

        stmt = self._prepared(("campaigns_by_id", variant), build)
        return {row.id: row for row in await self.rows(stmt, {**values, "ids": list(ids)})}

    async def campaign_page(
        self, scope: RowScope, *, status: str | None, first: int, after: str | None
    ) -> Page[CampaignRow]:
        stmt = select(CampaignRow).where(*campaign_scope(scope), *_status(status))
        if after:
            stmt = stmt.where(col(CampaignRow.id) > after)
        rows = await self.rows(stmt.order_by(col(CampaignRow.id)).limit(first + 1))
        return Page(rows[:first], len(rows) > first)

    async def campaign_count(self, scope: RowScope, *, status: str | None) -> int:
        stmt = (
            select(func.count())
            .select_from(CampaignRow)
            .where(*campaign_scope(scope), *_status(status))
        )
        return await self._scalar(stmt)

    async def member_pages(
        self, scope: RowScope, campaign_ids: Sequence[str], *, first: int, after: str | None
    ) -> dict[str, Page[CampaignMemberRow]]:
        """Members of the caller's campaigns, `first` per campaign, in one query."""
        variant, values = scope_parameters(scope)

        def build() -> AnySelect:
            member = CampaignMemberRow
            where: list[ColumnElement[bool]] = [
                col(member.campaign_id).in_(scoped_campaign_ids(variant, _IDS))
            ]
            if after:
                where.append(col(member.id) > bindparam("after"))
            return _ranked(member, member.campaign_id, where)

        stmt = self._prepared(("member_pages", variant, bool(after)), build)
        values.update(ids=list(campaign_ids), ranks=first + 1)
        if after:
            values["after"] = after
        grouped = _group(await self.rows(stmt, values), "campaign_id")
        return {k: _page(sorted(rows, key=_id), first) for k, rows in grouped.items()}

    async def member_counts(self, scope: RowScope, campaign_ids: Sequence[str]) -> dict[str, int]:
        member = CampaignMemberRow
        stmt = (
            select(col(member.campaign_id), func.count())
            .where(col(member.campaign_id).in_(scoped_campaign_ids(scope, campaign_ids)))
            .group_by(col(member.campaign_id))
        )
        return {key: count for key, count in await self.rows(stmt)}

    async def campaign_pages_by_influencer(
        self, scope: RowScope, influencer_ids: Sequence[str], *, first: int, after: str | None
    ) -> dict[str, Page[CampaignRow]]:
        """The caller's campaigns each influencer is a member of, `first` per influencer."""
        member = CampaignMemberRow
        rank = (
            func.row_number()
            .over(partition_by=col(member.influencer_id), order_by=col(CampaignRow.id))
            .label("rank")
        )
        inner = (
            select(CampaignRow, col(member.influencer_id).label("influencer_id"), rank)
            .join(member, col(member.campaign_id) == col(CampaignRow.id))
            .where(col(member.influencer_id).in_(influencer_ids), *campaign_scope(scope))
        )
        if after:
            inner = inner.where(col(CampaignRow.id) > after)
        sub = inner.subquery()
        campaign = aliased(CampaignRow, sub)
        stmt = select(campaign, sub.c.influencer_id).where(sub.c.rank <= first + 1)
        grouped = _group(await self.rows(stmt), "influencer_id")
        return {key: _page(sorted(rows, key=_id), first) for key, rows in grouped.items()}

    async def campaign_counts_by_influencer(
        self, scope: RowScope, influencer_ids: Sequence[str]
    ) -> dict[str, int]:
        member = CampaignMemberRow
        stmt = (
            select(col(member.influencer_id), func.count())
            .join(CampaignRow, col(member.campaign_id) == col(CampaignRow.id))
            .where(col(member.influencer_id).in_(influencer_ids), *campaign_scope(scope))
            .group_by(col(member.influencer_id))
        )
        return {key: count for key, count in await self.rows(stmt)}

    # -- contacts and consents (tenant-owned, personal data) ------------------------------

    async def contacts_by_id(self, scope: RowScope, ids: Sequence[str]) -> dict[str, ContactRow]:
        stmt = select(ContactRow).where(col(ContactRow.id).in_(ids), *contact_scope(scope))
        return {row.id: row for row in await self.rows(stmt)}

    async def contacts_by_influencer(
        self, scope: RowScope, influencer_ids: Sequence[str]
    ) -> dict[str, list[ContactRow]]:
        variant, values = scope_parameters(scope)

        def build() -> AnySelect:
            return (
                select(ContactRow)
                .where(col(ContactRow.influencer_id).in_(_IDS), *contact_scope(variant))
                .order_by(col(ContactRow.id))
            )

        stmt = self._prepared(("contacts_by_influencer", variant), build)
        values["ids"] = list(influencer_ids)
        return _group(await self.rows(stmt, values), "influencer_id")

    async def consents_by_contact(
        self, scope: RowScope, contact_ids: Sequence[str]
    ) -> dict[str, list[ConsentRow]]:
        stmt = (
            select(ConsentRow)
            .where(col(ConsentRow.contact_id).in_(contact_ids))
            .where(col(ConsentRow.tenant_id) == scope.tenant)
            .order_by(col(ConsentRow.id))
        )
        return _group(await self.rows(stmt), "contact_id")

    # -- writes -----------------------------------------------------------------------------

    async def insert(self, row: SQLModel) -> None:
        """Insert one row; a unique-key clash is `DuplicateRow`."""
        try:
            async with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise _integrity_error(exc) from None

    async def update_campaign(
        self,
        scope: RowScope,
        campaign_id: str,
        values: dict[str, Any],
        *,
        check: Callable[[CampaignRow], None],
        now: datetime,
    ) -> CampaignRow | None:
        """Apply `values` to a campaign in scope after `check` accepts it; None if not found."""
        async with self.sessions.begin() as session:
            stmt = (
                select(CampaignRow)
                .where(col(CampaignRow.id) == campaign_id, *campaign_scope(scope))
                .with_for_update()
            )
            row = (await session.scalars(stmt)).one_or_none()
            if row is None:
                return None
            check(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
        return row

    @asynccontextmanager
    async def writing_contact(
        self, scope: RowScope, contact_id: str
    ) -> AsyncIterator[AsyncSession]:
        """A transaction that holds one contact against other writes and erasure until it
        ends. Every write about a contact (its fields, its consents, its erasure) runs in one:
        `ContactGone`, and nothing written, when the contact is not in scope or was erased.
        A unique-key clash at commit is `DuplicateRow`."""
        try:
            async with self.sessions.begin() as session:
                if not await _hold(session, scope, contact_id):
                    raise ContactGone(contact_id)
                yield session
        except IntegrityError as exc:
            raise _integrity_error(exc) from None

    async def add_consent_event(
        self,
        scope: RowScope,
        contact_id: str,
        purpose: str,
        event: Callable[[list[ConsentRow]], ConsentRow],
    ) -> ConsentRow:
        """The event `event` makes of the contact's history for `purpose` (oldest first),
        stored unless it is one of that history's own rows; see `writing_contact`."""
        async with self.writing_contact(scope, contact_id) as session:
            stmt = select(ConsentRow).where(
                col(ConsentRow.contact_id) == contact_id,
                col(ConsentRow.tenant_id) == scope.tenant,
                col(ConsentRow.purpose) == purpose,
            )
            history = list((await session.scalars(stmt.order_by(col(ConsentRow.id)))).all())
            row = event(history)
            if all(row is not kept for kept in history):
                session.add(row)
        return row

    async def upsert_contact(
        self,
        scope: RowScope,
        contact_id: str | None,
        values: dict[str, Any],
        *,
        now: datetime,
        on_written: Callable[[AsyncSession, ContactRow, dict[str, Any]], None] | None = None,
    ) -> ContactRow | None:
        """Update the contact `contact_id`, else the tenant's contact with the same normalised
        email, else insert one; None when `contact_id` is not in scope or was erased.
        `DuplicateRow` (with its `key`) when another contact has the email or the CRM id, or
        when the contact with the email is outside the caller's scope. `on_written(session,
        row, before)` runs in the write's transaction, with the synchronised fields as they
        were (`SYNCED_COLUMNS`; empty for a new contact)."""
        email = values.get("email_normalized")
        for _attempt in range(3):
            try:
                async with self.sessions.begin() as session:
                    target = contact_id
                    if target is None and email is not None:
                        target = await _holder(session, scope, "email_normalized", email)
                    if target is not None and not await _hold(session, scope, target):
                        if contact_id is not None:
                            return None
                        raise DuplicateRow("the email's contact is out of scope", key="email")
                    for key, column in (("email", "email_normalized"), ("crm_id", "crm_id")):
                        value = values.get(column)
                        holder = await _holder(session, scope, column, value)
                        if holder is not None and holder != target:
                            raise DuplicateRow(f"another contact has the {key}", key=key)
                    if target is None:
                        row = ContactRow(
                            id=new_id("contact"),
                            tenant_id=scope.tenant,
                            created_at=now,
                            updated_at=now,
                        )
                        session.add(row)
                        before: dict[str, Any] = {}
                    else:
                        row = await session.get_one(ContactRow, target)
                        before = row.synced()
                    linked = row.crm_id
                    for key, value in values.items():
                        setattr(row, key, value)
                    row.updated_at = now
                    row.stamp_changes(before, now)
                    if row.crm_id != linked:
                        # Linked to another CRM record: nothing is agreed with that one yet.
                        row.crm_base = row.crm_synced_at = None
                    if on_written is not None:
                        on_written(session, row, before)
                return row
            except IntegrityError as exc:
                error = _integrity_error(exc)
                if not isinstance(error, DuplicateRow) or contact_id is not None:
                    raise error from None
                if error.key != "email":
                    raise error from None
                # A concurrent insert took the email first: update that row instead.
                continue
        raise DuplicateRow("contact email kept clashing", key="email")

    async def influencer_in_scope(self, scope: RowScope, influencer_id: str) -> bool:
        """Whether a contact linked to this influencer would be visible to the caller."""
        if scope.campaigns is None:
            return True
        stmt = select(col(CampaignMemberRow.influencer_id)).where(
            col(CampaignMemberRow.influencer_id) == influencer_id,
            col(CampaignMemberRow.campaign_id).in_(scoped_campaign_ids(scope, None)),
        )
        return bool(await self.rows(stmt.limit(1)))

    # -- plumbing -------------------------------------------------------------------------

    async def rows(self, stmt: AnySelect, parameters: dict[str, Any] | None = None) -> list[Any]:
        """The rows of a read, as plain rows with the columns as attributes (a read builds no
        ORM instances: building them took longer than the statement), run on the driver's
        own connection (`hub.store.reads`)."""
        return await self._reads.rows(stmt, parameters)

    async def _scalar(self, stmt: AnySelect) -> int:
        rows = await self.rows(stmt)
        return int(rows[0][0] or 0) if rows else 0

    def _prepared(self, key: Hashable, build: Callable[[], AnySelect]) -> AnySelect:
        """A read built once per store and variant (its values are parameters of each run):
        building a statement and its cache key took a third of the time of running it."""
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = build()
        return statement


def _ranked(model: type[RowT], partition: Any, where: list[Any]) -> AnySelect:
    """The rows of `model` that `where` selects, the first `:ranks` of each `partition` (in
    id order), in one statement."""
    rank = func.row_number().over(partition_by=partition, order_by=model.id).label("rank")  # type: ignore[attr-defined]
    sub = select(model, rank).where(*where).subquery()
    return select(aliased(model, sub)).where(sub.c.rank <= bindparam("ranks"))


def _id(row: Any) -> str:
    return str(row.id)


def _page(rows: list[RowT], first: int) -> Page[RowT]:
    return Page(rows[:first], len(rows) > first)


def _group(rows: Iterable[RowT], attribute: str) -> dict[str, list[RowT]]:
    grouped: dict[str, list[RowT]] = defaultdict(list)
    for row in rows:
        grouped[getattr(row, attribute)].append(row)
    return grouped


async def _hold(session: AsyncSession, scope: RowScope, contact_id: str) -> bool:
    """Hold a contact in scope that was not erased for the rest of the transaction. A write
    that changes nothing, as the transaction's first statement: it takes the row's lock on
    PostgreSQL and the write lock on SQLite, so an erasure that commits meanwhile is waited
    for and seen, never written over."""
    stmt = (
        update(ContactRow)
        .where(
            col(ContactRow.id) == contact_id,
            col(ContactRow.erased_at).is_(None),
            *contact_scope(scope),
        )
        .values(erased_at=None)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def _holder(session: AsyncSession, scope: RowScope, column: str, value: Any) -> str | None:
    """The id of the tenant's contact (in any campaign) whose `column` is `value`."""
    if value is None:
        return None
    stmt = select(col(ContactRow.id)).where(
        col(ContactRow.tenant_id) == scope.tenant, getattr(ContactRow, column) == value
    )
    holder: str | None = await session.scalar(stmt.limit(1))
    return holder


def _integrity_error(exc: IntegrityError) -> Exception:
    """A unique-key clash is `DuplicateRow`; a missing parent row is `MissingParent`."""
    original = exc.orig
    code = getattr(original, "pgcode", None) or getattr(original, "sqlstate", None)
    text = str(original)
    if code == "23505" or "UNIQUE constraint failed" in text:
        key = next((k for k in ("crm_id", "email") if k in text), None)
        return DuplicateRow(text, key=key)
    if code == "23503" or "FOREIGN KEY constraint failed" in text:
        return MissingParent(text)
    return exc


def _status(status: str | None) -> list[ColumnElement[bool]]:
    return [] if status is None else [col(CampaignRow.status) == status]


# The reads of every list of influencers, made once: building a statement and its cache key
# for each request took a third of the time of running it.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_INFLUENCERS_BY_ID = select(InfluencerRow).where(col(InfluencerRow.id).in_(_IDS))
_FIRST_INFLUENCERS = select(InfluencerRow).order_by(col(InfluencerRow.id)).limit(bindparam("limit"))
_ACCOUNTS_BY_INFLUENCER = (
    select(PlatformAccountRow)
    .where(col(PlatformAccountRow.influencer_id).in_(_IDS))
    .order_by(col(PlatformAccountRow.platform))
)


def _influencer_filters(query: InfluencerQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.country:
        where.append(col(InfluencerRow.country) == query.country)
    if query.handle_prefix:
        pattern = f"{_escape_like(query.handle_prefix.lower())}%"
        where.append(func.lower(col(InfluencerRow.handle)).like(pattern, escape="\\"))
    if query.category:
        # JSON arrays are stored as text on both engines; match the quoted element.
        pattern = f'%"{_escape_like(query.category)}"%'
        where.append(cast(InfluencerRow.categories, Text).like(pattern, escape="\\"))
    if query.platform:
        accounts = select(col(PlatformAccountRow.influencer_id)).where(
            col(PlatformAccountRow.platform) == query.platform
        )
        where.append(col(InfluencerRow.id).in_(accounts))
    return where


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
