"""Values the fuzzer sends: hostile ones per scalar, plain ones per argument name, and the
ids and cursors of the demo store that let a request reach the code behind its checks."""

from __future__ import annotations

import base64
import contextlib
import functools
import sqlite3
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


def opaque(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x1fb",
    "\x7f",
    "\u0085",
    "\u202e\ufeff",
    "\ud800",
    "a\udfffb",
    "\U0001f600",
    "é" * 300,
    "x" * 70_000,
    "'; drop table contacts; --",
    "%s%n{0}",
    "null",
    "__typename",
]
HOSTILE_CURSORS = [
    opaque("v1:n:\u00b2"),
    opaque("v1:n:" + "9" * 5000),
    opaque("v1:n:-1"),
    opaque("v1:n:99999999999999999999"),
    opaque("v1:n:2147483648"),
    opaque("v1:n:3"),
    opaque("v1:inf_zzzzzzzzzzzzzzzz"),
    opaque("v1:a|b|c"),
    opaque("v1:2026-01-01|inf_0000000000000000|instagram"),
    opaque("v1:\ud800"),
    opaque(b"\xff\xfe"),
    "!!!",
    "=",
    "\ud800",
    "A" * 10_000,
]
HOSTILE_NUMBERS: list[Any] = [
    0,
    1,
    -1,
    3,
    100,
    101,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    10**40,
    -(10**300),
    1.0,
    1.5,
    1e308,
    float("nan"),  # JSON has no NaN or Infinity; Python's `json` reads both
    float("-inf"),
    True,
    "5",
]
HOSTILE_DECIMALS: list[Any] = [
    "12.34",
    "0",
    "-1",
    "0.001",
    "1e999999999",
    "-1E-999999999",
    "NaN",
    "sNaN",
    "Infinity",
    "9" * 5000,
    "\ud800",
    "",
    12.5,
    10**30,
]
HOSTILE_DATES: list[Any] = [
    "2026-01-01",
    "2026-03-31",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "2026-1-1",
    "+12026-01-01",
    "2026-01-01T00:00:00Z",
    "2026-01-01T25:00:00+99:00",
    "\ud800",
    20260101,
]
HOSTILE_IDS: list[Any] = [
    "",
    "con_",
    "con_zzzzzzzzzzzzzzzz",
    "con_0000000000000000",
    "cmp_0000000000000000",
    "inf_\ud800",
    "x" * 10_000,
    12345,
]
PLAIN_TEXT = ["Spring launch", "Acme", "PL", "instagram", "a@b.test", "+48 600 000 000", "EUR"]
PURPOSES = ["campaign_management", "analytics", "partner_outreach"]
ENTITY_NAMES = ["Contact", "Campaign", "Influencer", "Query"]


@functools.cache
def one_in(n: int) -> st.SearchStrategy[int]:
    return st.integers(0, n - 1)


KINDS = ("influencer", "campaign", "member", "contact")
"""Id kinds, recognised in argument and field names (`contactId`, `campaign(id:)`)."""


def kind_in(hint: str) -> str | None:
    return next((kind for kind in KINDS if kind in hint), None)


@dataclass(repr=False)  # failing examples print it
class Pools:
    """What values are drawn from: ids and cursors of the demo tenant `acme`, plain values of
    each scalar and hostile ones; the strategies are made once, not per draw."""

    real: dict[str, list[str]]
    ids: dict[str, st.SearchStrategy[str]]
    cursors: dict[str, st.SearchStrategy[str]]
    plain: dict[str, st.SearchStrategy[Any]]
    hostile: dict[str, st.SearchStrategy[Any]]
    anything: st.SearchStrategy[Any]

    @classmethod
    def read(cls, database: str) -> Pools:
        queries = {
            "influencer": "select id from influencers",
            "campaign": "select id from campaigns where tenant_id = 'acme'",
            "member": "select m.id from campaign_members m join campaigns c"
            " on c.id = m.campaign_id where c.tenant_id = 'acme'",
            "contact": "select id from contacts where tenant_id = 'acme'",
        }
        with contextlib.closing(sqlite3.connect(database)) as db:
            real = {
                kind: [row_id for (row_id,) in db.execute(f"{query} order by 1 limit 4")]
                for kind, query in queries.items()
            }
        every = [row_id for ids in real.values() for row_id in ids]
        ids = {kind: st.sampled_from(found) for kind, found in real.items()}
        ids[""] = st.sampled_from(every)
        cursors = {
            kind: st.sampled_from([opaque(f"v1:{i}") for i in found])
            for kind, found in real.items()
        }
        cursors[""] = st.sampled_from(
            [opaque("v1:n:1"), opaque("v1:n:0"), opaque(f"v1:{every[0]}")]
        )
        text = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=8)
        leaves = st.one_of(
            st.none(), st.booleans(), st.sampled_from(HOSTILE_NUMBERS), st.floats(), text
        )
        anything = st.recursive(
            leaves,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
            max_leaves=8,
        )
        plain = {
            "String": st.sampled_from(PLAIN_TEXT),
            "Int": st.integers(0, 50),
            "Float": st.floats(0, 1),
            "Boolean": st.booleans(),
            "Decimal": st.sampled_from(["12.34", "0", "100"]),
            "Date": st.sampled_from(["2026-01-01", "2026-02-01", "2026-03-31"]),
            "DateTime": st.sampled_from(["2026-01-01T00:00:00Z"]),
            "_Any": st.fixed_dictionaries(
                {"__typename": st.sampled_from(ENTITY_NAMES[:3]), "id": ids[""]}
            ),
        }
        numbers = st.sampled_from(HOSTILE_NUMBERS)
        hostile = {
            "ID": st.sampled_from(HOSTILE_IDS) | ids[""] | text,
            "String": text,
            "Int": numbers,
            "Float": numbers | st.floats(),
            "Boolean": numbers,
            "Decimal": st.sampled_from(HOSTILE_DECIMALS),
            "Date": st.sampled_from(HOSTILE_DATES),
            "DateTime": st.sampled_from(HOSTILE_DATES),
            "_Any": st.fixed_dictionaries(
                {"__typename": st.sampled_from(ENTITY_NAMES), "id": st.sampled_from(HOSTILE_IDS)}
            ),
        }
        return cls(real, ids, cursors, plain, hostile, anything)

    def fitting(self, scalar: str, hint: str) -> st.SearchStrategy[Any]:
        """A plain value for an argument or input field, by its scalar and its name."""
        kind = kind_in(hint) or ""
        if scalar == "ID":
            return self.ids[kind]
        if scalar == "String" and "after" in hint:
            return self.cursors[kind]
        if scalar == "String" and "purpose" in hint:
            return st.sampled_from(PURPOSES)
        return self.plain.get(scalar, self.anything)

    def hostile_for(self, scalar: str, hint: str) -> st.SearchStrategy[Any]:
        if scalar == "String" and "after" in hint:
            return st.sampled_from(HOSTILE_CURSORS)
        return self.hostile.get(scalar, self.anything)
