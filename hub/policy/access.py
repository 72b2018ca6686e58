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
"""A rule `role:dpo` needs the role itself, whatever the scopes."""
Coordinate = tuple[str, str]
"""(type name, field name)"""


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
    fields: Mapping[str, str] = field(default_factory=dict)
    """Rule key (`Type`, `Type.field`, or a `*` pattern of type names) -> scope or `public`."""

    def required_scope(self, coordinate: Coordinate) -> str | None:
        """The scope a field needs (`public` for none), or None when no rule covers it.

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
        self, roles: Iterable[str], token_scopes: frozenset[str], *, anonymous: bool
    ) -> frozenset[str]:
        """The union of the roles' ceilings, narrowed by the token's scopes when it has any,
        plus `role:<name>` for each role the policy knows (for rules that need a role).

        A role marked `token_scopes_required` contributes only scopes the token names.
        """
        if anonymous:
            return self.anonymous
        roles = list(roles)
        held = {ROLE_PREFIX + role for role in roles if role in self.roles}
        return self._scopes(roles, token_scopes) | held

    def _scopes(self, roles: Iterable[str], token_scopes: frozenset[str]) -> frozenset[str]:
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


@dataclass(frozen=True)
class FieldScopes:
    """Each schema field's required scope (`public`), or None where no rule covers it."""

    scopes: Mapping[Coordinate, str | None]

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
        for coordinate, scope in rules.scopes.items()
        if scope != PUBLIC and (scope is None or scope not in granted)
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
    for key, scope in fields.items():
        role = str(scope).removeprefix(ROLE_PREFIX)
        if str(scope).startswith(ROLE_PREFIX):
            if role not in roles:
                raise PolicyError(f"{source}: fields.{key}: unknown role {role!r}")
        elif scope != PUBLIC and scope not in scopes:
            raise PolicyError(f"{source}: fields.{key}: unknown scope {scope!r}")
    return AccessPolicy(
        scopes=scopes,
        roles=roles,
        anonymous=anonymous,
        fields={str(k): str(v) for k, v in fields.items()},
    )


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of names")
    return frozenset(value)


def _known(names: frozenset[str], known: frozenset[str], where: str) -> None:
    unknown = sorted(names - known)
    if unknown:
        raise PolicyError(f"{where}: unknown scope {unknown[0]!r}")
