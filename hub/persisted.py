"""Persisted queries: Apollo's automatic persisted queries and a trusted-documents manifest."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as redis
from graphql import GraphQLError, parse

from hub.errors import BadRequest, PersistedQueryNotAllowed, PersistedQueryNotFound

_HASH = re.compile(r"[0-9a-f]{64}")
APQ_TTL_S = 24 * 3600
MAX_PERSISTED_BYTES = 32 * 1024


class QueryStore(Protocol):
    """Where automatically persisted queries are kept, by their sha256."""

    async def get(self, digest: str) -> str | None: ...
    async def put(self, digest: str, query: str) -> None: ...
    async def aclose(self) -> None: ...


class MemoryQueryStore:
    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._queries: OrderedDict[str, str] = OrderedDict()

    async def get(self, digest: str) -> str | None:
        query = self._queries.get(digest)
        if query is not None:
            self._queries.move_to_end(digest)
        return query

    async def put(self, digest: str, query: str) -> None:
        self._queries[digest] = query
        self._queries.move_to_end(digest)
        while len(self._queries) > self.max_entries:
            self._queries.popitem(last=False)

    async def aclose(self) -> None:
        return None


class RedisQueryStore:
    """Shared by every replica: a query registered on one is found on the others."""

    def __init__(self, url: str, *, prefix: str = "hub:apq:") -> None:
        self.client = redis.from_url(url)
        self.prefix = prefix

    async def get(self, digest: str) -> str | None:
        value = await self.client.get(self.prefix + digest)
        if value is None:
            return None
        return value if isinstance(value, str) else value.decode()

    async def put(self, digest: str, query: str) -> None:
        await self.client.set(self.prefix + digest, query, ex=APQ_TTL_S)

    async def aclose(self) -> None:
        await self.client.aclose()


def create_query_store(cache_url: str, *, namespace: str = "hub") -> QueryStore:
    if cache_url.startswith(("redis://", "rediss://")):
        return RedisQueryStore(cache_url, prefix=f"{namespace}:apq:")
    return MemoryQueryStore()


def load_manifest(path: Path | None) -> dict[str, str]:
    """sha256 -> document, from Apollo's persisted-query manifest or a plain `{hash: query}`.

    Every entry's hash is checked against its document; a mismatch is a `ValueError`."""
    if path is None or not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(document, dict) and "operations" in document:
        pairs = [(op["id"], op["body"]) for op in document["operations"]]
    elif isinstance(document, dict):
        pairs = list(document.items())
    else:
        raise ValueError(f"{path}: expected a manifest object")
    manifest = {}
    for digest, query in pairs:
        if sha256(query) != digest:
            raise ValueError(f"{path}: the document of {digest} does not hash to it")
        manifest[digest] = query
    return manifest


def sha256(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


async def resolve_query(
    query: str | None,
    extensions: dict[str, Any] | None,
    *,
    store: QueryStore,
    manifest: dict[str, str],
    trusted_only: bool,
) -> str | None:
    """The document to run: the request's, a trusted one, or an automatically persisted one."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        if trusted_only:
            raise PersistedQueryNotAllowed()
        return query
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
        or not _HASH.fullmatch(persisted["sha256Hash"])
    ):
        raise BadRequest("`extensions.persistedQuery` needs version 1 and a sha256Hash.")
    digest: str = persisted["sha256Hash"]
    if query is not None and sha256(query) != digest:
        raise BadRequest("The provided sha256Hash does not match the query.")
    if digest in manifest:
        return manifest[digest]
    if trusted_only:
        raise PersistedQueryNotAllowed()
    if query is None:
        stored = await store.get(digest)
        if stored is None:
            raise PersistedQueryNotFound()
        return stored
    if len(query.encode()) <= MAX_PERSISTED_BYTES and _parses(query):
        # Only documents that can run are kept, and only up to a size: the store is shared.
        await store.put(digest, query)
    return query


def _parses(query: str) -> bool:
    try:
        parse(query)
    except GraphQLError:
        return False
    return True
