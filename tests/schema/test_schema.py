"""`HubSchema`: what every request passes, whatever field it asks for."""

from __future__ import annotations

from typing import Any

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
