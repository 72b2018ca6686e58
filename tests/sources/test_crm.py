"""The CRM adapter against scripted upstreams: enrichment per tenant, tags, deletion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from hub.errors import SourceError, SourceTimeout, SourceUnavailable
from hub.sources.cache import subject_tag
from hub.sources.crm import CrmRecord, CrmSource
from hub.sources.memory_cache import MemoryCache
from tests.sources.fakes import FakeClock
from tests.sources.upstream import Upstream, json_answer, make_client


def contact(crm_id: str, workspace: str = "acme") -> dict[str, Any]:
    return {
        "contact_id": crm_id,
        "workspace": workspace,
        "title": "Head of Partnerships",
        "tel": "+48 22 984 83 19",
        "email_address": "hello@novatalent.example",
        "organisation": {"name": "Nova Talent", "domain": "novatalent.example", "size": "11-50"},
        "updated": "2026-02-16T17:52:52Z",
    }


def crm(upstream: Upstream, **overrides: Any) -> CrmSource:
    return CrmSource(make_client(upstream, name="crm", **overrides))


async def test_contacts_are_translated_into_records() -> None:
    upstream = Upstream(json_answer({"contacts": [contact("crm-acme-00007")]}))
    found = await crm(upstream).contacts("acme", ["crm-acme-00007", "crm-acme-00008"])
    assert found == {
        "crm-acme-00007": CrmRecord(
            crm_id="crm-acme-00007",
            company="Nova Talent",
            job_title="Head of Partnerships",
            phone="+48 22 984 83 19",
            updated_at=datetime(2026, 2, 16, 17, 52, 52, tzinfo=UTC),
        )
    }
    assert upstream.requests[0].url.params["ids"] == "crm-acme-00007,crm-acme-00008"


async def test_a_record_of_another_workspace_never_reaches_the_tenant() -> None:
    upstream = Upstream(json_answer({"contacts": [contact("crm-globex-00001", "globex")]}))
    assert await crm(upstream).contacts("acme", ["crm-globex-00001"]) == {}


async def test_cache_entries_are_per_tenant() -> None:
    clock = FakeClock()
    upstream = Upstream(
        json_answer({"contacts": [contact("crm-acme-00007")]}),
        json_answer({"contacts": []}),
    )
    source = crm(upstream, clock=clock, cache=MemoryCache(clock=clock))
    assert list(await source.contacts("acme", ["crm-acme-00007"])) == ["crm-acme-00007"]
    assert await source.contacts("globex", ["crm-acme-00007"]) == {}
    assert upstream.calls == 2


async def test_a_purge_of_the_contact_drops_its_cached_record() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({"contacts": [contact("crm-acme-00007")]}))
    cache = MemoryCache(clock=clock)
    source = crm(upstream, clock=clock, cache=cache)
    subjects = {"crm-acme-00007": "con_1"}
    await source.contacts("acme", ["crm-acme-00007"], subjects=subjects)
    assert await cache.purge_tag(subject_tag("con_1")) == 1
    await source.contacts("acme", ["crm-acme-00007"], subjects=subjects)
    assert upstream.calls == 2


@pytest.mark.parametrize("status", [204, 404])
async def test_delete_is_done_when_the_contact_is_gone_or_already_was(status: int) -> None:
    found = json_answer({"contacts": [contact("crm-acme-00007")]})
    upstream = Upstream(found, httpx.Response(status))
    assert await crm(upstream).delete("crm-acme-00007", tenant="acme") is True
    assert [r.method for r in upstream.requests] == ["GET", "DELETE"]
    assert upstream.requests[1].url.path == "/v1/contacts/crm-acme-00007"


async def test_a_record_of_another_workspace_is_never_deleted() -> None:
    upstream = Upstream(json_answer({"contacts": [contact("crm-globex-00021", "globex")]}))
    assert await crm(upstream).delete("crm-globex-00021", tenant="acme") is False
    assert [r.method for r in upstream.requests] == ["GET"]


async def test_a_delete_refused_by_a_5xx_is_source_unavailable() -> None:
    found = json_answer({"contacts": [contact("crm-acme-00007")]})
    with pytest.raises(SourceUnavailable):
        await crm(Upstream(found, json_answer({}, 500))).delete("crm-acme-00007", tenant="acme")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.ConnectTimeout("slow"), SourceTimeout),
        (json_answer({"error": {}}, 502), SourceUnavailable),
        (json_answer({}, 429, **{"Retry-After": "1"}), SourceUnavailable),
        (httpx.Response(200, content=b"<html>"), SourceUnavailable),
        (httpx.Response(200, content=b'{"contacts": [{"contact_id"'), SourceUnavailable),
        (json_answer({"contacts": [{"contact_id": 7}]}), SourceUnavailable),
        (json_answer({"items": []}), SourceUnavailable),
    ],
)
async def test_a_failing_crm_is_a_source_error_naming_crm(
    answer: httpx.Response | Exception, error: type[SourceError]
) -> None:
    with pytest.raises(error) as caught:
        await crm(Upstream(answer)).contacts("acme", ["crm-acme-00007"])
    assert caught.value.extensions["source"] == "crm"
