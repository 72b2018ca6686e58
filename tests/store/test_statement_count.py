"""Nested lists cost a fixed number of SQL statements, whatever their length."""

from __future__ import annotations

from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub.app import create_app
from hub.settings import Settings
from tests.conftest import MakeToken
from tests.helpers import gql

NESTED = """
query ($first: Int) {
  influencers(first: $first) {
    totalCount
    edges { node {
      handle
      accounts { platform username }
      contacts { email consents { purpose status } }
      campaigns(first: 3) { totalCount edges { node {
        name
        members(first: 2) { totalCount edges { node { influencer { handle } } } }
      } } }
    } }
  }
}
"""


async def _statements(
    settings: Settings, token: str, first: int, spans: InMemorySpanExporter
) -> tuple[list[str], dict[str, Any]]:
    """The statements one request ran (each a span, whichever engine and path ran it)."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        spans.clear()
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            status, payload = await gql(client, NESTED, token=token, variables={"first": first})
        statements = [
            str(span.attributes["db.statement"])
            for span in spans.get_finished_spans()
            if span.attributes and "db.statement" in span.attributes
        ]
    assert status == 200, payload
    return statements, payload


async def test_sql_statements_do_not_grow_with_the_list(
    settings: Settings, make_token: MakeToken, spans: InMemorySpanExporter
) -> None:
    token = make_token()
    small, small_payload = await _statements(settings, token, 5, spans)
    large, large_payload = await _statements(settings, token, 50, spans)
    assert len(small_payload["data"]["influencers"]["edges"]) == 5
    assert len(large_payload["data"]["influencers"]["edges"]) == 50
    nested = [
        edge["node"]["campaigns"]["edges"] for edge in large_payload["data"]["influencers"]["edges"]
    ]
    assert any(nested), "the 50 influencers must reach campaigns for the count to mean anything"
    # The reads of every level: influencers and their count, accounts, contacts, consents,
    # campaigns and their counts, members and their counts, members' influencers.
    read = " ".join(large)
    for table in ("influencers", "platform_accounts", "contacts", "consents", "campaign_members"):
        assert f"FROM {table}" in read
    assert len(small) == len(large)
    assert len(large) <= 10
