"""Access decisions from `policies/access.yaml`: which scopes a caller's roles grant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class PolicyError(Exception):
    """A policy file is invalid; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class RoleRule:
    scopes: frozenset[str]
    token_scopes_required: bool = False


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Role ceilings over a closed vocabulary of scopes."""

    scopes: frozenset[str]
    roles: Mapping[str, RoleRule]
    anonymous: frozenset[str]

    def granted_scopes(
        self, roles: Iterable[str], token_scopes: frozenset[str], *, anonymous: bool
    ) -> frozenset[str]:
        """The union of the roles' ceilings, narrowed by the token's scopes when it has any.

        A role marked `token_scopes_required` contributes only scopes the token names.
        """
        if anonymous:
            return self.anonymous
        granted: set[str] = set()
        for role in roles:
            rule = self.roles.get(role)
            if rule is None:
                continue
            if rule.token_scopes_required:
                granted |= rule.scopes & token_scopes
            else:
                granted |= rule.scopes
        return frozenset(granted & token_scopes if token_scopes else granted)


def parse_access_policy(document: Any, *, source: str = "access.yaml") -> AccessPolicy:
    """Build the policy from the parsed YAML, refusing unknown scopes and malformed entries."""
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    scopes = _names(document.get("scopes"), f"{source}: scopes")
    roles: dict[str, RoleRule] = {}
    for name, entry in (document.get("roles") or {}).items():
        if not isinstance(entry, dict):
            raise PolicyError(f"{source}: roles.{name} must be a mapping")
        granted = _names(entry.get("scopes", []), f"{source}: roles.{name}.scopes")
        _known(granted, scopes, f"{source}: roles.{name}.scopes")
        roles[str(name)] = RoleRule(granted, bool(entry.get("token_scopes_required", False)))
    anonymous = _names(
        (document.get("anonymous") or {}).get("scopes", []), f"{source}: anonymous.scopes"
    )
    _known(anonymous, scopes, f"{source}: anonymous.scopes")
    return AccessPolicy(scopes=scopes, roles=roles, anonymous=anonymous)


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of names")
    return frozenset(value)


def _known(names: frozenset[str], known: frozenset[str], where: str) -> None:
    unknown = sorted(names - known)
    if unknown:
        raise PolicyError(f"{where}: unknown scope {unknown[0]!r}")
