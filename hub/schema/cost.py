"""Query limits and cost as a schema extension: refuse before executing, charge the client's
bucket, refund what the answer did not use, report `extensions.cost`. (Tokens are counted
before parsing, by `hub.schema.documents`.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension

from hub.errors import CostTooExpensive, Throttled
from hub.policy.cost import CostEstimate, FieldWeights, actual_cost, estimate_cost
from hub.policy.cost_policy import TenantBudget
from hub.policy.limits import check_shape, measure
from hub.schema.documents import Document

T = TypeVar("T")

MAX_KEPT_VARIABLES_BYTES = 4096
"""Estimates for larger variables are worked out for their request only."""


def tenant_key(tenant: str | None) -> str:
    """The bucket of a tenant's own budget: a control character begins it, which no
    `client_id` may hold, so that no client's bucket is ever a tenant's."""
    return f"\x1etenant:{tenant}"


def _variables_key(document: Document, name: str | None, variables: Any) -> str | None:
    """The digest of the variables the operation declares (others cannot change its cost);
    None when they are too large to be worth remembering an estimate for."""
    operation = document.operation(name)
    if operation is None or not isinstance(variables, dict):
        return None
    declared = {d.variable.name.value for d in operation.variable_definitions or ()}
    text = json.dumps(
        {k: v for k, v in variables.items() if k in declared}, sort_keys=True, default=str
    )
    if len(text) > MAX_KEPT_VARIABLES_BYTES:
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _kept(context: Any, document: DocumentNode, key: Any, make: Callable[[], T]) -> T:
    """`make()`, kept with the request's parsed document when it is that document (so that
    what is kept goes with the document cache's own entries), else made for this request."""
    parsed: Document | None = getattr(context, "document", None)
    if parsed is None or parsed.node is not document:
        return make()
    return parsed.kept(key, make)


class QueryCost(SchemaExtension):
    """Limits after parsing; the static estimate and the bucket before execution; the refund
    after it. Needs `context.cost` and `context.bucket`."""

    def __init__(self) -> None:
        self.requested = 0
        self.actual = 0
        self.available: int | None = None
        self.charged = False
        self.tenant_budget: TenantBudget | None = None
        """The tenant's own budget this request drew on, if its tenant has one."""

    def on_parse(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        policy = getattr(context, "cost", None)
        document = self.execution_context.graphql_document
        if policy is not None and document is not None:
            limits = policy.limits_for(context.principal.roles)
            name = self.execution_context.operation_name
            shape = _kept(
                context, document, ("shape", name), lambda: measure(document, operation_name=name)
            )
            check_shape(shape, limits)

    async def on_validate(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        policy = getattr(context, "cost", None)
        document = self.execution_context.graphql_document
        if policy is None or document is None or self.execution_context.pre_execution_errors:
            return
        schema = self.execution_context.schema._schema
        name = self.execution_context.operation_name
        variables = self.execution_context.variables

        def work_out() -> CostEstimate:
            return estimate_cost(
                schema, document, operation_name=name, variables=variables, policy=policy
            )

        # Remembered per variables: a dashboard that sends the same operation again is costed
        # once; what is kept per key is a digest and an estimate, whatever the variables' size.
        parsed: Document | None = getattr(context, "document", None)
        digest = None if parsed is None else _variables_key(parsed, name, variables)
        estimate = (
            work_out()
            if digest is None
            else _kept(context, document, ("estimate", id(policy), name, digest), work_out)
        )
        self.requested = estimate.total
        tier = policy.tier_for(context.principal.client_id)
        headers = context.response_headers
        headers["X-RateLimit-Limit"] = str(tier.bucket_size)
        metrics = getattr(context, "metrics", None)
        if estimate.total > tier.max_query_cost:
            if metrics is not None:
                metrics.record_cost_rejection("max_query_cost")
            raise CostTooExpensive(
                f"The query costs {estimate.total}; your maximum is {tier.max_query_cost}.",
                cost={"estimated": estimate.total, "max": tier.max_query_cost},
            )
        tenant = context.principal.tenant
        budget = policy.tenants.get(tenant or "")
        if budget is not None and estimate.total > budget.bucket_size:
            # More than the tenant's bucket ever holds: refused, not THROTTLED for ever.
            if metrics is not None:
                metrics.record_cost_rejection("max_query_cost")
            raise CostTooExpensive(
                f"The query costs {estimate.total}; tenant {tenant!r} has a budget of "
                f"{budget.bucket_size}.",
                cost={"estimated": estimate.total, "max": budget.bucket_size},
            )
        bucket = context.bucket
        result = await bucket.take(
            context.budget_key,
            estimate.total,
            size=tier.bucket_size,
            restore_rate_per_s=tier.restore_rate_per_s,
        )
        self.available = result.available
        headers["X-RateLimit-Remaining"] = str(result.available)
        if not result.allowed:
            if metrics is not None:
                metrics.record_cost_rejection("client_budget")
            headers["Retry-After"] = str(result.retry_after_s)
            raise Throttled(
                f"The cost budget of client {context.principal.client_id!r} is used up; "
                f"retry in {result.retry_after_s} s.",
                retryAfter=result.retry_after_s,
            )
        self.charged = True
        if budget is None:
            return
        drawn = await bucket.take(
            tenant_key(tenant),
            estimate.total,
            size=budget.bucket_size,
            restore_rate_per_s=budget.restore_rate_per_s,
        )
        if not drawn.allowed:
            # Refused as a whole: the client's points go back.
            self.available = await bucket.refund(
                context.budget_key,
                estimate.total,
                size=tier.bucket_size,
                restore_rate_per_s=tier.restore_rate_per_s,
            )
            self.charged = False
            if metrics is not None:
                metrics.record_cost_rejection("tenant_budget")
            headers["Retry-After"] = str(drawn.retry_after_s)
            raise Throttled(
                f"The cost budget of tenant {tenant!r} is used up; "
                f"retry in {drawn.retry_after_s} s.",
                retryAfter=drawn.retry_after_s,
            )
        self.tenant_budget = budget

    async def on_execute(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        result = self.execution_context.result
        document = self.execution_context.graphql_document
        if not self.charged or result is None or document is None:
            return
        policy = context.cost
        schema = self.execution_context.schema._schema
        name = self.execution_context.operation_name
        variables = self.execution_context.variables
        resolved = getattr(context, "resolved", None)
        if resolved is not None:
            # The planned executor counted what it resolved: each field's weight for each
            # object it was resolved for (what a walk of the answer would find).
            weights = FieldWeights(
                schema, document, operation_name=name, variables=variables, policy=policy
            )
            self.actual = sum(
                weights.of(owner, node) * objects
                for owner, nodes, objects in resolved
                for node in nodes
            )
        else:
            self.actual = actual_cost(
                schema,
                document,
                operation_name=name,
                variables=variables,
                data=getattr(result, "data", None),
                policy=policy,
            )
        claim = getattr(context, "idempotency", None)
        if claim is not None and claim.replay is not None:
            # A replay is counted like the request it repeats.
            self.actual = self.requested
        elif getattr(result, "errors", None):
            # Errors null whole subtrees of the answer while resolvers and sources still ran:
            # what was returned understates what was spent, so nothing is given back.
            self.actual = self.requested
        unused = max(0, self.requested - self.actual)
        tier = policy.tier_for(context.principal.client_id)
        if unused:
            self.available = await context.bucket.refund(
                context.budget_key,
                unused,
                size=tier.bucket_size,
                restore_rate_per_s=tier.restore_rate_per_s,
            )
            budget = self.tenant_budget
            if budget is not None:
                await context.bucket.refund(
                    tenant_key(context.principal.tenant),
                    unused,
                    size=budget.bucket_size,
                    restore_rate_per_s=budget.restore_rate_per_s,
                )
        context.response_headers["X-RateLimit-Remaining"] = str(self.available)

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        policy = getattr(context, "cost", None)
        if policy is None:
            return {}
        tier = policy.tier_for(context.principal.client_id)
        return {
            "cost": {
                "requestedQueryCost": self.requested,
                "actualQueryCost": self.actual,
                "throttleStatus": {
                    "maximumAvailable": tier.bucket_size,
                    "currentlyAvailable": self.available,
                    "restoreRate": tier.restore_rate_per_s,
                },
            }
        }
