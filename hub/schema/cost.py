"""Query limits and cost as a schema extension: refuse before executing, charge the client's
bucket, refund what the answer did not use, report `extensions.cost`. (Tokens are counted
before parsing, by `hub.schema.documents`.)"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLSchema
from strawberry.extensions import SchemaExtension

from hub.errors import CostTooExpensive, Throttled
from hub.policy.cost import CostEstimate, CostPolicy, actual_cost, estimate_cost
from hub.policy.limits import Shape, check_shape, measure


@lru_cache(maxsize=1024)
def _shape(document: DocumentNode, operation_name: str | None) -> Shape:
    return measure(document, operation_name=operation_name)


_ESTIMATES: OrderedDict[
    tuple[int, int, str | None, str], tuple[DocumentNode, CostPolicy, CostEstimate]
] = OrderedDict()
_ESTIMATES_SIZE = 1024


def _estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    policy: CostPolicy,
) -> CostEstimate:
    """`estimate_cost`, remembered per parsed document and variables: a dashboard that sends
    the same operation again is costed once (documents come from the parser cache)."""
    variables_key = json.dumps(variables, sort_keys=True, default=str)
    key = (id(document), id(policy), operation_name, variables_key)
    hit = _ESTIMATES.get(key)
    if hit is not None and hit[0] is document and hit[1] is policy:
        _ESTIMATES.move_to_end(key)
        return hit[2]
    estimate = estimate_cost(
        schema, document, operation_name=operation_name, variables=variables, policy=policy
    )
    _ESTIMATES[key] = (document, policy, estimate)
    if len(_ESTIMATES) > _ESTIMATES_SIZE:
        _ESTIMATES.popitem(last=False)
    return estimate


class QueryCost(SchemaExtension):
    """Limits after parsing; the static estimate and the bucket before execution; the refund
    after it. Needs `context.cost` and `context.bucket`."""

    def __init__(self) -> None:
        self.requested = 0
        self.actual = 0
        self.available: int | None = None
        self.charged = False

    def on_parse(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        policy = getattr(context, "cost", None)
        document = self.execution_context.graphql_document
        if policy is not None and document is not None:
            limits = policy.limits_for(context.principal.roles)
            check_shape(_shape(document, self.execution_context.operation_name), limits)

    async def on_validate(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        policy = getattr(context, "cost", None)
        document = self.execution_context.graphql_document
        if policy is None or document is None or self.execution_context.pre_execution_errors:
            return
        estimate = _estimate(
            self.execution_context.schema._schema,
            document,
            self.execution_context.operation_name,
            self.execution_context.variables,
            policy,
        )
        self.requested = estimate.total
        tier = policy.tier_for(context.principal.client_id)
        headers = context.response_headers
        headers["X-RateLimit-Limit"] = str(tier.bucket_size)
        if estimate.total > tier.max_query_cost:
            raise CostTooExpensive(
                f"The query costs {estimate.total}; your maximum is {tier.max_query_cost}.",
                cost={"estimated": estimate.total, "max": tier.max_query_cost},
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
            headers["Retry-After"] = str(result.retry_after_s)
            raise Throttled(
                f"The cost budget of client {context.principal.client_id!r} is used up; "
                f"retry in {result.retry_after_s} s.",
                retryAfter=result.retry_after_s,
            )
        self.charged = True

    async def on_execute(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        result = self.execution_context.result
        document = self.execution_context.graphql_document
        if not self.charged or result is None or document is None:
            return
        policy = context.cost
        self.actual = actual_cost(
            self.execution_context.schema._schema,
            document,
            operation_name=self.execution_context.operation_name,
            variables=self.execution_context.variables,
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
