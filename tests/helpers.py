"""Small helpers shared by the tests: posting GraphQL and reading codes."""

from __future__ import annotations

import json
from typing import Any

import httpx


async def gql(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
    accept: str = "application/graphql-response+json",
) -> tuple[int, dict[str, Any]]:
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers["Content-Type"] = "application/json"
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    # ASCII JSON, as `json.dumps` writes it: lone surrogates travel as `\ud800` escapes.
    response = await client.post("/graphql", content=json.dumps(body), headers=headers)
    payload: dict[str, Any] = response.json()
    return response.status_code, payload


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in payload.get("errors", [])]
