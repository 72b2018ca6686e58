"""GraphiQL's page: in the demo with the demo token and an example that answers; else bare."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import httpx
import jwt

from hub.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, running_app


class _Root(HTMLParser):
    """The attributes of the element GraphiQL mounts on."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if found.get("id") == "graphiql":
            self.attrs = found


def _root(html: str) -> dict[str, str]:
    parser = _Root()
    parser.feed(html)
    return parser.attrs


async def _page(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    return response


async def test_the_demo_opens_with_its_token_and_an_example_query_that_answers(
    sqlite_client: httpx.AsyncClient,
) -> None:
    page = await _page(sqlite_client)
    root = _root(page.text)
    headers = json.loads(root["data-headers"])
    assert list(headers) == ["Authorization"]
    token = headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="influencer-hub")
    assert (claims["tenant"], claims["roles"], claims["client_id"]) == (
        "acme",
        ["manager"],
        "graphiql-demo",
    )
    assert page.headers["cache-control"] == "no-store"

    query = root["data-query"]
    assert "query DemoCampaigns" in query
    response = await sqlite_client.post(
        "/graphql", json={"query": query}, headers={"Authorization": headers["Authorization"]}
    )
    answer = response.json()
    assert response.status_code == 200 and "errors" not in answer, answer
    campaigns = answer["data"]["campaigns"]["edges"]
    assert campaigns and all(edge["node"]["members"]["edges"] for edge in campaigns)


async def test_outside_the_demo_the_page_holds_no_token(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=False,
    )
    async with running_app(settings) as (_app, client):
        page = await _page(client)
    root = _root(page.text)
    assert root["data-headers"] == "" and root["data-query"] == ""
    assert "Bearer ey" not in page.text and "eyJ" not in page.text
    assert "cache-control" not in page.headers


async def test_a_demo_without_a_secret_to_sign_with_serves_the_page_without_a_token(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret="",
        jwt_jwks_url="https://idp.example.com/jwks.json",
        demo=True,
    )
    async with running_app(settings) as (_app, client):
        page = await _page(client)
    assert _root(page.text)["data-headers"] == "" and "eyJ" not in page.text
