"""`HubSchema`: the federation schema with the hub's execution rules around strawberry's."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError
from strawberry.federation import Schema
from strawberry.federation.schema import FederationAny
from strawberry.types import ExecutionContext, ExecutionResult, Info
from strawberry.types.execution import PreExecutionError

from hub.audit import AuditEvent
from hub.errors import BadUserInput, Forbidden, HubError, Unauthenticated
from hub.observability import tracing
from hub.schema.documents import DocumentCache
from hub.schema.errors import coded
from hub.schema.executor import HubExecutor
from hub.text import invalid_text_at, printable

logger = logging.getLogger("hub.errors")

ENTITY_TYPES = frozenset({"Campaign", "Contact", "Influencer"})
_SUGGESTION = re.compile(r" Did you mean [^?]*\?")  # what it suggests are names: no "?"


class HubSchema(Schema):
    """The federation schema whose results carry error codes, logging only unexpected errors."""

    def __init__(self, *args: Any, documents: DocumentCache | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("execution_context_class", HubExecutor)
        super().__init__(*args, **kwargs)
        self.documents = documents if documents is not None else DocumentCache(max_entries=0)

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """`_execute` under the operation's span, which records its error codes and cost."""
        context = kwargs.get("context_value")
        name, operation_type = _operation_of(context, kwargs.get("operation_name"))
        with tracing.operation_span(name, operation_type) as span:
            result = await self._execute(*args, **kwargs)
            codes = [str((error.extensions or {}).get("code")) for error in result.errors or []]
            cost = (result.extensions or {}).get("cost")
            tracing.record_operation(span, codes=codes, cost=cost)
        return result

    async def _execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """Strawberry's execute, then: error codes, suggestions ("Did you mean …?") only for
        callers who may introspect, one 401 for an anonymous caller who touched a guarded
        field, and the request's denials on the audit trail. Variables that hold no valid
        text are refused before anything runs."""
        invalid = _invalid_variables(kwargs.get("variable_values"))
        if invalid is not None:
            return ExecutionResult(data=None, errors=[invalid])
        result = await super().execute(*args, **kwargs)
        context = kwargs.get("context_value")
        if result.errors:
            before = isinstance(result, PreExecutionError)
            result.errors = [coded(error, before_execution=before) for error in result.errors]
            if context is not None and "schema:introspect" not in context.granted:
                result.errors = [_without_suggestions(error) for error in result.errors]
        if context is not None and context.denials:
            _audit_denials(context)
            if context.principal.is_anonymous:
                refusal = Unauthenticated("This needs a bearer token.")
                error = GraphQLError(
                    refusal.message, original_error=refusal, extensions=refusal.extensions
                )
                return ExecutionResult(data=None, errors=[error], extensions=result.extensions)
        return result

    async def subscribe(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> AsyncGenerator[ExecutionResult, None]:
        """Strawberry's subscribe, its results as `_execute` leaves a query's: errors coded,
        suggestions only for callers who may introspect, denials on the audit trail. A refusal
        before the stream starts (limits, cost, a denied field) is its one `PreExecutionError`."""
        invalid = _invalid_variables(variable_values)
        if invalid is not None:
            return _one(PreExecutionError(data=None, errors=[invalid]))
        results = await super().subscribe(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
        )
        return self._coded_stream(results, context_value)

    async def _coded_stream(
        self, results: AsyncGenerator[ExecutionResult, None], context: Any
    ) -> AsyncGenerator[ExecutionResult, None]:
        try:
            async with contextlib.aclosing(results):
                async for result in results:
                    yield self._coded(result, context)
        except HubError as refusal:
            error = GraphQLError(
                refusal.message, original_error=refusal, extensions=refusal.extensions
            )
            yield self._coded(PreExecutionError(data=None, errors=[error]), context)

    def _coded(self, result: ExecutionResult, context: Any) -> ExecutionResult:
        if result.errors:
            before = isinstance(result, PreExecutionError)
            result.errors = [coded(error, before_execution=before) for error in result.errors]
            if context is not None and "schema:introspect" not in context.granted:
                result.errors = [_without_suggestions(error) for error in result.errors]
        if context is not None and context.denials:
            _audit_denials(context)
            context.denials.clear()
        return result

    def entities_resolver(
        self, info: Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """`_entities`, refusing representations that are not `{__typename, id}` of ours."""
        for index, representation in enumerate(representations):
            if not (
                isinstance(representation, dict)
                and representation.get("__typename") in ENTITY_TYPES
                and isinstance(representation.get("id"), str)
                and set(representation) == {"__typename", "id"}
            ):
                raise BadUserInput(
                    f"representations[{index}] must be {{__typename, id}} of one of "
                    f"{', '.join(sorted(ENTITY_TYPES))}.",
                    argument="representations",
                )
            typename = representation["__typename"]
            if (typename, "id") in getattr(info.context, "denied", frozenset()):
                # Resolving it would tell a caller who may not read the type whether it exists.
                raise Forbidden(f"You may not use `{typename}`.", coordinate=f"{typename}.id")
        copies = [FederationAny(dict(r)) for r in representations]  # type: ignore[call-overload]
        return super().entities_resolver(info, copies)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, HubError | GraphQLError):
                logger.error("unexpected error at %s", error.path, exc_info=original)
            elif original is None and error.path:
                logger.error("unexpected error at %s: %s", error.path, error.message)


async def _one(result: ExecutionResult) -> AsyncGenerator[ExecutionResult, None]:
    yield result


def _operation_of(context: Any, name: Any) -> tuple[str | None, str | None]:
    """The name and type of the operation the request runs, from its parsed document: a name
    the document does not hold (any text a caller sends) is never used."""
    document = getattr(context, "document", None)
    if document is None or not (name is None or isinstance(name, str)):
        return None, None
    operation = document.operation(name)
    if operation is None:
        return None, None
    return (None if operation.name is None else operation.name.value), operation.operation.value


def _invalid_variables(variables: Any) -> GraphQLError | None:
    """BAD_USER_INPUT naming the first variable that holds a string UTF-8 cannot encode: the
    one check every variable passes, whatever field or resolver it is meant for."""
    path = invalid_text_at(variables)
    if path is None:
        return None
    where = printable(path)
    error = BadUserInput(
        f"Variable `${where}` holds a lone surrogate, which is not valid Unicode text.",
        variable=where,
    )
    return GraphQLError(error.message, original_error=error, extensions=error.extensions)


def _without_suggestions(error: GraphQLError) -> GraphQLError:
    """The error without graphql-core's "Did you mean …?", which it writes into validation
    errors and variable errors alike, at the end of a message or inside it."""
    error.message = _SUGGESTION.sub("", error.message)
    return error


def _audit_denials(context: Any) -> None:
    if context.audit is None:
        return
    principal = context.principal
    now = datetime.now(UTC)
    for type_name, field_name in sorted(context.denials):
        context.audit.record(
            AuditEvent.by(
                principal,
                at=now,
                coordinate=f"{type_name}.{field_name}",
                decision="denied",
                reason="anonymous" if principal.is_anonymous else "scope",
            )
        )
