"""Static and actual query cost against the hub's schema, as hand-computed tables."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from graphql import get_introspection_query, parse

from hub.errors import BadUserInput
from hub.policy.access import PolicyError
from hub.policy.cost import actual_cost, estimate_cost, parse_cost_policy
from hub.policy.limits import Limits
from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT

SCHEMA = build_schema(Settings())._schema

CONNECTION = {"slicingArguments": ["first"], "sizedFields": ["edges"]}
RULES: dict[str, Any] = {
    "weights": {
        "types": {"Money": 2},
        "fields": {
            "InfluencerConnection.totalCount": 3,
            "Influencer.contacts": 4,
            "Mutation.createCampaign": 10,
        },
        "arguments": {"Query.influencers(filter:)": 7},
    },
    "default_list_size": 10,
    "list_sizes": {
        "Query.influencers": CONNECTION,
        "Query.campaigns": CONNECTION,
        "Campaign.members": CONNECTION,
        "Influencer.campaigns": CONNECTION,
        "Influencer.contacts": {"assumedSize": 3},
        "Query._entities": {
            "slicingArguments": ["representations"],
            "requireOneSlicingArgument": False,
            "assumedSize": 7,
        },
    },
    "introspection": {"weight": 5, "list_size": 2},
    "tiers": {"free": {"max_query_cost": 10, "bucket_size": 20, "restore_rate_per_s": 1}},
    "default_tier": "free",
}
POLICY = parse_cost_policy(RULES, schema=SCHEMA)
# No list sizes at all: every list is assumed to hold 4 items.
BARE = parse_cost_policy({**RULES, "list_sizes": {}, "default_list_size": 4}, schema=SCHEMA)
SHIPPED = parse_cost_policy(
    yaml.safe_load((ROOT / "policies" / "cost.yaml").read_text()), schema=SCHEMA
)

NESTED = """{ campaigns(first: 2) { edges { node {
  members(first: 3) { edges { node { fee { amount } influencer { handle } } } }
} } } }"""
NESTED_DEFAULTS = NESTED.replace("(first: 2)", "").replace("(first: 3)", "")
FOUR_DEEP = """{ campaigns(first: 100) { edges { node { members(first: 100) { edges { node {
  influencer { campaigns(first: 100) { edges { node { members(first: 100) { edges { node {
    id } } } } } } } } } } } } } }"""
PAGE = "{ influencers(first: 5) { edges { node { id accounts { id } } } } }"
ENTITIES_TYPED = """query ($r: [_Any!]!) { _entities(representations: $r) { __typename
  ... on Influencer { handle accounts { id } } ... on Campaign { name budget { amount } } } }"""
ENTITIES = """query ($r: [_Any!]!) { _entities(representations: $r) {
  ... on Influencer { handle accounts { id } } ... on Campaign { name budget { amount } } } }"""


def estimate(query: str, variables: dict[str, Any] | None = None, policy: Any = POLICY) -> int:
    return estimate_cost(
        SCHEMA, parse(query), operation_name=None, variables=variables, policy=policy
    ).total


@pytest.mark.parametrize(
    ("query", "variables", "total"),
    [
        # Scalars are free; an object is 1; `__typename` is free.
        ("{ __typename }", None, 0),
        ("{ me { subject roles } }", None, 1),
        ('{ influencer(id: "i") { id handle country __typename } }', None, 1),
        # A type weight applies to every field returning the type.
        ('{ campaign(id: "c") { budget { amount } } }', None, 1 + 2),
        # Connection: 1 + edges 1 + first x node 1.
        ("{ influencers(first: 5) { edges { node { id } } } }", None, 1 + 1 + 5),
        # No `first`, or `first: null`: the argument's default (20).
        ("{ influencers { edges { node { id } } } }", None, 1 + 1 + 20),
        ("{ influencers(first: null) { edges { node { id } } } }", None, 1 + 1 + 20),
        # `first` from a variable, from the variable's default, and an explicit null.
        (
            "query ($n: Int) { influencers(first: $n) { edges { node { id } } } }",
            {"n": 3},
            1 + 1 + 3,
        ),
        ("query ($n: Int = 4) { influencers(first: $n) { edges { node { id } } } }", {}, 6),
        ("query ($n: Int = 4) { influencers(first: $n) { edges { node { id } } } }", None, 6),
        (
            "query ($n: Int = 4) { influencers(first: $n) { edges { node { id } } } }",
            {"n": None},
            22,
        ),
        ("{ influencers(first: 0) { edges { node { id } } } }", None, 2),
        # A field weight; the size does not multiply fields beside `edges`.
        ("{ influencers(first: 50) { totalCount pageInfo { hasNextPage } } }", None, 1 + 3 + 1),
        # An argument weight, paid when the argument is given.
        (
            '{ influencers(first: 2, filter: {country: "FR"}) { edges { node { id } } } }',
            None,
            1 + 7 + 1 + 2,
        ),
        # Nested connections multiply: 1 + 1 + 2 + 2 + 2 + 6 + 6x2 (Money) + 6.
        (NESTED, None, 32),
        # The same with the default page sizes, 20 and 50.
        (NESTED_DEFAULTS, None, 1 + 1 + 20 + 20 + 20 + 1000 + 2000 + 1000),
        (FOUR_DEEP, None, 1 + 1 + 100 + 100 + 100 + 4 * 10**4 + 3 * 10**6 + 10**8),
        # assumedSize 3 multiplies the contacts' selection; the list's own weight 4 is paid once.
        ('{ influencer(id: "i") { contacts { influencer { id } } } }', None, 1 + 4 + 3 * 1),
        # A list slicing argument: one entity per representation, inline fragments summed.
        (ENTITIES, {"r": [{}, {}, {}]}, 1 + 3 * (1 + 2)),
        (ENTITIES, {"r": None}, 1 + 7 * (1 + 2)),
        # Fragments count once per use, aliases each count.
        (
            '{ a: influencer(id: "i") { ...F } b: influencer(id: "j") { ...F } }'
            " fragment F on Influencer { campaigns(first: 2) { edges { node { id } } } }",
            None,
            2 * (1 + 1 + 1 + 2),
        ),
        (
            '{ influencer(id: "i") { ... on Influencer { contacts { id } } '
            "... { accounts { id } } } }",
            None,
            1 + 4 + 1,
        ),
        ("{ a: me { subject } b: me { subject } c: me { subject } }", None, 3),
        # Skipped selections cost nothing.
        (
            'query ($s: Boolean!) { me { subject } influencer(id: "i") @skip(if: $s) { id } }',
            {"s": True},
            1,
        ),
        (
            'query ($s: Boolean!) { me { subject } influencer(id: "i") @skip(if: $s) { id } }',
            {"s": False},
            2,
        ),
        ('{ me { subject } influencer(id: "i") @include(if: false) { id } }', None, 1),
        # Introspection: `__schema`/`__type` weigh 5, their objects 1, their lists 2 items.
        ("{ __schema { queryType { name } } }", None, 5 + 1),
        ('{ __type(name: "Query") { fields { name type { name } } } }', None, 5 + 1 + 2 * 1),
        # An operation called `__schema` is costed by what it selects.
        ("query __schema { influencers(first: 1) { edges { node { id } } } }", None, 3),
        ('mutation { createCampaign(input: {name: "n", brand: "b"}) { id } }', None, 10),
    ],
)
def test_estimated_cost(query: str, variables: dict[str, Any] | None, total: int) -> None:
    assert estimate(query, variables) == total


@pytest.mark.parametrize(
    ("query", "total"),
    [
        # Unsized lists hold 4: edges 4 x node.
        ("{ influencers { edges { node { id } } } }", 1 + 1 + 4),
        ("{ influencers { edges { node { accounts { id } } } } }", 1 + 1 + 4 + 4),
    ],
)
def test_lists_without_a_size_hold_the_default(query: str, total: int) -> None:
    assert estimate(query, policy=BARE) == total


@pytest.mark.parametrize(
    ("path", "coordinate", "cost", "count"),
    [
        ("campaigns", "Query.campaigns", 1, 1),
        ("campaigns.edges.node", "CampaignEdge.node", 2, 2),
        ("campaigns.edges.node.members.edges.node", "CampaignMemberEdge.node", 6, 6),
        ("campaigns.edges.node.members.edges.node.fee", "CampaignMember.fee", 12, 6),
        ("campaigns.edges.node.members.edges.node.fee.amount", "Money.amount", 0, 6),
    ],
)
def test_the_breakdown_names_each_field_and_sums_to_the_total(
    path: str, coordinate: str, cost: int, count: int
) -> None:
    result = estimate_cost(SCHEMA, parse(NESTED), operation_name=None, variables={}, policy=POLICY)
    rows = {(row.path, row.coordinate): (row.cost, row.count) for row in result.breakdown}
    assert rows[(path, coordinate)] == (cost, count)
    assert sum(row.cost for row in result.breakdown) == result.total == 32


@pytest.mark.parametrize(
    ("document", "operation_name", "total"),
    [
        ("query A { me { subject } } query B { a: me { id: subject } b: me { subject } }", "A", 1),
        ("query A { me { subject } } query B { a: me { id: subject } b: me { subject } }", "B", 2),
        # Ambiguous or unknown operation: nothing would run.
        ("query A { me { subject } } query B { me { subject } }", None, 0),
        ("query A { me { subject } }", "C", 0),
        # A cyclic spread is not followed (limits refuse the document before this).
        ("{ me { ...V } } fragment V on Viewer { subject ...V }", None, 1),
    ],
)
def test_the_selected_operation_is_costed(
    document: str, operation_name: str | None, total: int
) -> None:
    result = estimate_cost(
        SCHEMA, parse(document), operation_name=operation_name, variables=None, policy=POLICY
    )
    assert result.total == total


def test_a_missing_required_slicing_argument_is_bad_user_input() -> None:
    rules = {**RULES, "list_sizes": {"Query._entities": {"slicingArguments": ["representations"]}}}
    policy = parse_cost_policy(rules, schema=SCHEMA)
    with pytest.raises(BadUserInput) as raised:
        estimate(ENTITIES, {"r": None}, policy=policy)
    assert raised.value.message == "Query._entities needs exactly one of `representations`."
    assert estimate(ENTITIES, {"r": [{}]}, policy=policy) == 1 + 1 * (1 + 2)


def _edges(count: int) -> list[dict[str, Any]]:
    return [{"node": {"id": str(n), "accounts": [{"id": "a"}] * n}} for n in range(count)]


@pytest.mark.parametrize(
    ("query", "data", "actual"),
    [
        # Estimate 1 + 1 + 5 x (node 1 + accounts 1) = 12. Two rows come back: 1 + 1 + 2 x 2.
        (PAGE, {"influencers": {"edges": _edges(2)}}, 6),
        (PAGE, {"influencers": {"edges": _edges(5)}}, 12),
        (PAGE, {"influencers": {"edges": []}}, 2),
        # Aliases are read under their response key.
        (
            "{ page: influencers(first: 5) { edges { n: node { id } } } }",
            {"page": {"edges": [{"n": {"id": "1"}}, {"n": None}]}},
            1 + 1 + 2,
        ),
        # A null object was resolved (its weight counts) but selects nothing.
        ('{ influencer(id: "i") { contacts { influencer { id } } } }', {"influencer": None}, 1),
        (
            '{ influencer(id: "i") { contacts { influencer { id } } } }',
            {"influencer": {"contacts": [{"influencer": None}, {"influencer": {"id": "x"}}]}},
            1 + 4 + 2,
        ),
        # Fragments on a union: only the fragment matching `__typename` counts.
        (
            ENTITIES_TYPED,
            {"_entities": [{"__typename": "Campaign", "name": "n", "budget": {"amount": "1"}}]},
            1 + 2,
        ),
        ("{ me { subject } }", None, 0),
    ],
)
def test_actual_cost_counts_what_came_back(
    query: str, data: dict[str, Any] | None, actual: int
) -> None:
    document = parse(query)
    result = actual_cost(
        SCHEMA, document, operation_name=None, variables={"r": [{}]}, data=data, policy=POLICY
    )
    assert result == actual


@pytest.mark.parametrize(
    ("query", "data", "actual"),
    [
        # A field aliased `__typename` says nothing about the type of what holds it.
        ("{ __typename: me { subject } }", {"__typename": {"subject": "x"}}, 1),
        (
            "{ influencers(first: 5) { edges { node { __typename: handle "
            "... on Influencer { accounts { id } } } } } }",
            {"influencers": {"edges": [{"node": {"__typename": "x", "accounts": []}}] * 2}},
            1 + 1 + 2 * (1 + 1),
        ),
        # A campaign named "Influencer" is still costed as the campaign it is.
        (
            """query ($r: [_Any!]!) { _entities(representations: $r) {
              ... on Campaign { __typename: name budget { amount } }
              ... on Influencer { __typename handle accounts { id } } } }""",
            {"_entities": [{"__typename": "Influencer", "budget": {"amount": "1"}}]},
            1 + 2,
        ),
    ],
)
def test_a_field_aliased_typename_is_not_read_as_the_type(
    query: str, data: dict[str, Any], actual: int
) -> None:
    result = actual_cost(
        SCHEMA, parse(query), operation_name=None, variables={"r": [{}]}, data=data, policy=POLICY
    )
    assert result == actual


def test_a_short_page_refunds_the_rows_that_did_not_come() -> None:
    document = parse(PAGE)
    estimated = estimate_cost(SCHEMA, document, operation_name=None, variables={}, policy=POLICY)
    actual = actual_cost(
        SCHEMA,
        document,
        operation_name=None,
        variables={},
        data={"influencers": {"edges": _edges(2)}},
        policy=POLICY,
    )
    assert (estimated.total, actual, estimated.total - actual) == (12, 6, 6)


@pytest.mark.parametrize(
    ("client_id", "tier"),
    [
        ("graphiql-demo", "internal"),
        ("anonymous", "free"),
        ("someone", "standard"),
        (None, "standard"),
    ],
)
def test_clients_get_their_tier(client_id: str | None, tier: str) -> None:
    assert SHIPPED.tier_for(client_id).name == tier


@pytest.mark.parametrize(
    ("roles", "limits"),
    [
        ([], Limits()),
        (["manager"], Limits(max_depth=12)),
        (["analyst"], Limits(max_depth=12, max_aliases=40, max_root_fields=20, max_tokens=3000)),
        (
            ["analyst", "admin"],
            Limits(max_depth=12, max_aliases=40, max_root_fields=20, max_tokens=3000),
        ),
        (["admin"], Limits(max_tokens=2000)),
    ],
)
def test_roles_raise_the_limits(roles: list[str], limits: Limits) -> None:
    assert SHIPPED.limits_for(roles) == limits


@pytest.mark.parametrize(
    ("query", "total"),
    [
        ("{ __schema { queryType { name } } }", 11),
        ("{ influencers(first: 20) { totalCount edges { node { handle accounts { id } } } } }", 43),
        # The sources' fields: the discovery service, the social API's account lookup, the CRM.
        ('{ influencer(id: "i") { audience { interests } accounts { followers posts } } }', 19),
        ('{ contact(id: "c") { fullName company jobTitle phone } }', 1 + 3),
        # A year of one influencer's metrics: 10 + 365 days; a week of a campaign's members.
        ('{ influencer(id: "i") { metrics(from: "2025-11-01", to: "2026-10-31") { date } } }', 376),
        ('{ campaign(id: "c") { metrics(from: "2026-03-01", to: "2026-03-07") { date } } }', 81),
        # The standard introspection query stays cheap; what it may nest is bounded by limits.
        (None, 80),
    ],
)
def test_the_shipped_weights(query: str | None, total: int) -> None:
    assert estimate(query or get_introspection_query(), policy=SHIPPED) == total


TIER = {"max_query_cost": 1, "bucket_size": 2, "restore_rate_per_s": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": []}, "cost.yaml: tiers must be a mapping"),
        ({"weights": {"types": {"Nope": 1}}}, "cost.yaml: weights.types.Nope: unknown type 'Nope'"),
        (
            {"weights": {"fields": {"Influencer.followerCount": 5}}},
            "cost.yaml: weights.fields.Influencer.followerCount: "
            "unknown field 'followerCount' on type 'Influencer'",
        ),
        (
            {"weights": {"fields": {"Nope.x": 5}}},
            "cost.yaml: weights.fields.Nope.x: unknown type 'Nope'",
        ),
        (
            {"weights": {"fields": {"Influencer.handle": -1}}},
            "cost.yaml: weights.fields.Influencer.handle must be a whole number, 0 or more",
        ),
        (
            {"weights": {"arguments": {"Query.influencers(country:)": 1}}},
            "cost.yaml: weights.arguments.Query.influencers(country:): "
            "unknown argument 'country' on Query.influencers",
        ),
        (
            {"weights": {"arguments": {"Query.influencers.filter": 1}}},
            "cost.yaml: weights.arguments.Query.influencers.filter: "
            "write an argument as Type.field(argument:)",
        ),
        (
            {"list_sizes": {"Query.influencer": {"assumedSize": 1}}},
            "cost.yaml: list_sizes.Query.influencer: "
            "Query.influencer is not a list and names no sizedFields",
        ),
        (
            {"list_sizes": {"Query.influencers": {"slicingArguments": ["last"]}}},
            "cost.yaml: list_sizes.Query.influencers: unknown slicing argument 'last'",
        ),
        (
            {"list_sizes": {"Query.influencers": {"sizedFields": ["pageInfo"]}}},
            "cost.yaml: list_sizes.Query.influencers: "
            "sized field InfluencerConnection.pageInfo is not a list",
        ),
        (
            {"list_sizes": {"Query.influencers": {"assumedSize": 1, "size": 2}}},
            "cost.yaml: list_sizes.Query.influencers: unknown key 'size'",
        ),
        (
            {"list_sizes": {"Influencer.accounts": {"requireOneSlicingArgument": "yes"}}},
            "cost.yaml: list_sizes.Influencer.accounts.requireOneSlicingArgument "
            "must be true or false",
        ),
        ({"limits": {"max_height": 3}}, "cost.yaml: limits: unknown limit 'max_height'"),
        (
            {"role_limits": {"analyst": {"max_depth": "deep"}}},
            "cost.yaml: role_limits.analyst.max_depth must be a whole number, 0 or more",
        ),
        ({"clients": {"app": "gold"}}, "cost.yaml: clients.app: unknown tier 'gold'"),
        ({"default_tier": "gold"}, "cost.yaml: default_tier: unknown tier 'gold'"),
        (
            {"tiers": {"free": {**TIER, "max_query_cost": 3}}},
            "cost.yaml: tiers.free: max_query_cost is larger than bucket_size",
        ),
        (
            {"tiers": {"free": {**TIER, "restore_rate_per_s": 0}}},
            "cost.yaml: tiers.free.restore_rate_per_s must be a number above 0",
        ),
    ],
)
def test_a_broken_policy_names_the_entry(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_cost_policy({**RULES, **change}, schema=SCHEMA)
    assert str(raised.value) == message


def test_without_a_schema_coordinates_are_not_checked() -> None:
    rules = {**RULES, "weights": {"fields": {"Influencer.audience": 5}}}
    assert parse_cost_policy(rules, schema=None).field_weights == {"Influencer.audience": 5}


def test_a_policy_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_cost_policy([], schema=SCHEMA)
    assert str(raised.value) == "cost.yaml: expected a mapping at the top level"


WINDOWED = parse_cost_policy(
    {
        **RULES,
        "windows": {
            "Influencer.metrics": {"from": "from", "to": "to", "per_day": 2},
            "Campaign.totals": {"from": "from", "to": "to", "per_day": 3, "assumed_days": 90},
            "Query.metrics": {"from": "filter.from", "to": "filter.to", "per_day": 5},
        },
    },
    schema=SCHEMA,
)
MARCH = 'metrics(from: "2026-03-01", to: "2026-03-31")'
PAGE_OF_WEEKS = """query ($f: Date!, $t: Date!) { influencers(first: 5) { edges { node {
  metrics(from: $f, to: $t) { date } } } } }"""
WEEK = {"f": "2026-03-01", "t": "2026-03-07"}


@pytest.mark.parametrize(
    ("query", "variables", "total"),
    [
        # influencer 1 + metrics (1 + 31 days x 2); its points are leaves.
        (f'{{ influencer(id: "i") {{ {MARCH} {{ date }} }} }}', None, 1 + 1 + 31 * 2),
        # One point per day: each selects a Money (2).
        (f'{{ influencer(id: "i") {{ {MARCH} {{ spend {{ amount }} }} }} }}', None, 64 + 31 * 2),
        # Per parent: 5 influencers x (node 1 + metrics 1 + 7 days x 2).
        (PAGE_OF_WEEKS, WEEK, 1 + 1 + 5 * (1 + 1 + 7 * 2)),
        # Across a leap day, and a window that ends before it starts (refused when run).
        (PAGE_OF_WEEKS, {"f": "2024-02-28", "t": "2024-03-01"}, 2 + 5 * (2 + 3 * 2)),
        (PAGE_OF_WEEKS, {"f": "2026-03-07", "t": "2026-03-01"}, 2 + 5 * 2),
        # Not two dates (a variable missing, not a date): the assumed 366 days.
        (PAGE_OF_WEEKS, {"f": "2026-03-01"}, 2 + 5 * (2 + 366 * 2)),
        (PAGE_OF_WEEKS, {"f": "2026-02-30", "t": "2026-03-01"}, 2 + 5 * (2 + 366 * 2)),
        # The campaign's own dates: assumed 90 days; given, two.
        ('{ campaign(id: "c") { totals { impressions } } }', None, 1 + 1 + 90 * 3),
        (
            '{ campaign(id: "c") { totals(from: "2026-03-01", to: "2026-03-02") { reach } } }',
            None,
            1 + 1 + 2 * 3,
        ),
        # Bounds inside an input object: literal, a variable in it, or the whole variable.
        (
            '{ metrics(filter: {campaignId: "c", from: "2026-03-01", to: "2026-03-10"}) '
            "{ totalCount } }",
            None,
            1 + 10 * 5,
        ),
        (
            'query ($t: Date) { metrics(filter: {campaignId: "c", from: "2026-03-01", to: $t}) '
            "{ totalCount } }",
            {"t": "2026-03-10"},
            1 + 10 * 5,
        ),
        (
            "query ($f: MetricsFilter!) { metrics(filter: $f) { totalCount } }",
            {"f": {"campaignId": "c", "from": "2026-03-01", "to": "2026-03-10"}},
            1 + 10 * 5,
        ),
    ],
)
def test_a_window_is_priced_per_day_for_each_parent(
    query: str, variables: dict[str, Any] | None, total: int
) -> None:
    assert estimate(query, variables, policy=WINDOWED) == total


def test_the_breakdown_gives_the_days_of_each_window() -> None:
    result = estimate_cost(
        SCHEMA, parse(PAGE_OF_WEEKS), operation_name=None, variables=WEEK, policy=WINDOWED
    )
    rows = {row.coordinate: (row.cost, row.count, row.days) for row in result.breakdown}
    assert rows["Influencer.metrics"] == (5 * (1 + 7 * 2), 5, 7)
    assert rows["MetricPoint.date"] == (0, 35, None)


def test_the_actual_cost_of_a_window_is_its_estimate_for_each_parent_that_came_back() -> None:
    document = parse(PAGE_OF_WEEKS)
    week = [{"date": "2026-03-01"}] * 7
    data = {"influencers": {"edges": [{"node": {"metrics": week}}, {"node": {"metrics": None}}]}}
    estimated = estimate_cost(
        SCHEMA, document, operation_name=None, variables=WEEK, policy=WINDOWED
    ).total
    actual = actual_cost(
        SCHEMA, document, operation_name=None, variables=WEEK, data=data, policy=WINDOWED
    )
    # Two of five influencers came back; each read its week (a null series was still read).
    assert (estimated, actual) == (82, 2 + 2 * (1 + 1 + 7 * 2))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            {"Influencer.handle": {"from": "from", "to": "to", "per_day": 1}},
            "cost.yaml: windows.Influencer.handle.from: "
            "unknown argument 'from' on Influencer.handle",
        ),
        (
            {"Query.metrics": {"from": "filter.since", "to": "filter.to", "per_day": 1}},
            "cost.yaml: windows.Query.metrics.from: unknown field 'since' on MetricsFilter",
        ),
        (
            {"Influencer.metrics": {"from": "from.year", "to": "to", "per_day": 1}},
            "cost.yaml: windows.Influencer.metrics.from: unknown field 'year' on Date",
        ),
        (
            {"Influencer.metrics": {"from": "from", "to": "to"}},
            "cost.yaml: windows.Influencer.metrics.per_day must be a whole number, 0 or more",
        ),
        (
            {"Influencer.metrics": {"from": "from", "to": "", "per_day": 1}},
            "cost.yaml: windows.Influencer.metrics.to must name an argument "
            "(`from`, `filter.from`)",
        ),
        (
            {"Influencer.metrics": {"from": "from", "to": "to", "per_day": 1, "days": 3}},
            "cost.yaml: windows.Influencer.metrics: unknown key 'days'",
        ),
        ({"Influencer.metrics": 1}, "cost.yaml: windows.Influencer.metrics must be a mapping"),
    ],
)
def test_a_broken_window_names_the_entry(window: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_cost_policy({**RULES, "windows": window}, schema=SCHEMA)
    assert str(raised.value) == message
