"""The CRM simulator: contacts by `crm-<tenant>-<5 digits>` id, batch lookup, listing, erasure."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.simulators.config import SimulatorConfig
from hub.simulators.cursors import decode_cursor, encode_cursor
from hub.simulators.determinism import seeded_random
from hub.simulators.params import parse_ids, parse_limit
from hub.simulators.shell import build_simulator_app
from hub.store.seed import DEMO_TENANTS, EPOCH

MAX_BATCH = 100
MAX_PAGE = 100
LISTED_TENANTS = tuple(tenant for tenant, _name in DEMO_TENANTS)
LISTED_PER_TENANT = 100
CRM_ID = re.compile(r"^crm-(?P<tenant>[a-z0-9]+(?:-[a-z0-9]+)*)-(?P<position>\d{5})$")

_TITLES = (
    "Talent Manager",
    "Head of Partnerships",
    "Content Creator",
    "Booking Agent",
    "Brand Liaison",
    "Managing Director",
)
_FIRST_WORDS = ("North", "Bright", "Blue", "Summit", "Atlas", "Nova", "Kestrel", "Harbor")
_SECOND_WORDS = ("Talent", "Media", "Creators", "Studios", "Collective", "Partners")
_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001+")
_MAILBOXES = ("bookings", "hello", "partnerships", "team", "contact")


def contact_record(seed: int, contact_id: str) -> dict[str, Any] | None:
    """The CRM's view of a well-formed contact id (None for a malformed one)."""
    match = CRM_ID.match(contact_id)
    if match is None:
        return None
    rng = seeded_random(seed, "crm-contact", contact_id)
    company = f"{rng.choice(_FIRST_WORDS)} {rng.choice(_SECOND_WORDS)}"
    domain = company.lower().replace(" ", "") + ".example"
    updated = EPOCH + timedelta(seconds=rng.randrange(0, 60 * 24 * 3600))
    return {
        "contact_id": contact_id,
        "workspace": match["tenant"],
        "title": rng.choice(_TITLES),
        "tel": f"+48 22 {rng.randrange(100, 1000)} {rng.randrange(10, 100)} "
        f"{rng.randrange(10, 100)}",
        "email_address": f"{rng.choice(_MAILBOXES)}.{match['position']}@{domain}",
        "organisation": {"name": company, "domain": domain, "size": rng.choice(_SIZES)},
        "updated": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def listed_ids(tenant: str | None) -> list[str]:
    """The contacts the listing walks, in id order: each demo tenant's first positions."""
    tenants = LISTED_TENANTS if tenant is None else (tenant,)
    return sorted(
        f"crm-{name}-{position:05d}"
        for name in tenants
        if name in LISTED_TENANTS
        for position in range(LISTED_PER_TENANT)
    )


def create_crm_app(config: SimulatorConfig) -> Starlette:
    deleted: set[str] = set()

    def lookup(contact_id: str) -> dict[str, Any] | None:
        return None if contact_id in deleted else contact_record(config.seed, contact_id)

    async def contacts(request: Request) -> JSONResponse:
        query = request.query_params
        if "ids" in query:
            if {"cursor", "limit", "tenant"} & set(query):
                raise HTTPException(400, "ids cannot be combined with cursor, limit or tenant")
            ids = parse_ids(query["ids"], name="ids", max_items=MAX_BATCH)
            found = [record for record in map(lookup, ids) if record is not None]
            return JSONResponse({"contacts": found})
        limit = parse_limit(query.get("limit"), default=50, maximum=MAX_PAGE)
        after = decode_cursor(query["cursor"]) if "cursor" in query else ""
        remaining = [
            record
            for contact_id in listed_ids(query.get("tenant"))
            if contact_id > after and (record := lookup(contact_id)) is not None
        ]
        page = remaining[:limit]
        more = len(remaining) > limit
        next_cursor = encode_cursor(page[-1]["contact_id"]) if more else None
        return JSONResponse({"contacts": page, "next_cursor": next_cursor})

    async def contact(request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        record = lookup(contact_id)
        if record is None:
            raise HTTPException(404, f"no contact {contact_id}")
        if request.method == "DELETE":
            deleted.add(contact_id)
            return Response(status_code=204)
        return JSONResponse(record)

    return build_simulator_app(
        config,
        [
            Route("/v1/contacts", contacts, methods=["GET"]),
            Route("/v1/contacts/{contact_id}", contact, methods=["GET", "DELETE"]),
        ],
    )
