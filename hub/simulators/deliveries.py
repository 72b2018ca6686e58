"""The social simulator's sending side: signed `metrics.updated` webhooks to a hub.

Each round takes the next account of the roster and states its figures for `day` so far:
statement k of `statements` carries k/statements of the day's full figures (the last one
the figures `/v2/metrics` answers), with the time it was made in `occurredAt`. Deliveries
are signed as a real sender signs them: HMAC-SHA256 over `"{timestamp}.{body}"`, the
timestamp taken when the delivery is sent. Faults, each drawn per delivery with its rate:
`duplicate_rate` sends a delivery twice (the same event id), `reorder_rate` holds a
delivery back and sends it after the next one, `late_s` delays a delivery by up to that long.

Controlled at `/_control/webhooks`: POST a plan to start (or restart) sending, GET the
counts, DELETE to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.simulators.params import read_json_object
from hub.simulators.roster import RosterAccount

COUNTERS = (
    ("impressions", "impressions"),
    ("reach", "reach"),
    ("likes", "likes"),
    ("comments", "comments"),
    ("shares", "shares"),
    ("saves", "saves"),
    ("video_views", "videoViews"),
    ("clicks", "clicks"),
    ("conversions", "conversions"),
    ("spend_cents", "spendMinor"),
)
"""The API's names of a day's figures, and the webhook's."""


@dataclass(frozen=True, slots=True)
class Plan:
    url: str
    secret: str
    interval_s: float = 5.0
    statements: int = 3
    day: date | None = None
    """The day stated; None: today (UTC) at each round."""
    events: int | None = None
    """Stop after this many events (None: until stopped)."""
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    late_s: float = 0.0
    seed: int = 7

    @classmethod
    def read(cls, body: dict[str, Any]) -> Plan:
        allowed = {f for f in cls.__dataclass_fields__}
        unknown = set(body) - allowed
        if unknown:
            raise HTTPException(400, f"unknown fields: {', '.join(sorted(unknown))}")
        try:
            values = dict(body)
            if values.get("day") is not None:
                values["day"] = date.fromisoformat(values["day"])
            plan = cls(**values)
        except (TypeError, ValueError) as error:
            raise HTTPException(400, f"bad plan: {error}") from None
        if not plan.url.startswith(("http://", "https://")) or not plan.secret:
            raise HTTPException(400, "url (http or https) and secret are required")
        rates = (plan.duplicate_rate, plan.reorder_rate)
        if not all(0 <= rate <= 1 for rate in rates) or not 0 <= plan.late_s <= 60:
            raise HTTPException(400, "rates within [0, 1] and late_s within [0, 60]")
        if not 0.01 <= plan.interval_s <= 3600 or not 1 <= plan.statements <= 24:
            raise HTTPException(400, "interval_s within [0.01, 3600], statements within [1, 24]")
        return plan


@dataclass
class Counts:
    events: int = 0
    deliveries: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    done: bool = False


Figures = Callable[[RosterAccount, date], dict[str, Any]]
"""An account's full figures for a day, as the API names them."""


class Deliveries:
    """Sends one plan's deliveries from a background task of the simulator's loop."""

    def __init__(self, accounts: list[RosterAccount], figures: Figures) -> None:
        self.accounts = accounts
        self.figures = figures
        self.counts = Counts()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self, plan: Plan) -> None:
        await self.stop()
        self.counts = Counts()
        self._task = asyncio.get_running_loop().create_task(self._run(plan))

    async def stop(self) -> None:
        tasks = [*self._sending, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def describe(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "running": self._task is not None and not self._task.done(),
            "done": counts.done,
            "events": counts.events,
            "deliveries": counts.deliveries,
            "duplicates": counts.duplicates,
            "reordered": counts.reordered,
            "late": counts.late,
            "answers": dict(sorted(counts.answers.items())),
        }

    async def _run(self, plan: Plan) -> None:
        rng = random.Random(plan.seed)
        held: dict[str, Any] | None = None
        async with httpx.AsyncClient(timeout=10) as client:
            sent = 0
            round_ = 0
            while plan.events is None or sent < plan.events:
                await asyncio.sleep(plan.interval_s)
                account = self.accounts[round_ // plan.statements % len(self.accounts)]
                statement = round_ % plan.statements + 1
                round_ += 1
                event = self._event(plan, account, statement)
                sent += 1
                self.counts.events += 1
                if held is None and rng.random() < plan.reorder_rate:
                    held = event  # sent after the next one
                    self.counts.reordered += 1
                else:
                    self._send(client, plan, rng, event)
                    if held is not None:
                        self._send(client, plan, rng, held)
                        held = None
            if held is not None:
                self._send(client, plan, rng, held)
            while self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)
        self.counts.done = True

    def _event(self, plan: Plan, account: RosterAccount, statement: int) -> dict[str, Any]:
        day = plan.day or datetime.now(UTC).date()
        full = self.figures(account, day)
        share = statement / plan.statements
        figures = {ours: int(full[theirs] * share) for theirs, ours in COUNTERS}
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "body": {
                "type": "metrics.updated",
                "accountId": account.external_id,
                "occurredAt": datetime.now(UTC).isoformat(),
                "days": [{"date": day.isoformat(), **figures}],
            },
        }

    def _send(
        self, client: httpx.AsyncClient, plan: Plan, rng: random.Random, event: dict[str, Any]
    ) -> None:
        copies = 2 if rng.random() < plan.duplicate_rate else 1
        self.counts.duplicates += copies - 1
        delay = rng.uniform(0, plan.late_s) if plan.late_s else 0.0
        if delay:
            self.counts.late += 1
        for _ in range(copies):
            task = asyncio.get_running_loop().create_task(self._deliver(client, plan, event, delay))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(
        self, client: httpx.AsyncClient, plan: Plan, event: dict[str, Any], delay: float
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        self.counts.deliveries += 1
        outcome = await post_signed(client, plan.url, plan.secret, event["id"], event["body"])
        self.counts.answers[outcome] = self.counts.answers.get(outcome, 0) + 1


async def post_signed(
    client: httpx.AsyncClient, url: str, secret: str, event_id: str, payload: dict[str, Any]
) -> str:
    """Send one event as a real sender signs it (HMAC-SHA256 over `"{timestamp}.{body}"`,
    the timestamp taken now); the answer's status code, or the error's name."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Timestamp": timestamp,
        "X-Hub-Signature-256": f"sha256={digest.hexdigest()}",
        "X-Hub-Event-Id": event_id,
    }
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return type(error).__name__
    return str(answer.status_code)


def delivery_routes(deliveries: Deliveries) -> list[Route]:
    async def webhooks(request: Request) -> JSONResponse:
        if request.method == "POST":
            await deliveries.start(Plan.read(await read_json_object(request)))
        elif request.method == "DELETE":
            with contextlib.suppress(asyncio.CancelledError):
                await deliveries.stop()
        return JSONResponse(deliveries.describe())

    return [Route("/_control/webhooks", webhooks, methods=["GET", "POST", "DELETE"])]
