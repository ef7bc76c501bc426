"""Reading facts: by id, by content hash, by document, and keyword listing with cursors (RediSearch full text).
Search by meaning is in `hybrid`."""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline

from kb_mcp.errors import InvalidInput, NotFound
from kb_mcp.facts.models import Fact, FactPage
from kb_mcp.facts.rules import FACT_ID, LIMIT, QUERY, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.cursor import decode_cursor, encode_cursor, scope_of
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.records import fact_from_fields
from kb_mcp.store.schema import F_CREATED, F_DOC, F_HASH, F_ID, F_VECTOR, READ_FIELDS
from kb_mcp.store.search.querytext import all_words_query, escape


class Reader:
    """Every read of a namespace's facts."""

    def __init__(self, ctx: StoreContext, index: SearchIndex) -> None:
        self._ctx = ctx
        self._index = index

    async def load(self, keys: list[bytes]) -> list[Fact]:
        """Facts of `keys` in order (one pipelined HMGET each); keys deleted meanwhile are skipped.

        The hash is read rather than FT.SEARCH's RETURN, which rounds NUMERIC fields (timestamps) to ~12 digits.
        """
        if not keys:
            return []

        def add(pipe: Pipeline) -> None:
            for k in keys:
                pipe.hmget(k, list(READ_FIELDS))  # type: ignore[arg-type]

        rows = await self._ctx.pipeline("load facts", add)
        return [fact_from_fields(dict(zip(READ_FIELDS, row, strict=True))) for row in rows if row[0] is not None]

    async def get_fact(self, fact_id: str) -> Fact:
        """The fact stored under `fact_id`, or NotFound."""
        valid(FACT_ID, fact_id, "fact_id")
        values = await self._ctx.command("HMGET", self._ctx.keyspace.key(fact_id), *READ_FIELDS, op="get fact")
        fields = dict(zip(READ_FIELDS, values, strict=True))
        if fields[F_ID] is None:
            raise NotFound(fact_id)
        return fact_from_fields(fields)

    async def get_vector(self, fact_id: str) -> bytes:
        """The stored vector of a fact (NotFound if it is gone)."""
        raw = await self._ctx.command("HGET", self._ctx.keyspace.key(fact_id), F_VECTOR, op="get vector")
        if raw is None:
            raise NotFound(fact_id)
        return bytes(raw)

    async def find_by_hash(self, chash: str) -> Fact | None:
        """A fact whose normalised content has this hash (the dedup check)."""
        raw = await self._search(f"@{F_HASH}:{{{chash}}}", "NOCONTENT", "LIMIT", 0, 1, op="find duplicate")
        facts = await self.load(raw[1:])
        return facts[0] if facts else None

    async def keys_of_document(self, doc_id: str, page: int = 1000) -> list[bytes]:
        """Keys of every chunk of a document (paged FT.SEARCH on its doc_id tag)."""
        keys: list[bytes] = []
        while True:
            raw = await self._search(f"@{F_DOC}:{{{escape(doc_id)}}}", "NOCONTENT", "LIMIT", len(keys), page,
                                     op="find document")
            keys += raw[1:]
            if len(raw) - 1 < page or len(keys) >= int(raw[0]):
                return keys

    async def list_facts(self, *, query: str | None = None, tags: list[str] | None = None, limit: int = 20,
                         cursor: str | None = None, created_after: str | None = None,
                         created_before: str | None = None, where: dict[str, Any] | None = None) -> FactPage:
        """Keyword (full-text) match over content when `query` is given, else newest first; paginated; tags, the
        creation-time range and `where` narrow it.

        User text is reduced to its words and each is escaped: it is never interpreted as query syntax.
        """
        limit = valid(LIMIT, limit, "limit")
        scope = await self._index.scope(tags, created_after, created_before, where)
        parts: list[str] = []
        if query is not None:
            valid(QUERY, query, "query")
            matched = all_words_query(query)
            if matched is None:
                raise InvalidInput("query", "contains no words to match (letters or digits)")
            parts.append(matched)
        q = " ".join(parts + scope) or "*"
        pages = scope_of(q)  # what a cursor of this listing is bound to
        offset = decode_cursor(cursor, pages) if cursor else 0
        args: list[Any] = ["NOCONTENT"]
        if query is None:
            args += ["SORTBY", F_CREATED, "DESC"]
        args += ["LIMIT", offset, limit]
        raw = await self._search(q, *args, op="search facts")
        total = int(raw[0])
        facts = await self.load(raw[1:])
        nxt = offset + limit
        return FactPage(facts=facts, total=total, next_cursor=encode_cursor(nxt, pages) if nxt < total else None)

    async def _search(self, query: str, *args: Any, op: str) -> Any:
        """FT.SEARCH on this namespace's index (dialect 2), recreating the index if it has vanished."""
        return await self._index.run(
            lambda: self._ctx.command("FT.SEARCH", self._index.name, query, *args, "DIALECT", 2, op=op))
