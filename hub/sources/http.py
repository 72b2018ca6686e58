"""`SourceClient`: the one HTTP seam to upstreams, guarded, measured and translated."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx
import orjson
from opentelemetry import trace

from hub.errors import SourceError, SourceTimeout, SourceUnavailable
from hub.observability import tracing
from hub.observability.logs import note_source
from hub.observability.metrics import Metrics, SourceMetrics
from hub.sources.base import Clock, SourceSettings, SourceState, SystemClock
from hub.sources.breaker import CircuitBreaker
from hub.sources.cache import Cache, TagsFor, cache_key
from hub.sources.ratelimit import RateLimiter
from hub.sources.retry import RetryBudget, retry_read
from hub.sources.shared import SharedRateLimiter, SharedState

logger = logging.getLogger("hub.sources")

T = TypeVar("T")
Params = Mapping[str, Any]
Headers = Mapping[str, str]
Fetch = Callable[[list[str]], Awaitable[Mapping[str, Any]]]
"""Fetches ids from the source in one batch; ids it leaves out were not found."""

Verdict = Literal["failure", "success", "release"]


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: str
    error: SourceError
    breaker: Verdict = "failure"


class SourceClient:
    """Calls one upstream: breaker check, rate limiter, timeout, retries (idempotent calls
    only), then JSON decoding; every failure leaves as `SourceUnavailable` or `SourceTimeout`.

    `transport` replaces the network (tests, in-process simulators). `cache`, when given,
    backs `load_many`. `parse` turns the decoded JSON into the caller's records; a
    `ValueError`, `TypeError`, `LookupError` or `AttributeError` from it means the payload
    has the wrong shape.
    """

    def __init__(
        self,
        settings: SourceSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        cache: Cache | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.cache = cache
        self.metrics: SourceMetrics = (metrics or Metrics()).sources
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.breaker = CircuitBreaker(
            settings.name,
            failures=settings.breaker_failures,
            reset_s=settings.breaker_reset_s,
            clock=self._clock,
        )
        self.report_circuit()
        self.limiter: RateLimiter | SharedRateLimiter | None = None
        if settings.quota_per_s is not None:
            self.limiter = RateLimiter(
                rate_per_s=settings.quota_per_s, burst=settings.quota_burst, clock=self._clock
            )
            if shared is not None:
                self.limiter = SharedRateLimiter(
                    shared.link, f"{shared.namespace}:quota:{self.name}", self.limiter
                )
        self.budget = RetryBudget(settings.retry_budget_ratio)
        headers = {"Accept": "application/json", "User-Agent": "influencer-hub"}
        if settings.credential:
            headers["Authorization"] = f"Bearer {settings.credential}"
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
        )

    def state(self) -> SourceState:
        return self.breaker.snapshot()

    def report_circuit(self) -> None:
        """Set `hub_source_circuit_open` to the breaker's state now: after each call, and at
        each scrape (another replica may have opened or closed it since)."""
        self.metrics.record_circuit(self.name, is_open=self.breaker.state != "closed")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> SourceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- calls ------------------------------------------------------------------------------

    @overload
    async def get_json(
        self,
        path: str,
        params: Params | None = None,
        *,
        idempotent: bool = True,
        headers: Headers | None = None,
    ) -> Any: ...

    @overload
    async def get_json(
        self,
        path: str,
        params: Params | None = None,
        *,
        parse: Callable[[Any], T],
        idempotent: bool = True,
        headers: Headers | None = None,
    ) -> T: ...

    async def get_json(
        self,
        path: str,
        params: Params | None = None,
        *,
        parse: Callable[[Any], Any] | None = None,
        idempotent: bool = True,
        headers: Headers | None = None,
    ) -> Any:
        request = {"params": params, "headers": headers}
        return await self._call("GET", path, request, idempotent=idempotent, parse=parse)

    @overload
    async def post_json(
        self, path: str, json: Any, *, idempotent: bool, headers: Headers | None = None
    ) -> Any: ...

    @overload
    async def post_json(
        self,
        path: str,
        json: Any,
        *,
        idempotent: bool,
        parse: Callable[[Any], T],
        headers: Headers | None = None,
    ) -> T: ...

    async def post_json(
        self,
        path: str,
        json: Any,
        *,
        idempotent: bool,
        parse: Callable[[Any], Any] | None = None,
        headers: Headers | None = None,
    ) -> Any:
        """POST a JSON body; `idempotent=True` only for reads sent as POST (batch lookups,
        GraphQL queries): writes are never retried."""
        request = {"json": json, "headers": headers}
        return await self._call("POST", path, request, idempotent=idempotent, parse=parse)

    async def patch_json(self, path: str, json: Any, *, idempotency_key: str) -> bool:
        """PATCH a JSON body under an `Idempotency-Key` (so it is retried: the upstream
        applies a key once); False when the upstream answers 404 (nothing to change)."""
        request = {"json": json, "headers": {"Idempotency-Key": idempotency_key}}
        status: int = await self._call(
            "PATCH", path, request, idempotent=True, parse=None, absent_ok=True
        )
        return status != 404

    async def delete(self, path: str, *, headers: Headers | None = None) -> bool:
        """DELETE `path` (retried: deleting twice deletes once); False when the upstream answers
        404, i.e. the thing is already gone."""
        request: dict[str, Any] = {"headers": headers}
        status: int = await self._call(
            "DELETE", path, request, idempotent=True, parse=None, absent_ok=True
        )
        return status != 404

    async def load_many(
        self,
        kind: str,
        ids: Iterable[str],
        fetch: Fetch,
        *,
        tenant: str | None,
        tags_for: Callable[[str, Any], Iterable[str]] | None = None,
    ) -> dict[str, Any]:
        """Values by id through the cache (keyed by this source, `kind` and `tenant`): fresh
        ones served, stale ones served and refreshed, the rest fetched in one batch. Without a
        cache, a plain `fetch`. `tags_for(id, value)` tags entries, e.g. with `subject_tag`."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        if self.cache is None:
            with tracing.source_batch(kind, len(wanted)):
                fetched = await fetch(wanted)
            return {id_: fetched[id_] for id_ in wanted if id_ in fetched}
        id_by_key = {cache_key(self.name, kind, id_, tenant=tenant): id_ for id_ in wanted}
        key_by_id = {id_: key for key, id_ in id_by_key.items()}

        async def load(keys: list[str]) -> Mapping[str, Any]:
            with tracing.source_batch(kind, len(keys)):
                fetched = await fetch([id_by_key[key] for key in keys])
            return {key_by_id[id_]: value for id_, value in fetched.items() if id_ in key_by_id}

        key_tags: TagsFor | None = None
        if tags_for is not None:
            id_tags = tags_for

            def tags_by_key(key: str, value: Any) -> Iterable[str]:
                return id_tags(id_by_key[key], value)

            key_tags = tags_by_key
        found = await self.cache.load_many(
            list(id_by_key),
            load,
            ttl_s=self.settings.ttl_s,
            stale_ttl_s=self.settings.stale_ttl_s,
            tags_for=key_tags,
        )
        return {id_by_key[key]: value for key, value in found.items()}

    # -- the guarded exchange -------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        request: dict[str, Any],
        *,
        idempotent: bool,
        parse: Callable[[Any], Any] | None,
        absent_ok: bool = False,
    ) -> Any:
        self.metrics.record_call(self.name, method)
        note_source(self.name)
        host = self._http.base_url.host or None
        with tracing.source_call_span(self.name, method, host=host) as span:
            try:
                probe = self.breaker.check()
            except SourceUnavailable:
                self.metrics.record_error(self.name, "circuit_open")
                self.report_circuit()
                tracing.record_outcome(span, "circuit_open")
                raise
            try:
                value, failure = await self._exchange(
                    method, path, request, idempotent, parse, absent_ok=absent_ok
                )
            except BaseException:
                # Cancelled (or a bug in `parse`): no verdict on the upstream.
                self.breaker.release(probe=probe)
                raise
            verdict = "success" if failure is None else failure.breaker
            if verdict == "success":
                self.breaker.record_success()
            elif verdict == "failure":
                self.breaker.record_failure(probe=probe)
            else:
                self.breaker.release(probe=probe)
            self.report_circuit()
            tracing.record_outcome(span, "success" if failure is None else failure.kind)
            if failure is None:
                return value
            self.metrics.record_error(self.name, failure.kind)
            logger.warning("%s %s %s failed: %s", self.name, method, path, failure.error.message)
            raise failure.error

    async def _exchange(
        self,
        method: str,
        path: str,
        request: dict[str, Any],
        idempotent: bool,
        parse: Callable[[Any], Any] | None,
        *,
        absent_ok: bool = False,
    ) -> tuple[Any, _Failure | None]:
        try:
            if idempotent:
                response = await retry_read(
                    lambda: self._attempt(method, path, request),
                    settings=self.settings,
                    budget=self.budget,
                    clock=self._clock,
                    rng=self._rng,
                    on_retry=self._on_retry,
                )
            else:
                response = await self._attempt(method, path, request)
        except (TimeoutError, httpx.TimeoutException):
            return None, _Failure("timeout", SourceTimeout(self.name))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, self._unavailable("connect", f"request failed ({type(exc).__name__})")
        except SourceUnavailable as exc:
            return None, _Failure("quota", exc, breaker="release")
        if absent_ok:
            # The caller wants the status only (a DELETE): 404 is an answer, not a failure.
            if response.status_code == 404:
                return 404, None
            failure = self._status_failure(response.status_code)
            return (response.status_code, None) if failure is None else (None, failure)
        failure = self._status_failure(response.status_code)
        if failure is not None:
            return None, failure
        if response.status_code == 204:
            payload = None
        else:
            try:
                # orjson: several times the standard library's speed on a metrics batch; it
                # refuses what JSON does not allow (NaN, integers beyond 64 bits) as malformed.
                payload = orjson.loads(response.content)
            except ValueError:
                return None, self._unavailable("malformed", "malformed JSON")
        if parse is None:
            return payload, None
        try:
            return parse(payload), None
        except (ValueError, TypeError, LookupError, AttributeError):
            return None, self._unavailable("bad_shape", "unexpected payload shape")

    def _on_retry(self) -> None:
        self.metrics.record_retry(self.name)
        trace.get_current_span().add_event("retry")

    async def _attempt(self, method: str, path: str, request: dict[str, Any]) -> httpx.Response:
        timeout_s = self.settings.timeout_s
        if self.limiter is not None and not await self.limiter.acquire(max_wait_s=timeout_s):
            raise SourceUnavailable(
                self.name, f"The {self.name} source is unavailable: client-side quota exhausted."
            )
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                headers = tracing.upstream_headers()
                if request.get("headers"):
                    headers = {**request["headers"], **headers}
                return await self._http.request(method, path, **{**request, "headers": headers})
        finally:
            self.metrics.record_latency(self.name, self._clock.monotonic() - started)

    def _status_failure(self, status: int) -> _Failure | None:
        if 200 <= status < 300:
            return None
        if status in (401, 403):
            return self._unavailable("unauthorized", f"credentials refused (HTTP {status})")
        if status == 429:
            return self._unavailable("rate_limited", "rate limited (HTTP 429)")
        if status >= 500 or status == 408:
            return self._unavailable("server_error", f"HTTP {status}")
        if 400 <= status < 500:
            # The upstream is healthy; the request was refused.
            return self._unavailable("client_error", f"HTTP {status}", breaker="success")
        return self._unavailable("unexpected_status", f"HTTP {status}")

    def _unavailable(self, kind: str, reason: str, *, breaker: Verdict = "failure") -> _Failure:
        message = f"The {self.name} source is unavailable: {reason}."
        return _Failure(kind, SourceUnavailable(self.name, message), breaker)
