"""`schema.graphql` at the root is the running schema, exported."""

from __future__ import annotations

from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT


def test_schema_graphql_equals_the_running_schema() -> None:
    exported = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert exported.strip() == build_schema(Settings()).as_str().strip(), (
        "schema.graphql is stale: run `hub schema > schema.graphql`"
    )


def test_the_schema_names_the_public_contract() -> None:
    sdl = build_schema(Settings()).as_str()
    for name in (
        "me: Viewer!",
        "influencer(id: ID!): Influencer",
        "campaigns(first: Int = 20, after: String = null, status: CampaignStatus = null)",
        'type Campaign @key(fields: "id")',
        'type Contact @key(fields: "id")',
        'type Influencer @key(fields: "id")',
        "createCampaign(input: CreateCampaignInput!): Campaign!",
        "upsertContact(input: ContactInput!): Contact!",
    ):
        assert name in sdl
