"""The hub against the real simulators over HTTP: batching, faults, breaker, single flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.settings import Settings
from hub.simulators import SIMULATOR_NAMES, RunningSimulators, SimulatorConfig, start_simulators
from hub.store.seed import SeedPlan
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, gql

DASHBOARD = """
query ($id: ID!, $first: Int) {
  campaign(id: $id) {
    members(first: $first) {
      edges { node { influencer {
        id
        accounts { username followers verified }
        audience { countries { code share } interests }
        contacts { id company }
      } } }
    }
  }
}
"""


@pytest.fixture
async def simulators() -> AsyncIterator[RunningSimulators]:
    plan = SeedPlan.demo()
    config = SimulatorConfig(seed=plan.seed, influencers=plan.influencers, slow_s=1.0)
    running = await start_simulators({name: config for name in SIMULATOR_NAMES})
    yield running
    await running.stop()


def hub_settings(tmp_path: Path, urls: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        "policies_dir": ROOT / "policies",
        "jwt_secret": TEST_SECRET,
        "demo": True,
        "source_retries": 0,
        **{f"{name}_url": url for name, url in urls.items()},
        **{f"{name}_timeout_s": 0.3 for name in urls},
        **overrides,
    }
    return Settings(**values)


async def control(url: str, action: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=url) as client:
        if body is None and action == "stats":
            response = await client.get("/_control/stats")
        else:
            response = await client.post(f"/_control/{action}", json=body or {})
        response.raise_for_status()
        return response.json()


async def calls(running: RunningSimulators) -> dict[str, int]:
    return {name: (await control(url, "stats"))["total"] for name, url in running.urls.items()}


async def reset(running: RunningSimulators) -> None:
    for url in running.urls.values():
        await control(url, "reset")


async def campaign_of(client: httpx.AsyncClient, token: str, size: int) -> str:
    """A new campaign of `size` members, those with contacts of the tenant first."""
    query = "{ influencers(first: 100) { edges { node { id contacts { id } } } } }"
    _, listed = await gql(client, query, token=token)
    nodes = [edge["node"] for edge in listed["data"]["influencers"]["edges"]]
    nodes.sort(key=lambda node: not node["contacts"])
    create = 'mutation { createCampaign(input: {name: "Big", brand: "B"}) { id } }'
    _, created = await gql(client, create, token=token)
    campaign_id: str = created["data"]["createCampaign"]["id"]
    add = (
        "mutation ($c: ID!, $i: ID!) { addCampaignMember(campaignId: $c, influencerId: $i) { id } }"
    )
    for node in nodes[:size]:
        _, added = await gql(
            client, add, token=token, variables={"c": campaign_id, "i": node["id"]}
        )
        assert "errors" not in added, added
    return campaign_id


def influencers_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    edges = payload["data"]["campaign"]["members"]["edges"]
    return [edge["node"]["influencer"] for edge in edges]


async def test_a_dashboard_makes_as_many_upstream_calls_for_50_members_as_for_5(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token()
    async with running_app(hub_settings(tmp_path, simulators.urls)) as (_app, client):
        small = await campaign_of(client, token, 5)
        large = await campaign_of(client, token, 50)
        counted = []
        for campaign_id, size in ((small, 5), (large, 50)):
            await reset(simulators)
            # A fresh app cache would hide nothing here: the cache is cold for the large
            # campaign's new influencers, and the small one was never queried before.
            status, payload = await gql(
                client, DASHBOARD, token=token, variables={"id": campaign_id, "first": size}
            )
            assert status == 200
            assert "errors" not in payload, payload["errors"][:2]
            found = influencers_of(payload)
            assert len(found) == size
            assert all(account["followers"] is not None for i in found for account in i["accounts"])
            assert all(i["audience"]["countries"] for i in found)
            counted.append(await calls(simulators))
    assert counted[0] == counted[1] == {"crm": 1, "social": 1, "discovery": 1}


@pytest.mark.parametrize("fault", ["down", "slow", "5xx", "429", "malformed", "truncated"])
@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("social", ["accounts", 0, "followers"]),
        ("discovery", ["audience"]),
        ("crm", ["contacts", 0, "company"]),
    ],
)
async def test_a_faulty_source_costs_only_the_fields_it_serves(
    simulators: RunningSimulators,
    tmp_path: Path,
    make_token: MakeToken,
    fault: str,
    source: str,
    path: list[Any],
) -> None:
    token = make_token()
    async with running_app(hub_settings(tmp_path, simulators.urls)) as (_app, client):
        campaign_id = await campaign_of(client, token, 3)
        await control(simulators.urls[source], "fault", {"mode": fault})
        started = time.monotonic()
        status, payload = await gql(
            client, DASHBOARD, token=token, variables={"id": campaign_id, "first": 3}
        )
        elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed < 2.5
    expected = "SOURCE_TIMEOUT" if fault == "slow" else "SOURCE_UNAVAILABLE"
    errors = payload["errors"]
    assert {error["extensions"]["code"] for error in errors} == {expected}
    assert {error["extensions"]["source"] for error in errors} == {source}
    prefix = ["campaign", "members", "edges", 0, "node", "influencer"]
    assert prefix + path in [error["path"] for error in errors]
    first = influencers_of(payload)[0]
    if source != "social":
        assert first["accounts"][0]["followers"] is not None
    if source != "discovery":
        assert first["audience"]["interests"]
    if source != "crm":
        assert first["contacts"][0]["company"] is not None
    assert first["accounts"][0]["username"]


async def test_the_breaker_opens_after_repeated_failures_and_recovers(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token()
    settings = hub_settings(
        tmp_path,
        simulators.urls,
        source_breaker_failures=2,
        source_breaker_reset_s=0.3,
        discovery_ttl_s=0,
    )
    query = "{ influencers(first: 2) { edges { node { audience { interests } } } } }"
    async with running_app(settings) as (_app, client):
        url = simulators.urls["discovery"]
        await control(url, "fault", {"mode": "5xx"})
        for _ in range(2):
            await gql(client, query, token=token)
        ready = (await client.get("/readyz")).json()
        assert ready["sources"]["discovery"]["breaker"] == "open"
        before = (await control(url, "stats"))["total"]
        _, refused = await gql(client, query, token=token)
        assert codes(refused)[0] == "SOURCE_UNAVAILABLE"
        assert (await control(url, "stats"))["total"] == before
        await control(url, "reset")
        await asyncio.sleep(0.35)
        _, answered = await gql(client, query, token=token)
        assert "errors" not in answered
        assert (await client.get("/readyz")).json()["sources"]["discovery"]["breaker"] == "closed"


async def test_two_concurrent_requests_for_a_cold_key_cause_one_upstream_call(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token()
    query = "{ influencers(first: 3) { edges { node { audience { interests } } } } }"
    url = simulators.urls["discovery"]
    async with running_app(hub_settings(tmp_path, simulators.urls)) as (_app, client):
        await control(url, "reset")
        await control(url, "fault", {"latency_ms": [100, 100]})
        answers = await asyncio.gather(*(gql(client, query, token=token) for _ in range(2)))
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1]["data"] == answers[1][1]["data"]
    assert (await control(url, "stats"))["total"] == 1


async def test_withdrawing_consent_purges_the_contacts_crm_entry(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    token = make_token()
    query = "query ($id: ID!) { contact(id: $id) { id company jobTitle } }"
    async with running_app(hub_settings(tmp_path, simulators.urls)) as (_app, client):
        listed = "{ influencers(first: 100) { edges { node { contacts { id company } } } } }"
        _, found = await gql(client, listed, token=token)
        contact_ids = [
            contact["id"]
            for edge in found["data"]["influencers"]["edges"]
            for contact in edge["node"]["contacts"]
        ]
        contact_id = contact_ids[0]
        crm = simulators.urls["crm"]
        await control(crm, "reset")
        await gql(client, query, token=token, variables={"id": contact_id})
        await gql(client, query, token=token, variables={"id": contact_id})
        assert (await control(crm, "stats"))["total"] == 0
        withdraw = (
            'mutation ($id: ID!) { withdrawConsent(contactId: $id, purpose: "analytics") { id } }'
        )
        _, withdrawn = await gql(client, withdraw, token=token, variables={"id": contact_id})
        assert "errors" not in withdrawn, withdrawn
        _, again = await gql(client, query, token=token, variables={"id": contact_id})
    assert again["data"]["contact"]["company"] is not None
    assert (await control(crm, "stats"))["total"] == 1


async def test_metrics_and_readiness_report_each_source(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    query = "{ influencers(first: 2) { edges { node { audience { interests } } } } }"
    async with running_app(hub_settings(tmp_path, simulators.urls, crm_url=None)) as (_, client):
        await gql(client, query, token=make_token())
        metrics = await client.get("/metrics")
        ready = (await client.get("/readyz")).json()
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'hub_source_calls_total{method="POST",source="discovery"} 1.0' in metrics.text
    assert ready["sources"]["discovery"] == {"breaker": "closed", "recentFailures": 0}
    assert ready["sources"]["crm"] == {"breaker": "not_configured"}


async def test_an_unconfigured_source_nulls_its_fields_with_source_unavailable(
    tmp_path: Path, make_token: MakeToken
) -> None:
    query = "{ influencers(first: 1) { edges { node { handle audience { interests } } } } }"
    async with running_app(hub_settings(tmp_path, {}, social_url="http://x.test")) as (_, client):
        status, payload = await gql(client, query, token=make_token())
    assert status == 200
    assert payload["data"]["influencers"]["edges"][0]["node"]["audience"] is None
    assert payload["data"]["influencers"]["edges"][0]["node"]["handle"]
    assert payload["errors"][0]["extensions"] == {
        "code": "SOURCE_UNAVAILABLE",
        "source": "discovery",
    }


async def test_enriched_personal_fields_still_need_consent(
    simulators: RunningSimulators, tmp_path: Path, make_token: MakeToken
) -> None:
    listed = "{ influencers(first: 100) { edges { node { contacts { id company } } } } }"
    query = "query ($id: ID!) { contact(id: $id) { company jobTitle } }"
    async with running_app(hub_settings(tmp_path, simulators.urls)) as (_app, client):
        _, found = await gql(client, listed, token=make_token())
        contact_id = next(
            contact["id"]
            for edge in found["data"]["influencers"]["edges"]
            for contact in edge["node"]["contacts"]
        )
        withdraw = (
            'mutation ($id: ID!) { withdrawConsent(contactId: $id, purpose: "analytics") { id } }'
        )
        await gql(client, withdraw, token=make_token(), variables={"id": contact_id})
        analyst = make_token(roles=["dpo"], purpose="analytics")
        _, payload = await gql(client, query, token=analyst, variables={"id": contact_id})
    assert payload["data"]["contact"]["jobTitle"] is None
    assert payload["data"]["contact"]["company"] is not None
    assert codes(payload) == ["CONSENT_REQUIRED"]
    assert payload["errors"][0]["path"] == ["contact", "jobTitle"]
