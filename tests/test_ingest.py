"""Metric history: ingested from the social API, then answering with the API down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub import ingest
from hub.ingest import IngestBusy, accounts_to_ingest, ingest_metrics
from hub.settings import Settings
from hub.sources.social import MetricRecord, SocialSource
from hub.store.leases import Leases
from hub.store.tables import MetricDayRow
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.e2e.conftest import simulators
from tests.helpers import gql

SINCE, UNTIL = date(2026, 3, 1), date(2026, 3, 30)
DASHBOARD = """query ($id: ID!) { campaign(id: $id) {
  totals(from: "2026-03-01", to: "2026-03-30") { impressions engagements engagementRate }
  metrics(from: "2026-03-01", to: "2026-03-30") { date impressions spend { amount } }
  members(first: 20) { edges { node { influencer { handle
    metrics(from: "2026-03-02", to: "2026-03-29", granularity: WEEK) { date impressions }
  } } } } } }"""


async def _campaign(client: httpx.AsyncClient, token: str) -> str:
    _, found = await gql(client, "{ campaigns(first: 1) { edges { node { id } } } }", token=token)
    campaign: str = found["data"]["campaigns"]["edges"][0]["node"]["id"]
    return campaign


async def _kept_days(app: Any) -> int:
    async with app.state.hub.store.sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(MetricDayRow))).scalar_one()
        )


async def test_after_ingestion_totals_and_daily_metrics_answer_the_same_with_the_api_down(
    settings: Settings, make_token: MakeToken
) -> None:
    manager = make_token()
    async with running_app(settings) as (app, client):
        campaign = await _campaign(client, manager)
        _, live = await gql(client, DASHBOARD, token=manager, variables={"id": campaign})
        hub = app.state.hub
        report = await ingest_metrics(
            hub.store, hub.sources.social, Leases(hub.store.sessions), since=SINCE, until=UNTIL
        )
        assert report.accounts == len(await accounts_to_ingest(hub.store, None)) > 0
        assert await _kept_days(app) == report.days == report.accounts * 30
    async with running_app(settings) as (app, client):  # caches empty again
        social = app.state.hub.upstreams.simulators.urls["social"]
        async with httpx.AsyncClient(base_url=social) as simulator:
            await simulator.post("/_control/fault", json={"mode": "down"})
            _, stored = await gql(client, DASHBOARD, token=manager, variables={"id": campaign})
            calls = (await simulator.get("/_control/stats")).json()["total"]
            _, outside = await gql(
                client,
                f'{{ campaign(id: "{campaign}") {{ metrics(from: "2026-02-27", to: "2026-03-02")'
                " { date } } }",
                token=manager,
            )
    assert "errors" not in live and live["data"]["campaign"]["metrics"]
    assert "errors" not in stored and stored["data"] == live["data"]
    assert calls == 0  # every day came from the store
    # A window the store holds only part of still needs the API: it fails, coded.
    assert outside["data"]["campaign"]["metrics"] is None
    assert outside["errors"][0]["extensions"]["code"] == "SOURCE_UNAVAILABLE"


async def test_an_ingestion_stopped_midway_goes_on_where_it_stopped(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "MAX_IDS", 40)
    async with running_app(sqlite_settings) as (app, _client):
        hub = app.state.hub
        social: SocialSource = hub.sources.social
        pages = social.metric_pages
        batches = 0

        async def failing_third_batch(ids: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            nonlocal batches
            batches += 1
            if batches == 3:
                raise ConnectionError("the API went away")
            async for page in pages(ids, *args, **kwargs):
                yield page

        monkeypatch.setattr(social, "metric_pages", failing_third_batch)
        leases = Leases(hub.store.sessions)
        accounts = await accounts_to_ingest(hub.store, None)
        with pytest.raises(ConnectionError):
            await ingest_metrics(hub.store, social, leases, since=SINCE, until=SINCE)
        assert await _kept_days(app) == 80
        again = await ingest_metrics(hub.store, social, leases, since=SINCE, until=SINCE)
        assert again.resumed_after == accounts[79]
        assert await _kept_days(app) == len(accounts)
        assert batches == 3 + -(-(len(accounts) - 80) // 40)
        fresh = await ingest_metrics(hub.store, social, leases, since=SINCE, until=SINCE)
        assert fresh.resumed_after is None  # a finished run leaves no checkpoint


async def test_one_process_ingests_at_a_time(sqlite_settings: Settings) -> None:
    async with running_app(sqlite_settings) as (app, _client):
        hub = app.state.hub
        social: SocialSource = hub.sources.social
        gate = asyncio.Event()
        pages = social.metric_pages

        async def slow(ids: Any, *args: Any, **kwargs: Any) -> AsyncIterator[list[MetricRecord]]:
            await gate.wait()
            async for page in pages(ids, *args, **kwargs):
                yield page

        social.metric_pages = slow  # type: ignore[method-assign,assignment]
        first = asyncio.create_task(
            ingest_metrics(hub.store, social, Leases(hub.store.sessions), since=SINCE, until=SINCE)
        )
        await asyncio.sleep(0.2)
        with pytest.raises(IngestBusy):
            await ingest_metrics(
                hub.store, social, Leases(hub.store.sessions), since=SINCE, until=SINCE
            )
        gate.set()
        assert (await first).accounts > 0


async def test_a_tenant_ingests_only_its_campaign_members_accounts(
    sqlite_settings: Settings,
) -> None:
    async with running_app(sqlite_settings) as (app, _client):
        store = app.state.hub.store
        everyone = await accounts_to_ingest(store, None)
        acme = await accounts_to_ingest(store, "acme")
        nobody = await accounts_to_ingest(store, "no-such-tenant")
    assert 0 < len(acme) < len(everyone) and set(acme) <= set(everyone)
    assert nobody == []


def test_the_command_line_ingests_with_a_progress_bar(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database,
        "HUB_JWT_SECRET": TEST_SECRET,
        "HUB_POLICIES_DIR": str(ROOT / "policies"),
    }
    seeded = subprocess.run(
        [sys.executable, "-m", "hub", "seed", "--influencers", "30", "--campaigns", "3"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    with simulators(tmp_path) as urls:
        command = [sys.executable, "-m", "hub", "ingest", "metrics"]
        command += ["--since", "2026-03-01", "--until", "2026-03-07"]
        done = subprocess.run(
            command,
            env={**env, "HUB_SOCIAL_URL": urls["social"]},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        refused = subprocess.run(
            [*command[:5], "--since", "2026-03-07", "--until", "2026-03-01"],
            env={**env, "HUB_SOCIAL_URL": urls["social"]},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kept ") and " days of " in done.stdout
    assert "metrics" in done.stderr and "[" in done.stderr  # the progress bar
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == ["hub: --until is before --since"]
