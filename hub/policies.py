"""Reads the policy files in `HUB_POLICIES_DIR` into the pure policy objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from graphql import GraphQLSchema
from strawberry.schema import Schema

from hub.auth import KNOWN_ROLES
from hub.policy.access import (
    AccessPolicy,
    FieldScopes,
    PolicyError,
    check_fields,
    parse_access_policy,
)
from hub.policy.consent import ConsentPolicy, parse_consent_policy
from hub.policy.cost import CostPolicy, parse_cost_policy
from hub.policy.sync import SyncPolicy, parse_sync_policy


@dataclass(frozen=True, slots=True)
class Policies:
    access: AccessPolicy
    field_scopes: FieldScopes
    cost: CostPolicy
    consent: ConsentPolicy
    sync: SyncPolicy


def load_policies(
    directory: Path,
    *,
    schema_types: Mapping[str, Iterable[str]],
    personal_fields: Iterable[str] = (),
    graphql_schema: GraphQLSchema | None = None,
) -> Policies:
    """Parse the four files and check them against the schema's types and fields (and its
    personal-data fields, which consent.yaml must cover exactly); a problem is `PolicyError`
    naming the file, the line and the entry."""
    access_document, lines = _read(directory / "access.yaml", sections=("roles", "fields"))
    access = parse_access_policy(access_document, source="access.yaml")
    for role in access.roles:
        if role not in KNOWN_ROLES:
            line = lines["roles"].get(role)
            raise PolicyError(
                f"access.yaml{'' if line is None else f' line {line}'}: roles.{role}: unknown "
                f"role (tokens carry {', '.join(sorted(KNOWN_ROLES))})"
            )
    check_fields(access, schema_types, line_of=lines["fields"].get)
    coordinates = [(t, f) for t, fields in schema_types.items() for f in fields]
    return Policies(
        access=access,
        field_scopes=access.field_scopes(coordinates),
        cost=parse_cost_policy(_read(directory / "cost.yaml")[0], schema=graphql_schema),
        consent=_consent(directory, set(personal_fields)),
        sync=parse_sync_policy(_read(directory / "sync.yaml")[0], source="sync.yaml"),
    )


def load_for_schema(directory: Path, schema: Schema) -> Policies:
    """`load_policies` against the running schema's fields and personal-data fields."""
    from hub.schema.access import schema_coordinates
    from hub.schema.consent import personal_fields

    return load_policies(
        directory,
        schema_types=schema_coordinates(schema._schema),
        personal_fields=personal_fields(schema),
        graphql_schema=schema._schema,
    )


def _consent(directory: Path, personal: set[str]) -> ConsentPolicy:
    document, lines = _read(directory / "consent.yaml", sections=("fields",))
    policy = parse_consent_policy(document, source="consent.yaml")
    for coordinate in sorted(set(policy.fields) - personal):
        line = lines["fields"].get(coordinate)
        raise PolicyError(
            f"consent.yaml{'' if line is None else f' line {line}'}: fields.{coordinate}: "
            "not a personal-data field of the schema"
        )
    for coordinate in sorted(personal - set(policy.fields)):
        raise PolicyError(
            f"consent.yaml: personal-data field {coordinate} has no rule; "
            "add it under `fields` with a basis for each purpose"
        )
    return policy


def _read(path: Path, *, sections: tuple[str, ...] = ()) -> tuple[Any, dict[str, dict[str, int]]]:
    """The parsed file, and for each of `sections` the 1-based line of each of its keys."""
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        lines: dict[str, dict[str, int]] = {section: {} for section in sections}
        root = yaml.compose(text)
        if isinstance(root, yaml.MappingNode):
            for key, value in root.value:
                if key.value in lines and isinstance(value, yaml.MappingNode):
                    lines[key.value] = {k.value: k.start_mark.line + 1 for k, _ in value.value}
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{path}:{line} is not valid YAML") from None
    return document, lines
