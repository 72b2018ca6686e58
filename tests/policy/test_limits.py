"""Operation limits at and over each value, fragment cycles, and attack documents, as tables."""

from __future__ import annotations

import pytest
import yaml
from graphql import get_introspection_query, parse

from hub.errors import CostTooExpensive, HubError, QueryTooComplex
from hub.policy.cost import estimate_cost, parse_cost_policy
from hub.policy.limits import Limits, check_limits, check_tokens, count_tokens, measure
from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT

SCHEMA = build_schema(Settings())._schema
POLICY = parse_cost_policy(
    yaml.safe_load((ROOT / "policies" / "cost.yaml").read_text()), schema=SCHEMA
)
DEFAULT = Limits()


def nest(path: list[str], leaf: str, depth: int) -> str:
    """`depth` fields along `path` (repeated as needed), then `leaf`."""
    text = leaf
    for level in reversed(range(depth)):
        text = f"{path[level % len(path)]} {{ {text} }}"
    return "{ " + text + " }"


# Campaign > member > influencer > campaign ...: a path that is valid at any depth.
HOPS = ["campaigns", "edges", "node", "members", "edges", "node", "influencer"]
# The campaign dashboard of cost.yaml's comment: each member's contacts' consents.
TEN_DEEP = nest([*HOPS, "contacts", "consents"], "status", 9)
ELEVEN_DEEP = nest([*HOPS, "campaigns", "edges", "node"], "id", 10)
OF_TYPE = "{ __schema { types { fields { args { type { %s } } } } } }"


def of_type(levels: int) -> str:
    return OF_TYPE % ("ofType { " * levels + "name" + " }" * levels)


def fields(count: int, text: str) -> str:
    return " ".join(text.format(n=n) for n in range(count))


@pytest.mark.parametrize(
    ("query", "limits", "operation_name", "refused"),
    [
        (TEN_DEEP, DEFAULT, None, None),
        (ELEVEN_DEEP, DEFAULT, None, (10, 11)),
        (ELEVEN_DEEP, Limits(max_depth=11), None, None),
        # Depth is counted through fragments and inline fragments.
        (
            "{ campaigns { ...C } } fragment C on CampaignConnection { edges { node { ... on "
            "Campaign { members { edges { node { influencer { campaigns { edges { node { id "
            "} } } } } } } } } } }",
            DEFAULT,
            None,
            (10, 11),
        ),
        ("{ me { " + fields(15, "a{n}: subject") + " } }", DEFAULT, None, None),
        ("{ me { " + fields(16, "a{n}: subject") + " } }", DEFAULT, None, (15, 16)),
        # Aliases inside a fragment count once per use.
        (
            "{ me { ...V ...V } } fragment V on Viewer { " + fields(8, "a{n}: subject") + " }",
            DEFAULT,
            None,
            (15, 16),
        ),
        ("{ " + fields(10, "me {{ subject }}") + " }", DEFAULT, None, None),
        ("{ " + fields(11, "me {{ subject }}") + " }", DEFAULT, None, (10, 11)),
        (
            "{ ...Q } fragment Q on Query { " + fields(11, "me {{ subject }}") + " }",
            DEFAULT,
            None,
            (10, 11),
        ),
        ("{ me { " + fields(50, "subject @include(if: true)") + " } }", DEFAULT, None, None),
        ("{ me { " + fields(51, "subject @include(if: true)") + " } }", DEFAULT, None, (50, 51)),
        ("query Q @a { me { " + fields(50, "subject @b") + " } }", DEFAULT, None, (50, 51)),
        (
            "{ me { " + fields(100, "...V") + " } } fragment V on Viewer { subject }",
            DEFAULT,
            None,
            None,
        ),
        (
            "{ me { " + fields(101, "...V") + " } } fragment V on Viewer { subject }",
            DEFAULT,
            None,
            (100, 101),
        ),
        # The standard introspection query is 15 deep; one more `ofType` is refused.
        (get_introspection_query(), DEFAULT, None, None),
        (of_type(9), DEFAULT, None, None),
        (of_type(10), DEFAULT, None, (15, 16)),
        # A data query may not hide behind introspection's higher ceiling.
        ("{ __typename " + ELEVEN_DEEP[1:], DEFAULT, None, (10, 11)),
        # The selected operation is measured; without a name, every operation is.
        ("query Small { me { subject } } query Deep " + ELEVEN_DEEP, DEFAULT, "Small", None),
        ("query Small { me { subject } } query Deep " + ELEVEN_DEEP, DEFAULT, "Deep", (10, 11)),
        ("query Small { me { subject } } query Deep " + ELEVEN_DEEP, DEFAULT, None, (10, 11)),
        # An unknown fragment is validation's business; its spread still counts.
        ("{ me { ...Missing } }", Limits(max_fragment_spreads=0), None, (0, 1)),
        # Fields of one selection set, repeats and those of its fragments included.
        ("{ me { " + fields(100, "subject") + " } }", DEFAULT, None, None),
        ("{ me { " + fields(101, "subject") + " } }", DEFAULT, None, (100, 101)),
        (
            "{ me { "
            + fields(60, "subject")
            + " ...V } } fragment V on Viewer { "
            + fields(41, "tenant")
            + " }",
            DEFAULT,
            None,
            (100, 101),
        ),
        (
            "{ me { "
            + fields(60, "subject")
            + " ... on Viewer { "
            + fields(41, "roles")
            + " } } }",
            DEFAULT,
            None,
            (100, 101),
        ),
    ],
)
def test_each_limit_at_and_over_its_value(
    query: str, limits: Limits, operation_name: str | None, refused: tuple[int, int] | None
) -> None:
    document = parse(query)
    if refused is None:
        check_limits(document, limits, operation_name=operation_name)
        return
    with pytest.raises(QueryTooComplex) as raised:
        check_limits(document, limits, operation_name=operation_name)
    assert (raised.value.details["limit"], raised.value.details["actual"]) == refused


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (ELEVEN_DEEP, "The query is 11 levels deep; the limit is 10."),
        (of_type(10), "The introspection is 16 levels deep; the limit is 15."),
        (
            "{ me { " + fields(16, "a{n}: subject") + " } }",
            "The query has 16 aliases; the limit is 15.",
        ),
    ],
)
def test_the_message_says_which_limit(query: str, message: str) -> None:
    with pytest.raises(QueryTooComplex) as raised:
        check_limits(parse(query), DEFAULT, operation_name=None)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("query", "cycle"),
    [
        ("{ ...A } fragment A on Query { ...A }", "A → A"),
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { me { ...C } }"
            " fragment C on Viewer { ...A }",
            "A → B → C → A",
        ),
        # A cycle among fragments no operation uses is refused too.
        (
            "{ me { subject } } fragment X on Viewer { ...Y } fragment Y on Viewer { ...X }",
            "X → Y → X",
        ),
    ],
)
def test_a_fragment_cycle_is_refused_naming_it(query: str, cycle: str) -> None:
    with pytest.raises(QueryTooComplex) as raised:
        check_limits(parse(query), DEFAULT, operation_name=None)
    assert raised.value.message == f"Fragments may not spread themselves: {cycle}."
    assert raised.value.extensions == {"code": "QUERY_TOO_COMPLEX", "limit": 0, "actual": 1}


@pytest.mark.parametrize(
    ("query", "limit", "count"),
    [
        ("{ me { subject } }", 100, 6),
        # `$n` is two tokens; commas are not tokens.
        ('query Q($n: Int = 3) { influencers(first: $n, after: "x") { totalCount } }', 100, 25),
        # Comments count: padding with them is no way around the limit.
        ("# one\n# two\n{ me { subject } }", 100, 8),
        # Counting stops one past the limit.
        ("{ me { " + "subject " * 10_000 + "} }", 1000, 1001),
        ("{ me { subject } }", 3, 4),
        # A document that does not lex: the count so far, the parser reports the error.
        ("{ me { subject } } ~ ~", 100, 6),
        ("", 100, 0),
    ],
)
def test_count_tokens(query: str, limit: int, count: int) -> None:
    assert count_tokens(query, limit=limit) == count


@pytest.mark.parametrize(
    ("max_tokens", "refused"),
    [(6, None), (5, (5, 6))],
)
def test_the_token_limit_at_and_over_its_value(
    max_tokens: int, refused: tuple[int, int] | None
) -> None:
    limits = Limits(max_tokens=max_tokens)
    if refused is None:
        check_tokens("{ me { subject } }", limits)
        return
    with pytest.raises(QueryTooComplex) as raised:
        check_tokens("{ me { subject } }", limits)
    assert (raised.value.details["limit"], raised.value.details["actual"]) == refused
    assert raised.value.message == f"The query has more than {max_tokens} tokens."


def test_the_shape_of_the_standard_introspection_query() -> None:
    shape = measure(parse(get_introspection_query()), operation_name=None)
    assert (shape.depth, shape.introspection_depth, shape.root_fields) == (0, 15, 1)
    assert (shape.aliases, shape.directives, shape.fragment_spreads) == (0, 0, 10)


FOUR_DEEP = nest(
    [
        "influencers(first: 100)",
        "edges",
        "node",
        "campaigns(first: 100)",
        "edges",
        "node",
        "members(first: 100)",
        "edges",
        "node",
        "influencer",
        "campaigns(first: 100)",
        "edges",
        "node",
    ],
    "id",
    13,
)
BOMB = (
    "{ ...F0 } "
    + " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(30))
    + " fragment F30 on Query { __typename }"
)


def refuse(query: str, limits: Limits) -> HubError | None:
    """What the hub does before execution: tokens, parse, limits, static cost.
    (How long it takes is measured by bench/attacks.py, not here.)"""
    try:
        check_tokens(query, limits)
        document = parse(query)
        check_limits(document, limits, operation_name=None)
        total = estimate_cost(
            SCHEMA, document, operation_name=None, variables=None, policy=POLICY
        ).total
        most = POLICY.tiers["internal"].max_query_cost
        if total > most:
            raise CostTooExpensive("too expensive", cost={"estimated": total, "max": most})
    except HubError as error:
        return error
    return None


@pytest.mark.parametrize(
    ("query", "limits", "code", "detail"),
    [
        # 1,000 aliases of a list field: refused after reading 1,001 tokens.
        (
            "{ " + fields(1000, "a{n}: influencers {{ edges {{ node {{ id }} }} }}") + " }",
            DEFAULT,
            "QUERY_TOO_COMPLEX",
            {"limit": 1000, "actual": 1001},
        ),
        # ... and, with the token limit lifted, by the root fields.
        (
            "{ " + fields(1000, "a{n}: influencers {{ edges {{ node {{ id }} }} }}") + " }",
            Limits(max_tokens=10**6),
            "QUERY_TOO_COMPLEX",
            {"limit": 10, "actual": 1000},
        ),
        (nest(HOPS, "id", 50), DEFAULT, "QUERY_TOO_COMPLEX", {"limit": 10, "actual": 51}),
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            DEFAULT,
            "QUERY_TOO_COMPLEX",
            {"limit": 0, "actual": 1},
        ),
        (
            "{ me { " + "subject " * 10_000 + "} }",
            DEFAULT,
            "QUERY_TOO_COMPLEX",
            {"limit": 1000, "actual": 1001},
        ),
        # `first: 100` four times over: too deep for the limits, and with them lifted,
        # 100 x 100 x 100 x 100 nodes cost far above every tier.
        (FOUR_DEEP, DEFAULT, "QUERY_TOO_COMPLEX", {"limit": 10, "actual": 14}),
        (
            FOUR_DEEP,
            Limits(max_depth=20),
            "COST_ESTIMATED_TOO_EXPENSIVE",
            {"cost": {"estimated": 2 + 3 * 100 + 3 * 10**4 + 4 * 10**6 + 10**8, "max": 50_000}},
        ),
        (of_type(50), DEFAULT, "QUERY_TOO_COMPLEX", {"limit": 15, "actual": 56}),
        (
            "{ " + fields(300, "me {{ subject }}") + " }",
            Limits(max_tokens=10**6),
            "QUERY_TOO_COMPLEX",
            {"limit": 10, "actual": 300},
        ),
        # Fragments that each spread the next twice: 2^30 fields, counted, never expanded.
        (BOMB, DEFAULT, "QUERY_TOO_COMPLEX", {"limit": 10, "actual": 2**30}),
    ],
)
def test_attack_documents_are_refused_before_execution(
    query: str, limits: Limits, code: str, detail: dict[str, object]
) -> None:
    error = refuse(query, limits)
    assert error is not None
    assert error.extensions == {"code": code, **detail}
