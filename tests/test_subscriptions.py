"""Subscriptions over graphql-transport-ws: a real WebSocket client, the hub under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub import tenants
from hub.app import create_app
from hub.schema import subscriptions
from hub.settings import Settings
from hub.sources.social import MetricRecord
from hub.store.tables import CampaignMemberRow, CampaignRow, PlatformAccountRow
from tests.conftest import ROOT, TEST_SECRET, MakeToken
from tests.helpers import gql, served
from tests.test_webhooks import day, delivery, updated

PROTOCOL = "graphql-transport-ws"
LIVE = """
subscription Live($c: ID!) {
  metricsUpdated(campaignId: $c) { date impressions influencerId platform spend { currency } }
}
"""


@dataclass(frozen=True, slots=True)
class Member:
    campaign_id: str
    influencer_id: str
    platform: str
    external_id: str


async def members(app: Starlette, tenant: str = "acme") -> list[Member]:
    """Each (campaign of the tenant, member account), in a stable order."""
    async with app.state.hub.store.sessions() as session:
        rows = (
            await session.execute(
                select(
                    col(CampaignRow.id),
                    col(PlatformAccountRow.influencer_id),
                    col(PlatformAccountRow.platform),
                    col(PlatformAccountRow.external_id),
                )
                .join(CampaignMemberRow, col(CampaignMemberRow.campaign_id) == CampaignRow.id)
                .join(
                    PlatformAccountRow,
                    col(PlatformAccountRow.influencer_id) == CampaignMemberRow.influencer_id,
                )
                .where(col(CampaignRow.tenant_id) == tenant)
                .order_by(col(CampaignRow.id), col(PlatformAccountRow.external_id))
            )
        ).all()
    return [Member(*row) for row in rows]


async def two_campaigns(app: Starlette) -> tuple[Member, Member]:
    """A member account of one campaign and one of another campaign that the first does not
    follow."""
    found = await members(app)
    first = found[0]
    followed = {m.external_id for m in found if m.campaign_id == first.campaign_id}
    other = next(
        m for m in found if m.campaign_id != first.campaign_id and m.external_id not in followed
    )
    return first, other


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/graphql"


@contextlib.asynccontextmanager
async def socket(base: str, **options: Any) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(base), subprotocols=[PROTOCOL], proxy=None, **options) as ws:  # type: ignore[list-item]
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection, timeout_s: float = 1.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def closed_with(ws: ClientConnection, timeout_s: float = 3.0) -> int | None:
    """The close code the server sent, after reading whatever came before it."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return ws.close_code


async def ready(ws: ClientConnection, token: str | None) -> None:
    payload = {} if token is None else {"Authorization": f"Bearer {token}"}
    await send(ws, {"type": "connection_init", "payload": payload})
    assert await receive(ws) == {"type": "connection_ack"}


async def subscribe(ws: ClientConnection, op_id: str, campaign_id: str, query: str = LIVE) -> None:
    await send(
        ws,
        {
            "id": op_id,
            "type": "subscribe",
            "payload": {"query": query, "variables": {"c": campaign_id}},
        },
    )


async def post_days(base: str, external_id: str, *days: dict[str, Any]) -> None:
    body, headers = delivery(updated(*days, account=external_id), event_id=uuid.uuid4().hex)
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        response = await client.post("/webhooks/social", content=body, headers=headers)
    assert response.status_code == 202


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await receive(ws, seconds)
    except TimeoutError:
        return True
    return False


@pytest.fixture
async def hub(sqlite_settings: Settings) -> AsyncIterator[tuple[Starlette, str]]:
    app = create_app(sqlite_settings)
    async with served(app, ws="auto") as base:
        yield app, base


async def test_a_subscriber_receives_the_day_a_webhook_brings_within_a_second(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, outsider = await two_campaigns(app)
    async with socket(base) as ws:
        await ready(ws, make_token(roles=["analyst"]))
        await subscribe(ws, "live-1", member.campaign_id)
        await asyncio.sleep(0.2)  # the subscription follows its accounts
        # A day of an account outside the campaign is not delivered; the member's is.
        await post_days(base, outsider.external_id, day("2026-11-02", 999))
        started = time.monotonic()
        await post_days(base, member.external_id, day("2026-11-03", 4321))
        message = await receive(ws, 1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert message["id"] == "live-1" and message["type"] == "next"
    point = message["payload"]["data"]["metricsUpdated"]
    assert point["date"] == "2026-11-03"
    assert point["impressions"] == 4321
    assert point["influencerId"] == member.influencer_id
    assert point["platform"] == member.platform
    assert "errors" not in message["payload"]
    # Charged once, when it started: the field's weight and the object under it.
    assert message["payload"]["extensions"]["cost"]["requestedQueryCost"] == 101


async def test_a_partner_limited_to_other_campaigns_receives_nothing(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, outsider = await two_campaigns(app)
    partner = make_token(
        roles=["partner"],
        scopes=["campaigns:read", "metrics:read"],
        campaigns=[outsider.campaign_id],
        purpose="partner_outreach",
    )
    async with socket(base) as ws:
        await ready(ws, partner)
        await subscribe(ws, "theirs", outsider.campaign_id)
        await subscribe(ws, "not-theirs", member.campaign_id)
        refused = await receive(ws)
        await asyncio.sleep(0.2)
        await post_days(base, member.external_id, day("2026-11-04", 5555))
        silent = await nothing_within(ws, 0.8)
    assert refused["id"] == "not-theirs" and refused["type"] == "error"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["NOT_FOUND"]
    assert silent


async def test_a_token_without_the_scopes_is_refused_before_anything_is_followed(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, _ = await two_campaigns(app)
    async with socket(base) as ws:
        await ready(ws, make_token(roles=["analyst"], scopes=["campaigns:read"]))
        await subscribe(ws, "s", member.campaign_id)
        refused = await receive(ws)
        listeners = app.state.hub.feed.listeners
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "Subscription.metricsUpdated" in refused["payload"][0]["message"]
    assert listeners == 0


async def test_without_a_token_a_subscription_is_unauthenticated(
    hub: tuple[Starlette, str],
) -> None:
    app, base = hub
    member, _ = await two_campaigns(app)
    async with socket(base) as ws:
        await ready(ws, None)
        await subscribe(ws, "s", member.campaign_id)
        refused = await receive(ws)
    assert refused["type"] == "error"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["UNAUTHENTICATED"]


async def test_an_expired_token_is_refused_with_4403(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    _app, base = hub
    expired = make_token(now=time.time() - 3600)
    async with socket(base) as ws:
        await send(
            ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {expired}"}}
        )
        code = await closed_with(ws)
        reason = ws.close_reason or ""
    assert code == 4403
    assert "expired" in reason


async def test_the_connection_closes_with_4403_when_its_token_expires(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, _ = await two_campaigns(app)
    async with socket(base) as ws:
        await ready(ws, make_token(roles=["analyst"], ttl_s=2))
        await subscribe(ws, "s", member.campaign_id)
        started = time.monotonic()
        code = await closed_with(ws, timeout_s=4.0)
        after_s = time.monotonic() - started
    assert code == 4403
    assert 0.5 < after_s < 3.0
    await asyncio.sleep(0.1)
    assert app.state.hub.feed.listeners == 0


async def test_a_suspended_tenants_subscription_ends_at_its_next_event_and_init_is_refused(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    app = create_app(sqlite_settings.model_copy(update={"tenant_status_ttl_s": 0}))
    async with served(app, ws="auto") as base:
        member, _ = await two_campaigns(app)
        async with socket(base) as ws:
            await ready(ws, make_token(roles=["analyst"]))
            await subscribe(ws, "s", member.campaign_id)
            await asyncio.sleep(0.2)  # the subscription follows its accounts
            await tenants.set_status(app.state.hub.store, "acme", tenants.SUSPENDED)
            await post_days(base, member.external_id, day("2026-11-04", 1234))
            code = await closed_with(ws)
        assert code == 4403
        async with socket(base) as ws:
            await send(
                ws,
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {make_token(roles=['analyst'])}"},
                },
            )
            assert await closed_with(ws) == 4403


async def test_a_query_over_the_socket_is_refused(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    _app, base = hub
    async with socket(base) as ws:
        await ready(ws, make_token())
        await send(ws, {"id": "q", "type": "subscribe", "payload": {"query": "{ me { tenant } }"}})
        query = await receive(ws)
        await send(
            ws, {"id": "v", "type": "subscribe", "payload": {"query": "subscription { nope }"}}
        )
        invalid = await receive(ws)
    assert query["type"] == "error"
    assert query["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert invalid["id"] == "v" and invalid["type"] == "error"
    assert invalid["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_a_subscription_over_the_callers_maximum_cost_is_refused(
    sqlite_settings: Settings, make_token: MakeToken, tmp_path: Path
) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    cost = folder / "cost.yaml"
    cost.write_text(
        cost.read_text()
        .replace(
            "tiers:\n",
            "tiers:\n  tight:\n    max_query_cost: 50\n    bucket_size: 100\n"
            "    restore_rate_per_s: 1\n",
        )
        .replace("clients:\n", "clients:\n  tight: tight\n")
    )
    app = create_app(sqlite_settings.model_copy(update={"policies_dir": folder}))
    async with served(app, ws="auto") as base:
        member, _ = await two_campaigns(app)
        async with socket(base) as ws:
            await ready(ws, make_token(client_id="tight"))
            await subscribe(ws, "s", member.campaign_id)
            refused = await receive(ws)
    assert refused["type"] == "error"
    error = refused["payload"][0]
    assert error["extensions"]["code"] == "COST_ESTIMATED_TOO_EXPENSIVE"
    assert error["extensions"]["cost"] == {"estimated": 101, "max": 50}


async def test_a_subscriber_follows_a_member_added_after_it_started(
    hub: tuple[Starlette, str], make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, base = hub
    monkeypatch.setattr(subscriptions, "MEMBERS_REFRESH_S", 0.2)
    member, outsider = await two_campaigns(app)
    manager = make_token()
    async with socket(base) as ws:
        await ready(ws, manager)
        await subscribe(ws, "s", member.campaign_id)
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            _, added = await gql(
                client,
                "mutation($c: ID!, $i: ID!) { addCampaignMember(campaignId: $c, influencerId: $i)"
                " { influencer { id } } }",
                token=manager,
                variables={"c": member.campaign_id, "i": outsider.influencer_id},
            )
        assert "errors" not in added, added
        await asyncio.sleep(0.5)  # the next refresh reads the members again
        await post_days(base, outsider.external_id, day("2026-11-05", 777))
        message = await receive(ws, 1.0)
    assert message["payload"]["data"]["metricsUpdated"]["impressions"] == 777
    assert message["payload"]["data"]["metricsUpdated"]["influencerId"] == outsider.influencer_id


async def test_a_slow_subscriber_is_dropped_with_1013_and_nothing_stays_queued(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    app = create_app(sqlite_settings.model_copy(update={"ws_queue_size": 5}))
    async with served(app, ws="auto") as base:
        member, _ = await two_campaigns(app)
        feed = app.state.hub.feed
        async with socket(base, max_queue=1) as ws:
            await ready(ws, make_token())
            await subscribe(ws, "s", member.campaign_id)
            await asyncio.sleep(0.2)
            assert feed.listeners == 1
            # Far more days than the subscriber reads: its queue fills and it is dropped.
            for batch in range(50):
                days = [_record(member.external_id, batch * 100 + n) for n in range(100)]
                await feed.publish(member.external_id, days)
                await asyncio.sleep(0)
            code = await closed_with(ws)
        assert code == 1013
        assert feed.listeners == 0


def _record(external_id: str, n: int) -> MetricRecord:
    return MetricRecord(
        external_id,
        date.fromordinal(date(2020, 1, 1).toordinal() + n),
        n,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([{"id": "1", "type": "subscribe", "payload": {"query": "subscription { x }"}}], 4401),
        (["{not json"], 4400),
        ([{"type": "connection_init"}, {"type": "hello"}], 4400),
        ([{"type": "connection_init"}, {"type": "connection_init"}], 4429),
        ([{"type": "connection_init"}, {"type": "subscribe", "payload": {}}], 4400),
        ([{"type": "connection_init"}, {"id": "1", "type": "subscribe", "payload": "q"}], 4400),
        ([{"type": "connection_init", "payload": "token"}], 4400),
        ([{"type": "connection_init", "payload": {"Authorization": "Bearer nope"}}], 4403),
        ([{"type": "connection_init", "payload": {"Authorization": 7}}], 4403),
        ([{"type": "connection_init"}, "x" * 70_000], 1009),
        ([{"type": "connection_init"}, b"\x00binary"], 4400),
    ],
)
async def test_a_bad_message_closes_the_connection_with_the_protocols_code(
    hub: tuple[Starlette, str], messages: list[Any], code: int
) -> None:
    _app, base = hub
    async with socket(base) as ws:
        for message in messages:
            if isinstance(message, dict):
                await ws.send(json.dumps(message))
            else:
                await ws.send(message)
        assert await closed_with(ws) == code


async def test_a_second_subscription_with_an_id_in_use_closes_with_4409(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, _ = await two_campaigns(app)
    async with socket(base) as ws:
        await ready(ws, make_token())
        await subscribe(ws, "same", member.campaign_id)
        await subscribe(ws, "same", member.campaign_id)
        assert await closed_with(ws) == 4409


async def test_a_connection_without_init_closes_with_4408(
    sqlite_settings: Settings,
) -> None:
    app = create_app(sqlite_settings.model_copy(update={"ws_init_timeout_s": 0.3}))
    async with served(app, ws="auto") as base, socket(base) as ws:
        await send(ws, {"type": "ping"})
        pong = await receive(ws)
        assert await closed_with(ws) == 4408
    assert pong == {"type": "pong"}


async def test_a_client_without_the_subprotocol_is_closed_with_4406(
    hub: tuple[Starlette, str],
) -> None:
    _app, base = hub
    async with connect(ws_url(base), proxy=None) as ws:
        assert await closed_with(ws) == 4406


async def test_completing_a_subscription_stops_it_and_frees_its_id(
    hub: tuple[Starlette, str], make_token: MakeToken
) -> None:
    app, base = hub
    member, _ = await two_campaigns(app)
    feed = app.state.hub.feed
    async with socket(base) as ws:
        await ready(ws, make_token())
        await subscribe(ws, "s", member.campaign_id)
        await asyncio.sleep(0.2)
        following = feed.listeners
        await send(ws, {"id": "s", "type": "complete"})
        await asyncio.sleep(0.2)
        after = feed.listeners
        await subscribe(ws, "s", member.campaign_id)  # the id may be used again
        await asyncio.sleep(0.2)
        await post_days(base, member.external_id, day("2026-11-06", 606))
        message = await receive(ws)
    assert (following, after) == (1, 0)
    assert message["id"] == "s"
    assert message["payload"]["data"]["metricsUpdated"]["impressions"] == 606


async def test_a_connection_holds_a_bounded_number_of_subscriptions(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    app = create_app(sqlite_settings.model_copy(update={"ws_max_subscriptions": 2}))
    async with served(app, ws="auto") as base:
        member, _ = await two_campaigns(app)
        async with socket(base) as ws:
            await ready(ws, make_token())
            for op_id in ("a", "b", "c"):
                await subscribe(ws, op_id, member.campaign_id)
            refused = await receive(ws)
    assert refused["id"] == "c" and refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_webhook_on_one_replica_reaches_a_subscriber_on_the_other(
    tmp_path: Path, make_token: MakeToken
) -> None:
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; two replicas share their events in Redis")
    common: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/shared.db",
        "policies_dir": ROOT / "policies",
        "jwt_secret": TEST_SECRET,
        "demo": True,
        "cache_url": redis_url,
        "cache_namespace": f"hub-test-{uuid.uuid4().hex[:8]}",
    }
    one, two = create_app(Settings(**common)), create_app(Settings(**common))
    async with served(one) as base_one, served(two, ws="auto") as base_two:
        member, _ = await two_campaigns(one)
        async with socket(base_two) as ws:
            await ready(ws, make_token(roles=["analyst"]))
            await subscribe(ws, "live", member.campaign_id)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await post_days(base_one, member.external_id, day("2026-11-07", 7007))
            message = await receive(ws, 1.0)
            elapsed = time.monotonic() - started
            once = await nothing_within(ws, 0.3)
    assert elapsed < 1.0
    assert message["payload"]["data"]["metricsUpdated"]["impressions"] == 7007
    assert message["payload"]["data"]["metricsUpdated"]["influencerId"] == member.influencer_id
    assert once  # delivered once, not again through Redis


async def test_a_subscription_sent_over_http_is_pointed_to_the_websocket(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    status, body = await gql(
        sqlite_client,
        'subscription { metricsUpdated(campaignId: "x") { date } }',
        token=make_token(),
    )
    assert status == 400
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_REQUEST"]
    assert "WebSocket" in body["errors"][0]["message"]
