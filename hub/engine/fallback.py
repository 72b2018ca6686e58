"""Whole operations handed to graphql-core, and why; planning and the plans kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.engine.plan import Plan, Planner, Unplannable
from hub.engine.run import BatchResolver
from hub.observability.metrics import Metrics
from hub.schema.documents import directive_variables

REASONS = ("mutation", "subscription", "introspection", "defer", "unknown_field", "type")
"""Every reason a plan is refused: the label's values are bounded."""


class QueryEngine:
    """The planned executor of one hub: its batch resolvers and its count of fallbacks."""

    def __init__(
        self,
        *,
        batches: Mapping[str, BatchResolver],
        metrics: Metrics,
        personal: frozenset[str] = frozenset(),
    ) -> None:
        self.batches = batches
        self.personal = personal
        self._fallbacks = metrics.engine_fallbacks

    def plan(self, executor: Any) -> Plan | None:
        """The plan of the executor's operation (kept with its parsed document), or None
        when it runs on graphql-core as a whole; each such operation is counted."""
        context = executor.context_value
        document = getattr(context, "document", None)
        denied: frozenset[Any] = getattr(context, "denied", frozenset())
        operation = executor.operation
        key = ("plan", id(operation), denied, _directive_values(executor, document))
        found: Plan | str
        if document is None or not any(d is operation for d in document.node.definitions):
            # A plan is kept with the document its operation belongs to, and only there.
            found = self._plan(executor, denied)
        else:
            found = document.kept(key, lambda: self._plan(executor, denied))
        if isinstance(found, str):
            self.fell_back(found)
            return None
        return found

    def fell_back(self, reason: str) -> None:
        """Count an operation run on graphql-core, by one of `REASONS`."""
        self._fallbacks.labels(reason).inc()

    def _plan(self, executor: Any, denied: frozenset[Any]) -> Plan | str:
        try:
            return Planner(
                schema=executor.schema,
                fragments=executor.fragments,
                variables=executor.variable_values,
                operation=executor.operation,
                denied=denied,
                batches=self.batches,
                hide_suggestions=executor.hide_suggestions,
                personal=self.personal,
            ).plan()
        except Unplannable as refusal:
            return refusal.reason


def _directive_values(executor: Any, document: Any) -> tuple[Any, ...]:
    """The values of the variables that `@skip`/`@include` read: a plan holds their outcome."""
    if document is not None:
        names = document.directive_variables
    else:
        fragments = (details.definition for details in executor.fragments.values())
        names = directive_variables([executor.operation, *fragments])
    coerced = executor.variable_values.coerced
    return tuple(coerced.get(name) for name in names)
