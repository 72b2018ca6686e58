"""Flat files for BI tools: `GET /export/{documentId}.csv` and `.ndjson`.

documentId: a trusted document's operation name or hash, or a persisted query's hash
?variables=<URL-encoded JSON>, the bearer token as for /graphql
  -> page 1 through `execute_request` (the whole pipeline: limits, cost charged to the
     client, authorization, consent per value and its audit); a refusal here is the
     usual JSON error, nothing streamed
  -> the first list of objects in the answer is the rows; the columns come from the
     document's selection of it (nested objects as `parent.child`, lists joined with `;`)
  -> streamed row by row; while the operation declares `$after` and selects the list's
     `pageInfo { hasNextPage endCursor }`, the next page is asked for with `after` (and
     `first`, when declared and not given, at the page size cap), each page through the
     same pipeline, each dropped once written: memory stays flat however many rows
  -> a failure after the first row ends the file with a last line that says so
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from starlette.responses import Response, StreamingResponse

from hub.errors import BadRequest, HubError, UnknownExport
from hub.graphql_http import GraphQLParams

FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
HASH = re.compile(r"[0-9a-f]{64}")
MAX_THROTTLED_WAIT_S = 30.0
"""The longest a page waits, in all, for the budget before the export stops."""
MAX_VARIABLES_BYTES = 64 * 1024
MAX_PAGES = 10_000
"""The most pages one export follows (a million rows at the page size cap of 100)."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula in a text cell."""


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What the operation says about its rows: where the list is, its columns, and how to
    ask for the next page."""

    digest: str
    rows_at: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]
    pages: bool
    first: bool
    nodes: bool = False
    """The list is a connection's `edges`: each row is an edge's `node`."""

    @property
    def header(self) -> list[str]:
        return [".".join(column) for column in self.columns]


def export_id(name: str, trusted: dict[str, str], manifest: dict[str, str]) -> tuple[str, str]:
    """(document hash, format) of `{documentId}.{csv|ndjson}`; `UnknownExport` otherwise."""
    stem, _, extension = name.rpartition(".")
    if extension not in FORMATS or not stem:
        raise UnknownExport("Export as `{documentId}.csv` or `{documentId}.ndjson`.")
    digest = trusted.get(stem, stem)
    if digest not in manifest and not HASH.fullmatch(digest):
        raise UnknownExport()
    return digest, extension


def declared(document: DocumentNode) -> set[str]:
    """The variables the document's operations declare."""
    return {
        variable.variable.name.value
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        for variable in definition.variable_definitions or ()
    }


def read_variables(raw: str | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if len(raw) > MAX_VARIABLES_BYTES:
        raise BadRequest(f"`variables` is longer than {MAX_VARIABLES_BYTES} bytes.")
    try:
        variables = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("`variables` is not valid JSON.") from None
    if not isinstance(variables, dict):
        raise BadRequest("`variables` must be a JSON object.")
    return variables


def plan_export(document: DocumentNode, digest: str, data: Any) -> ExportPlan:
    """The rows of the first page's `data`, and the columns the document selects for them."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        raise BadRequest("Only a document of one query can be exported.")
    operation = operations[0]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    path = _first_list(data, ())
    if path is None:
        raise BadRequest("The answer holds no list of objects to export.")
    selection: SelectionSetNode | None = operation.selection_set
    for key in path:
        field = _field(selection, key, fragments)
        selection = field.selection_set if field is not None else None
    node = _field(selection, "node", fragments) if path[-1] == "edges" else None
    if node is not None and node.selection_set is not None:
        selection = node.selection_set
    columns = tuple(_leaves(selection, fragments, ()))
    variables = declared(document)
    connection = _at(data, path[:-1])
    page_info = connection.get("pageInfo") if isinstance(connection, dict) else None
    pages = (
        "after" in variables
        and isinstance(page_info, dict)
        and {"hasNextPage", "endCursor"} <= page_info.keys()
    )
    return ExportPlan(digest, path, columns, pages, "first" in variables, node is not None)


def _first_list(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path of the first list of objects (or empty list) in `value`, depth first."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(inner, list) and all(isinstance(item, dict) for item in inner):
                return (*path, key)
            found = _first_list(inner, (*path, key))
            if found is not None:
                return found
    return None


def _selections(
    selection: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """The fields of a selection set, those of its fragments included, in order."""
    if selection is None:
        return
    for node in selection.selections:
        if isinstance(node, FieldNode):
            yield node
        elif isinstance(node, InlineFragmentNode):
            yield from _selections(node.selection_set, fragments)
        elif isinstance(node, FragmentSpreadNode) and node.name.value in fragments:
            yield from _selections(fragments[node.name.value].selection_set, fragments)


def _field(
    selection: SelectionSetNode | None, key: str, fragments: dict[str, FragmentDefinitionNode]
) -> FieldNode | None:
    for node in _selections(selection, fragments):
        if (node.alias or node.name).value == key:
            return node
    return None


def _leaves(
    selection: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    prefix: tuple[str, ...],
) -> Iterator[tuple[str, ...]]:
    seen: set[str] = set()
    for node in _selections(selection, fragments):
        key = (node.alias or node.name).value
        if key in seen:
            continue
        seen.add(key)
        if node.selection_set is None:
            yield (*prefix, key)
        else:
            yield from _leaves(node.selection_set, fragments, (*prefix, key))


def _at(value: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def cell(item: Any, column: Sequence[str]) -> Any:
    """The value at `column` in a row: a leaf as it is, values under lists flattened."""
    values = [item]
    listed = False
    for key in column:
        step: list[Any] = []
        for value in values:
            inner = value.get(key) if isinstance(value, dict) else None
            if isinstance(inner, list):
                listed = True
                step.extend(inner)
            elif inner is not None:
                step.append(inner)
        values = step
    if not values:
        return None
    if len(values) == 1 and not listed:
        return values[0]
    return ";".join(_text(value) for value in values)


def _inert(value: Any) -> str:
    """A CSV cell: text that a spreadsheet would take for a formula is prefixed with `'`
    (numbers are left as they are: `-5` is a number, not a formula)."""
    text = _text(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class Writer:
    """Rows as one format's lines."""

    def __init__(self, extension: str, plan: ExportPlan) -> None:
        self.extension = extension
        self.plan = plan
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")

    def header(self) -> str:
        if self.extension != "csv":
            return ""
        return self._line(self.plan.header)

    def row(self, item: dict[str, Any]) -> str:
        values = [cell(item, column) for column in self.plan.columns]
        if self.extension == "csv":
            return self._line([_inert(value) for value in values])
        record = dict(zip(self.plan.header, values, strict=True))
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"

    def failure(self, code: str, message: str) -> str:
        if self.extension == "csv":
            return f"# export stopped: {code}: {message}\n"
        body = {"error": {"code": code, "message": message}}
        return json.dumps(body, separators=(",", ":")) + "\n"

    def _line(self, values: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(values)
        return self._buffer.getvalue()


def attachment(
    lines: AsyncIterator[str], *, filename: str, extension: str, headers: dict[str, str]
) -> Response:
    return StreamingResponse(
        _encoded(lines),
        media_type=FORMATS[extension],
        headers={**headers, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _encoded(lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for line in lines:
        if line:
            yield line.encode("utf-8")


def rows_of(data: Any, plan: ExportPlan) -> list[dict[str, Any]]:
    found = _at(data, plan.rows_at)
    if not isinstance(found, list):
        return []
    items = [item.get("node") for item in found] if plan.nodes else found
    return [item for item in items if isinstance(item, dict)]


def next_cursor(data: Any, plan: ExportPlan) -> str | None:
    """The cursor of the next page, when there is one and the operation can ask for it."""
    if not plan.pages:
        return None
    page_info = _at(data, (*plan.rows_at[:-1], "pageInfo"))
    if not isinstance(page_info, dict) or not page_info.get("hasNextPage"):
        return None
    cursor = page_info.get("endCursor")
    return cursor if isinstance(cursor, str) else None


def persisted(digest: str) -> dict[str, Any]:
    """The `extensions` that name a trusted or persisted document by its hash."""
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


class Cursors:
    """The cursors an export followed: a page whose next cursor was seen before, or past
    `MAX_PAGES`, ends it (a document may select a `pageInfo` its `$after` does not move)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def refuse(self, cursor: str) -> tuple[str, str] | None:
        if cursor in self._seen:
            return (
                "BAD_REQUEST",
                "The next page's cursor was followed before: `$after` does not page the rows.",
            )
        if len(self._seen) >= MAX_PAGES:
            return "QUERY_TOO_COMPLEX", f"An export ends after {MAX_PAGES} pages."
        self._seen.add(cursor)
        return None


def page_params(
    plan_digest: str, variables: dict[str, Any], *, after: str | None, first: int | None
) -> GraphQLParams:
    values = dict(variables)
    if after is not None:
        values["after"] = after
    if first is not None and "first" not in variables:
        values["first"] = first
    return GraphQLParams(
        query=None, operation_name=None, variables=values, extensions=persisted(plan_digest)
    )


async def waited_for_budget(status: int, body: dict[str, Any], *, waited_s: float) -> float:
    """Wait out a THROTTLED page while the page's waits stay within `MAX_THROTTLED_WAIT_S`
    in all: the seconds waited now, 0 when the page is not one to wait for."""
    if status != 429:
        return 0.0
    errors = body.get("errors") or [{}]
    retry_after = errors[0].get("extensions", {}).get("retryAfter")
    if not isinstance(retry_after, int | float) or retry_after <= 0:
        return 0.0
    if waited_s + retry_after > MAX_THROTTLED_WAIT_S:
        return 0.0
    await asyncio.sleep(retry_after)
    return float(retry_after)


def stopped(status: int, body: dict[str, Any]) -> tuple[str, str] | None:
    """The (code, message) that stops an export at a page, if the page was not answered."""
    if status == 200 and body.get("data") is not None:
        return None
    error = (body.get("errors") or [{}])[0]
    code = error.get("extensions", {}).get("code") or HubError.code
    return str(code), str(error.get("message") or HubError.default_message)
