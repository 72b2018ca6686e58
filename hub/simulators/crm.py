"""The CRM simulator: contacts by `crm-<tenant>-<5 digits>` id, batch lookup, listing (also of
what changed since a time), updates, erasure, and signed change deliveries.

A record is a function of the seed until it is changed: by `PATCH /v1/contacts/{id}` (what a
client of the CRM does; an `Idempotency-Key` seen before answers as the first time and changes
nothing) or by `POST /_control/contacts/{id}` (what a person editing the CRM does; it may make
a new record). Each change stamps the record's `updated` and, once `/_control/crm-webhooks`
was given a target, is delivered there signed as a `contact.updated` event, with the faults
of that plan (duplicates, lateness).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import random
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.simulators.config import SimulatorConfig
from hub.simulators.cursors import decode_cursor, encode_cursor
from hub.simulators.deliveries import post_signed
from hub.simulators.determinism import seeded_random
from hub.simulators.params import parse_ids, parse_limit, read_json_object
from hub.simulators.shell import build_simulator_app
from hub.store.seed import DEMO_TENANTS, EPOCH

MAX_BATCH = 100
MAX_PAGE = 100
LISTED_TENANTS = tuple(tenant for tenant, _name in DEMO_TENANTS)
LISTED_PER_TENANT = 100
MAX_REMEMBERED_KEYS = 10_000
"""Idempotency keys remembered (the oldest forgotten first)."""
MAX_CHANGED = 100_000
"""Records changed or made at run time; more are refused (507)."""
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
_GIVEN = ("Ada", "Ben", "Clara", "Dario", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas")
_FAMILY = ("Keller", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi")
EDITABLE = frozenset({"name", "email_address", "tel", "title", "organisation"})
"""What an update may change; `organisation` takes `{"name": ...}`."""


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
        "name": f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
        "title": rng.choice(_TITLES),
        "tel": f"+48 22 {rng.randrange(100, 1000)} {rng.randrange(10, 100)} "
        f"{rng.randrange(10, 100)}",
        "email_address": f"{rng.choice(_MAILBOXES)}.{match['position']}@{domain}",
        "organisation": {"name": company, "domain": domain, "size": rng.choice(_SIZES)},
        "updated": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def listed_ids(tenant: str | None, per_tenant: int = LISTED_PER_TENANT) -> list[str]:
    """The contacts the listing walks, in id order: each demo tenant's first positions."""
    tenants = LISTED_TENANTS if tenant is None else (tenant,)
    return sorted(
        f"crm-{name}-{position:05d}"
        for name in tenants
        if name in LISTED_TENANTS
        for position in range(per_tenant)
    )


def stamp(moment: datetime) -> str:
    """The CRM's form of a time: UTC, to the microsecond."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _edited(record: dict[str, Any], changes: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`record` with `changes` applied (a 400 for a field an update cannot change)."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise HTTPException(400, f"fields that cannot be changed: {', '.join(sorted(unknown))}")
    edited = dict(record)
    for name, value in changes.items():
        if name == "organisation":
            if not isinstance(value, dict) or set(value) - {"name"}:
                raise HTTPException(400, "organisation takes {name}")
            company = value.get("name")
            if company is not None and not isinstance(company, str):
                raise HTTPException(400, "organisation.name must be text or null")
            edited["organisation"] = {**(record.get("organisation") or {}), "name": company}
        elif value is not None and (not isinstance(value, str) or len(value) > 320):
            raise HTTPException(400, f"{name} must be text of at most 320 characters, or null")
        else:
            edited[name] = value
    edited["updated"] = stamp(now)
    return edited


@dataclass
class ChangePlan:
    """Where `contact.updated` events go, and the faults they meet on the way."""

    url: str
    secret: str
    duplicate_rate: float = 0.0
    late_s: float = 0.0
    seed: int = 7

    @classmethod
    def read(cls, body: dict[str, Any]) -> ChangePlan:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise HTTPException(400, f"unknown fields: {', '.join(sorted(unknown))}")
        try:
            plan = cls(**body)
        except TypeError as error:
            raise HTTPException(400, f"bad plan: {error}") from None
        if not isinstance(plan.url, str) or not plan.url.startswith(("http://", "https://")):
            raise HTTPException(400, "url (http or https) is required")
        if not isinstance(plan.secret, str) or not plan.secret:
            raise HTTPException(400, "secret is required")
        if not 0 <= plan.duplicate_rate <= 1 or not 0 <= plan.late_s <= 60:
            raise HTTPException(400, "duplicate_rate within [0, 1] and late_s within [0, 60]")
        return plan


@dataclass
class ChangeFeed:
    """Sends each change as a signed delivery, from tasks of the simulator's loop."""

    plan: ChangePlan | None = None
    events: int = 0
    deliveries: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)
    _sending: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, plan: ChangePlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self.events = self.deliveries = 0
        self.answers = {}

    async def stop(self) -> None:
        self.plan = None
        for task in self._sending:
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    def changed(self, record: dict[str, Any]) -> None:
        plan = self.plan
        if plan is None:
            return
        self.events += 1
        event_id = f"crm_evt_{uuid.uuid4().hex}"
        payload = {
            "type": "contact.updated",
            "contactId": record["contact_id"],
            "workspace": record["workspace"],
            "occurredAt": datetime.now(UTC).isoformat(),
        }
        copies = 2 if self._rng.random() < plan.duplicate_rate else 1
        delay = self._rng.uniform(0, plan.late_s) if plan.late_s else 0.0
        for _ in range(copies):
            task = asyncio.get_running_loop().create_task(
                self._deliver(plan, event_id, payload, delay)
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(
        self, plan: ChangePlan, event_id: str, payload: dict[str, Any], delay: float
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with httpx.AsyncClient(timeout=10) as client:
            outcome = await post_signed(client, plan.url, plan.secret, event_id, payload)
        self.deliveries += 1
        self.answers[outcome] = self.answers.get(outcome, 0) + 1

    def describe(self) -> dict[str, Any]:
        return {
            "target": None if self.plan is None else self.plan.url,
            "events": self.events,
            "deliveries": self.deliveries,
            "answers": dict(sorted(self.answers.items())),
        }


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, "updated_since must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise HTTPException(400, "updated_since needs an offset (or Z)")
    return moment


def create_crm_app(config: SimulatorConfig) -> Starlette:
    deleted: set[str] = set()
    changed: dict[str, dict[str, Any]] = {}
    answered: OrderedDict[str, dict[str, Any]] = OrderedDict()
    edits = [0]
    """How many changes and deletions were made: what the listing's order is kept for."""
    feed = ChangeFeed()

    @functools.lru_cache(maxsize=MAX_CHANGED)
    def seeded(contact_id: str) -> dict[str, Any] | None:
        return contact_record(config.seed, contact_id)

    def lookup(contact_id: str) -> dict[str, Any] | None:
        if contact_id in deleted:
            return None
        return changed.get(contact_id) or seeded(contact_id)

    @functools.lru_cache(maxsize=8)
    def in_change_order(tenant: str | None, _edits: int) -> list[tuple[datetime, str]]:
        """The tenant's records by (updated, id), kept until a record changes or goes."""
        return sorted(
            (_since(record["updated"]), contact_id)
            for contact_id in known_ids(tenant)
            if (record := lookup(contact_id)) is not None
        )

    def known_ids(tenant: str | None) -> list[str]:
        made = (i for i, r in changed.items() if tenant is None or r["workspace"] == tenant)
        return sorted({*listed_ids(tenant, config.crm_listed_per_tenant), *made})

    def change(contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        record = lookup(contact_id)
        if record is None:
            raise HTTPException(404, f"no contact {contact_id}")
        if contact_id not in changed and len(changed) >= MAX_CHANGED:
            raise HTTPException(507, "too many changed records")
        changed[contact_id] = _edited(record, changes, datetime.now(UTC))
        edits[0] += 1
        feed.changed(changed[contact_id])
        return changed[contact_id]

    async def contacts(request: Request) -> JSONResponse:
        query = request.query_params
        if "ids" in query:
            if {"cursor", "limit", "tenant", "updated_since"} & set(query):
                raise HTTPException(
                    400, "ids cannot be combined with cursor, limit, tenant or updated_since"
                )
            ids = parse_ids(query["ids"], name="ids", max_items=MAX_BATCH)
            found = [record for record in map(lookup, ids) if record is not None]
            return JSONResponse({"contacts": found})
        limit = parse_limit(query.get("limit"), default=50, maximum=MAX_PAGE)
        after = decode_cursor(query["cursor"]) if "cursor" in query else ""
        ids = known_ids(query.get("tenant"))
        if "updated_since" in query:
            # Oldest change first, so that a client may keep the last `updated` it saw as the
            # time to ask from next.
            since = _since(query["updated_since"])
            by_change = in_change_order(query.get("tenant"), edits[0])
            start = bisect.bisect_left(by_change, (since, ""))
            positions = [(f"{when.isoformat()}|{i}", i) for when, i in by_change[start:]]
        else:
            positions = [(contact_id, contact_id) for contact_id in ids]
        page: list[dict[str, Any]] = []
        last, more = "", False
        for at, contact_id in positions:
            if at <= after or (record := lookup(contact_id)) is None:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(record)
            last = at
        next_cursor = encode_cursor(last) if more else None
        return JSONResponse({"contacts": page, "next_cursor": next_cursor})

    async def contact(request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        if request.method == "PATCH":
            key = request.headers.get("idempotency-key")
            if key is not None and key in answered:
                return JSONResponse(answered[key])
            edited = change(contact_id, await read_json_object(request))
            if key is not None:
                answered[key] = edited
                while len(answered) > MAX_REMEMBERED_KEYS:
                    answered.popitem(last=False)
            return JSONResponse(edited)
        record = lookup(contact_id)
        if record is None:
            raise HTTPException(404, f"no contact {contact_id}")
        if request.method == "DELETE":
            deleted.add(contact_id)
            changed.pop(contact_id, None)
            edits[0] += 1
            return Response(status_code=204)
        return JSONResponse(record)

    async def edit(request: Request) -> JSONResponse:
        """A person's edit at the CRM: the record changes (or is made) as if by hand."""
        contact_id = request.path_params["contact_id"]
        if contact_id not in changed and contact_record(config.seed, contact_id) is None:
            raise HTTPException(400, "not a CRM id: crm-<tenant>-<5 digits>")
        deleted.discard(contact_id)
        return JSONResponse(change(contact_id, await read_json_object(request)))

    async def change_feed(request: Request) -> JSONResponse:
        if request.method == "POST":
            feed.start(ChangePlan.read(await read_json_object(request)))
        elif request.method == "DELETE":
            await feed.stop()
        return JSONResponse(feed.describe())

    return build_simulator_app(
        config,
        [
            Route("/_control/contacts/{contact_id}", edit, methods=["POST"]),
            Route("/_control/crm-webhooks", change_feed, methods=["GET", "POST", "DELETE"]),
            Route("/v1/contacts", contacts, methods=["GET"]),
            Route("/v1/contacts/{contact_id}", contact, methods=["GET", "PATCH", "DELETE"]),
        ],
    )
