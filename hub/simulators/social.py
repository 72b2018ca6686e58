"""The social metrics simulator: accounts and daily metrics per account, paged or in one batch."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from functools import lru_cache, partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.simulators.config import SimulatorConfig
from hub.simulators.cursors import decode_cursor, encode_cursor
from hub.simulators.deliveries import Deliveries, delivery_routes
from hub.simulators.determinism import seeded_random
from hub.simulators.params import parse_ids, parse_limit, parse_range, read_json_object
from hub.simulators.roster import RosterAccount, build_roster
from hub.simulators.shell import build_simulator_app

MAX_ACCOUNTS = 100
MAX_PAGE = 1000
RECORDS_KEPT = 200_000


def followers_of(seed: int, external_id: str) -> int:
    return int(10 ** seeded_random(seed, "followers", external_id).uniform(3.0, 6.5))


def account_record(seed: int, account: RosterAccount) -> dict[str, Any]:
    rng = seeded_random(seed, "social-account", account.external_id)
    followers = followers_of(seed, account.external_id)
    return {
        "account_id": account.external_id,
        "platform": account.platform,
        "username": account.username,
        "followers": followers,
        "following": rng.randrange(20, 3000),
        "verified": followers >= 250_000 or rng.random() < 0.05,
        "posts": rng.randrange(20, 4000),
    }


def metric_record(seed: int, account: RosterAccount, day: date) -> dict[str, Any]:
    """One account's figures for one day; a function of (seed, account, day) alone."""
    rng = seeded_random(seed, "metrics", account.external_id, day.isoformat())
    impressions = int(followers_of(seed, account.external_id) * rng.uniform(0.05, 0.8))
    reach = int(impressions * rng.uniform(0.5, 0.95))
    likes = int(reach * rng.uniform(0.01, 0.08))
    clicks = int(reach * rng.uniform(0.001, 0.02))
    return {
        "account_id": account.external_id,
        "date": day.isoformat(),
        "impressions": impressions,
        "reach": reach,
        "likes": likes,
        "comments": int(likes * rng.uniform(0.01, 0.1)),
        "shares": int(likes * rng.uniform(0.0, 0.15)),
        "saves": int(likes * rng.uniform(0.0, 0.2)),
        "video_views": int(impressions * rng.uniform(0.1, 0.9)),
        "clicks": clicks,
        "conversions": int(clicks * rng.uniform(0.0, 0.1)),
        "spend_cents": rng.randrange(500, 50_000) if rng.random() < 0.3 else 0,
    }


def create_social_app(config: SimulatorConfig) -> Starlette:
    roster = build_roster(config.seed, config.influencers)
    # Records are functions of (seed, account, day) alone: made once, so that a response
    # takes the configured latency and not the time to draw its numbers again.
    account_of = lru_cache(maxsize=RECORDS_KEPT)(partial(account_record, config.seed))
    metric_of = lru_cache(maxsize=RECORDS_KEPT)(partial(metric_record, config.seed))

    @lru_cache(maxsize=RECORDS_KEPT)
    def metric_json(account: RosterAccount, day: date) -> bytes:
        return json.dumps(metric_of(account, day), separators=(",", ":")).encode()

    def known(ids: list[str]) -> list[RosterAccount]:
        return [
            roster.accounts[external_id] for external_id in ids if external_id in roster.accounts
        ]

    def metric_at(
        accounts: list[RosterAccount], since: date, days: int, index: int
    ) -> dict[str, Any]:
        day = since + timedelta(days=index % days)
        return metric_of(accounts[index // days], day)

    async def accounts(request: Request) -> JSONResponse:
        ids = parse_ids(request.query_params.get("ids"), name="ids", max_items=MAX_ACCOUNTS)
        return JSONResponse({"data": [account_of(a) for a in known(ids)]})

    async def metrics(request: Request) -> JSONResponse:
        query = request.query_params
        ids = parse_ids(query.get("account_ids"), name="account_ids", max_items=MAX_ACCOUNTS)
        since, until = parse_range(query.get("since"), query.get("until"))
        limit = parse_limit(query.get("limit"), default=100, maximum=MAX_PAGE)
        # The cursor names its query, so that it cannot be replayed against another one.
        query_key = hashlib.blake2b(f"{ids}|{since}|{until}".encode(), digest_size=6).hexdigest()
        start = 0
        if "cursor" in query:
            cursor_key, _, offset = decode_cursor(query["cursor"]).partition(":")
            if cursor_key != query_key or not offset.isdigit():
                raise HTTPException(400, "cursor belongs to another query")
            start = int(offset)
        found = known(ids)
        days = (until - since).days + 1
        end = min(start + limit, len(found) * days)
        page = [metric_at(found, since, days, index) for index in range(start, end)]
        more = end < len(found) * days
        next_cursor = encode_cursor(f"{query_key}:{end}") if more else None
        return JSONResponse({"data": page, "paging": {"next_cursor": next_cursor}})

    async def batch_get(request: Request) -> Response:
        body = await read_json_object(request)
        ids = parse_ids(body.get("account_ids"), name="account_ids", max_items=MAX_ACCOUNTS)
        since, until = parse_range(body.get("since"), body.get("until"))
        days = [since + timedelta(days=offset) for offset in range((until - since).days + 1)]
        # Up to 100 accounts x 366 days: the points' JSON is made once, then only joined.
        points = b",".join(metric_json(account, day) for account in known(ids) for day in days)
        return Response(b'{"data":[' + points + b"]}", media_type="application/json")

    deliveries = Deliveries(list(roster.accounts.values()), metric_of)
    app = build_simulator_app(
        config,
        [
            *delivery_routes(deliveries),
            Route("/v2/accounts", accounts, methods=["GET"]),
            Route("/v2/metrics", metrics, methods=["GET"]),
            Route("/v2/metrics:batchGet", batch_get, methods=["POST"]),
        ],
    )
    app.state.deliveries = deliveries
    return app
