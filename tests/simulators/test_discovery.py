"""The discovery simulator: one GraphQL query answers profiles for a whole batch of ids."""

from __future__ import annotations

from typing import Any

from hub.simulators import SimulatorConfig, create_discovery_app
from hub.store.seed import SeedPlan, influencer_rows
from tests.simulators.conftest import OpenClient

PROFILES = """query ($ids: [ID!]!) {
  profiles(ids: $ids) {
    influencerId handle bio language engagementRate
    audience {
      countries { code share } ageBands { band share }
      genderSplit { female male other } interests
    }
  }
}"""


def _influencers(count: int) -> list[dict[str, Any]]:
    rows = influencer_rows(SeedPlan(influencers=150, seed=7))
    return [row for row, _accounts in rows][:count]


async def _profiles(client: Any, ids: list[str]) -> Any:
    response = await client.post("/graphql", json={"query": PROFILES, "variables": {"ids": ids}})
    assert response.status_code == 200
    return response.json()


async def test_profiles_follow_the_ids_with_null_for_unknown_ones(open_client: OpenClient) -> None:
    client = open_client(create_discovery_app(SimulatorConfig()))
    rows = _influencers(3)
    ids = [rows[0]["id"], "inf_0000000000000000", rows[2]["id"]]
    profiles = (await _profiles(client, ids))["data"]["profiles"]
    assert profiles[1] is None
    assert [(p["influencerId"], p["handle"]) for p in (profiles[0], profiles[2])] == [
        (rows[0]["id"], rows[0]["handle"]),
        (rows[2]["id"], rows[2]["handle"]),
    ]


async def test_a_profile_agrees_with_the_seeded_influencer(open_client: OpenClient) -> None:
    client = open_client(create_discovery_app(SimulatorConfig()))
    rows = _influencers(40)
    profiles = (await _profiles(client, [row["id"] for row in rows]))["data"]["profiles"]
    for row, profile in zip(rows, profiles, strict=True):
        audience = profile["audience"]
        assert audience["countries"][0]["code"] == row["country"]
        assert audience["interests"][: len(row["categories"])] == row["categories"]
        assert len(audience["interests"]) == len(row["categories"]) + 2
        assert row["country"] in profile["bio"]
        assert 0.005 <= profile["engagementRate"] <= 0.09
        for shares in (
            [c["share"] for c in audience["countries"]],
            [b["share"] for b in audience["ageBands"]],
            list(audience["genderSplit"].values()),
        ):
            assert round(sum(shares), 6) == 1
            assert min(shares) > 0
    languages = {row["country"]: p["language"] for row, p in zip(rows, profiles, strict=True)}
    assert languages.get("GB", "en") == "en"
    assert languages.get("PL", "pl") == "pl"


async def test_the_same_seed_gives_the_same_profiles(open_client: OpenClient) -> None:
    ids = [row["id"] for row in _influencers(10)]
    first = await _profiles(open_client(create_discovery_app(SimulatorConfig())), ids)
    again = await _profiles(open_client(create_discovery_app(SimulatorConfig())), ids)
    assert first == again
    other = await _profiles(open_client(create_discovery_app(SimulatorConfig(seed=8))), ids)
    assert other["data"]["profiles"] == [None] * 10


async def test_one_query_for_many_ids_is_one_call(open_client: OpenClient) -> None:
    client = open_client(create_discovery_app(SimulatorConfig()))
    ids = [row["id"] for row in _influencers(100)]
    profiles = (await _profiles(client, ids))["data"]["profiles"]
    assert len(profiles) == 100
    assert None not in profiles
    assert (await client.get("/_control/stats")).json() == {"calls": {"/graphql": 1}, "total": 1}


async def test_more_than_100_ids_is_an_error_on_the_field(open_client: OpenClient) -> None:
    client = open_client(create_discovery_app(SimulatorConfig()))
    payload = await _profiles(client, [f"inf_{n:016x}" for n in range(101)])
    assert payload["data"] == {"profiles": None}
    assert "at most 100" in payload["errors"][0]["message"]
    assert payload["errors"][0]["path"] == ["profiles"]


async def test_bad_documents_and_bodies_are_400_with_graphql_errors(
    open_client: OpenClient,
) -> None:
    client = open_client(create_discovery_app(SimulatorConfig()))
    cases: list[dict[str, Any]] = [
        {"content": b"{"},
        {"json": {"variables": {}}},
        {"json": {"query": "{ profiles(ids: [1]) { nope } }"}},
        {"json": {"query": "{ profiles(", "variables": {}}},
        {"json": {"query": PROFILES, "variables": ["x"]}},
    ]
    for case in cases:
        response = await client.post("/graphql", **case)
        assert response.status_code == 400, case
        assert response.json()["errors"][0]["message"], case
