"""Error codes on every GraphQL error; unexpected errors masked and logged with the trace."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.federation import Schema
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError

from hub.errors import HubError

logger = logging.getLogger("hub.errors")

MASKED_MESSAGE = "Unexpected error."


def coded(error: GraphQLError, *, before_execution: bool) -> GraphQLError:
    """The error with its `extensions.code`; a message is kept only when it is ours to show."""
    original = error.original_error
    if isinstance(original, HubError):
        return _with(error, original.message, original.extensions)
    if isinstance(error, GraphQLSyntaxError):
        return _with(error, error.message, {"code": "GRAPHQL_PARSE_FAILED"})
    if original is None and before_execution:
        return _with(error, error.message, {"code": "GRAPHQL_VALIDATION_FAILED"})
    if not error.path and (original is None or isinstance(original, GraphQLError)):
        # Variable values that do not fit their types fail before any field runs.
        return _with(error, error.message, {"code": "BAD_USER_INPUT"})
    return _with(error, MASKED_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"})


def _with(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=extensions,
    )


class HubSchema(Schema):
    """The federation schema whose results carry error codes, logging only unexpected errors."""

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        result = await super().execute(*args, **kwargs)
        if result.errors:
            before = isinstance(result, PreExecutionError)
            result.errors = [coded(error, before_execution=before) for error in result.errors]
        return result

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, HubError | GraphQLError):
                logger.error("unexpected error at %s", error.path, exc_info=original)
            elif original is None and error.path:
                logger.error("unexpected error at %s: %s", error.path, error.message)
