"""Reads on the driver's own connection give what SQLAlchemy's execution gives, value for
value, on SQLite and PostgreSQL, and each is a statement span."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import Float, bindparam, cast, column, func, or_, select, table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from hub.settings import Settings
from hub.sources.store import Store
from hub.store import migrate, seed
from hub.store import reads as reads_module
from hub.store.engine import create_engine
from hub.store.reads import CompiledReads
from hub.store.tables import CampaignMemberRow, CampaignRow, InfluencerRow, MetricDayRow

DAY = date(2026, 3, 1)


@pytest.fixture
async def engines(settings: Settings) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    engine, reads = create_engine(settings), create_engine(settings, reads=True)
    await migrate.upgrade(engine)
    await seed.seed(engine, seed.SeedPlan.demo())
    store = Store(engine, reads=reads)
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    async with store.sessions.begin() as session:
        for n in range(3):
            session.add(
                MetricDayRow(
                    external_id=f"acct_{n}",
                    day=DAY + timedelta(days=n),
                    impressions=10**10 + n,  # beyond 32 bits
                    reach=n,
                    likes=n,
                    comments=n,
                    shares=n,
                    saves=n,
                    video_views=n,
                    clicks=n,
                    conversions=n,
                    spend_minor=n,
                    observed_at=now,
                    updated_at=now,
                )
            )
    yield engine, reads
    await reads.dispose()
    await engine.dispose()


def statements(influencers: list[str], campaigns: list[str]) -> list[tuple[Any, dict[str, Any]]]:
    member = CampaignMemberRow
    rank = func.row_number().over(partition_by=member.campaign_id, order_by=member.id)
    window = select(member, rank.label("rank")).where(col(member.campaign_id).in_(campaigns))
    sub = window.subquery()
    return [
        # A JSON column and a time, an `IN` list of values.
        (select(InfluencerRow).where(col(InfluencerRow.id).in_(influencers)), {}),
        # One-value parameters on both sides of a list, a date, an explicit list parameter.
        (
            select(CampaignRow)
            .where(col(CampaignRow.tenant_id) == "acme")
            .where(col(CampaignRow.id).in_(bindparam("ids", expanding=True)))
            .where(col(CampaignRow.status) != "NONE")
            .order_by(col(CampaignRow.id)),
            {"ids": campaigns},
        ),
        # The same parameter twice.
        (
            select(col(CampaignRow.id)).where(
                or_(
                    col(CampaignRow.status) == bindparam("s"),
                    col(CampaignRow.brand) == bindparam("s"),
                )
            ),
            {"s": "ACTIVE"},
        ),
        # Dates compared, large integers read.
        (
            select(MetricDayRow)
            .where(col(MetricDayRow.day) >= DAY + timedelta(days=1))
            .where(col(MetricDayRow.external_id).in_(["acct_0", "acct_1", "acct_2", "none"]))
            .order_by(col(MetricDayRow.day)),
            {},
        ),
        # A window over a subquery, two lists, a limit.
        (
            select(sub)
            .where(sub.c.rank <= 3)
            .where(sub.c.influencer_id.in_(influencers))
            .order_by(sub.c.id)
            .limit(bindparam("limit")),
            {"limit": 50},
        ),
        # A float column (its conversion on PostgreSQL needs the driver's description of
        # the column: through SQLAlchemy's execution there).
        (
            select(cast(col(CampaignRow.budget_minor), Float).label("budget"))
            .where(col(CampaignRow.id).in_(campaigns))
            .order_by(col(CampaignRow.id)),
            {},
        ),
        # An empty list (SQLAlchemy's own rendering of it).
        (select(InfluencerRow).where(col(InfluencerRow.id).in_([])), {}),
    ]


async def test_compiled_reads_give_what_sqlalchemy_gives(
    engines: tuple[AsyncEngine, AsyncEngine], spans: InMemorySpanExporter
) -> None:
    _engine, reads = engines
    async with reads.connect() as connection:
        influencers = list(
            (await connection.execute(select(col(InfluencerRow.id)).limit(30))).scalars()
        )
        campaigns = list((await connection.execute(select(col(CampaignRow.id)).limit(5))).scalars())
    compiled = CompiledReads(reads, bound_at_checkout=True)
    through_sqlalchemy = compiled._through_sqlalchemy
    given_back: list[Any] = []

    async def counted(statement: Any, parameters: Any) -> list[Any]:
        given_back.append(statement)
        return await through_sqlalchemy(statement, parameters)

    compiled._through_sqlalchemy = counted  # type: ignore[method-assign]
    for statement, parameters in statements(influencers, campaigns) * 2:  # compiled, then kept
        async with reads.connect() as connection:
            expected = (await connection.execute(statement, parameters)).all()
        spans.clear()
        rows = await compiled.rows(statement, parameters)
        assert [tuple(row) for row in rows] == [tuple(row) for row in expected], statement
        assert [row._fields for row in rows[:1]] == [tuple(row._fields) for row in expected[:1]]
        read = [s for s in spans.get_finished_spans() if "db.statement" in (s.attributes or {})]
        assert len(read) == 1
    # Only the empty list, and the float column on PostgreSQL, went through SQLAlchemy's
    # execution.
    empty, floats = str(statements([], [])[-1][0]), str(statements([], [])[-2][0])
    fell_back = [floats, empty] if reads.dialect.name == "postgresql" else [empty]
    assert [str(statement) for statement in given_back] == fell_back * 2
    found = await compiled.rows(*statements(influencers, campaigns)[0])
    assert len(found) == len(influencers) == 30
    assert isinstance(found[0].categories, list)
    assert found[0].created_at.tzinfo is not None
    days = await compiled.rows(*statements(influencers, campaigns)[3])
    assert [(row.external_id, row.day, row.impressions) for row in days] == [
        ("acct_1", DAY + timedelta(days=1), 10**10 + 1),
        ("acct_2", DAY + timedelta(days=2), 10**10 + 2),
    ]


async def test_a_failing_read_marks_its_span_with_the_errors_type(
    engines: tuple[AsyncEngine, AsyncEngine], spans: InMemorySpanExporter
) -> None:
    _engine, reads = engines
    nowhere = table("nowhere", column("id"))
    statement = select(nowhere.c.id).where(nowhere.c.id.in_(["a", "b"]))
    with pytest.raises(Exception, match="nowhere"):
        await CompiledReads(reads, bound_at_checkout=True).rows(statement, None)
    (span,) = [s for s in spans.get_finished_spans() if "db.statement" in (s.attributes or {})]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description in {"OperationalError", "UndefinedTableError"}
    assert "nowhere" in str((span.attributes or {})["db.statement"])


async def test_what_compiled_reads_keep_is_bounded(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    _engine, reads = engines
    monkeypatch.setattr(reads_module, "MAX_TEXTS", 4)
    monkeypatch.setattr(reads_module, "MAX_SHAPES", 2)
    compiled = CompiledReads(reads, bound_at_checkout=True)
    by_id = select(InfluencerRow).where(col(InfluencerRow.id).in_(bindparam("ids", expanding=True)))
    for length in range(1, 12):  # a text per length of the list
        rows = await compiled.rows(by_id, {"ids": [f"inf_{n}" for n in range(length)]})
        assert rows == []
        assert len(compiled._texts) <= 4
    names = ("id", "handle", "display_name", "country", "created_at")
    for name in names:  # a shape per statement
        statement = select(col(getattr(InfluencerRow, name))).limit(1)
        assert len(await compiled.rows(statement, None)) == 1
        assert len(compiled._shapes) <= 2
