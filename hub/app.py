"""`create_app(settings)`: the Starlette app; its lifespan opens the store and the clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from hub import graphql_http
from hub.audit import AuditLog
from hub.auth import Authenticator
from hub.budget import Bucket, create_bucket
from hub.context import Context
from hub.engine.batches import BATCHES
from hub.engine.fallback import QueryEngine
from hub.erasure import ErasureRetrier
from hub.errors import BadRequest, HubError, MethodNotAllowed
from hub.idempotency import (
    Claim,
    IdempotencyKeys,
    StoredAnswer,
    request_hash,
    scoped_key,
    without_personal_data,
)
from hub.observability.tracing import REQUEST_ID, TracingMiddleware, setup_tracing
from hub.persisted import QueryStore, create_query_store, load_manifest, resolve_query
from hub.policies import Policies, load_for_schema
from hub.responses import ResponseCache, rules_fingerprint
from hub.schema.root import build_schema
from hub.schema.schema import HubSchema
from hub.settings import Settings, check_serving_secrets
from hub.sources.cache import Cache
from hub.sources.metrics import Metrics
from hub.sources.redis_link import RedisLink, is_redis
from hub.sources.registry import Sources
from hub.sources.store import Store
from hub.sources.upstreams import Upstreams, open_upstreams
from hub.store import migrate, seed
from hub.store.engine import create_engine
from hub.store.leases import Leases
from hub.web.graphiql import graphiql_assets_dir

logger = logging.getLogger("hub.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
STORE_CHECK_TIMEOUT_S = 2.0
"""How long /readyz waits for the store before calling it unreachable."""
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
    state: dict[str, Hub] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(settings)
        reads = create_engine(settings, reads=True)
        store = Store(engine, reads=reads)
        authenticator = Authenticator(settings, transport=transport)
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
        retrier: ErasureRetrier | None = None
        try:
            upstreams = await open_upstreams(settings, transport=transport, link=link)
            audit = AuditLog(
                engine, metrics=upstreams.metrics, max_events=settings.audit_buffer_max_events
            )
            await prepare_store(engine, demo=settings.demo)
            await audit.start()
            sources = upstreams.sources
            retrier = ErasureRetrier(
                store,
                lambda: sources.crm,
                interval_s=settings.erasure_retry_interval_s,
                leases=Leases(store.sessions),
            )
            retrier.start()
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
                idempotency=IdempotencyKeys(store, ttl_s=settings.idempotency_ttl_s),
                sources=upstreams.sources,
                cache=upstreams.cache,
                metrics=upstreams.metrics,
                upstreams=upstreams,
                query_engine=QueryEngine(
                    batches=BATCHES,
                    metrics=upstreams.metrics,
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
                    metrics=upstreams.metrics,
                    store=store,
                ),
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
            if retrier is not None:
                await retrier.aclose()
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
            await reads.dispose()
            await engine.dispose()

    async def graphql(request: Request) -> Response:
        return await handle_graphql(state["hub"], request)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        return await readiness(state["hub"])

    async def metrics(_request: Request) -> Response:
        text = state["hub"].metrics.render_prometheus()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/graphiql/assets", StaticFiles(directory=graphiql_assets_dir()), name="assets"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(TracingMiddleware)  # inside RequestIdMiddleware: it sees the request id
    app.add_middleware(RequestIdMiddleware)
    return app


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


async def prepare_store(engine: AsyncEngine, *, demo: bool) -> None:
    """Migrate a new store (refuse an outdated one) and load demo data into an empty one."""
    state = await migrate.status(engine)
    if state == "new":
        await migrate.upgrade(engine)
        logger.info("store created at the newest migration")
    elif state == "behind":
        raise StoreNotMigrated("the store is behind the newest migration: run `hub migrate`")
    if demo and await seed.is_empty(engine):
        await seed.seed(engine, seed.SeedPlan.demo())
        logger.info("demo data loaded")


async def handle_graphql(hub: Hub, request: Request) -> Response:
    """One GraphQL-over-HTTP request, from media types to the status code."""
    request_id: str = request.scope["state"]["request_id"]
    if graphql_http.wants_html(request):
        return graphql_http.graphiql(str(request.url.path))
    media_type = graphql_http.JSON
    try:
        media_type = graphql_http.negotiate(request.headers.get("accept"))
        params = await graphql_http.read_params(request, max_body_bytes=hub.settings.max_body_bytes)
        principal = await hub.authenticator.authenticate(request.headers.get("authorization"))
        tier = hub.policies.cost.tier_for(principal.client_id)
        query = await resolve_query(
            params.query,
            params.extensions,
            store=hub.queries,
            manifest=hub.manifest,
            trusted_only=tier.trusted_documents_only,
        )
        granted = hub.policies.access.granted_scopes(
            principal.roles, principal.scopes, anonymous=principal.is_anonymous
        )
        context = Context(
            settings=hub.settings,
            principal=principal,
            store=hub.store,
            granted=granted,
            denied=hub.policies.field_scopes.denied(granted),
            consent=hub.policies.consent,
            cost=hub.policies.cost,
            bucket=hub.bucket,
            audit=hub.audit,
            request_id=request_id,
            sources=hub.sources,
            on_subject_change=[] if hub.upstreams is None else [hub.upstreams.forget_subject],
            responses=hub.responses,
            answer_key=None
            if hub.responses is None or query is None
            else hub.responses.key(principal, query, params.operation_name, params.variables),
            query_engine=hub.query_engine,
            client_address=graphql_http.client_address(request, hub.settings.trusted_proxies)
            if principal.is_anonymous
            else None,
        )
        limits = hub.policies.cost.limits_for(principal.roles)
        context.document = hub.schema.documents.prepare(query, max_tokens=limits.max_tokens)
        key = request.headers.get("idempotency-key")
        document = context.document
        if (
            key is not None
            and document is not None
            and document.runs_mutation(params.operation_name)
        ):
            context.idempotency = Claim(
                hub.idempotency,
                scoped_key(key, principal),
                request_hash(query, params.operation_name, params.variables),
            )
        try:
            result = await hub.schema.execute(
                query,
                variable_values=params.variables,
                context_value=context,
                operation_name=params.operation_name,
                allowed_operation_types=graphql_http.allowed_operations(request.method),
            )
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.MUTATION:
                raise MethodNotAllowed("Mutations are sent with POST.") from None
            raise BadRequest("Subscriptions are not served over HTTP.") from None
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
                await hub.idempotency.finish(claim.key, answer, subjects=claim.subjects)
    except HubError as error:
        return graphql_http.error_response(error, media_type=media_type, request_id=request_id)
    except Exception:
        logger.exception("unexpected error in request %s", request_id)
        return graphql_http.error_response(HubError(), media_type=media_type, request_id=request_id)
    return graphql_http.json_response(
        body, status, media_type=media_type, request_id=request_id, headers=headers
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
    """Gives each request an id (the caller's `X-Request-Id` when well-formed), echoes it, and
    holds it in `REQUEST_ID` while the request runs (upstream calls send it on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
