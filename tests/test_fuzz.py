"""Property (SPEC §9): whatever document, variables and caller, no answer is a server error.

Requests are drawn from the schema (tests/fuzzing/), so that a field added tomorrow is
fuzzed without touching this file: every argument site in turn with each hostile value,
and documents drawn by Hypothesis around each root field and mutation."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.fuzzing.documents import requests, send
from tests.fuzzing.sites import sweep
from tests.fuzzing.values import Pools, one_in

FUZZ = hypothesis_settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
"""Per root field: deterministic (derandomized, a fixed number of examples), so that CI is
repeatable."""

SCHEMA = build_schema(Settings())._schema
assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
ROOTS = [*SCHEMA.query_type.fields, *SCHEMA.mutation_type.fields]

CALLERS: list[dict[str, Any] | None] = [
    {"roles": ["manager"]},
    None,
    {"roles": ["analyst"], "purpose": "analytics"},
    {"roles": ["manager"], "tenant": "globex", "campaigns": []},
    {
        "roles": ["partner"],
        "scopes": ["influencers:read", "contacts:read"],
        "purpose": "partner_outreach",
    },
    {"roles": ["dpo"]},
]
EVERYTHING = {"roles": ["admin", "dpo"]}
"""A caller who may use every field: the hostile value, not a refusal, meets the code."""


@dataclass(repr=False)  # failing examples print it
class Served:
    """The app on a loop of its own, shared by the fuzz tests of this module."""

    schema: GraphQLSchema
    pools: Pools
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    serial: Iterator[int]

    def check(
        self,
        body: dict[str, Any],
        caller: dict[str, Any] | None,
        make_token: MakeToken,
        caplog: pytest.LogCaptureFixture,
        *,
        deep: int | None = None,
        accept: str = "application/graphql-response+json",
        get: bool = False,
        key: str | None = None,
    ) -> str | None:
        """What is wrong with the answer to `body` (a server error in it or in the log, an
        error without a code), if anything."""
        headers = {"Accept": accept, "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if caller is not None:
            # A client of its own per request: no budget is shared between requests.
            claims = {**caller, "client_id": f"fuzz-{next(self.serial)}"}
            headers["Authorization"] = f"Bearer {make_token(**claims)}"
        caplog.clear()
        sent = send(self.client, body, headers, deep=deep, get=get)
        response = self.loop.run_until_complete(sent)
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        if response.status_code >= 500 or logged:
            return f"HTTP {response.status_code}, logged {logged}: {response.text[:300]}"
        for error in response.json().get("errors") or []:
            code = error.get("extensions", {}).get("code")
            if code is None or code == "INTERNAL_SERVER_ERROR":
                return f"{code}: {error}"
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app with demo data on a SQLite file, for every test of this module."""
    database = tmp_path_factory.mktemp("fuzz") / "hub.db"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=True,
        response_cache_ttl_s=30,  # kept answers are a path of their own
    )
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        app, client = loop.run_until_complete(stack.enter_async_context(running_app(settings)))
        schema = app.state.hub.schema._schema
        yield Served(schema, Pools.read(str(database)), loop, client, itertools.count())
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def test_every_argument_meets_every_hostile_value_without_a_server_error(
    served: Served, make_token: MakeToken, caplog: pytest.LogCaptureFixture
) -> None:
    """Each argument site of the schema in turn, each position inside its arguments, each
    hostile value for that position; the rest plain, so that the value reaches the code."""
    problems = []
    for placed, body in sweep(served.schema, served.pools):
        problem = served.check(body, EVERYTHING, make_token, caplog)
        if problem is not None:
            problems.append(f"{placed}: {problem}")
    assert not problems, "\n".join(problems)


# A failing example's report holds its 70 kB strings; Hypothesis warns about such reprs.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize("root", ROOTS)
@FUZZ
@given(
    data=st.data(),
    caller=st.sampled_from(CALLERS),
    deep=st.sampled_from([None] * 8 + [50, 900, 5000]),
    accept=st.sampled_from(["application/graphql-response+json", "application/json"]),
    get=one_in(10).map(lambda n: n == 9),
    key=st.sampled_from([None, None, None, "fuzz-key", "fuzz-other", "bad key!", "x" * 300]),
)
def test_no_drawn_request_gets_a_server_error(
    served: Served,
    make_token: MakeToken,
    caplog: pytest.LogCaptureFixture,
    root: str,
    data: st.DataObject,
    caller: dict[str, Any] | None,
    deep: int | None,
    accept: str,
    get: bool,
    key: str | None,
) -> None:
    """Documents drawn around `root` (odd aliases and fragments, deep nesting, hostile
    values, variables and shapes), each sent by a caller who may use everything and by
    one drawn from the others, now and then with an `Idempotency-Key`."""
    body = data.draw(requests(served.schema, served.pools, root), label="body")
    for who in (EVERYTHING, caller):
        problem = served.check(
            body, who, make_token, caplog, deep=deep, accept=accept, get=get, key=key
        )
        assert problem is None, (who, problem)
