"""OpenTelemetry traces: the process's tracer provider from the standard `OTEL_*` variables,
the hub's spans (request, operation, source call, store statement) and the headers that
carry a request's trace and id to every upstream.

    HTTP request (server span, `TracingMiddleware`)
      └ GraphQL operation (`operation_span`, in `HubSchema.execute`)
          ├ source call (`source_call_span`, in `SourceClient`) ── traceparent, X-Request-Id ─▶
          └ store statement (`trace_statements` on the engine; `statement_span` for a read
            on the driver's own connection, `hub.store.reads`)

No span attribute holds a personal value or a secret: no headers, no query strings, no
GraphQL variables, SQL without its parameters, and errors by their type or code only.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.settings import SettingsError

SERVICE_NAME = "influencer-hub"
"""`service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one."""
MAX_OPERATION_NAME_CHARS = 100
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_ID: ContextVar[str | None] = ContextVar("hub_request_id", default=None)
"""The id of the request being served (`RequestIdMiddleware` sets it); sent upstream."""
_BATCH: ContextVar[tuple[str, int] | None] = ContextVar("hub_source_batch", default=None)
"""(kind, number of keys) of the `load_many` batch an upstream call is made for."""
_QUIET = {"record_exception": False, "set_status_on_exception": False}
"""An exception's message may quote anything: spans record its type only."""
_W3C = TraceContextTextMapPropagator()
"""W3C trace context only: a caller's `baggage` is neither read nor passed on upstream."""

MAX_STATEMENT_CHARS = 2048
"""A store statement as a span records it: the start of a long `IN (?, ?, …)` is enough."""


# -- the provider -----------------------------------------------------------------------------


@dataclass
class _Active:
    provider: trace.TracerProvider | None = None
    tracer: trace.Tracer | None = None
    exporting: bool = True
    """Whether the provider sends its spans anywhere: a provider built without an exporter
    makes the spans that carry a trace upstream and into the logs, and no statement spans,
    which would go nowhere."""


_SILENT: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
"""Providers `build_provider` made without an exporter."""


_active = _Active()


def setup_tracing(environ: Mapping[str, str] = os.environ) -> trace.TracerProvider:
    """The process's tracer provider, made from the environment on the first call (the app
    factory and `hub serve` call this; later calls return the same one). Also the global
    provider, unless one is set already (e.g. by `opentelemetry-instrument`), which is then
    used instead. A bad `OTEL_TRACES_EXPORTER` is a `SettingsError`."""
    if _active.provider is not None:
        return _active.provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = build_provider(environ)
        trace.set_tracer_provider(provider)
    install(provider)
    return provider


def install(provider: trace.TracerProvider | None) -> trace.TracerProvider | None:
    """Make `provider` the one the hub's spans come from (tests install their own, with an
    in-memory exporter); None means "set up from the environment at the next span".
    Returns the one it replaces."""
    previous = _active.provider
    _active.provider = provider
    _active.tracer = None if provider is None else provider.get_tracer("hub")
    _active.exporting = provider not in _SILENT
    return previous


def build_provider(environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """An SDK provider, exporting in batches to each exporter that `environ` configures, and
    to none when none is: its spans are still real, so a traceparent is always valid. The SDK
    reads the sampler, the resource and `OTEL_SDK_DISABLED` itself."""
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    exporters = exporters_from(environ)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if not exporters:
        _SILENT.add(provider)
    return provider


def exporters_from(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names (`otlp`, `console`, `none`); unset, `otlp`
    when an OTLP endpoint is set and none otherwise (the SDK's default, `otlp` to
    localhost, would try the network on every machine that runs no collector)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    given = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    names = given or ("otlp" if traces_endpoint or endpoint else "none")
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(part.strip().lower() for part in names.split(",")):
        if name in ("none", ""):
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            _check_protocol(environ)
            url = traces_endpoint or (
                f"{endpoint.rstrip('/')}/v1/traces"
                if endpoint
                else "http://localhost:4318/v1/traces"
            )
            exporters.append(OTLPSpanExporter(endpoint=url))
        else:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER names {name!r}; the hub exports traces to otlp, "
                "console or none"
            )
    return exporters


def _check_protocol(environ: Mapping[str, str]) -> None:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        raise SettingsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}; the hub sends OTLP over "
            "http/protobuf only"
        )


def start_span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A span of the installed provider. With the SDK disabled (a no-op tracer) the caller's
    trace still goes on upstream: the span is the parent's, not an invalid one."""
    if _active.tracer is None:
        setup_tracing()
    tracer = _active.tracer
    assert tracer is not None
    span = tracer.start_span(
        name, context=parent, kind=kind, attributes=attributes, record_exception=False
    )
    if span.get_span_context().is_valid:
        return span
    return NonRecordingSpan(trace.get_current_span(parent).get_span_context())


@contextlib.contextmanager
def current_span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """`start_span`, current while the block runs and ended after it. An exception marks it
    failed by its type only: its message may hold anything."""
    span = start_span(name, kind=kind, attributes=attributes)
    with trace.use_span(span, end_on_exit=True, **_QUIET) as active:
        try:
            yield active
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


# -- HTTP -------------------------------------------------------------------------------------


class TracingMiddleware:
    """A server span per HTTP request, child of the caller's `traceparent` when it sends one.
    Its name and `http.route` are the matched route's template, never the raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        parent = _W3C.extract(carrier) if carrier else None
        method = scope["method"] if scope["method"] in HTTP_METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
        }
        request_id = scope.get("state", {}).get("request_id")
        if request_id is not None:
            attributes["hub.request_id"] = request_id
        span = start_span(method, kind=SpanKind.SERVER, parent=parent, attributes=attributes)
        status = 500

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with trace.use_span(span, end_on_exit=True, **_QUIET):
            try:
                await self.app(scope, receive, send_traced)
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                template = getattr(scope.get("route"), "path", None)
                if isinstance(template, str):
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def upstream_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, and the request's
    `X-Request-Id`: the headers every upstream request carries."""
    headers: dict[str, str] = {}
    _W3C.inject(headers)
    request_id = REQUEST_ID.get()
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    return headers


# -- GraphQL ----------------------------------------------------------------------------------


@contextlib.contextmanager
def operation_span(name: str | None, operation_type: str | None) -> Iterator[Span]:
    """A span per GraphQL operation, named after it (`anonymous` without a name)."""
    label = (name or "anonymous")[:MAX_OPERATION_NAME_CHARS]
    attributes = {"graphql.operation.name": label}
    if operation_type is not None:
        attributes["graphql.operation.type"] = operation_type
    with current_span(label, attributes=attributes) as span:
        yield span


def record_operation(
    span: Span, *, codes: Sequence[str], cost: Mapping[str, Any] | None = None
) -> None:
    """The operation's error codes (each once) and, when known, its requested and actual
    cost; `INTERNAL_SERVER_ERROR` marks the span failed."""
    if codes:
        span.set_attribute("graphql.error.codes", sorted(set(codes)))
        if "INTERNAL_SERVER_ERROR" in codes:
            span.set_status(Status(StatusCode.ERROR, "INTERNAL_SERVER_ERROR"))
    if cost is not None:
        for key, attribute in (
            ("requestedQueryCost", "hub.cost.requested"),
            ("actualQueryCost", "hub.cost.actual"),
        ):
            value = cost.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                span.set_attribute(attribute, value)


# -- sources ----------------------------------------------------------------------------------


@contextlib.contextmanager
def source_batch(kind: str, size: int) -> Iterator[None]:
    """Upstream calls made inside this block serve a `load_many` batch of `size` keys."""
    token = _BATCH.set((kind, size))
    try:
        yield
    finally:
        _BATCH.reset(token)


@contextlib.contextmanager
def source_call_span(source: str, method: str, *, host: str | None) -> Iterator[Span]:
    """A client span per upstream call: the source, the method, the host, and the kind and
    size of the `load_many` batch it serves; the caller records the outcome."""
    attributes: dict[str, Any] = {"hub.source.name": source, "http.request.method": method}
    if host:
        attributes["server.address"] = host
    batch = _BATCH.get()
    if batch is not None:
        attributes["hub.source.kind"], attributes["hub.source.batch_size"] = batch
    with current_span(f"{source} {method}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def record_outcome(span: Span, outcome: str) -> None:
    """`success` or the failure's kind (`timeout`, `server_error`, `circuit_open`, ...);
    each retry is an event `retry` on the span."""
    span.set_attribute("hub.source.outcome", outcome)
    if outcome != "success":
        span.set_status(Status(StatusCode.ERROR, outcome))


# -- the store --------------------------------------------------------------------------------

_STATEMENT_SPAN = "_hub_span"


def trace_statements(engine: Engine) -> None:
    """A client span per statement `engine` runs (the sync engine under an `AsyncEngine`):
    the SQL text with its placeholders, never the parameters; a failure by its type."""
    attributes = _statement_attributes(engine)

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context is None or not _exporting():
            return
        setattr(context, _STATEMENT_SPAN, _start_statement_span(attributes, statement))

    def after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        span = getattr(context, _STATEMENT_SPAN, None)
        if span is not None:
            span.end()

    def failed(exception_context: ExceptionContext) -> None:
        span = getattr(exception_context.execution_context, _STATEMENT_SPAN, None)
        if span is not None:
            error = type(exception_context.original_exception).__name__
            span.set_status(Status(StatusCode.ERROR, error))
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


@contextlib.contextmanager
def statement_span(engine: Engine, statement: str) -> Iterator[None]:
    """The span of a statement run on the driver's own connection (`hub.store.reads`), as
    `trace_statements` makes it for SQLAlchemy's."""
    if not _exporting():
        yield
        return
    span = _start_statement_span(_statement_attributes(engine), statement)
    try:
        yield
    except BaseException as error:
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        span.end()


def _exporting() -> bool:
    if _active.tracer is None:
        setup_tracing()
    return _active.exporting


def _statement_attributes(engine: Engine) -> dict[str, Any]:
    attributes: dict[str, Any] = {"db.system": engine.dialect.name}
    if engine.url.host:
        attributes["server.address"] = engine.url.host
    if engine.url.port:
        attributes["server.port"] = engine.url.port
    return attributes


def _start_statement_span(attributes: dict[str, Any], statement: str) -> Span:
    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    return start_span(
        f"{operation} {attributes['db.system']}".strip(),
        kind=SpanKind.CLIENT,
        attributes={
            **attributes,
            "db.operation": operation,
            "db.statement": statement[:MAX_STATEMENT_CHARS],
        },
    )
