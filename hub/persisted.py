"""Persisted queries: Apollo's automatic persisted queries and a trusted-documents manifest."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from graphql import GraphQLError, OperationDefinitionNode, parse

from hub.errors import BadRequest, PersistedQueryNotAllowed, PersistedQueryNotFound
from hub.sources.redis_link import UNREACHABLE, RedisLink, is_redis

_HASH = re.compile(r"[0-9a-f]{64}")
APQ_TTL_S = 24 * 3600
MAX_PERSISTED_BYTES = 32 * 1024
MAX_KEPT_BYTES = 8 * 1024 * 1024
"""The most query text (UTF-8) a process keeps."""


class QueryStore(Protocol):
    """Where automatically persisted queries are kept, by their sha256."""

    async def get(self, digest: str) -> str | None: ...
    async def put(self, digest: str, query: str) -> None: ...
    async def aclose(self) -> None: ...


class MemoryQueryStore:
    """Queries of this process, the least recently used dropped first: at most `max_entries`
    of them and `max_bytes` of query text."""

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._queries: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    async def get(self, digest: str) -> str | None:
        query = self._queries.get(digest)
        if query is not None:
            self._queries.move_to_end(digest)
        return query

    async def put(self, digest: str, query: str) -> None:
        old = self._queries.pop(digest, None)
        if old is not None:
            self._bytes -= len(old.encode())
        self._queries[digest] = query
        self._bytes += len(query.encode())
        while len(self._queries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._queries.popitem(last=False)
            self._bytes -= len(dropped.encode())

    async def aclose(self) -> None:
        return None


class RedisQueryStore:
    """Shared by every replica: a query registered on one is found on the others. While Redis
    is away (`link` down) lookups miss and registrations are kept in process (`local`), where
    later lookups look too; the store closes `link` when it owns it."""

    def __init__(
        self, link: RedisLink, *, prefix: str = "hub:apq:", owns_link: bool = False
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.local = MemoryQueryStore()
        self._owns_link = owns_link

    async def get(self, digest: str) -> str | None:
        if self.link.is_up:
            try:
                value = await self.link.redis.get(self.prefix + digest)
            except UNREACHABLE:
                self.link.failed("persisted query lookup")
            else:
                if value is not None:
                    return value if isinstance(value, str) else value.decode()
        return await self.local.get(digest)

    async def put(self, digest: str, query: str) -> None:
        if self.link.is_up:
            try:
                await self.link.redis.set(self.prefix + digest, query, ex=APQ_TTL_S)
            except UNREACHABLE:
                self.link.failed("persisted query registration")
            else:
                return
        await self.local.put(digest, query)

    async def aclose(self) -> None:
        if self._owns_link:
            await self.link.aclose()


def create_query_store(
    cache_url: str, *, namespace: str = "hub", link: RedisLink | None = None
) -> QueryStore:
    """In process for `memory://`; on Redis (through `link`, or a link of its own) for
    `redis://…`, under `namespace`."""
    if is_redis(cache_url):
        return RedisQueryStore(
            link or RedisLink.from_url(cache_url),
            prefix=f"{namespace}:apq:",
            owns_link=link is None,
        )
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


def trusted_names(manifest: dict[str, str]) -> dict[str, str]:
    """The trusted documents' hashes by the names of the operations they hold."""
    names: dict[str, str] = {}
    for digest, text in manifest.items():
        try:
            document = parse(text)
        except GraphQLError:
            continue
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
                names.setdefault(definition.name.value, digest)
    return names


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
