"""Cache keys that never cross tenants, subject tags, and the backend chosen by URL."""

from __future__ import annotations

import pytest

from hub.sources.cache import cache_key, create_cache, source_of, subject_tag
from hub.sources.memory_cache import MemoryCache
from hub.sources.redis_cache import RedisCache


def test_the_tenant_is_part_of_every_tenant_scoped_key() -> None:
    keys = {
        cache_key("crm", "contact", "con_1", tenant="ten_a"),
        cache_key("crm", "contact", "con_1", tenant="ten_b"),
        cache_key("crm", "contact", "con_1", tenant=None),
    }
    assert len(keys) == 3
    assert cache_key("crm", "contact", "con_1", tenant="ten_a") == "crm:contact:t=ten_a:con_1"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("crm", "contact", "y:z", "x"), ("crm", "contact", "z", "x:y")),
        (("crm", "contact", "k", "g"), ("crm", "contact", "k", None)),
        (("crm", "a:b", "k", None), ("crm:a", "b", "k", None)),
        (("crm", "contact", "%3A", None), ("crm", "contact", ":", None)),
    ],
)
def test_different_parts_never_make_the_same_key(
    one: tuple[str, str, str, str | None], other: tuple[str, str, str, str | None]
) -> None:
    assert cache_key(*one[:3], tenant=one[3]) != cache_key(*other[:3], tenant=other[3])


def test_an_empty_tenant_is_refused_rather_than_shared() -> None:
    with pytest.raises(ValueError, match="tenant"):
        cache_key("crm", "contact", "con_1", tenant="")


def test_keys_start_with_their_source_and_subjects_have_one_tag() -> None:
    assert source_of(cache_key("social", "metrics", "acc:1", tenant=None)) == "social"
    assert subject_tag("con_1") == "subject:con_1"


async def test_the_url_picks_the_backend() -> None:
    memory = create_cache("memory://", namespace="hub")
    redis = create_cache("redis://127.0.0.1:6379/15", namespace="hub")
    assert isinstance(memory, MemoryCache)
    assert isinstance(redis, RedisCache)
    await memory.aclose()
    await redis.aclose()
    with pytest.raises(ValueError, match="unknown cache URL"):
        create_cache("memcached://localhost", namespace="hub")
