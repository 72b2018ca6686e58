"""The text of `hub cost FILE`: a query's limits, estimated cost and per-field breakdown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import GraphQLError, GraphQLSchema, get_operation_ast, parse, validate

from hub.errors import HubError
from hub.policy.cost import CostEstimate, CostPolicy, estimate_cost
from hub.policy.limits import Limits, Shape, count_tokens, measure


def render_cost_report(
    schema: GraphQLSchema,
    query: str,
    *,
    policy: CostPolicy,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    roles: Iterable[str] = (),
    client_id: str | None = None,
) -> str:
    """What the hub would decide about `query` before running it, and why."""
    roles = tuple(roles)
    limits = policy.limits_for(roles)
    tokens = count_tokens(query, limit=limits.max_tokens)
    try:
        document = parse(query)
        errors = validate(schema, document)
        if errors:
            return "\n".join(["The query does not validate:", *(f"  {e.message}" for e in errors)])
        shape = measure(document, operation_name=operation_name)
        estimate = estimate_cost(
            schema, document, operation_name=operation_name, variables=variables, policy=policy
        )
    except (GraphQLError, HubError) as error:
        return f"Refused: {error.message}"
    operation = get_operation_ast(document, operation_name)
    name = operation.name.value if operation is not None and operation.name else "(anonymous)"
    kind = operation.operation.value if operation is not None else "query"
    lines = [f"Operation: {name} ({kind})", ""]
    lines += _limit_lines(shape, tokens, limits, roles)
    lines += ["", f"Estimated cost: {estimate.total:,} points", ""]
    lines += _breakdown_lines(estimate, policy)
    lines += ["", *_tier_lines(estimate.total, policy, client_id)]
    return "\n".join(lines)


def _limit_lines(shape: Shape, tokens: int, limits: Limits, roles: tuple[str, ...]) -> list[str]:
    who = f"roles {', '.join(roles)}" if roles else "default"
    rows = [
        ("depth", shape.depth, limits.max_depth),
        ("introspection depth", shape.introspection_depth, limits.max_introspection_depth),
        ("aliases", shape.aliases, limits.max_aliases),
        ("root fields", shape.root_fields, limits.max_root_fields),
        ("directives", shape.directives, limits.max_directives),
        ("fragment spreads", shape.fragment_spreads, limits.max_fragment_spreads),
        ("selection width", shape.width, limits.max_selection_width),
        ("tokens", tokens, limits.max_tokens),
    ]
    lines = [f"Limits ({who}):"]
    for label, actual, limit in rows:
        shown = f"more than {limit}" if label == "tokens" and actual > limit else str(actual)
        verdict = "  OVER THE LIMIT" if actual > limit else ""
        lines.append(f"  {label:<20} {shown:>6} / {limit}{verdict}")
    return lines


def _breakdown_lines(estimate: CostEstimate, policy: CostPolicy) -> list[str]:
    """One row per field and path: points it adds, times it is resolved, and for a field that
    reads a date window, the days each time and their price."""
    coordinate_width = max((len(row.coordinate) for row in estimate.breakdown), default=10)
    lines = [f"  {'points':>10}  {'times':>8}  {'coordinate':<{coordinate_width}}  path"]
    for row in estimate.breakdown:
        line = (
            f"  {row.cost:>10,}  {row.count:>8,}  {row.coordinate:<{coordinate_width}}  {row.path}"
        )
        window = policy.window_of(row.coordinate)
        if window is not None and row.days is not None:
            line += f"  ({row.days:,} days at {window.per_day:,} a day, each time)"
        lines.append(line)
    return lines


def _tier_lines(total: int, policy: CostPolicy, client_id: str | None) -> list[str]:
    lines = ["Tiers:"]
    width = max((len(name) for name in policy.tiers), default=0)
    for tier in policy.tiers.values():
        verdict = "allowed" if total <= tier.max_query_cost else "refused"
        only = ", registered operations only" if tier.trusted_documents_only else ""
        lines.append(
            f"  {tier.name:<{width}} max {tier.max_query_cost:>8,} per query: {verdict}; bucket "
            f"{tier.bucket_size:,} points, refilled at {tier.restore_rate_per_s:g}/s{only}"
        )
    if client_id is not None:
        tier = policy.tier_for(client_id)
        verdict = "allowed" if total <= tier.max_query_cost else "refused"
        lines.append(f"Client {client_id}: tier {tier.name}, {verdict}")
    return lines
