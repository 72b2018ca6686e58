"""The parsed `policies/cost.yaml`: limits, weights, list sizes, date windows, client tiers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_list_type,
)

from hub.policy.access import PolicyError
from hub.policy.limits import Limits


@dataclass(frozen=True, slots=True)
class ListSize:
    """`@listSize` of one field."""

    assumed_size: int | None = None
    slicing_arguments: tuple[str, ...] = ()
    sized_fields: frozenset[str] = frozenset()
    require_one_slicing_argument: bool = True


DEFAULT_ASSUMED_DAYS = 366
"""Days of a window the document does not state, unless its entry says otherwise: the longest
window a source is asked for."""


@dataclass(frozen=True, slots=True)
class Window:
    """A field that makes a source read every day of a date window (`windows:`): `from_path`
    and `to_path` name its bounds (an argument, then fields of an input object)."""

    from_path: tuple[str, ...]
    to_path: tuple[str, ...]
    per_day: int
    assumed_days: int = DEFAULT_ASSUMED_DAYS

    def days(self, since: Any, until: Any) -> int:
        """The days of `since..until` (`YYYY-MM-DD` strings or dates), both included, none
        when `until` is before `since`; `assumed_days` unless both are dates."""
        first, last = _day_number(since), _day_number(until)
        if first is None or last is None:
            return self.assumed_days
        return max(0, last - first + 1)


@dataclass(frozen=True, slots=True)
class Tier:
    """What a client of this tier may spend: per query, and over time from its bucket."""

    name: str
    max_query_cost: int
    bucket_size: int
    restore_rate_per_s: float
    trusted_documents_only: bool = False
    """Clients of this tier may only run operations of the trusted-documents manifest."""


@dataclass(frozen=True, slots=True)
class TenantBudget:
    """A tenant's own bucket, drawn on by all its clients besides each client's bucket."""

    bucket_size: int
    restore_rate_per_s: float


@dataclass(frozen=True, slots=True)
class CostPolicy:
    """Everything `estimate_cost`, `check_limits` and the cost budget read."""

    limits: Limits
    role_limits: Mapping[str, Limits]
    object_weight: int
    leaf_weight: int
    type_weights: Mapping[str, int]
    field_weights: Mapping[str, int]
    argument_weights: Mapping[str, int]
    list_sizes: Mapping[str, ListSize]
    windows: Mapping[str, Window]
    default_list_size: int
    introspection_weight: int
    introspection_list_size: int
    tiers: Mapping[str, Tier]
    clients: Mapping[str, str]
    default_tier: str
    tenants: Mapping[str, TenantBudget] = field(default_factory=dict)

    def limits_for(self, roles: Iterable[str]) -> Limits:
        """The defaults, raised by each role's overrides; with several roles, the highest."""
        chosen = [self.role_limits[role] for role in roles if role in self.role_limits]
        if not chosen:
            return self.limits
        names = Limits.names()
        return Limits(**{name: max(getattr(limits, name) for limits in chosen) for name in names})

    def tier_for(self, client_id: str | None) -> Tier:
        name = self.clients.get(client_id or "", self.default_tier)
        return self.tiers[name]

    def weight_of(self, coordinate: str, returns: GraphQLNamedType) -> int:
        if coordinate in self.field_weights:
            return self.field_weights[coordinate]
        if coordinate.endswith((".__schema", ".__type")):
            return self.introspection_weight
        if returns.name in self.type_weights:
            return self.type_weights[returns.name]
        return self.object_weight if is_composite_type(returns) else self.leaf_weight

    def list_size_of(self, coordinate: str) -> ListSize | None:
        return self.list_sizes.get(coordinate)

    def window_of(self, coordinate: str) -> Window | None:
        return self.windows.get(coordinate)

    def default_list_size_of(self, owner: str) -> int:
        """Lists without `@listSize`: introspection's lists have their own assumption."""
        return self.introspection_list_size if owner.startswith("__") else self.default_list_size


def parse_cost_policy(
    document: Any, *, schema: GraphQLSchema | None, source: str = "cost.yaml"
) -> CostPolicy:
    """Build the policy from the parsed YAML; with a schema, every coordinate must exist in it."""
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    top: Mapping[Any, Any] = document
    limits = _limits(top.get("limits") or {}, Limits(), f"{source}: limits")
    role_limits = {
        str(role): _limits(entry, limits, f"{source}: role_limits.{role}")
        for role, entry in _mapping(top.get("role_limits") or {}, f"{source}: role_limits").items()
    }
    weights = _mapping(top.get("weights") or {}, f"{source}: weights")
    where = f"{source}: weights"
    type_weights = _counts(weights.get("types") or {}, f"{where}.types")
    field_weights = _counts(weights.get("fields") or {}, f"{where}.fields")
    argument_weights = _counts(weights.get("arguments") or {}, f"{where}.arguments")
    introspection = _mapping(top.get("introspection") or {}, f"{source}: introspection")
    tiers = {
        str(name): _tier(str(name), entry, f"{source}: tiers.{name}")
        for name, entry in _mapping(top.get("tiers"), f"{source}: tiers").items()
    }
    clients = {
        str(client): str(tier)
        for client, tier in _mapping(top.get("clients") or {}, f"{source}: clients").items()
    }
    for client, tier in clients.items():
        if tier not in tiers:
            raise PolicyError(f"{source}: clients.{client}: unknown tier {tier!r}")
    default_tier = str(top.get("default_tier", ""))
    if default_tier not in tiers:
        raise PolicyError(f"{source}: default_tier: unknown tier {default_tier!r}")
    tenants = {
        str(tenant): _tenant_budget(entry, f"{source}: tenants.{tenant}")
        for tenant, entry in _mapping(top.get("tenants") or {}, f"{source}: tenants").items()
    }
    list_sizes = {
        str(coordinate): _list_size(entry, f"{source}: list_sizes.{coordinate}")
        for coordinate, entry in _mapping(
            top.get("list_sizes") or {}, f"{source}: list_sizes"
        ).items()
    }
    windows = {
        str(coordinate): _window(entry, f"{source}: windows.{coordinate}")
        for coordinate, entry in _mapping(top.get("windows") or {}, f"{source}: windows").items()
    }
    if schema is not None:
        for name in type_weights:
            if schema.get_type(name) is None:
                raise PolicyError(f"{where}.types.{name}: unknown type {name!r}")
        for coordinate in field_weights:
            _field(schema, coordinate, f"{where}.fields.{coordinate}")
        for coordinate in argument_weights:
            _argument(schema, coordinate, f"{where}.arguments.{coordinate}")
        for coordinate, rule in list_sizes.items():
            _check_list_size(schema, coordinate, rule, f"{source}: list_sizes.{coordinate}")
        for coordinate, window in windows.items():
            _check_window(schema, coordinate, window, f"{source}: windows.{coordinate}")
    return CostPolicy(
        limits=limits,
        role_limits=role_limits,
        object_weight=_count(weights.get("object", 1), f"{where}.object"),
        leaf_weight=_count(weights.get("scalar", 0), f"{where}.scalar"),
        type_weights=type_weights,
        field_weights=field_weights,
        argument_weights=argument_weights,
        list_sizes=list_sizes,
        windows=windows,
        default_list_size=_count(top.get("default_list_size", 10), f"{source}: default_list_size"),
        introspection_weight=_count(
            introspection.get("weight", 1), f"{source}: introspection.weight"
        ),
        introspection_list_size=_count(
            introspection.get("list_size", 10), f"{source}: introspection.list_size"
        ),
        tiers=tiers,
        clients=clients,
        default_tier=default_tier,
        tenants=tenants,
    )


def _mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number, 0 or more")
    return value


def _counts(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    return {str(key): _count(item, f"{where}.{key}") for key, item in value.items()}


def _limits(value: Any, base: Limits, where: str) -> Limits:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    unknown = sorted(set(map(str, value)) - set(Limits.names()))
    if unknown:
        raise PolicyError(f"{where}: unknown limit {unknown[0]!r}")
    return replace(base, **{str(k): _count(v, f"{where}.{k}") for k, v in value.items()})


def _tier(name: str, value: Any, where: str) -> Tier:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    rate = value.get("restore_rate_per_s")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise PolicyError(f"{where}.restore_rate_per_s must be a number above 0")
    trusted_only = value.get("trusted_documents_only", False)
    if not isinstance(trusted_only, bool):
        raise PolicyError(f"{where}.trusted_documents_only must be true or false")
    tier = Tier(
        name,
        _count(value.get("max_query_cost"), f"{where}.max_query_cost"),
        _count(value.get("bucket_size"), f"{where}.bucket_size"),
        float(rate),
        trusted_only,
    )
    if tier.max_query_cost > tier.bucket_size:
        # A query the bucket can never hold would be THROTTLED forever, not refused.
        raise PolicyError(f"{where}: max_query_cost is larger than bucket_size")
    return tier


def _tenant_budget(value: Any, where: str) -> TenantBudget:
    if not isinstance(value, dict) or set(value) - {"bucket_size", "restore_rate_per_s"}:
        raise PolicyError(f"{where} must be a mapping of bucket_size and restore_rate_per_s")
    rate = value.get("restore_rate_per_s")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise PolicyError(f"{where}.restore_rate_per_s must be a number above 0")
    return TenantBudget(_count(value.get("bucket_size"), f"{where}.bucket_size"), float(rate))


def _list_size(value: Any, where: str) -> ListSize:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    known = {"assumedSize", "slicingArguments", "sizedFields", "requireOneSlicingArgument"}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}")
    assumed = value.get("assumedSize")
    require = value.get("requireOneSlicingArgument", True)
    if not isinstance(require, bool):
        raise PolicyError(f"{where}.requireOneSlicingArgument must be true or false")
    return ListSize(
        assumed_size=None if assumed is None else _count(assumed, f"{where}.assumedSize"),
        slicing_arguments=tuple(
            _names(value.get("slicingArguments", []), f"{where}.slicingArguments")
        ),
        sized_fields=frozenset(_names(value.get("sizedFields", []), f"{where}.sizedFields")),
        require_one_slicing_argument=require,
    )


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)


def _day_number(value: Any) -> int | None:
    """The proleptic Gregorian ordinal (as `date.toordinal`) of a date or a `YYYY-MM-DD`
    string; None for anything else. (Computed here: policies do not import the clock's
    modules.)"""
    ordinal = getattr(value, "toordinal", None)
    if callable(ordinal):
        return int(ordinal())
    found = _ISO_DATE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return None
    year, month, day = (int(part) for part in found.groups())
    if year < 1 or not 1 <= month <= 12:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    before = _DAYS_BEFORE_MONTH[month - 1] + (leap and month > 2)
    length = _DAYS_BEFORE_MONTH[month] - _DAYS_BEFORE_MONTH[month - 1] + (leap and month == 2)
    if not 1 <= day <= length:
        return None
    past = year - 1
    return past * 365 + past // 4 - past // 100 + past // 400 + before + day


def _window(value: Any, where: str) -> Window:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    unknown = sorted(set(map(str, value)) - {"from", "to", "per_day", "assumed_days"})
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}")
    paths = []
    for bound in ("from", "to"):
        path = value.get(bound)
        if not isinstance(path, str) or not all(path.split(".")):
            raise PolicyError(f"{where}.{bound} must name an argument (`from`, `filter.from`)")
        paths.append(tuple(path.split(".")))
    return Window(
        paths[0],
        paths[1],
        _count(value.get("per_day"), f"{where}.per_day"),
        _count(value.get("assumed_days", DEFAULT_ASSUMED_DAYS), f"{where}.assumed_days"),
    )


def _check_window(schema: GraphQLSchema, coordinate: str, window: Window, where: str) -> None:
    """Each bound is an argument of the field, or a field of the input object it takes."""
    field = _field(schema, coordinate, where)
    for bound, path in (("from", window.from_path), ("to", window.to_path)):
        argument = field.args.get(path[0])
        if argument is None:
            raise PolicyError(f"{where}.{bound}: unknown argument {path[0]!r} on {coordinate}")
        named = get_named_type(argument.type)
        for name in path[1:]:
            fields = named.fields if isinstance(named, GraphQLInputObjectType) else {}
            if name not in fields:
                raise PolicyError(f"{where}.{bound}: unknown field {name!r} on {named.name}")
            named = get_named_type(fields[name].type)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of names")
    return list(value)


def _field(schema: GraphQLSchema, coordinate: str, where: str) -> Any:
    owner_name, _, field_name = coordinate.partition(".")
    owner = schema.get_type(owner_name)
    if owner is None:
        raise PolicyError(f"{where}: unknown type {owner_name!r}")
    fields = owner.fields if isinstance(owner, GraphQLObjectType | GraphQLInterfaceType) else {}
    if field_name not in fields:
        raise PolicyError(f"{where}: unknown field {field_name!r} on type {owner_name!r}")
    return fields[field_name]


def _argument(schema: GraphQLSchema, coordinate: str, where: str) -> None:
    field_coordinate, _, rest = coordinate.partition("(")
    name = rest.removesuffix(":)")
    if not rest.endswith(":)") or not name:
        raise PolicyError(f"{where}: write an argument as Type.field(argument:)")
    if name not in _field(schema, field_coordinate, where).args:
        raise PolicyError(f"{where}: unknown argument {name!r} on {field_coordinate}")


def _check_list_size(schema: GraphQLSchema, coordinate: str, rule: ListSize, where: str) -> None:
    field = _field(schema, coordinate, where)
    for name in rule.slicing_arguments:
        if name not in field.args:
            raise PolicyError(f"{where}: unknown slicing argument {name!r}")
    returns = get_named_type(field.type)
    if not rule.sized_fields and not is_list_type(get_nullable_type(field.type)):
        raise PolicyError(f"{where}: {coordinate} is not a list and names no sizedFields")
    for name in sorted(rule.sized_fields):
        sized = _field(schema, f"{returns.name}.{name}", where)
        if not is_list_type(get_nullable_type(sized.type)):
            raise PolicyError(f"{where}: sized field {returns.name}.{name} is not a list")
