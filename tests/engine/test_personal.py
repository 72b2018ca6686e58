"""Personal data is read only for objects no failing field above is about to null."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import strawberry

from hub.engine.fallback import QueryEngine
from hub.observability.metrics import Metrics
from hub.schema.schema import HubSchema

READ: list[str] = []
"""Each personal value read, as a consent-checked resolver would decide and audit it."""
STARTED: list[str] = []
"""Each value of a field that is not personal, read."""


@strawberry.type
class Person:
    name: str

    @strawberry.field
    async def email(self) -> str | None:
        READ.append(self.name)
        return f"{self.name}@example.com"

    @strawberry.field
    async def nick(self) -> str:
        STARTED.append(self.name)
        return self.name

    @strawberry.field
    async def friends(self) -> list[Person]:
        return [Person(name=f"{self.name}-friend")]


@strawberry.type
class Account:
    ok: bool

    @strawberry.field
    async def figure(self) -> int:
        await asyncio.sleep(0.01)
        if not self.ok:
            raise ValueError("no figure")
        return 1


@strawberry.type
class Profile:
    ok: bool

    @strawberry.field
    async def accounts(self) -> list[Account]:
        await asyncio.sleep(0.01)  # after `people` is in
        if not self.ok:
            raise ValueError("accounts unavailable")
        return [Account(ok=True)]

    @strawberry.field
    async def people(self) -> list[Person]:
        return [Person(name=f"p{int(self.ok)}")]


@strawberry.type
class Query:
    @strawberry.field
    async def profiles(self) -> list[Profile | None]:
        return [Profile(ok=False), Profile(ok=True)]

    @strawberry.field
    async def profile(self) -> Profile | None:
        return Profile(ok=False)


SCHEMA = HubSchema(query=Query)


async def run(query: str, *, planned: bool) -> tuple[dict[str, Any], list[str]]:
    READ.clear()
    STARTED.clear()
    engine = QueryEngine(batches={}, metrics=Metrics(), personal=frozenset({"Person.email"}))
    context = SimpleNamespace(
        query_engine=engine if planned else None,
        denied=frozenset(),
        denials=set(),
        granted=frozenset(),
        principal=SimpleNamespace(is_anonymous=False),
        resolved=None,
        audit=None,
    )
    result = await SCHEMA.execute(query, context_value=context)
    errors = sorted(json.dumps(error.formatted, sort_keys=True) for error in result.errors or ())
    return {"data": result.data, "errors": errors}, sorted(READ)


async def test_no_personal_value_is_read_for_an_object_a_failing_sibling_nulls() -> None:
    query = "{ profiles { accounts { ok } people { name email } } }"
    answer, read = await run(query, planned=True)
    assert answer["data"] == {
        "profiles": [
            None,
            {"accounts": [{"ok": True}], "people": [{"name": "p1", "email": "p1@example.com"}]},
        ]
    }
    assert read == ["p1"]
    assert answer == (await run(query, planned=False))[0]


async def test_the_wait_reaches_every_level_above() -> None:
    query = "{ profile { accounts { ok } people { friends { email } } } }"
    answer, read = await run(query, planned=True)
    assert answer["data"] == {"profile": None}
    assert read == []


async def test_a_selection_without_personal_data_does_not_wait() -> None:
    answer, _ = await run("{ profiles { accounts { ok } people { nick } } }", planned=True)
    assert answer["data"]["profiles"][1]["people"] == [{"nick": "p1"}]
    assert sorted(STARTED) == ["p0", "p1"]  # p0's read before its profile was nulled
