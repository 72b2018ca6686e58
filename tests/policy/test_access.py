"""Role ceilings and token scopes, as a table."""

from __future__ import annotations

import pytest
import yaml

from hub.policy.access import PolicyError, check_fields, parse_access_policy
from tests.conftest import ROOT

POLICY = parse_access_policy(yaml.safe_load((ROOT / "policies" / "access.yaml").read_text()))


ANALYST = {"influencers:read", "campaigns:read", "metrics:read", "schema:introspect"}


@pytest.mark.parametrize(
    ("roles", "token_scopes", "anonymous", "granted"),
    [
        ([], None, True, set()),
        (["analyst"], None, False, ANALYST | {"role:analyst"}),
        (["analyst"], ["metrics:read", "campaigns:write"], False, {"metrics:read", "role:analyst"}),
        (["partner"], None, False, {"role:partner"}),
        (
            ["partner"],
            ["campaigns:read", "campaigns:write"],
            False,
            {"campaigns:read", "role:partner"},
        ),
        (["manager"], ["contacts:write"], False, {"contacts:write", "role:manager"}),
        (
            ["analyst", "dpo"],
            None,
            False,
            ANALYST | {"contacts:read", "consents:write", "audit:read", "role:analyst", "role:dpo"},
        ),
        (["intruder"], ["campaigns:read"], False, set()),
        # A `scope` claim that is present but empty names no scopes: nothing beyond the roles.
        (["manager"], [], False, {"role:manager"}),
        (["dpo"], [], False, {"role:dpo"}),
        (["dpo"], ["influencers:read"], False, {"influencers:read", "role:dpo"}),
    ],
)
def test_granted_scopes(
    roles: list[str], token_scopes: list[str] | None, anonymous: bool, granted: set[str]
) -> None:
    named = None if token_scopes is None else frozenset(token_scopes)
    assert POLICY.granted_scopes(roles, named, anonymous=anonymous) == granted


DPO_FIELDS = [
    ("Query", "exportContactData"),
    ("Query", "personalDataAccessLog"),
    ("Query", "erasureReport"),
    ("Mutation", "eraseContact"),
    ("AccessEvent", "principal"),
    ("ErasureReport", "contactId"),
]


@pytest.mark.parametrize(
    ("roles", "token_scopes", "denied"),
    [
        (["dpo"], None, set()),
        (["dpo"], ["influencers:read"], set(DPO_FIELDS)),
        (["dpo"], [], set(DPO_FIELDS)),
        (
            ["dpo"],
            ["audit:read"],
            {("Query", "exportContactData"), ("Mutation", "eraseContact")},
        ),
        (
            ["dpo"],
            ["contacts:read", "audit:read"],
            {("Query", "exportContactData"), ("Mutation", "eraseContact")},
        ),
        (
            ["dpo"],
            ["contacts:read", "influencers:read", "audit:read"],
            {("Mutation", "eraseContact")},
        ),
        (
            ["dpo"],
            ["contacts:read", "consents:write", "audit:read"],
            {("Query", "exportContactData")},
        ),
        (
            ["admin"],
            None,
            set(DPO_FIELDS) - {("AccessEvent", "principal"), ("ErasureReport", "contactId")},
        ),
    ],
)
def test_a_dpo_reaches_the_data_subjects_rights_only_with_the_scopes_of_their_data(
    roles: list[str], token_scopes: list[str] | None, denied: set[tuple[str, str]]
) -> None:
    rules = POLICY.field_scopes(DPO_FIELDS)
    named = None if token_scopes is None else frozenset(token_scopes)
    assert rules.denied(POLICY.granted_scopes(roles, named, anonymous=False)) == denied


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "access.yaml: expected a mapping at the top level"),
        ({"scopes": "a"}, "access.yaml: scopes must be a list of names"),
        (
            {"scopes": ["a"], "roles": {"r": {"scopes": ["b"]}}},
            "access.yaml: roles.r.scopes: unknown scope 'b'",
        ),
        ({"scopes": ["a"], "roles": {"r": "a"}}, "access.yaml: roles.r must be a mapping"),
    ],
)
def test_a_broken_policy_names_the_entry(document: object, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_access_policy(document)
    assert str(raised.value) == message


FIELD_POLICY = parse_access_policy(
    {
        "scopes": ["a:read", "b:read"],
        "fields": {
            "Thing": "a:read",
            "Thing.secret": "b:read",
            "*Edge": "public",
            "Query.things": "a:read",
        },
    }
)


@pytest.mark.parametrize(
    ("coordinate", "scope"),
    [
        (("Thing", "name"), "a:read"),
        (("Thing", "secret"), "b:read"),
        (("ThingEdge", "node"), "public"),
        (("Query", "things"), "a:read"),
        (("Query", "other"), None),
        (("Other", "x"), None),
    ],
)
def test_a_field_rule_wins_over_a_type_rule_which_wins_over_a_pattern(
    coordinate: tuple[str, str], scope: str | None
) -> None:
    expected = None if scope is None else frozenset() if scope == "public" else {scope}
    assert FIELD_POLICY.required_scope(coordinate) == expected


@pytest.mark.parametrize(
    ("granted", "denied"),
    [
        (set(), {("Thing", "name"), ("Thing", "secret"), ("Query", "other")}),
        ({"a:read"}, {("Thing", "secret"), ("Query", "other")}),
        ({"a:read", "b:read"}, {("Query", "other")}),
    ],
)
def test_denied_fields_are_those_the_scopes_do_not_reach_and_those_no_rule_covers(
    granted: set[str], denied: set[tuple[str, str]]
) -> None:
    scopes = FIELD_POLICY.field_scopes(
        [("Thing", "name"), ("Thing", "secret"), ("ThingEdge", "node"), ("Query", "other")]
    )
    assert scopes.denied(frozenset(granted)) == denied
    assert scopes.uncovered() == [("Query", "other")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Thng": "a:read"}, "access.yaml line 3: fields.Thng: unknown type 'Thng'"),
        ({"Thing.nme": "a:read"}, "access.yaml line 3: fields.Thing.nme: Thing has no field 'nme'"),
        ({"*Conn": "public"}, "access.yaml line 3: fields.*Conn: the pattern matches no type"),
    ],
)
def test_rules_naming_what_the_schema_lacks_are_refused_with_their_line(
    fields: dict[str, str], message: str
) -> None:
    policy = parse_access_policy({"scopes": ["a:read"], "fields": fields})
    with pytest.raises(PolicyError) as raised:
        check_fields(policy, {"Thing": ["name"], "Query": ["things"]}, line_of=lambda _k: 3)
    assert str(raised.value) == message


def test_a_rule_with_an_unknown_scope_is_refused() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_access_policy({"scopes": ["a:read"], "fields": {"Thing": "a:write"}})
    assert str(raised.value) == "access.yaml: fields.Thing: unknown scope 'a:write'"


def test_a_rule_may_need_a_role_besides_its_scopes() -> None:
    policy = parse_access_policy(
        {
            "scopes": ["a:read"],
            "roles": {"dpo": {"scopes": ["a:read"]}, "other": {"scopes": ["a:read"]}},
            "fields": {"Mutation.erase": ["role:dpo", "a:read"]},
        }
    )
    scopes = policy.field_scopes([("Mutation", "erase")])
    as_dpo = policy.granted_scopes(["dpo"], None, anonymous=False)
    as_narrowed_dpo = policy.granted_scopes(["dpo"], frozenset(), anonymous=False)
    as_other = policy.granted_scopes(["other"], None, anonymous=False)
    assert scopes.denied(as_dpo) == frozenset()
    assert scopes.denied(as_narrowed_dpo) == {("Mutation", "erase")}
    assert scopes.denied(as_other) == {("Mutation", "erase")}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("role:king", "access.yaml: fields.X: unknown role 'king'"),
        (["role:dpo", "a:write"], "access.yaml: fields.X: unknown scope 'a:write'"),
        (
            "role:dpo",
            "access.yaml: fields.X: a role alone would ignore the token's scopes; "
            "list it with the scopes the field's data needs",
        ),
        (["public", "a:read"], "access.yaml: fields.X: `public` cannot be combined with anything"),
        ([], "access.yaml: fields.X must be `public`, a scope, or a list of scopes and roles"),
        (7, "access.yaml: fields.X must be `public`, a scope, or a list of scopes and roles"),
    ],
)
def test_a_malformed_rule_is_refused_naming_it(rule: object, message: str) -> None:
    document = {"scopes": ["a:read"], "roles": {"dpo": {"scopes": []}}, "fields": {"X": rule}}
    with pytest.raises(PolicyError) as raised:
        parse_access_policy(document)
    assert str(raised.value) == message
