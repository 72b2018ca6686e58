"""`HubSchema`: what every request passes, whatever field it asks for."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import SQLModel

from hub.settings import Settings
from hub.store.tables import CampaignRow, ConsentRow, ContactRow
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

CREATE = "mutation ($input: CreateCampaignInput!) { createCampaign(input: $input) { id } }"
UPSERT = "mutation ($input: ContactInput!) { upsertContact(input: $input) { id } }"
GRANT = """mutation ($id: ID!, $source: String!, $evidence: String) { grantConsent(
  contactId: $id, purpose: "campaign_management", source: $source, evidence: $evidence) { id } }"""
CONTACT = "{ influencers(first: 100) { edges { node { contacts { id } } } } }"


@pytest.mark.parametrize(
    ("document", "variables", "named"),
    [
        (CREATE, {"input": {"name": "Spring\ud800", "brand": "Acme"}}, "input.name"),
        (CREATE, {"input": {"name": "Spring", "brand": "Acme", "\udfff": 1}}, "input.\\udfff"),
        (UPSERT, {"input": {"email": "a@b.test", "fullName": "Ann \udc00"}}, "input.fullName"),
        (GRANT, {"source": "form", "evidence": "\ud83d signed"}, "evidence"),
        (GRANT, {"source": ["form", "\ud800"]}, "source[1]"),
    ],
)
async def test_a_variable_holding_a_lone_surrogate_is_bad_user_input_and_stores_nothing(
    settings: Settings,
    make_token: MakeToken,
    document: str,
    variables: dict[str, Any],
    named: str,
) -> None:
    token = make_token()
    async with running_app(settings) as (app, client):
        _, payload = await gql(client, CONTACT, token=token)
        edges = payload["data"]["influencers"]["edges"]
        contact_id = next(c["id"] for edge in edges for c in edge["node"]["contacts"])
        before = await _counts(app.state.hub.store)
        status, payload = await gql(
            client, document, token=token, variables={"id": contact_id, **variables}
        )
        after = await _counts(app.state.hub.store)
    assert status == 400
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["variable"] == named
    assert "data" not in payload
    assert after == before


async def _counts(store: Any) -> list[int]:
    tables: list[type[SQLModel]] = [CampaignRow, ContactRow, ConsentRow]
    async with store.sessions() as session:
        return [
            int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in tables
        ]


PARTNER = {"roles": ["partner"], "scopes": ["campaigns:read", "influencers:read"]}


@pytest.mark.parametrize(
    ("document", "variables", "suggested", "hidden"),
    [
        (
            "query ($s: CampaignStatus) { campaigns(status: $s) { totalCount } }",
            {"s": "DRAF"},
            "Did you mean the enum value 'DRAFT'?",
            "Variable '$s' has invalid value: Value 'DRAF' does not exist in 'CampaignStatus' "
            "enum.",
        ),
        (
            "query ($f: InfluencerFilter) { influencers(filter: $f) { totalCount } }",
            {"f": {"countr": "PL"}},
            "Did you mean 'country'?",
            "Variable '$f' has invalid value: Expected value of type 'InfluencerFilter' not to "
            "include unknown field 'countr'. Found: {'countr': 'PL'}.",
        ),
        (
            "query ($f: InfluencerFiltr) { influencers(filter: $f) { totalCount } }",
            {},
            "Did you mean 'InfluencerFilter', 'Influencer', or 'InfluencerEdge'?",
            "Unknown type 'InfluencerFiltr'.",
        ),
        (
            "{ campaigns(status: PAUSD) { totalCount } }",
            {},
            "Did you mean the enum value 'PAUSED'?",
            "Value 'PAUSD' does not exist in 'CampaignStatus' enum.",
        ),
    ],
)
async def test_suggestions_in_any_error_are_hidden_from_callers_who_may_not_introspect(
    sqlite_client: httpx.AsyncClient,
    make_token: MakeToken,
    document: str,
    variables: dict[str, Any],
    suggested: str,
    hidden: str,
) -> None:
    _, manager = await gql(sqlite_client, document, token=make_token(), variables=variables)
    _, partner = await gql(
        sqlite_client, document, token=make_token(**PARTNER), variables=variables
    )
    assert suggested in manager["errors"][0]["message"]
    assert [error["message"] for error in partner["errors"]] == [hidden]
    assert codes(partner) == codes(manager)
