"""Campaign reads and writes through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import MakeToken
from tests.helpers import codes, gql

LIST = """
query ($first: Int, $after: String) {
  campaigns(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id name members(first: 3) { totalCount edges { node {
      influencer { handle } } } } } }
  }
}
"""
CREATE = """
mutation ($input: CreateCampaignInput!) {
  createCampaign(input: $input) { id name brand status budget { amount currency } startsOn endsOn }
}
"""


async def _all_ids(client: httpx.AsyncClient, token: str, first: int) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        _, payload = await gql(
            client, LIST, token=token, variables={"first": first, "after": after}
        )
        page = payload["data"]["campaigns"]
        ids.extend(edge["node"]["id"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return ids
        after = page["pageInfo"]["endCursor"]


async def test_campaign_list_answers_members_and_influencers(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    status, payload = await gql(client, LIST, token=make_token(), variables={"first": 5})
    assert status == 200, payload
    campaigns = payload["data"]["campaigns"]
    assert campaigns["totalCount"] == 6  # demo: 18 campaigns over 3 tenants
    assert len(campaigns["edges"]) == 5
    assert campaigns["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "endCursor": campaigns["edges"][-1]["cursor"],
    }
    first_members = campaigns["edges"][0]["node"]["members"]
    assert first_members["totalCount"] >= 5
    assert len(first_members["edges"]) == 3
    assert all(edge["node"]["influencer"]["handle"] for edge in first_members["edges"])


async def test_cursor_pagination_visits_every_campaign_once(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    ids = await _all_ids(client, token, first=4)
    assert len(ids) == 6
    assert ids == sorted(set(ids))
    assert ids == await _all_ids(client, token, first=100)


async def test_tenants_never_see_each_others_campaigns(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    acme = set(await _all_ids(client, make_token(tenant="acme"), first=100))
    globex_token = make_token(tenant="globex")
    globex = set(await _all_ids(client, globex_token, first=100))
    assert acme and globex and not acme & globex
    foreign = sorted(acme)[0]
    _, payload = await gql(client, f'{{ campaign(id: "{foreign}") {{ id }} }}', token=globex_token)
    assert payload["data"]["campaign"] is None


async def test_campaigns_claim_limits_the_visible_campaigns(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    allowed = sorted(await _all_ids(client, make_token(), first=100))[:2]
    token = make_token(campaigns=allowed, roles=["partner"], scopes=["campaigns:read"])
    assert await _all_ids(client, token, first=100) == allowed


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ("first: 10000", "first"),
        ("first: -1", "first"),
        ('after: "not-a-cursor"', "after"),
    ],
)
async def test_bad_paging_arguments_are_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken, arguments: str, argument: str
) -> None:
    status, payload = await gql(
        client, f"{{ campaigns({arguments}) {{ totalCount }} }}", token=make_token()
    )
    assert status == 200
    assert payload["data"] is None
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument


async def test_a_malformed_id_is_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    _, payload = await gql(client, '{ campaign(id: "42") { id } }', token=make_token())
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["path"] == ["campaign"]


async def test_create_campaign_is_read_back_in_the_callers_tenant(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    new = {
        "name": "  Spring Launch ",
        "brand": "Glow Labs",
        "status": "ACTIVE",
        "budget": {"amount": "1500.50", "currency": "EUR"},
        "startsOn": "2026-03-01",
        "endsOn": "2026-04-01",
    }
    status, payload = await gql(client, CREATE, token=token, variables={"input": new})
    assert status == 200, payload
    created = payload["data"]["createCampaign"]
    assert created["name"] == "Spring Launch"
    assert created["budget"] == {"amount": "1500.50", "currency": "EUR"}
    assert created["status"] == "ACTIVE"
    ids = await _all_ids(client, token, first=100)
    assert created["id"] in ids and len(ids) == 7
    assert created["id"] not in await _all_ids(client, make_token(tenant="globex"), first=100)


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"name": "   "}, "input.name"),
        ({"endsOn": "2026-01-01"}, "endsOn"),
        ({"budget": {"amount": "10.001", "currency": "EUR"}}, "input.budget.amount"),
        ({"budget": {"amount": "-5", "currency": "EUR"}}, "input.budget.amount"),
        ({"budget": {"amount": "5", "currency": "euro"}}, "input.budget.currency"),
        ({"name": "x" * 201}, "input.name"),
    ],
)
async def test_invalid_campaign_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, make_token: MakeToken, change: dict[str, object], argument: str
) -> None:
    token = make_token()
    before = await _all_ids(client, token, first=100)
    new = {"name": "Valid", "brand": "Brand", "startsOn": "2026-02-01", **change}
    _, payload = await gql(client, CREATE, token=token, variables={"input": new})
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument
    assert payload["data"] is None
    assert await _all_ids(client, token, first=100) == before


async def test_update_campaign_changes_only_given_fields(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    target = (await _all_ids(client, token, first=100))[0]
    mutation = """mutation ($id: ID!, $input: UpdateCampaignInput!) {
      updateCampaign(id: $id, input: $input) { id name brand objective status } }"""
    _, before = await gql(client, f'{{ campaign(id: "{target}") {{ brand status }} }}', token=token)
    variables = {"id": target, "input": {"name": "Renamed", "objective": None}}
    _, payload = await gql(client, mutation, token=token, variables=variables)
    updated = payload["data"]["updateCampaign"]
    assert updated["name"] == "Renamed"
    assert updated["objective"] is None
    assert updated["brand"] == before["data"]["campaign"]["brand"]
    assert updated["status"] == before["data"]["campaign"]["status"]


async def test_updating_another_tenants_campaign_is_not_found(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    foreign = (await _all_ids(client, make_token(tenant="globex"), first=100))[0]
    mutation = f'mutation {{ updateCampaign(id: "{foreign}", input: {{name: "x"}}) {{ id }} }}'
    _, payload = await gql(client, mutation, token=make_token(tenant="acme"))
    assert codes(payload) == ["NOT_FOUND"]
    _, check = await gql(
        client, f'{{ campaign(id: "{foreign}") {{ name }} }}', token=make_token(tenant="globex")
    )
    assert check["data"]["campaign"]["name"] != "x"


async def test_adding_the_same_member_twice_is_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    target = (await _all_ids(client, token, first=100))[0]
    _, influencers = await gql(
        client, "{ influencers(first: 1) { edges { node { id } } } }", token=token
    )
    influencer = influencers["data"]["influencers"]["edges"][0]["node"]["id"]
    mutation = """mutation ($c: ID!, $i: ID!) { addCampaignMember(campaignId: $c, influencerId: $i,
      fee: {amount: "250", currency: "EUR"}) { id status fee { amount currency }
      influencer { id } campaign { id } } }"""
    variables = {"c": target, "i": influencer}
    _, first = await gql(client, mutation, token=token, variables=variables)
    _, second = await gql(client, mutation, token=token, variables=variables)
    member = first["data"]["addCampaignMember"]
    assert member["status"] == "INVITED"
    assert member["fee"] == {"amount": "250.00", "currency": "EUR"}
    assert member["influencer"]["id"] == influencer and member["campaign"]["id"] == target
    assert codes(second) == ["BAD_USER_INPUT"]


async def test_an_analyst_may_read_but_not_create_campaigns(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token(roles=["analyst"])
    _, payload = await gql(
        client, CREATE, token=token, variables={"input": {"name": "n", "brand": "b"}}
    )
    assert codes(payload) == ["FORBIDDEN"]
    assert len(await _all_ids(client, token, first=100)) == 6


async def test_a_token_limited_to_campaigns_cannot_create_one(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    allowed = (await _all_ids(client, make_token(), first=100))[:1]
    token = make_token(campaigns=allowed)
    _, payload = await gql(
        client, CREATE, token=token, variables={"input": {"name": "n", "brand": "b"}}
    )
    assert codes(payload) == ["FORBIDDEN"]
    assert len(await _all_ids(client, make_token(), first=100)) == 6


async def test_a_claim_naming_another_tenants_campaign_sees_nothing_of_it(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    foreign = (await _all_ids(client, make_token(tenant="globex"), first=100))[0]
    token = make_token(tenant="acme", campaigns=[foreign])
    assert await _all_ids(client, token, first=100) == []
    query = "{ influencers(first: 100) { edges { node { contacts { id } } } } }"
    _, payload = await gql(client, query, token=token)
    assert all(edge["node"]["contacts"] == [] for edge in payload["data"]["influencers"]["edges"])


@pytest.mark.parametrize(
    ("budget", "argument"),
    [
        ({"amount": "1e999999", "currency": "EUR"}, "input.budget.amount"),
        ({"amount": "1000000000.0000000000000000000001", "currency": "EUR"}, "input.budget.amount"),
        ({"amount": "NaN", "currency": "EUR"}, "input.budget.amount"),
    ],
)
async def test_extreme_amounts_are_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken, budget: dict[str, str], argument: str
) -> None:
    variables = {"input": {"name": "n", "brand": "b", "budget": budget}}
    _, payload = await gql(client, CREATE, token=make_token(), variables=variables)
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument


async def test_control_characters_are_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    variables = {"input": {"name": "evil\u0000name", "brand": "b"}}
    _, payload = await gql(client, CREATE, token=make_token(), variables=variables)
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == "input.name"


async def test_an_update_that_changes_nothing_is_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    target = (await _all_ids(client, make_token(), first=100))[0]
    mutation = f'mutation {{ updateCampaign(id: "{target}", input: {{}}) {{ id }} }}'
    _, payload = await gql(client, mutation, token=make_token())
    assert codes(payload) == ["BAD_USER_INPUT"]


async def test_each_root_field_of_a_mutation_reads_what_the_ones_before_it_wrote(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    _, created = await gql(
        client,
        'mutation { createCampaign(input: {name: "Two adds", brand: "B"}) { id } }',
        token=token,
    )
    campaign_id = created["data"]["createCampaign"]["id"]
    _, listed = await gql(
        client, "{ influencers(first: 2) { edges { node { id } } } }", token=token
    )
    first, second = (edge["node"]["id"] for edge in listed["data"]["influencers"]["edges"])
    mutation = """mutation ($c: ID!, $i: ID!, $j: ID!) {
      a: addCampaignMember(campaignId: $c, influencerId: $i) {
        campaign { members(first: 50) { totalCount edges { node { id } } } } }
      b: addCampaignMember(campaignId: $c, influencerId: $j) {
        campaign { members(first: 10) { totalCount edges { node { id } } } } }
    }"""
    _, payload = await gql(
        client, mutation, token=token, variables={"c": campaign_id, "i": first, "j": second}
    )
    seen = [payload["data"][key]["campaign"]["members"] for key in ("a", "b")]
    assert [page["totalCount"] for page in seen] == [1, 2]
    assert [len(page["edges"]) for page in seen] == [1, 2]
