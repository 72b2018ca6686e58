"""Error codes on every GraphQL error; unexpected errors masked and logged with the trace."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from hub.errors import HubError

MASKED_MESSAGE = "Unexpected error."


def coded(error: GraphQLError, *, before_execution: bool) -> GraphQLError:
    """The error with its `extensions.code`; a message is kept only when it is ours to show.

    The traceback goes (unexpected errors were logged with theirs already): its frames would
    keep the request (its whole body, say) in a reference cycle with the answer until the
    collector runs."""
    original = error.original_error
    if original is not None:
        original.__traceback__ = None
    error.__traceback__ = None
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
