"""Role ceilings and token scopes, as a table."""

from __future__ import annotations

import pytest
import yaml

from hub.policy.access import PolicyError, parse_access_policy
from tests.conftest import ROOT

POLICY = parse_access_policy(yaml.safe_load((ROOT / "policies" / "access.yaml").read_text()))


@pytest.mark.parametrize(
    ("roles", "token_scopes", "anonymous", "granted"),
    [
        ([], [], True, set()),
        (
            ["analyst"],
            [],
            False,
            {"influencers:read", "campaigns:read", "metrics:read", "schema:introspect"},
        ),
        (["analyst"], ["metrics:read", "campaigns:write"], False, {"metrics:read"}),
        (["partner"], [], False, set()),
        (["partner"], ["campaigns:read", "campaigns:write"], False, {"campaigns:read"}),
        (["manager"], ["contacts:write"], False, {"contacts:write"}),
        (
            ["analyst", "dpo"],
            [],
            False,
            {
                "influencers:read",
                "campaigns:read",
                "metrics:read",
                "schema:introspect",
                "contacts:read",
                "consents:write",
                "audit:read",
            },
        ),
        (["intruder"], ["campaigns:read"], False, set()),
    ],
)
def test_granted_scopes(
    roles: list[str], token_scopes: list[str], anonymous: bool, granted: set[str]
) -> None:
    assert POLICY.granted_scopes(roles, frozenset(token_scopes), anonymous=anonymous) == granted


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
