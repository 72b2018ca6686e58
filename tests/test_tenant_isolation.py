"""Property: whatever the query shape, no row of another tenant or outside `campaigns` shows."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, running_app
from tests.helpers import gql

TENANTS = ("acme", "globex")


@dataclass(frozen=True)
class Truth:
    """What the store holds, read with plain SQL: the ground truth to check answers against."""

    campaign_tenant: dict[str, str]
    member_campaign: dict[str, str]
    contact_tenant: dict[str, str]
    contact_influencer: dict[str, str]
    members_of: dict[str, set[str]]  # campaign -> influencer ids

    @classmethod
    def read(cls, path: Path) -> Truth:
        with contextlib.closing(sqlite3.connect(path)) as db:
            campaigns = dict(db.execute("select id, tenant_id from campaigns"))
            members = list(
                db.execute("select id, campaign_id, influencer_id from campaign_members")
            )
            contacts = list(db.execute("select id, tenant_id, influencer_id from contacts"))
        members_of: dict[str, set[str]] = {}
        for _id, campaign, influencer in members:
            members_of.setdefault(campaign, set()).add(influencer)
        return cls(
            campaign_tenant=campaigns,
            member_campaign={m: c for m, c, _ in members},
            contact_tenant={c: t for c, t, _ in contacts},
            contact_influencer={c: i for c, _, i in contacts},
            members_of=members_of,
        )

    def visible_campaigns(self, tenant: str, claim: list[str] | None) -> set[str]:
        own = {c for c, t in self.campaign_tenant.items() if t == tenant}
        return own if claim is None else own & set(claim)

    def visible_contacts(self, tenant: str, claim: list[str] | None) -> set[str]:
        own = {c for c, t in self.contact_tenant.items() if t == tenant}
        if claim is None:
            return own
        influencers = set().union(
            *(self.members_of.get(c, set()) for c in self.visible_campaigns(tenant, claim))
        )
        return {c for c in own if self.contact_influencer[c] in influencers}


def ids_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                yield item
            else:
                yield from ids_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from ids_in(item)


FRAGMENTS = {
    "...C": """fragment C on Campaign { id members(first: 5) { edges { node { id campaign { id }
      influencer { id contacts { id } } } } } }""",
    "...I": """fragment I on Influencer { id contacts { id influencer { id } }
      campaigns(first: 5) { edges { node { id } } } }""",
}


def document(parts: list[str]) -> str:
    body = "{ " + " ".join(f"q{i}: {part}" for i, part in enumerate(parts)) + " }"
    return " ".join([body, *(text for spread, text in FRAGMENTS.items() if spread in body)])


def queries(campaign_ids: list[str], contact_ids: list[str]) -> st.SearchStrategy[str]:
    campaign = st.sampled_from(campaign_ids)
    contact = st.sampled_from(contact_ids)
    parts = st.one_of(
        st.just("campaigns(first: 50) { edges { node { ...C } } }"),
        campaign.map(lambda c: f'campaign(id: "{c}") {{ ...C }}'),
        campaign.map(lambda c: f'campaign(id: "{c}") {{ ... on Campaign {{ id }} }}'),
        contact.map(lambda c: f'contact(id: "{c}") {{ id influencer {{ ...I }} }}'),
        st.just("influencers(first: 60) { edges { node { ...I } } }"),
        st.tuples(campaign, contact).map(
            lambda ids: (
                f'_entities(representations: [{{__typename: "Campaign", id: "{ids[0]}"}}, '
                f'{{__typename: "Contact", id: "{ids[1]}"}}]) {{ ... on Campaign {{ ...C }} '
                "... on Contact { id } }"
            )
        ),
    )
    return st.lists(parts, min_size=1, max_size=3, unique=True).map(document)


def test_no_row_of_another_tenant_or_campaign_ever_appears(tmp_path: Path) -> None:
    hub_settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=True,
    )
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        _app, client = loop.run_until_complete(stack.enter_async_context(running_app(hub_settings)))
        truth = Truth.read(tmp_path / "hub.db")
        all_campaigns = sorted(truth.campaign_tenant)
        all_contacts = sorted(truth.contact_tenant)
        claims = st.one_of(st.none(), st.lists(st.sampled_from(all_campaigns), max_size=3))

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            tenant=st.sampled_from(TENANTS),
            claim=claims,
            query=queries(all_campaigns, all_contacts),
        )
        def check(tenant: str, claim: list[str] | None, query: str) -> None:
            loop.run_until_complete(_check(client, truth, tenant, claim, query))

        check()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


async def _check(
    client: httpx.AsyncClient, truth: Truth, tenant: str, claim: list[str] | None, query: str
) -> None:
    from hub.auth import issue_token

    token = issue_token(
        Settings(jwt_secret=TEST_SECRET),
        subject="prop",
        tenant=tenant,
        roles=["manager"],
        campaigns=claim,
    )
    status, payload = await gql(client, query, token=token)
    assert status == 200, payload
    campaigns = truth.visible_campaigns(tenant, claim)
    contacts = truth.visible_contacts(tenant, claim)
    for row_id in ids_in(payload.get("data")):
        if row_id.startswith("cmp_"):
            assert row_id in campaigns, (row_id, query)
        elif row_id.startswith("mem_"):
            assert truth.member_campaign[row_id] in campaigns, (row_id, query)
        elif row_id.startswith("con_"):
            assert row_id in contacts, (row_id, query)
