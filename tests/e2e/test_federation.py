"""The hub composes as an Apollo Federation 2 subgraph and answers through the Apollo gateway,
with the same policies and consent as when it is asked directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from hub.auth import issue_token
from hub.settings import Settings
from tests.e2e.conftest import NodeRunner

SCRIPT = Path(__file__).with_name("federation.mjs")
CONTACT = "query ($id: ID!) { contact(id: $id) { id email influencer { handle } } }"


def _direct(base_url: str, token: str, query: str, variables: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.json()["data"]


def test_the_hub_composes_and_answers_through_the_apollo_gateway(
    live_server: str, run_node: NodeRunner
) -> None:
    token = issue_token(
        Settings(),
        subject="gateway",
        tenant="acme",
        roles=["manager"],
        purpose="campaign_management",
    )
    listing = _direct(
        live_server, token, "{ influencers(first: 50) { edges { node { contacts { id } } } } }", {}
    )
    contact_id = next(
        c["id"] for e in listing["influencers"]["edges"] for c in e["node"]["contacts"]
    )
    variables = {"id": contact_id}
    result = run_node(SCRIPT, f"{live_server}/graphql", token, json.dumps(variables))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["compositionErrors"] == []
    campaigns = answer["results"]["campaigns"]
    assert campaigns["errors"] is None
    assert campaigns["data"]["campaigns"]["totalCount"] == 6
    assert len(campaigns["data"]["campaigns"]["edges"]) == 2
    through_gateway = answer["results"]["contact"]["data"]
    assert through_gateway == _direct(live_server, token, CONTACT, variables)
    assert through_gateway["contact"]["id"] == contact_id
