"""GraphQL over HTTP: media types, parameters and status codes, then `schema.execute`."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from hub.errors import (
    BadRequest,
    ClientClosedRequest,
    HubError,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
)
from hub.text import invalid_text_at
from hub.web.graphiql import graphiql_page

logger = logging.getLogger("hub.http")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
GET_OPERATIONS = frozenset({OperationType.QUERY})
POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


def negotiate(accept: str | None) -> str:
    """The response media type for an Accept header (application/json when absent)."""
    if not accept:
        return JSON
    offered: dict[str, float] = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        offered[media.strip().lower()] = quality
    if offered.get(GRAPHQL_RESPONSE, 0) > 0:
        return GRAPHQL_RESPONSE
    if any(offered.get(media, 0) > 0 for media in (JSON, "application/*", "*/*")):
        return JSON
    raise NotAcceptable()


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept and "query" not in request.query_params


async def read_params(request: Request, *, max_body_bytes: int) -> GraphQLParams:
    """The four GraphQL parameters from a GET query string or a POST JSON body."""
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query_params)
        for name in ("variables", "extensions"):
            if isinstance(raw.get(name), str):
                raw[name] = _json(raw[name], name)
        return _params(raw)
    if request.method != "POST":
        raise MethodNotAllowed("GraphQL accepts GET and POST only.")
    media, *params = request.headers.get("content-type", "").split(";")
    if media.strip().lower() != JSON:
        raise UnsupportedMediaType()
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value.strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("Send the request body encoded as utf-8.")
    try:
        body = await read_body(request, max_body_bytes)
    except ClientDisconnect:
        raise ClientClosedRequest() from None
    if not body:
        raise BadRequest("The request body is empty; send a JSON object with `query`.")
    document = _json(body, "body")
    if isinstance(document, list):
        raise BadRequest("Batched requests are not enabled on this hub.")
    if not isinstance(document, dict):
        raise BadRequest("The request body must be a JSON object.")
    return _params(document)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, PAYLOAD_TOO_LARGE past `limit` bytes (declared or counted)."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only (`str.isdigit` takes "²", which `int` refuses); past 18 of them,
    # larger than any limit (`int` refuses 4,300). Any other value: the stream is counted.
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _json(text: str | bytes, name: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(f"The {name} is not valid JSON.") from None


def _params(raw: dict[str, Any]) -> GraphQLParams:
    query = raw.get("query")
    operation_name = raw.get("operationName")
    variables = raw.get("variables")
    extensions = raw.get("extensions")
    if query is not None and not isinstance(query, str):
        raise BadRequest("`query` must be a string.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("`operationName` must be a string.")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("`variables` must be a JSON object.")
    if extensions is not None and not isinstance(extensions, dict):
        raise BadRequest("`extensions` must be a JSON object.")
    if query is None and not (extensions or {}).get("persistedQuery"):
        raise BadRequest("`query` is missing.")
    # Variables are checked where they enter GraphQL (BAD_USER_INPUT, naming the variable).
    for name, value in (
        ("query", query),
        ("operationName", operation_name),
        ("extensions", extensions),
    ):
        if invalid_text_at(value) is not None:
            raise BadRequest(f"`{name}` holds a lone surrogate, which is not valid Unicode text.")
    return GraphQLParams(query, operation_name, variables, extensions)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The caller's address: the peer's, or, when the peer is a trusted proxy, the nearest
    address in `X-Forwarded-For` that is not one (a client can put anything on the left of
    the header, but not past the proxies that append to it)."""
    peer = _address(request.client.host if request.client is not None else "")
    if peer is None:
        return "unknown"
    if not _is_trusted(peer, trusted_proxies):
        return str(peer)
    hops = [
        hop.strip()
        for value in request.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
    ]
    nearest = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        nearest = address
        if not _is_trusted(address, trusted_proxies):
            break
    return str(nearest)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]
) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def allowed_operations(method: str) -> frozenset[OperationType]:
    return GET_OPERATIONS if method == "GET" else POST_OPERATIONS


def error_response(error: HubError, *, media_type: str, request_id: str) -> Response:
    body = {
        "errors": [{"message": error.message, "extensions": error.extensions}],
        "extensions": {"requestId": request_id},
    }
    headers = {"Allow": "GET, POST"} if isinstance(error, MethodNotAllowed) else {}
    if error.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return _response(body, error.http_status, media_type, headers)


def result_answer(
    result: ExecutionResult, *, media_type: str, extensions: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """The status and body for an executed request, with the status its errors call for."""
    errors = result.errors or []
    is_request_error = bool(errors) and result.data is None and not any(e.path for e in errors)
    status = 200
    if is_request_error:
        # A refusal before execution (a bad token, an empty budget) keeps its own status;
        # errors at a field's path never change it, as the data entry is there.
        refusals = [
            e.original_error
            for e in errors
            if isinstance(e.original_error, HubError) and e.original_error.http_status != 200
        ]
        if refusals and (
            isinstance(refusals[0], RequestError) or refusals[0].http_status in (401, 403, 409, 429)
        ):
            status = refusals[0].http_status
        elif media_type == GRAPHQL_RESPONSE:
            status = 400
    body: dict[str, Any] = {}
    if not is_request_error:
        body["data"] = result.data
    if errors:
        body["errors"] = [_format(error) for error in errors]
    body["extensions"] = {**(result.extensions or {}), **extensions}
    return status, body


def json_response(
    body: dict[str, Any], status: int, *, media_type: str, request_id: str, headers: dict[str, str]
) -> Response:
    body["extensions"] = {**body.get("extensions", {}), "requestId": request_id}
    if status == 401:
        headers = {**headers, "WWW-Authenticate": 'Bearer error="invalid_token"'}
    return _response(body, status, media_type, headers)


def _format(error: GraphQLError) -> dict[str, Any]:
    return dict(error.formatted)


def _response(body: Any, status: int, media_type: str, headers: dict[str, str]) -> Response:
    return Response(
        encode_json(body),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


def encode_json(body: Any) -> bytes:
    """`body` as compact JSON: with orjson (20 times faster than the standard library on an
    answer of 18 KB), values it does not know written as `str` does; the standard library
    writes what orjson refuses (text that is not valid Unicode)."""
    try:
        return orjson.dumps(body, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(body, separators=(",", ":"), default=str).encode()


def graphiql(
    endpoint: str, *, headers: dict[str, str] | None = None, query: str | None = None
) -> HTMLResponse:
    page = graphiql_page(
        endpoint=endpoint, assets_path="/graphiql/assets", headers=headers, query=query
    )
    # A page that holds a token is kept by no cache.
    return HTMLResponse(page, headers={"Cache-Control": "no-store"} if headers else None)
