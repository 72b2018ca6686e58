"""The vendor-style JSON error body every simulator answers with: `{"error": {code, message}}`."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
}


def problem(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def answer_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's `HTTPException` (raised by handlers on bad input) in the vendor's shape."""
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, headers=exc.headers)
