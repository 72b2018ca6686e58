"""Which system owns each synchronised contact field (`policies/sync.yaml`), and what a sync
does with one field of one person.

For a field, with `base` the value both systems last agreed on (None before they ever did):

    changed in the hub  = hub value  != base        changed at the CRM = CRM value != base
    conflict            = both changed, to different values (before any agreement: both
                          hold a value and they differ)
    the value both end with:
        crm     the CRM's (a value it lacks does not blank the hub's before they agree)
        hub     the hub's (likewise)
        newest  the side that changed; on a conflict, the later change of the two records
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.policy.access import PolicyError

if TYPE_CHECKING:
    from datetime import datetime

RULES = ("crm", "hub", "newest")
FIELDS = ("fullName", "email", "phone", "company", "jobTitle")
"""The contact fields a sync keeps alike in both systems."""


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    fields: Mapping[str, str]
    """Field -> `crm`, `hub` or `newest`."""

    def written_back(self) -> frozenset[str]:
        """The fields whose changes in the hub go to the CRM."""
        return frozenset(name for name, rule in self.fields.items() if rule != "crm")


@dataclass(frozen=True, slots=True)
class Outcome:
    value: Any
    """The value both systems are to hold."""
    conflict: bool
    winner: str
    """`hub` or `crm`: whose value `value` is."""


def parse_sync_policy(document: Any, *, source: str) -> SyncPolicy:
    if not isinstance(document, dict) or not isinstance(document.get("crm"), dict):
        raise PolicyError(f"{source}: needs a `crm` section with `fields`")
    fields = document["crm"].get("fields")
    if not isinstance(fields, dict):
        raise PolicyError(f"{source}: crm.fields must map each field to {', '.join(RULES)}")
    for name, rule in fields.items():
        if name not in FIELDS:
            raise PolicyError(
                f"{source}: crm.fields.{name}: not a synchronised field ({', '.join(FIELDS)})"
            )
        if rule not in RULES:
            raise PolicyError(f"{source}: crm.fields.{name}: {rule!r} is not one of {RULES}")
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise PolicyError(f"{source}: crm.fields has no rule for {', '.join(missing)}")
    unknown = set(document) - {"crm"} or set(document["crm"]) - {"fields"}
    if unknown:
        raise PolicyError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    return SyncPolicy(dict(fields))


def decide(
    rule: str,
    *,
    base: Any,
    agreed: bool,
    hub: Any,
    crm: Any,
    hub_changed_at: datetime,
    crm_changed_at: datetime,
) -> Outcome:
    """What one field becomes; `agreed` says whether `base` holds (the two ever agreed)."""
    if hub == crm:
        return Outcome(hub, False, "hub")
    if agreed:
        hub_moved, crm_moved = hub != base, crm != base
    else:
        # Never agreed: a side without a value has nothing to say yet.
        hub_moved, crm_moved = hub is not None, crm is not None
    conflict = hub_moved and crm_moved
    if not agreed and (hub is None or crm is None):
        crm_wins = hub is None
    elif rule == "crm":
        crm_wins = True
    elif rule == "hub":
        crm_wins = False
    elif conflict:
        crm_wins = crm_changed_at > hub_changed_at
    else:
        crm_wins = crm_moved
    return Outcome(crm if crm_wins else hub, conflict, "crm" if crm_wins else "hub")
