"""`create_app(settings)`: the Starlette app; its lifespan opens the store and the clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from hub import export, graphql_http, graphql_ws, webhooks
from hub.audit import AuditLog
from hub.auth import Authenticator, Principal, issue_demo_token
from hub.budget import Bucket, create_bucket
from hub.context import Context
from hub.crm_sync import CrmOutbox, CrmSyncSchedule, apply_change
from hub.engine.batches import BATCHES
from hub.engine.fallback import QueryEngine
from hub.erasure import ErasureRetrier
from hub.errors import (
    BadRequest,
    HubError,
    MethodNotAllowed,
    NoSuchRoute,
    PersistedQueryNotFound,
    UnknownExport,
    UnknownWebhookSource,
)
from hub.graphql_http import GraphQLParams
from hub.idempotency import (
    Claim,
    IdempotencyKeys,
    StoredAnswer,
    request_hash,
    scoped_key,
    without_personal_data,
)
from hub.ingest import IngestSchedule
from hub.observability.logs import (
    RequestLog,
    current_request,
    end_request,
    log_request,
    start_request,
)
from hub.observability.metrics import CONTENT_TYPE, Metrics
from hub.observability.tracing import REQUEST_ID, TracingMiddleware, setup_tracing
from hub.persisted import (
    QueryStore,
    create_query_store,
    load_manifest,
    resolve_query,
    trusted_names,
)
from hub.policies import Policies, load_for_schema
from hub.policy.limits import check_tokens
from hub.realtime import MetricFeed, Subscriber
from hub.responses import ResponseCache, rules_fingerprint
from hub.schema.documents import Document
from hub.schema.root import build_schema
from hub.schema.schema import HubSchema
from hub.settings import Settings, check_serving_secrets
from hub.simulators.deliveries import Plan
from hub.sources.cache import Cache
from hub.sources.crm import CrmSource
from hub.sources.redis_link import RedisLink, is_redis
from hub.sources.registry import Sources
from hub.sources.social import MetricRecord, SocialSource
from hub.sources.store import Store
from hub.sources.upstreams import Upstreams, open_upstreams
from hub.store import migrate, seed
from hub.store.engine import create_engine
from hub.store.leases import Leases
from hub.store.tenancy import warn_if_unbound
from hub.sweep import StoreSweeper
from hub.tenants import TenantGate
from hub.web import cors
from hub.web.graphiql import DEMO_QUERY, graphiql_assets_dir
from hub.webhooks import Inbox

logger = logging.getLogger("hub.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
STORE_CHECK_TIMEOUT_S = 2.0
"""How long /readyz waits for the store before calling it unreachable."""
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6
"""zlib's default. On the 20 KB list answer: level 6 takes 0.26 ms for 3.6 KB, level 9
0.43 ms for 1 % less."""
GC_THRESHOLDS = (20_000, 20, 20)
"""The collector's thresholds while the hub serves (Python's default: 700, 10, 10)."""


class StoreNotMigrated(Exception):
    """The store is behind the newest migration; `hub migrate` brings it up to date."""


@dataclass
class Hub:
    """What the lifespan opens and every request shares."""

    settings: Settings
    schema: HubSchema
    policies: Policies
    engine: AsyncEngine
    store: Store
    authenticator: Authenticator
    audit: AuditLog
    bucket: Bucket
    queries: QueryStore
    manifest: dict[str, str]
    idempotency: IdempotencyKeys
    sources: Sources = field(default_factory=Sources)
    cache: Cache | None = None
    metrics: Metrics = field(default_factory=Metrics)
    upstreams: Upstreams | None = None
    responses: ResponseCache | None = None
    query_engine: QueryEngine | None = None
    inbox: Inbox | None = None
    trusted_names: dict[str, str] = field(default_factory=dict)
    """The trusted documents' hashes by their operations' names."""
    feed: MetricFeed = field(default_factory=MetricFeed)


def create_app(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The hub as an ASGI app; `transport` replaces every upstream HTTP connection (tests).
    Outside the demo, unsafe secrets stop it here (`SettingsError`)."""
    check_serving_secrets(settings)
    setup_tracing()
    schema = build_schema(settings)
    policies = load_for_schema(settings.policies_dir, schema)
    manifest = load_manifest(
        settings.trusted_documents or settings.policies_dir / "trusted-documents.json"
    )
    registered = trusted_names(manifest)
    metrics = Metrics(
        registered_operations=set(registered),
        max_operations=settings.metrics_max_operations,
        consent_fields=policies.consent.fields,
    )
    state: dict[str, Hub] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(settings)
        reads = create_engine(settings, reads=True)
        store = Store(engine, reads=reads)
        authenticator = Authenticator(settings, transport=transport)
        authenticator.tenants = TenantGate(store, ttl_s=settings.tenant_status_ttl_s)
        audit: AuditLog | None = None
        # One Redis client (or none) for the budgets, the persisted queries and the cache, so
        # that they lose Redis, fall back and come back together.
        link = RedisLink.from_url(settings.cache_url) if is_redis(settings.cache_url) else None
        bucket = create_bucket(
            settings.cache_url,
            namespace=settings.cache_namespace,
            link=link,
            replicas=settings.replicas,
        )
        queries = create_query_store(
            settings.cache_url, namespace=settings.cache_namespace, link=link
        )
        upstreams: Upstreams | None = None
        # Kept days reach the subscriptions of every replica over the Redis the caches use.
        feed = MetricFeed(link=link, namespace=settings.cache_namespace)
        retrier: ErasureRetrier | None = None
        inbox: Inbox | None = None
        schedule: IngestSchedule | None = None
        sweeper: StoreSweeper | None = None
        outbox: CrmOutbox | None = None
        crm_schedule: CrmSyncSchedule | None = None
        try:
            upstreams = await open_upstreams(
                settings, transport=transport, link=link, metrics=metrics
            )
            audit = AuditLog(engine, metrics=metrics, max_events=settings.audit_buffer_max_events)
            await prepare_store(engine, demo=settings.demo)
            await warn_if_unbound(engine)
            await audit.start()
            sources = upstreams.sources
            on_days = _told_of_days(upstreams.forget_account_days, feed.publish)
            retrier = ErasureRetrier(
                store,
                lambda: sources.crm,
                interval_s=settings.erasure_retry_interval_s,
                leases=Leases(store.sessions),
            )
            retrier.start()
            forget_contact = upstreams.forget_contact

            def crm_source() -> CrmSource | None:
                return sources.crm if isinstance(sources.crm, CrmSource) else None

            async def on_crm_change(tenant: str, crm_id: str) -> None:
                crm = crm_source()
                if crm is None:
                    raise RuntimeError("the CRM is not configured")
                await apply_change(
                    store, crm, policies.sync, tenant, crm_id, on_contact=forget_contact
                )

            inbox = Inbox(
                store,
                on_days=on_days,
                on_crm_change=on_crm_change,
                leases=Leases(store.sessions),
                interval_s=settings.webhook_retry_interval_s,
            )
            inbox.start()
            outbox = CrmOutbox(
                store,
                crm_source,
                interval_s=settings.crm_outbox_interval_s,
                leases=Leases(store.sessions),
            )
            outbox.start()
            if settings.crm_sync_interval_s > 0:
                crm_schedule = CrmSyncSchedule(
                    store,
                    crm_source,
                    policies.sync,
                    interval_s=settings.crm_sync_interval_s,
                    on_contact=forget_contact,
                )
                crm_schedule.start()
            await _demo_deliveries(settings, upstreams)
            if settings.sweep_interval_s > 0:
                sweeper = StoreSweeper(
                    store,
                    idempotency_ttl_s=settings.idempotency_ttl_s,
                    interval_s=settings.sweep_interval_s,
                    leases=Leases(store.sessions),
                )
                sweeper.start()
            if settings.ingest_interval_s > 0:
                schedule = IngestSchedule(
                    store,
                    lambda: sources.social if isinstance(sources.social, SocialSource) else None,
                    interval_s=settings.ingest_interval_s,
                    days=settings.ingest_days,
                    on_days=on_days,
                )
                schedule.start()
            state["hub"] = Hub(
                settings=settings,
                schema=schema,
                policies=policies,
                engine=engine,
                store=store,
                authenticator=authenticator,
                audit=audit,
                bucket=bucket,
                queries=queries,
                manifest=manifest,
                trusted_names=registered,
                idempotency=IdempotencyKeys(store, ttl_s=settings.idempotency_ttl_s),
                sources=upstreams.sources,
                cache=upstreams.cache,
                metrics=metrics,
                upstreams=upstreams,
                query_engine=QueryEngine(
                    batches=BATCHES,
                    metrics=metrics,
                    personal=frozenset(policies.consent.fields),
                )
                if settings.engine_enabled
                else None,
                responses=None
                if settings.response_cache_ttl_s == 0
                else ResponseCache(
                    upstreams.cache,
                    ttl_s=settings.response_cache_ttl_s,
                    fingerprint=rules_fingerprint(schema.as_str(), settings.policies_dir),
                    metrics=metrics,
                    store=store,
                ),
                inbox=inbox,
                feed=feed,
            )
            app.state.hub = state["hub"]
            # What start-up built lives as long as the process: keeping it out of the
            # collector's scans cuts the pauses that set the p95 (142 -> 53 ms, bench).
            gc.collect()
            gc.freeze()
            # A request makes tens of thousands of short-lived containers, which reference
            # counting frees; collecting every 700 of them made the collector scan each one
            # (cold dashboard 87 -> 65 ms p50, hub CPU 72 -> 45 ms; bench).
            gc.set_threshold(*GC_THRESHOLDS)
            yield
        finally:
            if sweeper is not None:
                await sweeper.aclose()
            if schedule is not None:
                await schedule.aclose()
            if crm_schedule is not None:
                await crm_schedule.aclose()
            if outbox is not None:
                await outbox.aclose()
            if inbox is not None:
                await inbox.aclose()
            if retrier is not None:
                await retrier.aclose()
            await feed.aclose()
            if "hub" in state and state["hub"].responses is not None:
                await state["hub"].responses.aclose()
            if audit is not None:
                await audit.close()
            await bucket.aclose()
            await queries.aclose()
            if upstreams is not None:
                await upstreams.aclose()
            if link is not None:
                await link.aclose()
            await authenticator.aclose()
            if "hub" in state:
                await state["hub"].idempotency.aclose()  # answers the store has not taken yet
            await reads.dispose()
            await engine.dispose()
            metrics.close()

    async def graphql(request: Request) -> Response:
        return await handle_graphql(state["hub"], request)

    async def subscriptions(websocket: WebSocket) -> None:
        hub = state["hub"]

        def make_context(principal: Principal, request_id: str, subscriber: Subscriber) -> Context:
            return request_context(hub, principal, request_id=request_id, subscriber=subscriber)

        await graphql_ws.serve(hub, websocket, make_context)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        return await readiness(state["hub"])

    async def export_route(request: Request) -> Response:
        return await export_file(state["hub"], request)

    async def webhook(request: Request) -> Response:
        return await receive_webhook(state["hub"], request)

    async def exposition(_request: Request) -> Response:
        if "hub" in state:
            for client in state["hub"].sources.clients.values():
                client.report_circuit()
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        WebSocketRoute("/graphql", subscriptions),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", exposition, methods=["GET"]),
        Route("/webhooks/{source}", webhook, methods=["POST"]),
        Route("/export/{name}", export_route, methods=["GET"]),
        Mount("/graphiql/assets", StaticFiles(directory=graphiql_assets_dir()), name="assets"),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: no_such_route}
    )
    app.add_middleware(TracingMiddleware)  # inside RequestIdMiddleware: it sees the request id
    # The last added runs first: CORS answers a preflight before anything else looks at it.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            cors.OriginsOnly,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=list(cors.ALLOWED_HEADERS),
            expose_headers=list(cors.EXPOSED_HEADERS),
            max_age=cors.MAX_AGE_S,
        )
    return app


async def no_such_route(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no route, a method a route does not take), as coded errors."""
    request_id: str = request.scope.get("state", {}).get("request_id", "")
    status = getattr(error, "status_code", 404)
    refusal: HubError = NoSuchRoute() if status == 404 else MethodNotAllowed()
    if status not in (404, 405):
        refusal = BadRequest()
    response = graphql_http.error_response(
        refusal, media_type=graphql_http.JSON, request_id=request_id
    )
    response.headers.update(getattr(error, "headers", None) or {})  # a 405's own `Allow`
    return response


async def receive_webhook(hub: Hub, request: Request) -> Response:
    """`POST /webhooks/{source}`: verified, kept, answered, then processed (`hub.webhooks`)."""
    request_id: str = request.scope["state"]["request_id"]
    source = request.path_params["source"]
    try:
        if source not in webhooks.SOURCES or hub.inbox is None:
            raise UnknownWebhookSource()
        body = await graphql_http.read_body(request, hub.settings.max_body_bytes)
        delivery = webhooks.verify(
            hub.settings.webhook_secret(source), dict(request.headers), body, now=time.time()
        )
        kind, payload = webhooks.check_payload(source, body, delivery.sent_at)
        now = datetime.now(UTC)
        fresh = await webhooks.keep(hub.store, source, delivery, kind, payload, now=now)
    except HubError as error:
        return graphql_http.error_response(
            error, media_type=graphql_http.JSON, request_id=request_id
        )
    except Exception:
        logger.exception("unexpected error in webhook %s", request_id)
        return graphql_http.error_response(
            HubError(), media_type=graphql_http.JSON, request_id=request_id
        )
    event_id = delivery.event_id
    if not fresh:
        return JSONResponse({"status": "duplicate", "eventId": event_id}, status_code=200)
    hub.inbox.process_soon(source, event_id)
    return JSONResponse({"status": "accepted", "eventId": event_id}, status_code=202)


async def readiness(hub: Hub) -> Response:
    """`/readyz`: `ready`; `degraded` (200: the hub still serves) while Redis is unreachable
    (local caches and budgets) or a source's circuit is not closed; `unavailable` (503) while
    the store is unreachable. Each component's part says which."""
    store = "ok"
    try:
        async with asyncio.timeout(STORE_CHECK_TIMEOUT_S):
            async with hub.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception:
        logger.warning("store unreachable", exc_info=True)
        store = "unreachable"
    cache = "ok" if hub.cache is None else hub.cache.status()
    sources = hub.sources.states()
    circuits_closed = all(
        part["breaker"] in ("closed", "not_configured") for part in sources.values()
    )
    status, code = "ready", 200
    if store != "ok":
        status, code = "unavailable", 503
    elif cache != "ok" or not circuits_closed:
        status = "degraded"
    body = {"status": status, "store": store, "cache": cache, "sources": sources}
    return JSONResponse(body, code)


async def _demo_deliveries(settings: Settings, upstreams: Upstreams) -> None:
    """In the demo, the in-process social simulator sends its webhooks to this hub: a new
    statement of today's figures every 10 s, with its faults (duplicates, reordering, lateness)."""
    simulators = upstreams.simulators
    secret = settings.webhook_secret("social")
    apps = getattr(simulators, "apps", {})
    if not (settings.demo and settings.demo_webhook_url and secret and "social" in apps):
        return
    plan = Plan(
        url=settings.demo_webhook_url,
        secret=secret,
        interval_s=10,
        statements=6,
        duplicate_rate=0.1,
        reorder_rate=0.1,
        late_s=2,
    )
    # Stopped with the simulators, when the upstreams close.
    await apps["social"].state.deliveries.start(plan)


async def prepare_store(engine: AsyncEngine, *, demo: bool) -> None:
    """Migrate a new store (refuse an outdated one) and load demo data into an empty one;
    one process at a time, so that replicas starting together do each once."""
    async with migrate.preparing(engine):
        state = await migrate.status(engine)
        if state == "new":
            await migrate.upgrade(engine)
            logger.info("store created at the newest migration")
        elif state == "behind":
            raise StoreNotMigrated("the store is behind the newest migration: run `hub migrate`")
        elif state == "ahead":
            logger.warning("the store was migrated by a newer release; serving as this one")
        if demo and await seed.is_empty(engine):
            await seed.seed(engine, seed.SeedPlan.demo())
            logger.info("demo data loaded")


def request_context(
    hub: Hub,
    principal: Principal,
    *,
    request_id: str,
    answer_key: str | None = None,
    client_address: str | None = None,
    subscriber: Subscriber | None = None,
) -> Context:
    """The context one operation runs with, over HTTP or on a WebSocket (`subscriber`)."""
    granted = hub.policies.access.granted_scopes(
        principal.roles, principal.scopes, anonymous=principal.is_anonymous
    )
    return Context(
        settings=hub.settings,
        principal=principal,
        store=hub.store,
        granted=granted,
        denied=hub.policies.field_scopes.denied(granted),
        consent=hub.policies.consent,
        sync=hub.policies.sync,
        cost=hub.policies.cost,
        bucket=hub.bucket,
        audit=hub.audit,
        request_id=request_id,
        sources=hub.sources,
        on_subject_change=[] if hub.upstreams is None else [hub.upstreams.forget_subject],
        responses=hub.responses,
        answer_key=answer_key,
        query_engine=hub.query_engine,
        metrics=hub.metrics,
        client_address=client_address,
        subscriber=subscriber,
    )


def _told_of_days(
    *hooks: Callable[[str, list[MetricRecord]], Awaitable[None]],
) -> Callable[[str, list[MetricRecord]], Awaitable[None]]:
    """One `on_days` for ingestion and webhooks that tells each hook in turn."""

    async def told(external_id: str, days: list[MetricRecord]) -> None:
        for hook in hooks:
            await hook(external_id, days)

    return told


async def handle_graphql(hub: Hub, request: Request) -> Response:
    """One GraphQL-over-HTTP request, from media types to the status code."""
    request_id: str = request.scope["state"]["request_id"]
    if graphql_http.wants_html(request):
        return graphiql(hub.settings, str(request.url.path))
    started = time.perf_counter()
    log = current_request() or RequestLog(request_id)
    log.graphql = True
    media_type = graphql_http.JSON
    params: GraphQLParams | None = None
    try:
        media_type = graphql_http.negotiate(request.headers.get("accept"))
        params = await graphql_http.read_params(request, max_body_bytes=hub.settings.max_body_bytes)
        principal = await hub.authenticator.authenticate(request.headers.get("authorization"))
        log.note_caller(principal.client_id, principal.subject, principal.tenant)
        executed = await execute_request(
            hub,
            request,
            principal,
            params,
            media_type=media_type,
            log=log,
            allowed=graphql_http.allowed_operations(request.method),
            idempotency_key=request.headers.get("idempotency-key"),
        )
    except HubError as error:
        log.note_code(error.code)
        return _refused(hub, error, log.operation_of(params), started, media_type, request_id)
    except Exception:
        logger.exception("unexpected error in request %s", request_id)
        log.note_code(HubError.code)
        operation = log.operation_of(params)
        return _refused(hub, HubError(), operation, started, media_type, request_id)
    status, body = executed.status, executed.body
    _record_answer(hub, log.operation_of(params), executed, started)
    log.note_answer(body)
    return graphql_http.json_response(
        body, status, media_type=media_type, request_id=request_id, headers=executed.headers
    )


async def export_file(hub: Hub, request: Request) -> Response:
    """`GET /export/{documentId}.csv|.ndjson`: a trusted or persisted query's rows as a flat
    file, page after page through `execute_request` (see `hub.export`)."""
    request_id: str = request.scope["state"]["request_id"]
    started = time.perf_counter()
    log = current_request() or RequestLog(request_id)
    log.graphql = True
    try:
        name = request.path_params["name"]
        digest, extension = export.export_id(name, hub.trusted_names, hub.manifest)
        variables = export.read_variables(request.query_params.get("variables"))
        principal = await hub.authenticator.authenticate(request.headers.get("authorization"))
        log.note_caller(principal.client_id, principal.subject, principal.tenant)
        tier = hub.policies.cost.tier_for(principal.client_id)
        try:
            text = await resolve_query(
                None,
                export.persisted(digest),
                store=hub.queries,
                manifest=hub.manifest,
                trusted_only=tier.trusted_documents_only,
            )
        except PersistedQueryNotFound:
            raise UnknownExport() from None
        limits = hub.policies.cost.limits_for(principal.roles)
        if text is None:
            raise UnknownExport()
        check_tokens(text, limits)
        document = hub.schema.documents.prepare(text, max_tokens=limits.max_tokens)
        if document is None:  # over a limit the pipeline names; never to be exported
            raise UnknownExport()
        first = hub.settings.page_size_cap if "first" in export.declared(document.node) else None

        async def page(after: str | None) -> Executed:
            if after is not None:
                # Each page is an operation of its own: a token that expired or a tenant
                # suspended since the first page ends the export here.
                await hub.authenticator.authenticate(request.headers.get("authorization"))
            waited_s = 0.0
            while True:
                executed = await execute_request(
                    hub,
                    request,
                    principal,
                    export.page_params(digest, variables, after=after, first=first),
                    media_type=graphql_http.JSON,
                    log=log,
                    allowed=graphql_http.GET_OPERATIONS,
                )
                log.note_answer(executed.body)
                waited = await export.waited_for_budget(
                    executed.status, executed.body, waited_s=waited_s
                )
                if not waited:
                    return executed
                waited_s += waited

        executed = await page(None)
        _record_answer(hub, log.operation_of(None), executed, started)
        if export.stopped(executed.status, executed.body) is not None:
            return graphql_http.json_response(
                executed.body,
                executed.status,
                media_type=graphql_http.JSON,
                request_id=request_id,
                headers=executed.headers,
            )
        plan = export.plan_export(document.node, digest, executed.body["data"])
    except HubError as error:
        log.note_code(error.code)
        return _refused(hub, error, log.operation_of(None), started, graphql_http.JSON, request_id)
    except Exception:
        logger.exception("unexpected error in export %s", request_id)
        log.note_code(HubError.code)
        operation = log.operation_of(None)
        return _refused(hub, HubError(), operation, started, graphql_http.JSON, request_id)
    writer = export.Writer(extension, plan)

    async def lines() -> AsyncIterator[str]:
        yield writer.header()
        data = executed.body["data"]
        cursors = export.Cursors()
        while True:
            for item in export.rows_of(data, plan):
                yield writer.row(item)
            cursor = export.next_cursor(data, plan)
            if cursor is None:
                return
            refused = cursors.refuse(cursor)
            if refused is not None:
                yield writer.failure(*refused)
                return
            try:
                answered = await page(cursor)
            except HubError as error:
                yield writer.failure(error.code, error.message)
                return
            except Exception:
                logger.exception("unexpected error in export %s", request_id)
                yield writer.failure(HubError.code, HubError.default_message)
                return
            failure = export.stopped(answered.status, answered.body)
            if failure is not None:
                yield writer.failure(*failure)
                return
            data = answered.body["data"]

    stem = name.rpartition(".")[0]
    return export.attachment(
        lines(), filename=f"{stem}.{extension}", extension=extension, headers=executed.headers
    )


@dataclass(frozen=True, slots=True)
class Executed:
    """An executed request's HTTP status, body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


async def execute_request(
    hub: Hub,
    request: Request,
    principal: Principal,
    params: GraphQLParams,
    *,
    media_type: str,
    log: RequestLog,
    allowed: frozenset[OperationType],
    idempotency_key: str | None = None,
) -> Executed:
    """The pipeline every GraphQL operation of an authenticated caller goes through, whatever
    carries it (`/graphql`, each page of an export): trusted and persisted documents, limits,
    validation, authorization, cost and budget, consent and audit, idempotency. A refusal
    before execution raises its `HubError`."""
    request_id: str = request.scope["state"]["request_id"]
    tier = hub.policies.cost.tier_for(principal.client_id)
    query = await resolve_query(
        params.query,
        params.extensions,
        store=hub.queries,
        manifest=hub.manifest,
        trusted_only=tier.trusted_documents_only,
    )
    context = request_context(
        hub,
        principal,
        request_id=request_id,
        answer_key=None
        if hub.responses is None or query is None
        else hub.responses.key(principal, query, params.operation_name, params.variables),
        client_address=graphql_http.client_address(request, hub.settings.trusted_proxies)
        if principal.is_anonymous
        else None,
    )
    limits = hub.policies.cost.limits_for(principal.roles)
    context.document = hub.schema.documents.prepare(query, max_tokens=limits.max_tokens)
    document = context.document
    if document is not None:
        log.name_operation(_operation_name(document, params.operation_name))
    if (
        idempotency_key is not None
        and document is not None
        and document.runs_mutation(params.operation_name)
    ):
        context.idempotency = Claim(
            hub.idempotency,
            scoped_key(idempotency_key, principal),
            request_hash(query, params.operation_name, params.variables),
        )
    try:
        result = await hub.schema.execute(
            query,
            variable_values=params.variables,
            context_value=context,
            operation_name=params.operation_name,
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError as error:
        if error.operation_type == OperationType.MUTATION:
            raise MethodNotAllowed("Mutations are sent with POST.") from None
        raise BadRequest(
            "Subscriptions are served over WebSocket (graphql-transport-ws), not HTTP."
        ) from None
    except CannotGetOperationTypeError:
        raise BadRequest(
            "The document has no operation of that name; name one with `operationName`."
        ) from None
    except MissingQueryError:
        raise BadRequest("`query` is missing.") from None
    except BaseException:
        claim = context.idempotency
        if claim is not None and claim.claimed and not claim.applied:
            await hub.idempotency.release(claim.key)
        raise
    status, body = graphql_http.result_answer(result, media_type=media_type, extensions={})
    headers = context.response_headers
    claim = context.idempotency
    if claim is not None and claim.replay is not None:
        status, body = claim.replay.status, _replayed(claim.replay.body, body)
        headers = {**headers, "Idempotent-Replayed": "true"}
    elif claim is not None and claim.claimed:
        if not claim.applied and (status >= 500 or _is_unexpected(body)):
            await hub.idempotency.release(claim.key)
        else:
            kept = without_personal_data(body, context.personal_paths)
            answer = StoredAnswer(status, kept)
            await hub.idempotency.finish(claim.key, claim.digest, answer, subjects=claim.subjects)
    return Executed(status, body, headers)


def _record_answer(hub: Hub, operation: str | None, executed: Executed, started: float) -> None:
    """Count an answered request (for an export, its first page) in the request metrics."""
    body = executed.body
    hub.metrics.record_request(
        operation,
        status=executed.status,
        answered="data" in body,
        codes=[e.get("extensions", {}).get("code", "") for e in body.get("errors", ())],
        seconds=time.perf_counter() - started,
    )


def _refused(
    hub: Hub,
    error: HubError,
    operation: str | None,
    started: float,
    media_type: str,
    request_id: str,
) -> Response:
    hub.metrics.record_request(
        operation,
        status=error.http_status,
        answered=False,
        codes=[error.code],
        seconds=time.perf_counter() - started,
    )
    return graphql_http.error_response(error, media_type=media_type, request_id=request_id)


def _operation_name(document: Document | None, asked: str | None) -> str | None:
    """The name of the operation the request runs; what it asked for when there is none."""
    operation = None if document is None else document.operation(asked)
    if operation is None:
        return asked
    return None if operation.name is None else operation.name.value


def graphiql(settings: Settings, endpoint: str) -> Response:
    """GraphiQL; in the demo, with the demo token in its Headers tab and an example query.
    Outside the demo the page holds no token: the person brings their own."""
    if not settings.demo:
        return graphql_http.graphiql(endpoint)
    try:
        token = issue_demo_token(settings)
    except ValueError:  # a demo whose tokens come from a JWKS only
        return graphql_http.graphiql(endpoint)
    return graphql_http.graphiql(
        endpoint, headers={"Authorization": f"Bearer {token}"}, query=DEMO_QUERY
    )


def _replayed(kept: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The kept answer, with this request's own extensions (its cost) added to its own."""
    extensions = {**kept.get("extensions", {}), **now.get("extensions", {})}
    return {**kept, "extensions": extensions}


def _is_unexpected(body: dict[str, Any]) -> bool:
    return any(
        error.get("extensions", {}).get("code") == "INTERNAL_SERVER_ERROR"
        for error in body.get("errors", [])
    )


class RequestIdMiddleware:
    """Gives each request an id (the caller's `X-Request-Id` when well-formed) and echoes it;
    while it runs, the id is in `REQUEST_ID` (upstream calls send it on) and the request's
    `RequestLog` in a context variable, so that every log line carries the id, and a GraphQL
    request's line is written once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        record = RequestLog(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        token = start_request(record)
        request_token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if record.status is None:
                record.status = 500  # what the server's error handler answers
            raise
        finally:
            REQUEST_ID.reset(request_token)
            if record.graphql:
                log_request(record)
            end_request(token)
