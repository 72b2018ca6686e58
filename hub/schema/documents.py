"""Documents parsed and validated once, by the hash of their text, and only within the limits.

    request text ──▶ hash ──▶ cached? ──yes──▶ its token count within the caller's limit?
                                 │ no
                                 ▼
                  count tokens (stop past the limit) ──▶ parse ──▶ kept (small ones only)

Nothing is parsed before its tokens are counted, and a document that failed a limit or did
not parse is never kept, so no request can make the process keep more than one small entry.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    Visitor,
    parse,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from hub.errors import BadRequest, QueryTooComplex
from hub.policy.limits import check_token_count, count_tokens

MAX_KEPT_TEXT_BYTES = 64 * 1024
"""Longer documents are parsed for their request only (a token may be a long string)."""
MAX_KEPT_TOKENS = 100_000
"""Tokens of all kept documents together: a parsed token takes about 600 bytes."""
MAX_KEPT_PER_DOCUMENT = 64
"""Values worked out of one document and kept with it (shapes, estimates per variables)."""

T = TypeVar("T")


@dataclass(slots=True)
class Document:
    """A parsed document, the number of its tokens and, once known, its validation errors
    and the planned executor's plans of it."""

    node: DocumentNode
    tokens: int
    errors: list[GraphQLError] | None = field(default=None)
    _kept: OrderedDict[Any, Any] = field(default_factory=OrderedDict)

    def kept(self, key: Any, make: Callable[[], T]) -> T:
        """What `make` works out of this document (a shape, a cost estimate per variables),
        made once per key; the least recently used go past `MAX_KEPT_PER_DOCUMENT` keys, and
        all of them with the document."""
        kept = self._kept
        if key in kept:
            kept.move_to_end(key)
            value: T = kept[key]
            return value
        made = kept[key] = make()
        if len(kept) > MAX_KEPT_PER_DOCUMENT:
            kept.popitem(last=False)
        return made

    @property
    def directive_variables(self) -> tuple[str, ...]:
        """The variables that `@skip` and `@include` read anywhere in the document."""
        return self.kept("directive variables", lambda: directive_variables(self.node.definitions))

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation a request runs: the one named `name`, or the only one (the GraphQL
        specification's GetOperation); None when there is no such operation."""
        operations = [d for d in self.node.definitions if isinstance(d, OperationDefinitionNode)]
        if name is None:
            return operations[0] if len(operations) == 1 else None
        return next((o for o in operations if o.name is not None and o.name.value == name), None)

    def runs_mutation(self, operation_name: str | None) -> bool:
        operation = self.operation(operation_name)
        return operation is not None and operation.operation is OperationType.MUTATION


class DocumentCache:
    """Parsed documents by the sha256 of their text, least recently used dropped first, at
    most `max_entries` of them and `max_tokens` tokens together."""

    def __init__(self, *, max_entries: int, max_tokens: int = MAX_KEPT_TOKENS) -> None:
        self.max_entries = max_entries
        self.max_tokens = max_tokens
        self._entries: OrderedDict[str, Document] = OrderedDict()
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        return self._tokens

    def parse(self, text: str, *, max_tokens: int) -> Document:
        """The document of `text`, refused with QUERY_TOO_COMPLEX past `max_tokens` tokens
        before any of it is parsed; a syntax error is graphql-core's `GraphQLSyntaxError`."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        document = self._entries.get(digest)
        if document is not None:
            self._entries.move_to_end(digest)
        else:
            tokens = count_tokens(text, limit=max_tokens)
            check_token_count(tokens, max_tokens)
            document = Document(parse(text, max_tokens=max_tokens), tokens)
            if self.max_entries > 0 and len(text) <= MAX_KEPT_TEXT_BYTES:
                self._entries[digest] = document
                self._tokens += tokens
                while len(self._entries) > self.max_entries or self._tokens > self.max_tokens:
                    self._tokens -= self._entries.popitem(last=False)[1].tokens
        return _within(document, max_tokens)

    def prepare(self, text: str | None, *, max_tokens: int) -> Document | None:
        """`parse`, or None when the document is over the limit or does not parse: execution
        parses it again and says why."""
        if not text:
            return None
        try:
            return self.parse(text, max_tokens=max_tokens)
        except (GraphQLError, QueryTooComplex):
            return None


def directive_variables(nodes: Iterable[Node]) -> tuple[str, ...]:
    """The names of the variables `@skip(if:)` and `@include(if:)` read in `nodes`."""
    names: dict[str, None] = {}

    class Collect(Visitor):
        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            if node.name.value in ("skip", "include"):
                for argument in node.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        names[argument.value.name.value] = None

    for node in nodes:
        visit(node, Collect())
    return tuple(names)


def _within(document: Document, max_tokens: int) -> Document:
    check_token_count(document.tokens, max_tokens)
    return document


def validation_errors(
    schema: GraphQLSchema, document: Document, rules: Sequence[type[ASTValidationRule]]
) -> list[GraphQLError]:
    """The document's validation errors against `schema`, worked out once per document; the
    list returned is the caller's to change."""
    if document.errors is None:
        document.errors = validate_document(schema, document.node, tuple(rules))
    return list(document.errors)


class Documents(SchemaExtension):
    """Parsing and validation through the schema's `DocumentCache`, within the caller's token
    limit (`context.cost`), refusing a document whose operation the request does not name."""

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        cache: DocumentCache = execution.schema.documents  # type: ignore[attr-defined]
        if execution.query is not None and getattr(context, "cost", None) is not None:
            document = getattr(context, "document", None)
            if document is None:
                limits = context.cost.limits_for(context.principal.roles)
                document = cache.parse(execution.query, max_tokens=limits.max_tokens)
            if document.operation(execution.operation_name) is None:
                raise BadRequest(_missing_operation(document, execution.operation_name))
            execution.graphql_document = document.node
            context.document = document
        yield

    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        document = getattr(execution.context, "document", None)
        if document is not None and document.node is execution.graphql_document:
            execution.pre_execution_errors = validation_errors(
                execution.schema._schema, document, execution.validation_rules
            )
        yield


def _missing_operation(document: Document, name: str | None) -> str:
    if name is not None:
        return "The document has no operation of that name; name one with `operationName`."
    if any(isinstance(d, OperationDefinitionNode) for d in document.node.definitions):
        return "The document has several operations; name the one to run with `operationName`."
    return "The document has no operation to run."
