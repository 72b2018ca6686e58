"""Consent decisions from `policies/consent.yaml`: may this purpose see this personal field?"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from hub.policy.access import PolicyError

if TYPE_CHECKING:
    from datetime import datetime

BASES = frozenset({"consent", "contract", "legitimate_interest"})
ACTIONS = frozenset({"redact", "mask"})
MASKS = frozenset({"email", "phone", "name"})


class Decision(Enum):
    ALLOW = "allowed"
    MASK = "masked"
    REDACT = "redacted"


@dataclass(frozen=True, slots=True)
class PurposeRule:
    basis: str
    otherwise: str


@dataclass(frozen=True, slots=True)
class FieldRule:
    category: str
    mask: str
    purposes: Mapping[str, PurposeRule]


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    purposes: Mapping[str, str]
    fields: Mapping[str, FieldRule]
    validity_days: int


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One row of a subject's consent history, as the decision needs it."""

    purpose: str
    status: str
    recorded_at: datetime
    expires_at: datetime | None


def consent_states(history: Iterable[ConsentEvent], *, now: datetime) -> dict[str, str]:
    """The state per purpose from the newest event: GRANTED, WITHDRAWN or EXPIRED."""
    latest: dict[str, ConsentEvent] = {}
    for event in history:
        current = latest.get(event.purpose)
        if current is None or event.recorded_at >= current.recorded_at:
            latest[event.purpose] = event
    return {
        purpose: "EXPIRED"
        if event.status == "GRANTED" and event.expires_at is not None and event.expires_at <= now
        else event.status
        for purpose, event in latest.items()
    }


def decide(rule: FieldRule, purpose: str | None, states: Mapping[str, str]) -> Decision:
    """ALLOW with a basis for the purpose; otherwise the field's action (REDACT when the
    purpose is missing or not listed for the field)."""
    if purpose is None or purpose not in rule.purposes:
        return Decision.REDACT
    purpose_rule = rule.purposes[purpose]
    if purpose_rule.basis != "consent" or states.get(purpose) == "GRANTED":
        return Decision.ALLOW
    return Decision.MASK if purpose_rule.otherwise == "mask" else Decision.REDACT


def mask(kind: str, value: str) -> str:
    """`j***@example.com`, `+48 *** *** 506`, `J*** N***`: shape kept, person hidden."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        prefix = value.split()[0] if value.startswith("+") and " " in value else ""
        return " ".join(part for part in (prefix, "***", "***", digits[-3:]) if part)
    return " ".join(f"{word[:1]}***" for word in value.split()) or "***"


def parse_consent_policy(document: Any, *, source: str = "consent.yaml") -> ConsentPolicy:
    """Build the policy, refusing unknown purposes, bases, actions and mask kinds."""
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    purposes = document.get("purposes")
    if not isinstance(purposes, dict) or not purposes:
        raise PolicyError(f"{source}: purposes must map each purpose to its description")
    validity = document.get("consent_validity_days", 365)
    if not isinstance(validity, int) or validity < 1:
        raise PolicyError(f"{source}: consent_validity_days must be a positive whole number")
    fields: dict[str, FieldRule] = {}
    for coordinate, entry in (document.get("fields") or {}).items():
        where = f"{source}: fields.{coordinate}"
        if not isinstance(entry, dict) or not isinstance(entry.get("purposes"), dict):
            raise PolicyError(f"{where} needs a category, a mask and purposes")
        if entry.get("mask") not in MASKS:
            raise PolicyError(f"{where}.mask must be one of {', '.join(sorted(MASKS))}")
        rules: dict[str, PurposeRule] = {}
        for purpose, rule in entry["purposes"].items():
            if purpose not in purposes:
                raise PolicyError(f"{where}.purposes.{purpose}: unknown purpose")
            basis = (rule or {}).get("basis")
            otherwise = (rule or {}).get("otherwise", "redact")
            if basis not in BASES:
                raise PolicyError(f"{where}.purposes.{purpose}.basis: unknown basis {basis!r}")
            if otherwise not in ACTIONS:
                raise PolicyError(
                    f"{where}.purposes.{purpose}.otherwise: unknown action {otherwise!r}"
                )
            rules[str(purpose)] = PurposeRule(basis, otherwise)
        fields[str(coordinate)] = FieldRule(str(entry.get("category", "")), entry["mask"], rules)
    return ConsentPolicy(
        purposes={str(k): str(v) for k, v in purposes.items()},
        fields=fields,
        validity_days=validity,
    )
