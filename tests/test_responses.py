"""The response cache: an answer goes back only to its own caller, until the next write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from hub import responses as responses_module
from hub.auth import Principal
from hub.context import Context
from hub.errors import SourceUnavailable
from hub.ids import new_id
from hub.observability.metrics import Metrics
from hub.responses import Answer, ResponseCache
from hub.settings import Settings
from hub.sources.cache import Cache, create_cache
from hub.store.tables import ConsentRow
from tests.conftest import MakeToken, running_app
from tests.helpers import gql

CAMPAIGNS = "{ campaigns(first: 3) { edges { node { id name } } } }"
RENAME = """mutation ($id: ID!, $name: String!) {
  updateCampaign(id: $id, input: {name: $name}) { id name } }"""


CALLER = Principal("u", "acme", frozenset(), frozenset(), None, None, "c")


def _responses(cache: Cache, *, fingerprint: str = "rules") -> ResponseCache:
    return ResponseCache(cache, ttl_s=60, fingerprint=fingerprint, metrics=Metrics())


@pytest.fixture
async def kept(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The hub keeping answers for a minute, on either database."""
    async with running_app(settings.model_copy(update={"response_cache_ttl_s": 60.0})) as pair:
        yield pair


def _lookups(app: Starlette) -> dict[str, float]:
    metrics = app.state.hub.metrics
    return {
        result: metrics.value("hub_response_cache_lookups_total", result=result)
        for result in ("hit", "miss")
    }


async def test_the_same_question_of_the_same_caller_is_answered_from_the_cache(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    token = make_token()
    _, first = await gql(client, CAMPAIGNS, token=token)
    _, second = await gql(client, CAMPAIGNS, token=token)
    assert second["data"] == first["data"]
    assert _lookups(app) == {"hit": 1, "miss": 1}
    # A kept answer still costs what the question costs.
    for cost in ("requestedQueryCost", "actualQueryCost"):
        assert second["extensions"]["cost"][cost] == first["extensions"]["cost"][cost] > 0


async def test_answers_are_not_shared_between_callers_or_variables(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    callers = [
        make_token(),
        make_token(subject="someone-else"),
        make_token(tenant="globex"),
        make_token(purpose="analytics"),
        make_token(roles=["analyst"]),
    ]
    answers = [(await gql(client, CAMPAIGNS, token=token))[1] for token in callers]
    assert _lookups(app) == {"hit": 0, "miss": len(callers)}
    assert answers[0]["data"] != answers[2]["data"]  # another tenant's campaigns
    query = "query ($n: Int) { campaigns(first: $n) { edges { node { id } } } }"
    _, one = await gql(client, query, token=callers[0], variables={"n": 1})
    _, two = await gql(client, query, token=callers[0], variables={"n": 2})
    assert (len(one["data"]["campaigns"]["edges"]), len(two["data"]["campaigns"]["edges"])) == (
        1,
        2,
    )


async def test_a_mutation_empties_the_cache_and_the_next_read_sees_it(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    token = make_token()
    _, before = await gql(client, CAMPAIGNS, token=token)
    campaign = before["data"]["campaigns"]["edges"][0]["node"]
    await gql(client, CAMPAIGNS, token=token)
    _, renamed = await gql(
        client, RENAME, token=token, variables={"id": campaign["id"], "name": "Renamed"}
    )
    assert renamed["data"]["updateCampaign"]["name"] == "Renamed"
    _, after = await gql(client, CAMPAIGNS, token=token)
    assert after["data"]["campaigns"]["edges"][0]["node"] == {
        "id": campaign["id"],
        "name": "Renamed",
    }
    assert _lookups(app) == {"hit": 1, "miss": 2}


async def test_a_withdrawal_drops_kept_answers_when_it_commits(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, _client = kept
    responses = app.state.hub.responses
    key = responses.key(CALLER, "{ a }", None, None)
    await responses.put(key, Answer({"a": 1}, []), read_at=responses.clock.time(), valid_until=None)
    assert await responses.get(key) is not None
    context = Context(
        settings=app.state.hub.settings,
        principal=CALLER,
        store=app.state.hub.store,
        responses=responses,
    )
    await context.forget_subject("ct_any")  # what consent writes and erasure call at commit
    assert await responses.get(key) is None


async def test_answers_with_errors_and_the_access_log_are_never_kept(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    failing = '{ campaigns(first: 1) { totalCount } campaign(id: "cmp_nope") { id } }'
    for _ in range(2):
        _, payload = await gql(client, failing, token=make_token())
        assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert _lookups(app) == {"hit": 0, "miss": 2}
    dpo = make_token(roles=["dpo", "manager"])
    _, contacts = await gql(
        client, "{ influencers(first: 5) { edges { node { contacts { id } } } } }", token=dpo
    )
    contact_id = next(
        c["id"] for e in contacts["data"]["influencers"]["edges"] for c in e["node"]["contacts"]
    )
    log = f'{{ personalDataAccessLog(contactId: "{contact_id}") {{ totalCount }} }}'
    counts = []
    for _ in range(2):
        await app.state.hub.audit.flush()
        _, payload = await gql(client, log, token=dpo)
        counts.append(payload["data"]["personalDataAccessLog"]["totalCount"])
        await gql(client, f'{{ contact(id: "{contact_id}") {{ email }} }}', token=dpo)
    assert counts[1] == counts[0] + 1  # the read in between, not a kept count
    # Looked up: the failing question twice, the listing, the contact twice (kept once).
    assert _lookups(app) == {"hit": 1, "miss": 4}


async def test_an_answer_is_not_kept_past_the_expiry_of_a_consent_it_relied_on(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    token = make_token()
    _, listing = await gql(
        client,
        "{ influencers(first: 20) { edges { node { contacts { id email } } } } }",
        token=token,
    )
    masked = next(
        c
        for e in listing["data"]["influencers"]["edges"]
        for c in e["node"]["contacts"]
        if c["email"] and "***" in c["email"]
    )
    now = datetime.now(UTC)
    # Granted a while ago: answers about a subject changed within the replicas' clock skew
    # of their reading are not served from the cache.
    granted_at = now - timedelta(seconds=2 * responses_module.CLOCK_SKEW_S)
    await app.state.hub.store.insert(
        ConsentRow(
            id=new_id("consent"),
            tenant_id="acme",
            contact_id=masked["id"],
            purpose="campaign_management",
            status="GRANTED",
            lawful_basis="consent",
            granted_at=granted_at,
            expires_at=now + timedelta(seconds=1.5),
            source="test",
            recorded_at=granted_at,
        )
    )
    query = f'{{ contact(id: "{masked["id"]}") {{ id email }} }}'
    _, shown = await gql(client, query, token=token)
    assert "***" not in shown["data"]["contact"]["email"]
    _, again = await gql(client, query, token=token)
    assert again["data"] == shown["data"]
    assert _lookups(app)["hit"] == 1
    await asyncio.sleep(1.6)
    _, expired = await gql(client, query, token=token)
    assert expired["data"]["contact"]["email"] == masked["email"]


async def test_an_answer_read_while_a_mutation_committed_is_not_kept() -> None:
    responses = _responses(create_cache("memory://", namespace="test"))
    key = responses.key(CALLER, "{ a }", None, None)
    answer = Answer({"a": 1}, [("Contact.email", "ct_1", "allowed", None)])
    read_at = responses.clock.time()
    await asyncio.sleep(0.01)
    await responses.forget_all()  # a mutation finished after the read began
    await responses.put(key, answer, read_at=read_at, valid_until=None)
    assert await responses.get(key) is None
    await responses.put(key, answer, read_at=responses.clock.time(), valid_until=None)
    kept = await responses.get(key)
    assert kept is not None
    assert (kept.data, list(kept.decisions)) == ({"a": 1}, list(answer.decisions))
    past = datetime.now(UTC) - timedelta(seconds=1)
    other = responses.key(CALLER, "{ b }", None, None)
    await responses.put(other, answer, read_at=responses.clock.time(), valid_until=past)
    assert await responses.get(other) is None


def test_keys_differ_by_every_claim_and_the_rules() -> None:
    cache = create_cache("memory://", namespace="test")
    base = Principal("u", "acme", frozenset({"manager"}), frozenset(), None, "p", "c")
    changed: list[dict[str, Any]] = [
        {"subject": "v"},
        {"tenant": "globex"},
        {"roles": frozenset({"analyst"})},
        {"scopes": frozenset({"contacts:read"})},
        {"campaigns": frozenset({"cmp_1"})},
        {"purpose": "analytics"},
        {"client_id": "other"},
    ]
    responses = _responses(cache)
    keys = {responses.key(base, "{ a }", None, None)}
    for change in changed:
        fields = {**{f: getattr(base, f) for f in base.__slots__}, **change}
        keys.add(responses.key(Principal(**fields), "{ a }", None, None))
    keys.add(responses.key(base, "{ a }", "A", None))
    keys.add(responses.key(base, "{ a }", None, {"x": 1}))
    other_rules = _responses(cache, fingerprint="other")
    keys.add(other_rules.key(base, "{ a }", None, None))
    assert len(keys) == len(changed) + 4


class _Unreachable:
    """A shared cache whose purges fail while `down` is set."""

    def __init__(self) -> None:
        self.inner = create_cache("memory://", namespace="test")
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def purge_tag(self, tag: str) -> int:
        if self.down:
            raise SourceUnavailable("cache", "unreachable")
        result: int = await self.inner.purge_tag(tag)
        return result


async def test_a_failed_drop_serves_and_keeps_nothing_until_a_retry_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(responses_module, "RETRY_S", 0.01)
    cache = _Unreachable()
    responses = _responses(cache)
    key = responses.key(CALLER, "{ a }", None, None)
    answer = Answer({"a": 1}, [])
    await responses.put(key, answer, read_at=responses.clock.time(), valid_until=None)
    cache.down = True
    await responses.forget_all()  # the write stands: no error
    assert await responses.get(key) is None  # the old answer is not served
    await responses.put(key, answer, read_at=responses.clock.time(), valid_until=None)
    await asyncio.sleep(0.05)
    assert await responses.get(key) is None  # still down: nothing served or kept
    cache.down = False
    await asyncio.sleep(0.05)  # the retry drops everything
    assert await responses.get(key) is None  # the old answer went with the drop
    await responses.put(key, answer, read_at=responses.clock.time(), valid_until=None)
    assert await responses.get(key) is not None
    await responses.aclose()
