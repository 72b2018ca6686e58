"""The fault layer: counts each call, then applies latency, faults, auth and quota before it."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.simulators.config import FaultMode, SimulatorConfig
from hub.simulators.problems import problem
from hub.simulators.quota import TokenBucket

CONTROL_PREFIX = "/_control/"
RECORDED_HEADERS = ("traceparent", "tracestate", "x-request-id")
"""The headers of the last call that `/_control/last-request` shows (never credentials)."""
MALFORMED_BODY = b'{"data": [{"id": 1,, "oops'


@dataclass(slots=True)
class FaultState:
    """What the simulator does to the next call; the control routes change it at run time."""

    config: SimulatorConfig
    mode: FaultMode = "none"
    latency_ms: tuple[int, int] = (0, 0)
    error_rate: float = 0.0
    slow_s: float = 5.0
    retry_after_s: int = 1
    calls: Counter[str] = field(default_factory=Counter)
    last_request: dict[str, object] = field(default_factory=dict)
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> FaultState:
        state = cls(config=config)
        state.reset()
        state.mode = config.fault
        return state

    def reset(self) -> None:
        """Zero the counters, refill the quota, fault `none`, latency and errors as configured."""
        self.mode = "none"
        self.latency_ms = self.config.latency_ms
        self.error_rate = self.config.error_rate
        self.slow_s = self.config.slow_s
        self.retry_after_s = self.config.retry_after_s
        self.calls.clear()
        self.last_request = {}
        self.buckets.clear()
        self.rng.seed(self.config.seed)

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "latency_ms": list(self.latency_ms),
            "error_rate": self.error_rate,
            "slow_s": self.slow_s,
            "retry_after_s": self.retry_after_s,
        }


def api_key_of(headers: Headers) -> str | None:
    """The key from `Authorization: Bearer <key>` or, failing that, `X-Api-Key`."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return headers.get("x-api-key") or None


class FaultLayer:
    """ASGI middleware in front of a simulator's routes (the control routes pass untouched)."""

    def __init__(
        self, app: ASGIApp, *, state: FaultState, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.state = state
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
        elif self.state.mode == "truncated":
            await self.app(scope, receive, truncating(send))
        else:
            await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> Response | None:
        state = self.state
        state.calls[scope["path"]] += 1
        headers = Headers(scope=scope)
        state.last_request = {
            "path": scope["path"],
            "headers": {name: headers[name] for name in RECORDED_HEADERS if name in headers},
        }
        low, high = state.latency_ms
        if high > 0:
            await asyncio.sleep(state.rng.uniform(low, high) / 1000)
        if state.mode == "slow":
            await asyncio.sleep(state.slow_s)
        if state.mode == "down":
            return problem(503, "service is down")
        if state.mode == "5xx":
            return problem(500, "internal error")
        if state.mode == "429":
            return _throttled(state.retry_after_s)
        key = api_key_of(headers)
        if key is None or not secrets.compare_digest(key.encode(), state.config.api_key.encode()):
            return problem(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
        if state.config.quota_per_s is not None:
            bucket = state.buckets.setdefault(key, TokenBucket(state.config.quota_per_s))
            retry_after_s = bucket.take(self.clock())
            if retry_after_s is not None:
                return _throttled(retry_after_s)
        if state.error_rate > 0 and state.rng.random() < state.error_rate:
            return problem(state.rng.choice((500, 502, 503)), "transient upstream error")
        if state.mode == "malformed":
            return Response(MALFORMED_BODY, media_type="application/json")
        return None


def _throttled(retry_after_s: int) -> Response:
    return problem(429, "quota exceeded", headers={"Retry-After": str(retry_after_s)})


def truncating(send: Send) -> Send:
    """A `send` that buffers the answer and delivers the first half of its body, status intact."""
    start: Message = {}
    chunks: list[bytes] = []

    async def send_truncated(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        cut = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": cut})

    return send_truncated
