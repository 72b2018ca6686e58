"""Request parameters of the REST simulators: parsed, bounded, or refused with a 400."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_DAYS = 366


def parse_ids(raw: object, *, name: str, max_items: int) -> list[str]:
    """A comma-separated string or a JSON list of ids: stripped, de-duplicated, in order."""
    if isinstance(raw, str):
        values = raw.split(",")
    elif isinstance(raw, list) and all(isinstance(value, str) for value in raw):
        values = list(raw)
    else:
        raise HTTPException(400, f"{name} is required: a list of ids")
    ids = list(dict.fromkeys(value.strip() for value in values if value.strip()))
    if not ids:
        raise HTTPException(400, f"{name} must name at least one id")
    if len(ids) > max_items:
        raise HTTPException(400, f"{name} names {len(ids)} ids; at most {max_items} per call")
    return ids


def parse_limit(raw: str | None, *, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise HTTPException(400, "limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise HTTPException(400, f"limit must be between 1 and {maximum}")
    return limit


def parse_day(raw: object, *, name: str) -> date:
    if not isinstance(raw, str):
        raise HTTPException(400, f"{name} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a date (YYYY-MM-DD)") from None


def parse_range(since_raw: object, until_raw: object) -> tuple[date, date]:
    """Inclusive `since`..`until`, at most `MAX_DAYS` days."""
    since = parse_day(since_raw, name="since")
    until = parse_day(until_raw, name="until")
    if until < since:
        raise HTTPException(400, "until must not be before since")
    if (until - since).days + 1 > MAX_DAYS:
        raise HTTPException(400, f"at most {MAX_DAYS} days per call")
    return since, until


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body
