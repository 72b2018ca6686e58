"""Signed webhooks in: verified before anything is kept, kept once, processed until done."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from hub import webhooks
from hub.metric_history import store_days
from hub.settings import DEV_WEBHOOK_SECRET, Settings
from hub.store.tables import MetricDayRow, WebhookEventRow
from tests.conftest import running_app
from tests.helpers import codes

ACCOUNT = "acct-webhook-1"


def day(on: str, impressions: int = 1000) -> dict[str, Any]:
    return {
        "date": on,
        "impressions": impressions,
        "reach": 800,
        "likes": 50,
        "comments": 5,
        "shares": 3,
        "saves": 2,
        "videoViews": 400,
        "clicks": 20,
        "conversions": 1,
        "spendMinor": 1234,
    }


def delivery(
    payload: dict[str, Any],
    *,
    event_id: str = "evt-1",
    secret: str = DEV_WEBHOOK_SECRET,
    sent: float | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time() if sent is None else sent))
    return body, {
        "Content-Type": "application/json",
        "X-Hub-Timestamp": timestamp,
        "X-Hub-Signature-256": webhooks.signature(secret, timestamp, body),
        "X-Hub-Event-Id": event_id,
    }


def updated(*days: dict[str, Any], account: str = ACCOUNT) -> dict[str, Any]:
    return {"type": "metrics.updated", "accountId": account, "days": list(days)}


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with running_app(settings) as running:
        yield running


async def _count(app: Starlette, table: Any) -> int:
    async with app.state.hub.store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def _days(app: Starlette) -> dict[date, int]:
    async with app.state.hub.store.sessions() as session:
        rows = (await session.execute(select(MetricDayRow))).scalars().all()
    return {row.day: row.impressions for row in rows if row.external_id == ACCOUNT}


async def _settled(app: Starlette) -> None:
    """Once what was handed to the inbox after its answers is processed."""
    inbox = app.state.hub.inbox
    while inbox._running:
        await asyncio.gather(*inbox._running)


def _tampered(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}


def _without_signature(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda body, headers: (body, _tampered(headers)), id="bad-signature"),
        pytest.param(lambda body, headers: (body, _without_signature(headers)), id="unsigned"),
        pytest.param(lambda body, headers: (body + b" ", headers), id="body-changed"),
        pytest.param(
            lambda body, headers: delivery(json.loads(body), sent=time.time() - 301),
            id="stale",
        ),
        pytest.param(
            lambda body, headers: delivery(json.loads(body), sent=time.time() + 301),
            id="from-the-future",
        ),
        pytest.param(
            lambda body, headers: delivery(json.loads(body), secret="another-secret"),
            id="other-secret",
        ),
    ],
)
async def test_a_delivery_that_is_not_signed_right_now_is_401_and_keeps_nothing(
    hub: tuple[Starlette, httpx.AsyncClient], spoil: Any
) -> None:
    app, client = hub
    body, headers = spoil(*delivery(updated(day("2026-10-01"))))
    response = await client.post("/webhooks/social", content=body, headers=headers)
    assert response.status_code == 401
    assert codes(response.json()) == ["UNAUTHENTICATED"]
    assert await _count(app, WebhookEventRow) == 0
    assert await _days(app) == {}


async def test_the_same_event_sent_ten_times_at_once_is_kept_and_applied_once(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, client = hub
    body, headers = delivery(updated(day("2026-10-01", 1111), day("2026-10-02", 2222)))
    answers = await asyncio.gather(
        *(client.post("/webhooks/social", content=body, headers=headers) for _ in range(10))
    )
    await _settled(app)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 9 + [202]
    assert {answer.json()["status"] for answer in answers} == {"accepted", "duplicate"}
    assert await _count(app, WebhookEventRow) == 1
    assert await _days(app) == {date(2026, 10, 1): 1111, date(2026, 10, 2): 2222}
    async with app.state.hub.store.sessions() as session:
        event = await session.get(WebhookEventRow, ("social", "evt-1"))
    assert event is not None and event.processed_at is not None and event.attempts == 0


async def test_a_later_statement_of_a_day_is_never_replaced_by_an_earlier_one(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, client = hub
    now = time.time()
    newer = delivery(updated(day("2026-10-03", 3000)), event_id="evt-new", sent=now)
    older = delivery(updated(day("2026-10-03", 1000)), event_id="evt-old", sent=now - 60)
    for body, headers in (newer, older):  # delivered out of order
        assert (await client.post("/webhooks/social", content=body, headers=headers)).is_success
        await _settled(app)
    assert await _days(app) == {date(2026, 10, 3): 3000}


async def test_an_event_whose_processing_fails_is_processed_once_the_failure_clears(
    hub: tuple[Starlette, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = hub
    inbox = app.state.hub.inbox

    async def store_down(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("the store is away")

    monkeypatch.setattr(webhooks, "store_days", store_down)
    body, headers = delivery(updated(day("2026-10-04", 4444)), event_id="evt-fails")
    response = await client.post("/webhooks/social", content=body, headers=headers)
    await _settled(app)
    assert response.status_code == 202  # kept before the answer, whatever happens after
    async with app.state.hub.store.sessions() as session:
        event = await session.get(WebhookEventRow, ("social", "evt-fails"))
    assert event is not None and event.processed_at is None and event.attempts == 1
    assert event.last_error == "ConnectionError"
    assert await inbox.run_once() == 0  # not due yet: backing off
    monkeypatch.setattr(webhooks, "store_days", store_days)
    inbox.clock = lambda: datetime.now(UTC) + timedelta(seconds=10)
    assert await inbox.run_once() == 1
    assert await _days(app) == {date(2026, 10, 4): 4444}
    assert await inbox.run_once() == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "metrics.updated", "days": []}, "accountId"),
        (updated({"date": "2026-10-01", "impressions": 1}), "accountId and days"),
        (updated(day("2026-10-01", -5)), "accountId and days"),
        (updated(day("not a date")), "accountId and days"),
        ({**updated(day("2026-10-01")), "occurredAt": "yesterday"}, "occurredAt"),
        ({**updated(day("2026-10-01")), "occurredAt": "9999-12-31T23:59:59-05:00"}, "occurredAt"),
        ({**updated(day("2026-10-01")), "occurredAt": "2999-01-01T00:00:00+00:00"}, "after"),
        ({**updated(day("2026-10-01")), "occurredAt": "2026-10-01T00:00:00"}, "offset"),
        (updated(day("2026-10-01"), account="\ud800"), "accountId and days"),
        (updated(day("2026-10-01"), account="acct\u0000x"), "accountId and days"),
        (updated(day("2026-10-01", 1), day("2026-10-01", 2)), "each day once"),
        ({"type": "account.deleted"}, "not received from social"),
        ([1, 2], "JSON object"),
    ],
)
async def test_a_signed_event_we_cannot_read_is_400_and_keeps_nothing(
    hub: tuple[Starlette, httpx.AsyncClient], payload: Any, message: str
) -> None:
    app, client = hub
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Hub-Timestamp": timestamp,
        "X-Hub-Signature-256": webhooks.signature(DEV_WEBHOOK_SECRET, timestamp, body),
        "X-Hub-Event-Id": "evt-bad",
    }
    response = await client.post("/webhooks/social", content=body, headers=headers)
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    assert message in response.json()["errors"][0]["message"]
    assert await _count(app, WebhookEventRow) == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "contact.updated", "contactId": "crm-acme-00001"}, "workspace"),
        ({"type": "contact.updated", "workspace": "../acme", "contactId": "x"}, "workspace"),
        ({"type": "contact.updated", "workspace": "acme", "contactId": "x" * 65}, "contactId"),
        ({"type": "metrics.updated", "accountId": "a", "days": []}, "not received from crm"),
    ],
)
async def test_a_signed_crm_event_we_cannot_read_is_400_and_keeps_nothing(
    hub: tuple[Starlette, httpx.AsyncClient], payload: Any, message: str
) -> None:
    app, client = hub
    body, headers = delivery(payload)
    response = await client.post("/webhooks/crm", content=body, headers=headers)
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    assert message in response.json()["errors"][0]["message"]
    assert await _count(app, WebhookEventRow) == 0


async def test_a_source_that_sends_no_webhooks_is_404(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _app, client = hub
    body, headers = delivery(updated(day("2026-10-01")))
    for source in ("discovery", "nope", "social%2F..%2Fx"):
        response = await client.post(f"/webhooks/{source}", content=body, headers=headers)
        assert response.status_code == 404
        assert codes(response.json()) == ["NOT_FOUND"]


async def test_without_a_secret_outside_the_demo_every_delivery_is_401(
    sqlite_settings: Settings,
) -> None:
    settings = sqlite_settings.model_copy(update={"demo": False})
    async with running_app(settings) as (app, client):
        body, headers = delivery(updated(day("2026-10-01")))
        response = await client.post("/webhooks/social", content=body, headers=headers)
        assert response.status_code == 401
        assert "not configured" in response.json()["errors"][0]["message"]
        assert await _count(app, WebhookEventRow) == 0


async def test_a_path_or_method_with_no_route_is_a_coded_error(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _app, client = hub
    missing = await client.get("/nothing/here")
    assert missing.status_code == 404 and codes(missing.json()) == ["NOT_FOUND"]
    wrong = await client.get("/webhooks/social")
    assert wrong.status_code == 405 and codes(wrong.json()) == ["METHOD_NOT_ALLOWED"]
    assert wrong.headers["allow"] == "POST"


async def test_a_signed_delivery_replayed_under_another_event_id_changes_nothing(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, client = hub
    body, headers = delivery(updated(day("2026-10-05", 5555)), event_id="evt-original")
    first = await client.post("/webhooks/social", content=body, headers=headers)
    replayed = await client.post(
        "/webhooks/social", content=body, headers={**headers, "X-Hub-Event-Id": "evt-replayed"}
    )
    await _settled(app)
    assert (first.status_code, replayed.status_code) == (202, 200)
    assert replayed.json()["status"] == "duplicate"
    assert await _count(app, WebhookEventRow) == 1


async def test_an_event_that_keeps_failing_is_abandoned_and_never_retried_again(
    hub: tuple[Starlette, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = hub
    inbox = app.state.hub.inbox
    monkeypatch.setattr(webhooks, "MAX_ATTEMPTS", 3)

    async def store_down(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("the store is away")

    monkeypatch.setattr(webhooks, "store_days", store_down)
    body, headers = delivery(updated(day("2026-10-06")), event_id="evt-poison")
    await client.post("/webhooks/social", content=body, headers=headers)
    await _settled(app)
    later = datetime.now(UTC)
    for _ in range(4):
        later += timedelta(hours=1)
        inbox.clock = lambda at=later: at
        await inbox.run_once()
    async with app.state.hub.store.sessions() as session:
        event = await session.get(WebhookEventRow, ("social", "evt-poison"))
    assert event is not None and event.attempts == 3
    assert event.abandoned_at is not None and event.processed_at is None
