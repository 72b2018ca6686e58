"""`policies/sync.yaml` and the decision a sync makes for one field of one person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from hub.policy.access import PolicyError
from hub.policy.sync import FIELDS, decide, parse_sync_policy
from tests.conftest import ROOT

EARLY = datetime(2026, 1, 1, tzinfo=UTC)
LATE = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "base", "agreed", "hub", "crm", "hub_at", "crm_at", "expected"),
    [
        # Both agree: nothing to decide, whatever the rule.
        ("crm", "a", True, "b", "b", EARLY, LATE, ("b", False, "hub")),
        # One side changed: crm and newest take the CRM's change, hub keeps its own.
        ("crm", "a", True, "a", "c", EARLY, LATE, ("c", False, "crm")),
        ("newest", "a", True, "a", "c", LATE, EARLY, ("c", False, "crm")),
        ("hub", "a", True, "a", "c", EARLY, LATE, ("a", False, "hub")),
        # The hub changed: hub and newest keep it, crm puts the CRM's value back.
        ("hub", "a", True, "h", "a", EARLY, LATE, ("h", False, "hub")),
        ("newest", "a", True, "h", "a", EARLY, LATE, ("h", False, "hub")),
        ("crm", "a", True, "h", "a", LATE, EARLY, ("a", False, "crm")),
        # Both changed: a conflict, settled by the rule (newest: the later change).
        ("hub", "a", True, "h", "c", EARLY, LATE, ("h", True, "hub")),
        ("crm", "a", True, "h", "c", LATE, EARLY, ("c", True, "crm")),
        ("newest", "a", True, "h", "c", EARLY, LATE, ("c", True, "crm")),
        ("newest", "a", True, "h", "c", LATE, EARLY, ("h", True, "hub")),
        # A blanked value is a change like any other once they agreed.
        ("crm", "a", True, "a", None, EARLY, LATE, (None, False, "crm")),
        # Never agreed: a side without a value takes the other's, whatever the rule...
        ("hub", None, False, None, "c", EARLY, LATE, ("c", False, "crm")),
        ("crm", None, False, "h", None, EARLY, LATE, ("h", False, "hub")),
        # ...and two different values are a conflict.
        ("hub", None, False, "h", "c", EARLY, LATE, ("h", True, "hub")),
        ("newest", None, False, "h", "c", EARLY, LATE, ("c", True, "crm")),
    ],
)
def test_each_rule_decides_a_field(
    rule: str,
    base: Any,
    agreed: bool,
    hub: Any,
    crm: Any,
    hub_at: datetime,
    crm_at: datetime,
    expected: tuple[Any, bool, str],
) -> None:
    outcome = decide(
        rule,
        base=base,
        agreed=agreed,
        hub=hub,
        crm=crm,
        hub_changed_at=hub_at,
        crm_changed_at=crm_at,
    )
    assert (outcome.value, outcome.conflict, outcome.winner) == expected


def test_the_shipped_file_names_a_rule_for_every_field() -> None:
    policy = parse_sync_policy(
        yaml.safe_load((ROOT / "policies" / "sync.yaml").read_text()), source="sync.yaml"
    )
    assert set(policy.fields) == set(FIELDS)
    assert policy.written_back() == {n for n, r in policy.fields.items() if r in ("hub", "newest")}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "needs a `crm` section"),
        ({"crm": {"fields": {**dict.fromkeys(FIELDS, "crm"), "age": "crm"}}}, "crm.fields.age"),
        ({"crm": {"fields": {**dict.fromkeys(FIELDS, "crm"), "email": "both"}}}, "'both'"),
        ({"crm": {"fields": {"email": "hub"}}}, "no rule for fullName"),
        ({"crm": {"fields": dict.fromkeys(FIELDS, "crm")}, "extra": 1}, "unknown keys extra"),
    ],
)
def test_a_bad_file_is_refused_with_what_is_wrong(document: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_sync_policy(document, source="sync.yaml")
