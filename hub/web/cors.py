"""CORS for the origins in `HUB_CORS_ORIGINS`: Starlette's, telling other origins nothing."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id")
EXPOSED_HEADERS = ("X-Request-Id",)
MAX_AGE_S = 600


class OriginsOnly(CORSMiddleware):
    """Starlette's CORS middleware, except that a preflight from an origin not on the list
    gets no `Access-Control-Allow-*` header at all (Starlette lists the allowed methods and
    headers to anyone who asks)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(origin=request_headers["origin"]):
            return PlainTextResponse(
                "Disallowed CORS origin", status_code=400, headers={"Vary": "Origin"}
            )
        return super().preflight_response(request_headers)
