"""The hub's executor: graphql-core's, refusing the caller's denied fields, completing plain
objects in one pass and answering from the response cache where a request may use it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphql import ExecutionResult, GraphQLError, GraphQLObjectType, OperationType
from graphql.execution import MiddlewareManager
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub.errors import Forbidden
from hub.policy.access import Coordinate
from hub.responses import UNCACHEABLE, Answer, ResponseCache
from hub.schema.access import DenyFields, touched_coordinates
from hub.schema.consent import record_decisions
from hub.schema.plain import Plan, complete, plan_of


class HubExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor with `DenyFields` added only when the operation touches a field
    denied to the caller (so that every other request pays nothing per field), and the
    response cache around the operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        denied: frozenset[Coordinate] = getattr(self.context_value, "denied", frozenset())
        if denied and not denied.isdisjoint(self._touched()):
            existing = self.middleware_manager.middlewares if self.middleware_manager else ()
            self.middleware_manager = MiddlewareManager(
                *existing, DenyFields(denied, self.context_value)
            )
        # Plain objects skip the per-field resolvers, so not when a middleware must see them.
        self._plain = not (self.middleware_manager and self.middleware_manager.middlewares)
        self._plans: dict[tuple[GraphQLObjectType, int], Plan | None] = {}
        if self.operation.operation is OperationType.MUTATION:
            self.execute_field = self._execute_mutation_field  # type: ignore[method-assign]

    def _execute_mutation_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """Each root field of a mutation reads through new loaders: what the fields before it
        wrote is read again, not answered from what they loaded."""
        if path.prev is None:
            forget_loaded = getattr(self.context_value, "forget_loaded", None)
            if forget_loaded is not None:
                forget_loaded()
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def collect_and_execute_subfields(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """A plain object (see `hub.schema.plain`) in one pass; any other as graphql-core does."""
        plan = self._plan(return_type, field_details_list) if self._plain else None
        if plan is not None:
            try:
                return complete(plan, result)
            except Exception:
                pass
        return super().collect_and_execute_subfields(
            return_type, field_details_list, path, result, position_context
        )

    def _plan(self, type_: GraphQLObjectType, field_details_list: Any) -> Plan | None:
        # graphql-core keeps `field_details_list` alive for the request (its own memo).
        key = (type_, id(field_details_list))
        if key not in self._plans:
            fields, deferred, _forbidden = self.collect_subfields(type_, field_details_list)
            self._plans[key] = None if deferred else plan_of(type_, fields, self._plan)
        return self._plans[key]

    def execute_operation(self, serially: bool | None = None) -> Any:
        """A query's answer from the response cache when the request may use it (see
        `hub.responses`), else executed, and kept when it may be; a mutation empties it."""
        context = self.context_value
        if self.operation.operation is OperationType.MUTATION:
            refused = self._refused()
            if refused is not None:
                self.collected_errors.add(refused, None)
                return self.build_response(None)
        responses: ResponseCache | None = getattr(context, "responses", None)
        key: str | None = getattr(context, "answer_key", None)
        if responses is None:
            return super().execute_operation(serially)
        if self.operation.operation is OperationType.MUTATION:
            return self._write(responses, serially)
        if key is None or not UNCACHEABLE.isdisjoint(self._touched()):
            return super().execute_operation(serially)
        return self._answer(responses, key, serially)

    def _refused(self) -> GraphQLError | None:
        """A mutation runs whole or not at all: one whose selection asks, anywhere, for a
        field the caller may not read is refused before any of its fields runs, so that no
        write happens behind an answer that says FORBIDDEN."""
        context = self.context_value
        denied: frozenset[Coordinate] = getattr(context, "denied", frozenset())
        refused = sorted(denied & self._touched())
        if not refused:
            return None
        context.denials.update(refused)
        names = [f"{type_name}.{field_name}" for type_name, field_name in refused]
        error = Forbidden(
            f"You may not use {', '.join(f'`{name}`' for name in names)}; "
            "the mutation was not run.",
            coordinates=names,
        )
        return GraphQLError(
            error.message, self.operation, original_error=error, extensions=error.extensions
        )

    async def _write(self, responses: ResponseCache, serially: bool | None) -> Any:
        """A mutation, then every kept answer dropped (on every replica): what it wrote,
        however far it got, is what the next query reads."""
        try:
            result = super().execute_operation(serially)
            return (await result) if self.is_awaitable(result) else result
        finally:
            await responses.forget_all()

    async def _answer(self, responses: ResponseCache, key: str, serially: bool | None) -> Any:
        context = self.context_value
        kept = await responses.get(key)
        if kept is not None:
            record_decisions(context, kept.decisions, datetime.now(UTC))
            return self.build_response(kept.data)
        read_at = responses.clock.time()
        result = super().execute_operation(serially)
        if self.is_awaitable(result):
            result = await result
        if (
            isinstance(result, ExecutionResult)
            and result.data is not None
            and not result.errors
            and not context.denials
        ):
            answer = Answer(result.data, tuple(context.decisions))
            await responses.put(
                key, answer, read_at=read_at, valid_until=context.answer_valid_until
            )
        return result

    def _touched(self) -> frozenset[Coordinate]:
        fragments = {name: details.definition for name, details in self.fragments.items()}
        return touched_coordinates(self.schema, self.operation, fragments)
