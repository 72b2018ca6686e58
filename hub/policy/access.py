"""Access decisions from `policies/access.yaml`: the scopes a caller holds, the fields it may
resolve."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

PUBLIC = "public"
ROLE_PREFIX = "role:"
"""A rule naming `role:dpo` needs the role itself, besides the scopes it also names."""
Coordinate = tuple[str, str]
"""(type name, field name)"""
Requirement = frozenset[str]
"""What a field needs: every scope and `role:<name>` in it (empty: public)."""


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
    fields: Mapping[str, Requirement] = field(default_factory=dict)
    """Rule key (`Type`, `Type.field`, or a `*` pattern of type names) -> what it needs."""

    def required_scope(self, coordinate: Coordinate) -> Requirement | None:
        """What a field needs (all of it; empty for `public`), or None when no rule covers it.

        A `Type.field` rule wins over a `Type` rule, which wins over a pattern.
        """
        type_name, field_name = coordinate
        exact = self.fields.get(f"{type_name}.{field_name}")
        if exact is not None:
            return exact
        whole = self.fields.get(type_name)
        if whole is not None:
            return whole
        for key, scope in self.fields.items():
            if "*" in key and "." not in key and fnmatch.fnmatchcase(type_name, key):
                return scope
        return None

    def field_scopes(self, coordinates: Iterable[Coordinate]) -> FieldScopes:
        """The rules resolved for every field of a schema, for `denied` lookups."""
        return FieldScopes({c: self.required_scope(c) for c in coordinates})

    def granted_scopes(
        self, roles: Iterable[str], token_scopes: frozenset[str] | None, *, anonymous: bool
    ) -> frozenset[str]:
        """The union of the roles' ceilings, narrowed to the token's scopes when the token
        names scopes (`token_scopes` not None, even when empty), plus `role:<name>` for each
        role the policy knows (for rules that need a role besides their scopes).

        A role marked `token_scopes_required` contributes only scopes the token names.
        """
        if anonymous:
            return self.anonymous
        roles = list(roles)
        held = {ROLE_PREFIX + role for role in roles if role in self.roles}
        return self._scopes(roles, token_scopes) | held

    def _scopes(self, roles: Iterable[str], token_scopes: frozenset[str] | None) -> frozenset[str]:
        named = frozenset() if token_scopes is None else token_scopes
        granted: set[str] = set()
        for role in roles:
            rule = self.roles.get(role)
            if rule is None:
                continue
            granted |= rule.scopes & named if rule.token_scopes_required else rule.scopes
        return frozenset(granted if token_scopes is None else granted & token_scopes)


@dataclass(frozen=True)
class FieldScopes:
    """What each schema field needs (empty: public), or None where no rule covers it."""

    scopes: Mapping[Coordinate, Requirement | None]

    def uncovered(self) -> list[Coordinate]:
        return sorted(c for c, scope in self.scopes.items() if scope is None)

    def denied(self, granted: frozenset[str]) -> frozenset[Coordinate]:
        """Fields a caller holding `granted` may not resolve; uncovered fields are denied."""
        return _denied(self, granted)

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=256)
def _denied(rules: FieldScopes, granted: frozenset[str]) -> frozenset[Coordinate]:
    return frozenset(
        coordinate
        for coordinate, needed in rules.scopes.items()
        if needed is None or not needed <= granted
    )


def check_fields(
    policy: AccessPolicy,
    types: Mapping[str, Iterable[str]],
    *,
    line_of: Callable[[str], int | None] = lambda _key: None,
    source: str = "access.yaml",
) -> None:
    """Refuse rules that name a type or field the schema does not have."""
    for key in policy.fields:
        line = line_of(key)
        where = f"{source}{'' if line is None else f' line {line}'}: fields.{key}"
        type_name, _, field_name = key.partition(".")
        if "*" in type_name:
            if field_name or not any(fnmatch.fnmatchcase(t, type_name) for t in types):
                raise PolicyError(f"{where}: the pattern matches no type")
        elif type_name not in types:
            raise PolicyError(f"{where}: unknown type {type_name!r}")
        elif field_name and field_name not in set(types[type_name]):
            raise PolicyError(f"{where}: {type_name} has no field {field_name!r}")


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
    fields = document.get("fields") or {}
    if not isinstance(fields, dict):
        raise PolicyError(f"{source}: fields must be a mapping of field to scope")
    return AccessPolicy(
        scopes=scopes,
        roles=roles,
        anonymous=anonymous,
        fields={
            str(key): _requirement(rule, scopes, roles, f"{source}: fields.{key}")
            for key, rule in fields.items()
        },
    )


def _requirement(
    rule: Any, scopes: frozenset[str], roles: Mapping[str, RoleRule], where: str
) -> Requirement:
    """`public`, one scope, or a list of scopes and roles that are all needed. A role is never
    enough alone: its rule also names the scopes the field's data needs, so that a token that
    narrows its scopes narrows what its roles reach too."""
    names = [rule] if isinstance(rule, str) else rule
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PolicyError(f"{where} must be `public`, a scope, or a list of scopes and roles")
    if PUBLIC in names:
        if len(names) > 1:
            raise PolicyError(f"{where}: `public` cannot be combined with anything")
        return frozenset()
    for name in names:
        role = name.removeprefix(ROLE_PREFIX)
        if name.startswith(ROLE_PREFIX):
            if role not in roles:
                raise PolicyError(f"{where}: unknown role {role!r}")
        elif name not in scopes:
            raise PolicyError(f"{where}: unknown scope {name!r}")
    if all(name.startswith(ROLE_PREFIX) for name in names):
        raise PolicyError(
            f"{where}: a role alone would ignore the token's scopes; "
            "list it with the scopes the field's data needs"
        )
    return frozenset(names)


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of names")
    return frozenset(value)


def _known(names: frozenset[str], known: frozenset[str], where: str) -> None:
    unknown = sorted(names - known)
    if unknown:
        raise PolicyError(f"{where}: unknown scope {unknown[0]!r}")
