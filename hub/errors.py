"""The hub's one exception tree; each class owns its `extensions.code`.

    HubError                          INTERNAL_SERVER_ERROR (500, message masked)
    ├── RequestError                  HTTP-level refusals, before GraphQL runs
    │   ├── BadRequest                BAD_REQUEST (400): malformed JSON, missing query
    │   ├── ClientClosedRequest       CLIENT_CLOSED_REQUEST (499): gone before the body ended
    │   ├── MethodNotAllowed          METHOD_NOT_ALLOWED (405)
    │   ├── NotAcceptable             NOT_ACCEPTABLE (406)
    │   ├── PayloadTooLarge           PAYLOAD_TOO_LARGE (413)
    │   └── UnsupportedMediaType      UNSUPPORTED_MEDIA_TYPE (415)
    ├── Unauthenticated               UNAUTHENTICATED (401)
    ├── Forbidden                     FORBIDDEN
    ├── ConsentRequired               CONSENT_REQUIRED
    ├── NotFound                      NOT_FOUND
    ├── BadUserInput                  BAD_USER_INPUT
    ├── QueryTooComplex               QUERY_TOO_COMPLEX (limit, actual)
    ├── CostTooExpensive              COST_ESTIMATED_TOO_EXPENSIVE (cost)
    ├── Throttled                     THROTTLED (429, retryAfter)
    ├── PersistedQueryNotFound        PERSISTED_QUERY_NOT_FOUND
    ├── PersistedQueryNotAllowed      PERSISTED_QUERY_NOT_ALLOWED
    ├── IdempotencyConflict           IDEMPOTENCY_CONFLICT (409)
    └── SourceError                   a source behind an adapter failed (source)
        ├── SourceUnavailable         SOURCE_UNAVAILABLE
        └── SourceTimeout             SOURCE_TIMEOUT

Raising any of these inside a resolver or extension puts `code` and `extensions` on the
GraphQL error; anything that is not a HubError is masked as INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HubError(Exception):
    """Base of every error the hub reports on purpose."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"
    default_message: ClassVar[str] = "Unexpected error."
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        self.message = message or self.default_message
        self.details = extensions
        super().__init__(self.message)

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.details}


class RequestError(HubError):
    """The HTTP request itself is unusable; no GraphQL document runs."""

    http_status = 400


class BadRequest(RequestError):
    code = "BAD_REQUEST"
    default_message = "The request is malformed."


class ClientClosedRequest(RequestError):
    """The client disconnected before its request body ended: nobody reads the answer, and
    nothing is wrong with the hub (499, as nginx logs it)."""

    code = "CLIENT_CLOSED_REQUEST"
    default_message = "The client closed the connection before the request body ended."
    http_status = 499


class MethodNotAllowed(RequestError):
    code = "METHOD_NOT_ALLOWED"
    default_message = "Method not allowed."
    http_status = 405


class NotAcceptable(RequestError):
    code = "NOT_ACCEPTABLE"
    default_message = (
        "None of the accepted media types is served; "
        "ask for application/graphql-response+json or application/json."
    )
    http_status = 406


class PayloadTooLarge(RequestError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is larger than allowed."
    http_status = 413


class UnsupportedMediaType(RequestError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Send the request body as application/json."
    http_status = 415


class Unauthenticated(HubError):
    code = "UNAUTHENTICATED"
    default_message = "A valid bearer token is required."
    http_status = 401


class Forbidden(HubError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."
    http_status = 200


class ConsentRequired(HubError):
    code = "CONSENT_REQUIRED"
    default_message = "The data subject has no valid consent or basis for your purpose."
    http_status = 200


class NotFound(HubError):
    code = "NOT_FOUND"
    default_message = "Not found."
    http_status = 200


class BadUserInput(HubError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid argument."
    http_status = 200


class QueryTooComplex(HubError):
    code = "QUERY_TOO_COMPLEX"
    default_message = "The query is too complex."
    http_status = 400


class CostTooExpensive(HubError):
    code = "COST_ESTIMATED_TOO_EXPENSIVE"
    default_message = "The query costs more than allowed."
    http_status = 400


class Throttled(HubError):
    code = "THROTTLED"
    default_message = "The cost budget of this client is used up; retry later."
    http_status = 429


class PersistedQueryNotFound(HubError):
    code = "PERSISTED_QUERY_NOT_FOUND"
    default_message = "PersistedQueryNotFound"
    http_status = 200


class PersistedQueryNotAllowed(HubError):
    code = "PERSISTED_QUERY_NOT_ALLOWED"
    default_message = "Only registered operations are allowed for this client."
    http_status = 400


class IdempotencyConflict(HubError):
    code = "IDEMPOTENCY_CONFLICT"
    default_message = "This Idempotency-Key cannot be used for this request now."
    http_status = 409


class SourceError(HubError):
    """A source behind an adapter failed; `source` names it."""

    code = "SOURCE_UNAVAILABLE"
    http_status = 200

    def __init__(self, source: str, message: str | None = None, **extensions: Any) -> None:
        super().__init__(
            message or f"The {source} source is unavailable.", source=source, **extensions
        )
        self.source = source


class SourceUnavailable(SourceError):
    code = "SOURCE_UNAVAILABLE"


class SourceTimeout(SourceError):
    code = "SOURCE_TIMEOUT"

    def __init__(self, source: str, message: str | None = None, **extensions: Any) -> None:
        super().__init__(source, message or f"The {source} source timed out.", **extensions)


class TenantSuspended(HubError):
    code = "FORBIDDEN"
    default_message = "This tenant is suspended."
    http_status = 403


class TenantClosed(HubError):
    """A token of a deleted tenant: refused like a suspended one's, saying no more."""

    code = "FORBIDDEN"
    default_message = "This tenant's tokens are not accepted."
    http_status = 403


class UnknownExport(RequestError):
    code = "NOT_FOUND"
    default_message = "No document of that id can be exported."
    http_status = 404


class UnknownWebhookSource(RequestError):
    code = "NOT_FOUND"
    default_message = "No webhooks are received from that source."
    http_status = 404


class NoSuchRoute(RequestError):
    code = "NOT_FOUND"
    default_message = "There is nothing at this path."
    http_status = 404
