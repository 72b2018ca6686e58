"""The hub's executor: queries on the planned executor, the rest on graphql-core's refusing
the caller's denied fields, and answers from the response cache where a request may use it."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from graphql import ExecutionResult, GraphQLObjectType, OperationType
from graphql.execution import MiddlewareManager
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub.engine.fallback import QueryEngine
from hub.engine.run import Run
from hub.idempotency import Claim
from hub.policy.access import Coordinate
from hub.responses import UNCACHEABLE, Answer, ResponseCache
from hub.schema.access import DenyFields, touched_coordinates
from hub.schema.consent import record_decisions

SUBJECT_ATTRIBUTES = {"Contact": "id", "Consent": "contact_id"}
"""Types whose objects name a person, and the attribute holding the person's contact id."""


class HubExecutor(StrawberryGraphQLCoreExecutionContext):
    """Queries on the planned executor (`hub.engine`); the rest on graphql-core's, with
    `DenyFields` added only when the operation touches a field denied to the caller (so that
    every other request pays nothing per field); the response cache around the operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subjects: set[str] | None = None
        if self.operation.operation is OperationType.MUTATION:
            self._guard()
            self.execute_field = self._execute_mutation_field  # type: ignore[method-assign]
            claim: Claim | None = getattr(self.context_value, "idempotency", None)
            if claim is not None:
                self._subjects = claim.subjects

    def _execute_mutation_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """Each root field of a mutation reads through new loaders: what the fields before it
        wrote is read again, not answered from what they loaded. A root field whose resolver
        returned marks the request's `Idempotency-Key` applied: its write is done, whatever
        happens to the fields after it."""
        if path.prev is None:
            forget_loaded = getattr(self.context_value, "forget_loaded", None)
            if forget_loaded is not None:
                forget_loaded()
        result = super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
        if path.prev is not None:
            return result
        if self.is_awaitable(result):
            return self._noting_applied(result, path.key)
        self._note_applied(path.key)
        return result

    async def _noting_applied(self, result: Awaitable[Any], key: str | int) -> Any:
        value = await result
        self._note_applied(key)
        return value

    def _note_applied(self, key: str | int) -> None:
        claim: Claim | None = getattr(self.context_value, "idempotency", None)
        if claim is not None and not any(
            error.path == [key] for error in self.collected_errors.errors
        ):
            claim.applied = True

    def collect_and_execute_subfields(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """As graphql-core does; a mutation's answer kept for an `Idempotency-Key` notes each
        person it names."""
        if self._subjects is not None:
            attribute = SUBJECT_ATTRIBUTES.get(return_type.name)
            if attribute is not None:
                self._subjects.add(getattr(result, attribute))
        return super().collect_and_execute_subfields(
            return_type, field_details_list, path, result, position_context
        )

    def execute_operation(self, serially: bool | None = None) -> Any:
        """A query's answer from the response cache when the request may use it (see
        `hub.responses`), else executed, and kept when it may be; a mutation claims its
        `Idempotency-Key` first, and empties the response cache."""
        context = self.context_value
        responses: ResponseCache | None = getattr(context, "responses", None)
        key: str | None = getattr(context, "answer_key", None)
        if self.operation.operation is OperationType.MUTATION:
            return self._write(responses, serially)
        if self.operation.operation is OperationType.SUBSCRIPTION:
            # One event of a subscription: its selection on graphql-core's executor, with the
            # caller's denied fields refused and consent decided for this event's values.
            self._guard()
            return super().execute_operation(serially)
        if responses is None:
            return self._query(serially)
        if key is None or not UNCACHEABLE.isdisjoint(self._touched()):
            return self._query(serially)
        return self._answer(responses, key, serially)

    def _query(self, serially: bool | None) -> Any:
        """A query on the planned executor (`hub.engine`), or as a whole on graphql-core's
        when it cannot be planned."""
        engine: QueryEngine | None = getattr(self.context_value, "query_engine", None)
        plan = None if engine is None or self._middlewares() else engine.plan(self)
        if plan is None:
            self._guard()
            return super().execute_operation(serially)
        return Run(self, plan).execute()

    def _guard(self) -> None:
        """Add `DenyFields` when the operation touches a field denied to the caller."""
        denied: frozenset[Coordinate] = getattr(self.context_value, "denied", frozenset())
        if denied and not denied.isdisjoint(self._touched()):
            existing = self._middlewares()
            self.middleware_manager = MiddlewareManager(
                *existing, DenyFields(denied, self.context_value)
            )

    def build_response(self, data: Any) -> Any:
        """graphql-core's answer; then its helpers, which refer back to this executor, go:
        an executor in a reference cycle would keep the request (its context, its loaders and
        all they read) until the collector runs, instead of going with the request."""
        response = super().build_response(data)
        self.async_helpers = None  # type: ignore[assignment]
        return response

    def _middlewares(self) -> tuple[Any, ...]:
        manager = self.middleware_manager
        return tuple(manager.middlewares) if manager is not None and manager.middlewares else ()

    async def _write(self, responses: ResponseCache | None, serially: bool | None) -> Any:
        """A mutation, unless its `Idempotency-Key` has an answer already (nothing runs; the
        HTTP layer replays that answer); then every kept answer dropped (on every replica):
        what it wrote, however far it got, is what the next query reads."""
        engine: QueryEngine | None = getattr(self.context_value, "query_engine", None)
        if engine is not None:
            engine.fell_back("mutation")
        claim: Claim | None = getattr(self.context_value, "idempotency", None)
        if claim is not None and not await claim.take():
            return self.build_response(None)
        try:
            result = super().execute_operation(serially)
            return (await result) if self.is_awaitable(result) else result
        finally:
            if responses is not None:
                await responses.forget_all()

    async def _answer(self, responses: ResponseCache, key: str, serially: bool | None) -> Any:
        context = self.context_value
        kept = await responses.get(key)
        # A kept answer is served only when the audit trail keeps its decisions; otherwise the
        # operation runs, and each personal field withholds the value it cannot audit.
        if kept is not None and _audit_has_room(context, len(kept.decisions)):
            record_decisions(context, kept.decisions, datetime.now(UTC))
            return self.build_response(kept.data)
        read_at = responses.clock.time()
        result = self._query(serially)
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


def _audit_has_room(context: Any, count: int) -> bool:
    audit = getattr(context, "audit", None)
    return audit is None or bool(audit.has_room(count))
