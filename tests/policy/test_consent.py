"""Consent decisions and masks, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.policy.access import PolicyError
from hub.policy.consent import (
    ConsentEvent,
    Decision,
    FieldRule,
    PurposeRule,
    consent_states,
    decide,
    mask,
    parse_consent_policy,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULE = FieldRule(
    category="contact_details",
    mask="email",
    purposes={
        "campaign_management": PurposeRule("consent", "mask"),
        "analytics": PurposeRule("consent", "redact"),
        "billing": PurposeRule("contract", "redact"),
    },
)


@pytest.mark.parametrize(
    ("purpose", "states", "decision"),
    [
        ("campaign_management", {"campaign_management": "GRANTED"}, Decision.ALLOW),
        ("campaign_management", {"campaign_management": "WITHDRAWN"}, Decision.MASK),
        ("campaign_management", {"campaign_management": "EXPIRED"}, Decision.MASK),
        ("campaign_management", {"analytics": "GRANTED"}, Decision.MASK),
        ("analytics", {}, Decision.REDACT),
        ("analytics", {"analytics": "GRANTED"}, Decision.ALLOW),
        ("billing", {}, Decision.ALLOW),
        ("partner_outreach", {"partner_outreach": "GRANTED"}, Decision.REDACT),
        (None, {"campaign_management": "GRANTED"}, Decision.REDACT),
    ],
)
def test_decisions(purpose: str | None, states: dict[str, str], decision: Decision) -> None:
    assert decide(RULE, purpose, states) is decision


def _event(purpose: str, status: str, days: int, expires_in: int | None = 365) -> ConsentEvent:
    at = NOW - timedelta(days=days)
    expires = None if expires_in is None else at + timedelta(days=expires_in)
    return ConsentEvent(purpose, status, at, expires)


@pytest.mark.parametrize(
    ("history", "states"),
    [
        ([], {}),
        ([_event("a", "GRANTED", 10)], {"a": "GRANTED"}),
        ([_event("a", "GRANTED", 10), _event("a", "WITHDRAWN", 5)], {"a": "WITHDRAWN"}),
        ([_event("a", "WITHDRAWN", 5), _event("a", "GRANTED", 1)], {"a": "GRANTED"}),
        ([_event("a", "GRANTED", 400)], {"a": "EXPIRED"}),
        ([_event("a", "GRANTED", 400, None)], {"a": "GRANTED"}),
        (
            [_event("a", "GRANTED", 3), _event("b", "WITHDRAWN", 2)],
            {"a": "GRANTED", "b": "WITHDRAWN"},
        ),
    ],
)
def test_the_newest_event_per_purpose_sets_the_state(
    history: list[ConsentEvent], states: dict[str, str]
) -> None:
    assert consent_states(history, now=NOW) == states


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("email", "jan.kowalski@example.com", "j***@example.com"),
        ("email", "broken", "***"),
        ("phone", "+48 600 123 506", "+48 *** *** 506"),
        ("phone", "600123506", "*** *** 506"),
        ("name", "Jan Kowalski", "J*** K***"),
        ("name", "", "***"),
    ],
)
def test_masks_keep_the_shape_and_hide_the_person(kind: str, value: str, masked: str) -> None:
    assert mask(kind, value) == masked


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"C.f": {"mask": "email", "purposes": {"nope": {"basis": "consent"}}}},
            "consent.yaml: fields.C.f.purposes.nope: unknown purpose",
        ),
        (
            {"C.f": {"mask": "email", "purposes": {"p": {"basis": "vibes"}}}},
            "consent.yaml: fields.C.f.purposes.p.basis: unknown basis 'vibes'",
        ),
        (
            {"C.f": {"mask": "email", "purposes": {"p": {"basis": "consent", "otherwise": "x"}}}},
            "consent.yaml: fields.C.f.purposes.p.otherwise: unknown action 'x'",
        ),
        (
            {"C.f": {"mask": "blur", "purposes": {}}},
            "consent.yaml: fields.C.f.mask must be one of email, name, phone",
        ),
    ],
)
def test_a_broken_consent_policy_names_the_entry(fields: object, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_consent_policy({"purposes": {"p": "a purpose"}, "fields": fields})
    assert str(raised.value) == message
