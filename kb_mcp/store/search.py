"""Reading facts: by id, keyword listing with cursors (RediSearch full text), and vector search through
LlamaIndex's `RedisVectorStore` (later: hybrid)."""

from __future__ import annotations

import re
from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, MetadataFilter, MetadataFilters, VectorStoreQuery
from redis.asyncio import Redis

from kb_mcp.errors import InvalidInput, NotFound
from kb_mcp.facts import (
    LIMIT_MAX,
    TOP_K_MAX,
    Fact,
    FactPage,
    ScoredFact,
    check_fact_id,
    check_int,
    check_query,
    check_score,
    check_tags,
)
from kb_mcp.store.context import StoreContext
from kb_mcp.store.cursor import decode_cursor, encode_cursor, scope_of
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.records import decode_metadata, fact_from_fields, split_tags
from kb_mcp.store.schema import F_CREATED, F_DOC, F_HASH, F_ID, F_META, F_TAGS, F_TEXT, F_VECTOR, READ_FIELDS

MAX_QUERY_WORDS = 64
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def escape(word: str) -> str:
    """Escape every character RediSearch could read as syntax (letters, digits and _ pass through)."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in word)


def tag_clauses(tags: list[str]) -> list[str]:
    """One TAG clause per tag: a fact must carry all of them."""
    return [f"@{F_TAGS}:{{{escape(t)}}}" for t in tags]


class Reader:
    """Every read of a namespace's facts."""

    def __init__(self, ctx: StoreContext, index: SearchIndex) -> None:
        from kb_mcp.store.vectors import RETURN_FIELDS, KbRedisVectorStore

        self._ctx = ctx
        self._index = index
        # Built with the async client only: no synchronous Redis client exists anywhere in kb-mcp.
        self.vector_store = KbRedisVectorStore(schema=index.schema, redis_client_async=ctx.manager.client,
                                               return_fields=RETURN_FIELDS)
        self.vector_store.created_async_index = True  # we create the index ourselves (never overwrite=True)

    async def load(self, keys: list[bytes]) -> list[Fact]:
        """Facts of `keys` in order (one pipelined HMGET each); keys deleted meanwhile are skipped.

        The hash is read rather than FT.SEARCH's RETURN, which rounds NUMERIC fields (timestamps) to ~12 digits.
        """
        if not keys:
            return []

        async def fetch(r: Redis) -> list[list[bytes | None]]:
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(k, list(READ_FIELDS))  # type: ignore[arg-type]
            return await pipe.execute()

        rows = await self._ctx.redis("load facts", fetch)
        return [fact_from_fields(dict(zip(READ_FIELDS, row, strict=True))) for row in rows if row[0] is not None]

    async def get_fact(self, fact_id: str) -> Fact:
        """The fact stored under `fact_id`, or NotFound."""
        check_fact_id(fact_id)
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
                         cursor: str | None = None) -> FactPage:
        """Keyword (full-text) match over content when `query` is given, else newest first; paginated.

        User text is reduced to its words and each is escaped: it is never interpreted as query syntax.
        """
        limit = check_int(limit, "limit", 1, LIMIT_MAX)
        tags = check_tags(tags)
        parts: list[str] = []
        if query is not None:
            check_query(query)
            words = _WORD_RE.findall(query)[:MAX_QUERY_WORDS]
            if not words:
                raise InvalidInput("query", "contains no words to match (letters or digits)")
            parts.append(f"@{F_TEXT}:(" + " ".join(escape(w) for w in words) + ")")
        parts += tag_clauses(tags)
        q = " ".join(parts) or "*"
        scope = scope_of(q)
        offset = decode_cursor(cursor, scope) if cursor else 0
        args: list[Any] = ["NOCONTENT"]
        if query is None:
            args += ["SORTBY", F_CREATED, "DESC"]
        args += ["LIMIT", offset, limit]
        raw = await self._search(q, *args, op="search facts")
        total = int(raw[0])
        facts = await self.load(raw[1:])
        nxt = offset + limit
        return FactPage(facts=facts, total=total, next_cursor=encode_cursor(nxt, scope) if nxt < total else None)

    async def semantic_search(self, query: str, top_k: int = 5, tags: list[str] | None = None,
                              min_score: float | None = None) -> list[ScoredFact]:
        """KNN through LlamaIndex's RedisVectorStore.aquery on the async client; best first, cosine similarity."""
        check_query(query)
        top_k = check_int(top_k, "top_k", 1, TOP_K_MAX)
        tags = check_tags(tags)
        min_score = check_score(min_score)
        vector = (await self._ctx.embed([query], "embed query"))[0]
        filters = None
        if tags:
            filters = MetadataFilters(filters=[MetadataFilter(key=F_TAGS, value=t) for t in tags],
                                      condition=FilterCondition.AND)
        request = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=top_k, filters=filters)
        # The LlamaIndex deadline (KB_TIMEOUT_INDEX), not the Redis one: a KNN over a large index is LlamaIndex work.
        result = await self._index.run(lambda: self._ctx.redis("vector search",
                                                              lambda r: self.vector_store.aquery(request), "index"))
        hits: list[ScoredFact] = []
        for node, score in zip(result.nodes or [], result.similarities or [], strict=False):
            if min_score is not None and score < min_score:
                continue
            meta = node.metadata
            hits.append(ScoredFact(fact_id=node.node_id, content=node.get_content(),
                                   metadata=decode_metadata(meta.get(F_META)), tags=split_tags(meta.get(F_TAGS)),
                                   score=round(float(score), 6)))
        return hits

    async def _search(self, query: str, *args: Any, op: str) -> Any:
        """FT.SEARCH on this namespace's index (dialect 2), recreating the index if it has vanished."""
        return await self._index.run(
            lambda: self._ctx.command("FT.SEARCH", self._index.name, query, *args, "DIALECT", 2, op=op))
