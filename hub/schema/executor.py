"""The hub's executor: graphql-core's, refusing the caller's denied fields and answering from
the response cache where a request may use it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphql import ExecutionResult, OperationType
from graphql.execution import MiddlewareManager
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub.policy.access import Coordinate
from hub.responses import UNCACHEABLE, Answer, ResponseCache
from hub.schema.access import DenyFields, touched_coordinates
from hub.schema.consent import record_decisions


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

    def execute_operation(self, serially: bool | None = None) -> Any:
        """A query's answer from the response cache when the request may use it (see
        `hub.responses`), else executed, and kept when it may be; a mutation empties it."""
        context = self.context_value
        responses: ResponseCache | None = getattr(context, "responses", None)
        key: str | None = getattr(context, "answer_key", None)
        if responses is None:
            return super().execute_operation(serially)
        if self.operation.operation is OperationType.MUTATION:
            return self._write(responses, serially)
        if key is None or not UNCACHEABLE.isdisjoint(self._touched()):
            return super().execute_operation(serially)
        return self._answer(responses, key, serially)

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
