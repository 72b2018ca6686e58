"""Nested lists cost a fixed number of SQL statements, whatever their length."""

from __future__ import annotations

from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event

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


async def _statements(settings: Settings, token: str, first: int) -> tuple[int, dict[str, Any]]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        engine = app.state.hub.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            status, payload = await gql(client, NESTED, token=token, variables={"first": first})
        event.remove(engine, "before_cursor_execute", count)
    assert status == 200, payload
    return len(statements), payload


async def test_sql_statements_do_not_grow_with_the_list(
    settings: Settings, make_token: MakeToken
) -> None:
    token = make_token()
    small, small_payload = await _statements(settings, token, 5)
    large, large_payload = await _statements(settings, token, 50)
    assert len(small_payload["data"]["influencers"]["edges"]) == 5
    assert len(large_payload["data"]["influencers"]["edges"]) == 50
    nested = [
        edge["node"]["campaigns"]["edges"] for edge in large_payload["data"]["influencers"]["edges"]
    ]
    assert any(nested), "the 50 influencers must reach campaigns for the count to mean anything"
    assert small == large
    assert large <= 10
