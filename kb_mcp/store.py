"""KnowledgeStore: the async domain API over Redis Stack (facts, keyword and semantic search, export/import).

No MCP types here. Every Redis command or pipeline goes through `AsyncRedisManager.run` (breaker + 2 s deadline),
every embedding through `bounded("index", ...)`, every file operation through `bounded("file", ...)`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
from llama_index.core.vector_stores.types import (
    FilterCondition,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.search.field import NumericField, TagField, TextField, VectorField
from redis.commands.search.indexDefinition import IndexDefinition, IndexType
from redis.exceptions import NoScriptError, ResponseError

from kb_mcp import logs
from kb_mcp.config import Settings, TimeoutKind
from kb_mcp.embeddings import KbEmbedding, build_embedding
from kb_mcp.errors import InvalidInput, KbError, NotFound, StartupError, StoreUnavailable
from kb_mcp.facts import (
    F_CREATED,
    F_DOC,
    F_HASH,
    F_ID,
    F_META,
    F_TAGS,
    F_TEXT,
    F_UPDATED,
    F_VECTOR,
    READ_FIELDS,
    Fact,
    FactPage,
    Scalar,
    ScoredFact,
    StoredFact,
    as_text,
    build_record,
    check_content,
    check_fact_id,
    check_int,
    check_metadata,
    check_query,
    check_score,
    check_tags,
    content_hash,
    decode_metadata,
    export_line,
    fact_from_fields,
    format_ts,
    split_tags,
    to_datetime,
    vector_bytes,
)
from kb_mcp.redis_manager import AsyncRedisManager, ManagerState
from kb_mcp.timeouts import Observer, bounded, no_observer

log = logging.getLogger(__name__)
T = TypeVar("T")

# Redis names: one block. Keys `<ns>:fact:<fact_id>` are hashes indexed by `<ns>:idx`.
FACT_KEY = "{ns}:fact:{fact_id}"
INDEX_NAME = "{ns}:idx"
SCAN_BATCH = 500
WRITE_BATCH = 256
EMBED_BATCH = 64
IMPORT_CHUNK = 1024  # lines per read and per write batch on import
BULK_EMBED_CHUNK = 1024  # per embedding call on the bulk path: ~2.5 s of model time, well inside KB_TIMEOUT_INDEX
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
TOP_K_MAX = 50
LIMIT_MAX = 100

# Write one fact atomically. KEYS[1] fact key; ARGV: mode, now, content_hash, then field/value pairs.
#   'upsert'  replace the hash, keeping created_at (or now for a new fact)  -> {1|0 created, created_at}
#   'create'  write only if absent; the same content there is a dedup hit  -> {0, created_at}; other content -> {-1}
#   'replace' replace the hash with exactly the given fields (import, documents)
# DEL + HSET in one script: stale fields never linger and a fact and its vector can never disagree.
PUT_SCRIPT = """
local mode = ARGV[1]
if mode == 'replace' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  return {1, ARGV[2]}
end
local existing = redis.call('HGET', KEYS[1], 'created_at')
if existing and mode == 'create' then
  if redis.call('HGET', KEYS[1], 'content_hash') == ARGV[3] then return {0, existing} end
  return {-1, existing}
end
local created = existing or ARGV[2]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'created_at', created, unpack(ARGV, 4))
if existing then return {0, created} end
return {1, created}
"""

_WORD_RE = re.compile(r"\w+", re.UNICODE)


class StoreStats(BaseModel):
    """What `stats()` reports: for the kb_stats tool, `kb-mcp stats`, /health and metrics."""

    namespace: str
    index: str
    facts: int | None
    index_state: str
    percent_indexed: float | None
    vector_algorithm: str
    dimensions: int
    embedding: str
    redis_version: str | None
    used_memory_bytes: int | None
    redis: ManagerState
    error: str | None = None


class KnowledgeStore:
    """Facts in Redis hashes under a namespace, indexed by RediSearch for keywords and vectors."""

    def __init__(self, settings: Settings, manager: AsyncRedisManager, embedding: KbEmbedding,
                 observe: Observer | None = None, namespace: str | None = None) -> None:
        from redisvl.schema import IndexSchema

        from kb_mcp.vector_store import RETURN_FIELDS, KbRedisVectorStore

        logs.silence_stdout_loggers()
        self.settings = settings
        self.manager = manager
        self.embedding = embedding
        self.namespace = namespace or settings.namespace
        self.index_name = INDEX_NAME.format(ns=self.namespace)
        self.key_prefix = FACT_KEY.format(ns=self.namespace, fact_id="")
        self._timeouts = settings.timeouts
        self._observe: Observer = observe or no_observer
        self._index_ready = False
        self._index_lock = asyncio.Lock()
        self._put_sha = hashlib.sha1(PUT_SCRIPT.encode()).hexdigest()
        self.schema = IndexSchema.from_dict({
            "index": {"name": self.index_name, "prefix": self.key_prefix.rstrip(":"), "key_separator": ":",
                      "storage_type": "hash"},
            "fields": [
                {"name": F_ID, "type": "tag"},
                {"name": F_DOC, "type": "tag"},
                {"name": F_TEXT, "type": "text"},
                {"name": F_TAGS, "type": "tag", "attrs": {"separator": ","}},
                {"name": F_HASH, "type": "tag"},
                {"name": F_CREATED, "type": "numeric"},
                {"name": F_UPDATED, "type": "numeric"},
                {"name": F_VECTOR, "type": "vector", "attrs": self._vector_attrs()},
            ],
        })
        # Built with the async client only: no synchronous Redis client exists anywhere in kb-mcp.
        self.vector_store = KbRedisVectorStore(schema=self.schema, redis_client_async=manager.client,
                                               return_fields=RETURN_FIELDS)
        self.vector_store.created_async_index = True  # we create the index ourselves (never overwrite=True)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, observe: Observer | None = None,
                   embedding: KbEmbedding | None = None) -> AsyncIterator[KnowledgeStore]:
        """Pool, embedding model and index check; all closed on exit. A down Redis does not stop the start."""
        async with Backend.open(settings, observe=observe, embedding=embedding) as backend:
            store = backend.store(settings.namespace)
            await store.try_ensure_index()
            yield store

    async def try_ensure_index(self) -> None:
        """At start: create/check the index, but serve on if Redis is down (each call reports it, recovery is
        automatic). A wrong configuration (dimension mismatch, no search module) still stops the start."""
        try:
            await self.ensure_index()
        except StartupError:
            raise
        except KbError as exc:
            log.warning("Redis not ready at start (%s); will retry on each call", exc)

    def _vector_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"dims": self.embedding.dim, "distance_metric": "cosine", "datatype": "float32",
                                 "algorithm": self.settings.vector_algorithm}
        if self.settings.vector_algorithm == "hnsw":
            attrs.update(m=self.settings.hnsw_m, ef_construction=self.settings.hnsw_ef_construction,
                         ef_runtime=self.settings.hnsw_ef_runtime)
        return attrs

    def _index_fields(self) -> list[Any]:
        vec: dict[str, Any] = {"TYPE": "FLOAT32", "DIM": self.embedding.dim, "DISTANCE_METRIC": "COSINE"}
        if self.settings.vector_algorithm == "hnsw":
            vec.update(M=self.settings.hnsw_m, EF_CONSTRUCTION=self.settings.hnsw_ef_construction,
                       EF_RUNTIME=self.settings.hnsw_ef_runtime)
        return [
            TagField(F_ID), TagField(F_DOC), TextField(F_TEXT), TagField(F_TAGS, separator=","), TagField(F_HASH),
            NumericField(F_CREATED), NumericField(F_UPDATED),
            VectorField(F_VECTOR, self.settings.vector_algorithm.upper(), vec),
        ]

    async def ensure_index(self) -> None:
        """Create the index if missing (idempotent, never dropping data); refuse a dimension mismatch."""
        if self._index_ready:
            return
        async with self._index_lock:
            if self._index_ready:
                return
            info = await self._index_info()
            if info is None:
                try:
                    await self._redis("FT.CREATE", self._create_index)
                    log.info("created index %s over %s*", self.index_name, self.key_prefix)
                except ResponseError as exc:
                    if "already exists" not in str(exc).lower():
                        raise
                info = await self._index_info()
            dim = _index_dim(info or {})
            if dim is not None and dim != self.embedding.dim:
                raise StartupError(
                    f"index {self.index_name} holds {dim}-d vectors but the embedding model gives "
                    f"{self.embedding.dim}-d; use another KB_NAMESPACE, or export and import into a fresh one")
            self._index_ready = True

    async def _create_index(self, r: Redis) -> Any:
        definition = IndexDefinition(prefix=[self.key_prefix], index_type=IndexType.HASH)  # type: ignore[no-untyped-call]
        search = r.ft(self.index_name)  # type: ignore[no-untyped-call]
        return await search.create_index(self._index_fields(), stopwords=[], definition=definition)

    async def _index_info(self) -> dict[str, Any] | None:
        try:
            raw = await self._redis("FT.INFO", lambda r: _cmd(r, "FT.INFO", self.index_name))
        except ResponseError as exc:
            text = str(exc).lower()
            if "unknown index" in text or "no such index" in text:
                return None
            if "unknown command" in text:
                raise StartupError("the Redis server has no search module: kb-mcp needs Redis Stack "
                                   "(RediSearch >= 2.6); scripts/redis-stack.sh starts one") from exc
            raise
        return _pairs(raw)

    # ------------------------------------------------------------ bounded primitives

    async def _redis(self, op: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        return await self.manager.run(op, call)

    async def _bounded(self, kind: TimeoutKind, awaitable: Awaitable[T], op: str) -> T:
        return await bounded(kind, awaitable, op, policy=self._timeouts, observe=self._observe)

    async def _embed(self, texts: list[str], op: str) -> np.ndarray[Any, Any]:
        return await self._bounded("index", self.embedding.aembed(texts), op)

    async def _ready(self) -> None:
        if not self._index_ready:
            await self.ensure_index()

    def key(self, fact_id: str) -> str:
        return FACT_KEY.format(ns=self.namespace, fact_id=fact_id)

    async def _write(self, op: str, add: Callable[[Pipeline], Awaitable[Any]]) -> list[Any]:
        """Queue writes with `add(pipe)` and send them as one pipeline (one connection, one round trip).

        With KB_DURABILITY=fsync, `WAITAOF 1 0` rides the same pipeline: WAITAOF only covers the writes of its own
        connection, so it must follow them on that connection. Returns the replies of the queued writes.
        """
        fsync = self.settings.durability == "fsync"

        async def run(r: Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            try:
                await add(pipe)
                if fsync:
                    pipe.execute_command("WAITAOF", 1, 0, int(self._timeouts.redis_s * 1000))
                return await pipe.execute()
            finally:
                await asyncio.shield(pipe.reset())  # type: ignore[no-untyped-call]  # hand the connection back on every path, even when cancelled

        try:
            try:
                replies = await self._redis(op, run)
            except NoScriptError:  # Redis restarted (script cache is empty): load it once, replay (writes idempotent)
                await self._redis("SCRIPT LOAD", lambda r: r.script_load(PUT_SCRIPT))
                replies = await self._redis(op, run)
        except ResponseError as exc:
            if fsync and "appendonly" in str(exc).lower():
                raise StoreUnavailable(f"{op}: KB_DURABILITY=fsync needs AOF on the Redis server (appendonly yes); "
                                       "the write itself was applied") from exc
            raise
        if fsync:
            local = int(replies.pop()[0])
            if local < 1:
                raise StoreUnavailable(f"{op}: the write was applied but Redis did not confirm the AOF fsync within "
                                       f"{self._timeouts.redis_s:.1f} s (is appendonly on?)")
        return replies

    async def _queue_put(self, pipe: Pipeline, fact_id: str, record: dict[str, str | bytes], mode: str, now: str,
                         chash: str = "") -> None:
        args: list[str | bytes] = [mode, now, chash]
        for name, value in record.items():
            args += [name, value]
        # EVALSHA straight into the pipeline: redis-py's Script objects add a SCRIPT EXISTS round trip per
        # execute (and 5.3 leaks the pipeline's connection when that pre-check fails).
        pipe.evalsha(self._put_sha, 1, self.key(fact_id), *args)  # type: ignore[arg-type]

    # ------------------------------------------------------------ facts

    async def store_fact(self, content: str, metadata: dict[str, Scalar] | None = None,
                         tags: list[str] | None = None, fact_id: str | None = None) -> StoredFact:
        """Upsert by id, embedding first: a slow or failed model leaves the old fact intact, never a hash without a
        vector. Without an id, content equal after whitespace normalisation returns the existing fact."""
        content = check_content(content, self.settings.max_fact_chars)
        metadata = check_metadata(metadata)
        tags = check_tags(tags)
        if fact_id is not None:
            check_fact_id(fact_id)
        await self._ready()
        chash = content_hash(content)
        if fact_id is None:
            existing = await self._find_by_hash(chash)
            if existing is not None:
                return existing
        vector = vector_bytes((await self._embed([content], "embed fact"))[0])
        now = format_ts(time.time())
        mode, target = ("upsert", fact_id) if fact_id is not None else ("create", "f-" + chash[:24])
        for _ in range(3):
            record = build_record(target, content, metadata, tags, vector, updated_at=now)
            created, created_at = await self._put_record(target, record, mode, now, chash)
            if created >= 0:
                if created == 0 and mode == "create":  # lost a race with an identical store
                    stored = await self.get_fact(target)
                    return StoredFact(fact_id=target, created=False, created_at=stored.created_at,
                                      updated_at=stored.updated_at)
                return StoredFact(fact_id=target, created=bool(created), created_at=to_datetime(created_at),
                                  updated_at=to_datetime(now))
            target = "f-" + uuid.uuid4().hex[:24]  # the derived id is taken by other content
        raise RuntimeError("could not allocate a fact id")  # pragma: no cover - three uuid collisions

    async def _put_record(self, fact_id: str, record: dict[str, str | bytes], mode: str, now: str,
                          chash: str) -> tuple[int, str]:
        (result,) = await self._write("store fact", lambda p: self._queue_put(p, fact_id, record, mode, now, chash))
        created = int(result[0])
        return created, (result[1].decode() if isinstance(result[1], bytes) else str(result[1]))

    async def _find_by_hash(self, chash: str) -> StoredFact | None:
        raw = await self._redis("find duplicate", lambda r: _cmd(r,
            "FT.SEARCH", self.index_name, f"@{F_HASH}:{{{chash}}}", "NOCONTENT", "LIMIT", 0, 1, "DIALECT", 2))
        facts = await self._load(raw[1:])
        if not facts:
            return None
        return StoredFact(fact_id=facts[0].fact_id, created=False, created_at=facts[0].created_at,
                          updated_at=facts[0].updated_at)

    async def _load(self, keys: list[bytes]) -> list[Fact]:
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

        rows = await self._redis("load facts", fetch)
        return [fact_from_fields(dict(zip(READ_FIELDS, row, strict=True))) for row in rows if row[0] is not None]

    async def get_fact(self, fact_id: str) -> Fact:
        """The fact stored under `fact_id`, or NotFound."""
        check_fact_id(fact_id)
        values = await self._redis("get fact", lambda r: _cmd(r, "HMGET", self.key(fact_id), *READ_FIELDS))
        fields = dict(zip(READ_FIELDS, values, strict=True))
        if fields[F_ID] is None:
            raise NotFound(fact_id)
        return fact_from_fields(fields)

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
            words = _WORD_RE.findall(query)[:64]
            if not words:
                raise InvalidInput("query", "contains no words to match (letters or digits)")
            parts.append(f"@{F_TEXT}:(" + " ".join(_escape(w) for w in words) + ")")
        parts += [f"@{F_TAGS}:{{{_escape(t)}}}" for t in tags]
        q = " ".join(parts) or "*"
        scope = hashlib.sha256(q.encode()).hexdigest()[:12]
        offset = _decode_cursor(cursor, scope) if cursor else 0
        await self._ready()
        args: list[Any] = ["FT.SEARCH", self.index_name, q, "NOCONTENT"]
        if query is None:
            args += ["SORTBY", F_CREATED, "DESC"]
        args += ["LIMIT", offset, limit, "DIALECT", 2]
        raw = await self._redis("search facts", lambda r: _cmd(r, *args))
        total = int(raw[0])
        facts = await self._load(raw[1:])
        nxt = offset + limit
        return FactPage(facts=facts, total=total, next_cursor=_encode_cursor(nxt, scope) if nxt < total else None)

    async def semantic_search(self, query: str, top_k: int = 5, tags: list[str] | None = None,
                              min_score: float | None = None) -> list[ScoredFact]:
        """KNN through LlamaIndex's RedisVectorStore.aquery on the async client; best first, cosine similarity."""
        check_query(query)
        top_k = check_int(top_k, "top_k", 1, TOP_K_MAX)
        tags = check_tags(tags)
        min_score = check_score(min_score)
        await self._ready()
        vector = (await self._embed([query], "embed query"))[0]
        filters = None
        if tags:
            filters = MetadataFilters(filters=[MetadataFilter(key=F_TAGS, value=t) for t in tags],
                                      condition=FilterCondition.AND)
        request = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=top_k, filters=filters)
        result = await self._redis("vector search", lambda r: self.vector_store.aquery(request))
        hits: list[ScoredFact] = []
        for node, score in zip(result.nodes or [], result.similarities or [], strict=False):
            if min_score is not None and score < min_score:
                continue
            meta = node.metadata
            hits.append(ScoredFact(fact_id=node.node_id, content=node.get_content(),
                                   metadata=decode_metadata(meta.get(F_META)), tags=split_tags(meta.get(F_TAGS)),
                                   score=round(float(score), 6)))
        return hits

    async def delete_fact(self, fact_id: str) -> bool:
        """True when a fact was deleted, False when there was none (idempotent)."""
        check_fact_id(fact_id)
        (removed,) = await self._write("delete fact", lambda p: p.delete(self.key(fact_id)))
        return bool(removed)

    # ------------------------------------------------------------ documents

    async def add_document(self, *, text: str | None = None, path: str | Path | None = None,
                           metadata: dict[str, Scalar] | None = None, tags: list[str] | None = None,
                           doc_id: str | None = None, chunk_tokens: int = 200, overlap_tokens: int = 30) -> list[str]:
        """Split a text (or a file) with LlamaIndex's SentenceSplitter; store the chunks as facts sharing a doc_id.

        Re-adding the same doc_id replaces its chunks. Returns the chunk fact ids in order.
        """
        if (text is None) == (path is None):
            raise InvalidInput("document", "give exactly one of text or path")
        metadata = check_metadata(metadata)
        tags = check_tags(tags)
        if path is not None:
            file = Path(path)
            text = await self._bounded("file", asyncio.to_thread(_read_text_file, file), f"read {file.name}")
            metadata = {"source": str(file), **metadata}
        assert text is not None
        if not text.strip():
            raise InvalidInput("document", "is empty")
        doc_id = check_fact_id(doc_id, "doc_id") if doc_id else "doc-" + hashlib.sha256(
            (str(path) if path is not None else text).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if len(doc_id) > 110:
            raise InvalidInput("doc_id", "must be at most 110 characters (chunk ids add a suffix)")
        chunks = self._split(text, chunk_tokens, overlap_tokens)
        await self._ready()
        await self.delete_document(doc_id)
        ids = [f"{doc_id}.{i:05d}" for i in range(len(chunks))]
        for start in range(0, len(chunks), EMBED_BATCH):
            part = chunks[start:start + EMBED_BATCH]
            vectors = await self._embed(part, f"embed document {doc_id}")
            now = format_ts(time.time())
            records = [
                (ids[start + i], build_record(ids[start + i], chunk, {**metadata, "chunk": start + i}, tags,
                                              vector_bytes(vectors[i]), updated_at=now, doc_id=doc_id,
                                              created_at=now))
                for i, chunk in enumerate(part)
            ]
            await self._write_records(records, f"write document {doc_id}")
        return ids

    def _split(self, text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
        from llama_index.core.node_parser import SentenceSplitter

        # Our own tokenizer: LlamaIndex's default (tiktoken) downloads its vocabulary at run time.
        tokenizer = getattr(self.embedding, "_tokenizer", None)
        count: Callable[[str], list[int]]
        if tokenizer is not None:
            count = lambda s: tokenizer.encode(s, add_special_tokens=False).ids  # noqa: E731
        else:
            count = lambda s: s.split()  # type: ignore[assignment,return-value]  # noqa: E731
        splitter = SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=overlap_tokens, tokenizer=count)
        return [c for c in splitter.split_text(text) if c.strip()]

    async def delete_document(self, doc_id: str) -> int:
        """Delete every chunk of `doc_id`; returns how many."""
        check_fact_id(doc_id, "doc_id")
        keys: list[bytes] = []
        while True:
            raw = await self._redis("find document", lambda r: _cmd(r,
                "FT.SEARCH", self.index_name, f"@{F_DOC}:{{{_escape(doc_id)}}}", "NOCONTENT", "LIMIT", 0, 1000,
                "DIALECT", 2))
            batch = raw[1:]
            if not batch:
                break
            keys += batch
            await self._write("delete document", lambda p, b=batch: p.delete(*b))  # type: ignore[misc]
        return len(keys)

    async def _write_records(self, records: list[tuple[str, dict[str, str | bytes]]], op: str) -> None:
        """Pipelined batches; each fact is replaced whole by the write script (never half-written)."""
        for start in range(0, len(records), WRITE_BATCH):
            batch = records[start:start + WRITE_BATCH]

            async def add(pipe: Pipeline, batch: list[tuple[str, dict[str, str | bytes]]] = batch) -> None:
                for fact_id, record in batch:
                    await self._queue_put(pipe, fact_id, record, "replace", as_text(record.get(F_CREATED, "")))

            await self._write(op, add)

    async def store_many(self, facts: list[dict[str, Any]]) -> list[str]:
        """Bulk path: validate all, embed in batches, pipelined writes. Items take store_fact's arguments;
        an item without fact_id gets its content-derived id (no dedup search). Nothing is written if any is bad."""
        prepared: list[tuple[str, str, dict[str, Scalar], list[str]]] = []
        for i, item in enumerate(facts):
            content = check_content(item.get("content"), self.settings.max_fact_chars, f"facts[{i}].content")
            fid = item.get("fact_id")
            fid = check_fact_id(fid, f"facts[{i}].fact_id") if fid is not None else "f-" + content_hash(content)[:24]
            prepared.append((fid, content, check_metadata(item.get("metadata"), f"facts[{i}].metadata"),
                             check_tags(item.get("tags"), f"facts[{i}].tags")))
        await self._ready()
        chunks = [prepared[i:i + BULK_EMBED_CHUNK] for i in range(0, len(prepared), BULK_EMBED_CHUNK)]

        def embed(chunk: list[tuple[str, str, dict[str, Scalar], list[str]]]) -> asyncio.Task[np.ndarray[Any, Any]]:
            return asyncio.ensure_future(self._embed([p[1] for p in chunk], "embed batch"))

        pending = embed(chunks[0]) if chunks else None
        try:
            for k, chunk in enumerate(chunks):
                assert pending is not None
                vectors = await pending
                # The model embeds the next chunk while this one is written: the CPU and Redis work overlap.
                pending = embed(chunks[k + 1]) if k + 1 < len(chunks) else None
                now = format_ts(time.time())
                await self._write_records(
                    [(fid, build_record(fid, text, meta, tg, vector_bytes(vectors[i]), updated_at=now,
                                        created_at=now)) for i, (fid, text, meta, tg) in enumerate(chunk)],
                    "write batch")
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
        return [p[0] for p in prepared]

    # ------------------------------------------------------------ admin

    async def stats(self) -> StoreStats:
        """Counts, index state, memory and breaker; never raises for a down Redis (it reports it)."""
        base: dict[str, Any] = {"namespace": self.namespace, "index": self.index_name,
                                "vector_algorithm": self.settings.vector_algorithm, "dimensions": self.embedding.dim,
                                "embedding": self.embedding.model_name}
        try:
            await self._ready()
            info = await self._index_info() or {}
            server = await self._redis("INFO", lambda r: r.info())
        except KbError as exc:
            return StoreStats(**base, facts=None, index_state="unknown", percent_indexed=None, redis_version=None,
                              used_memory_bytes=None, redis=self.manager.state(), error=str(exc))
        indexing = int(as_text(info.get("indexing", 0)) or 0)
        pct = float(as_text(info.get("percent_indexed", 1)) or 1)
        return StoreStats(
            **base, facts=int(as_text(info.get("num_docs", 0))), index_state="indexing" if indexing else "ready",
            percent_indexed=round(pct * 100, 1), redis_version=as_text(server.get("redis_version")),
            used_memory_bytes=int(server.get("used_memory", 0)), redis=self.manager.state())

    async def index_drift(self) -> str | None:
        """How the existing index differs from the configured one (algorithm, M, EF_CONSTRUCTION), or None."""
        attrs = vector_attributes(await self._index_info() or {})
        if not attrs:
            return None
        want = {"algorithm": self.settings.vector_algorithm.upper()}
        if self.settings.vector_algorithm == "hnsw":
            want |= {"m": str(self.settings.hnsw_m), "ef_construction": str(self.settings.hnsw_ef_construction)}
        drift = [f"{k} {attrs.get(k, '?')} (configured {v})" for k, v in want.items() if attrs.get(k, v) != v]
        return ", ".join(drift) or None

    async def count(self) -> int:
        info = await self._index_info() or {}
        return int(as_text(info.get("num_docs", 0)))

    async def _scan_keys(self) -> AsyncIterator[list[bytes]]:
        cursor: int = 0
        while True:
            cursor, keys = await self._redis("SCAN facts", lambda r, c=cursor: r.scan(  # type: ignore[misc]
                cursor=c, match=self.key_prefix + "*", count=SCAN_BATCH, _type="hash"))
            if keys:
                yield keys
            if cursor == 0:
                return

    async def export(self, path: str | Path) -> int:
        """Write every fact as one JSON line (vectors included, base64 float32); returns how many.

        SCAN + pipelined HGETALL, never KEYS; the file is written to a temporary name and renamed when complete.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".part")
        handle: IO[str] = await self._bounded("file", asyncio.to_thread(tmp.open, "w", encoding="utf-8"),
                                              f"open {tmp.name}")
        written = 0
        try:
            async for keys in self._scan_keys():
                async def fetch(r: Redis, keys: list[bytes] = keys) -> list[dict[bytes, bytes]]:
                    pipe = r.pipeline(transaction=False)
                    for k in keys:
                        pipe.hgetall(k)  # type: ignore[arg-type]
                    return await pipe.execute()

                rows = await self._redis("export batch", fetch)
                lines = "".join(json.dumps(export_line(row), ensure_ascii=False) + "\n"
                                for row in rows if row and b"id" in row)
                await self._bounded("file", asyncio.to_thread(handle.write, lines), f"write {tmp.name}")
                written += lines.count("\n")
            await self._bounded("file", asyncio.to_thread(handle.close), f"close {tmp.name}")
            await self._bounded("file", asyncio.to_thread(tmp.replace, target), f"rename to {target.name}")
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        return written

    async def import_(self, path: str | Path) -> int:
        """Load a JSONL export (or hand-written lines: records without a vector are embedded).

        The file is read twice in chunks (each read bounded by the file timeout, memory bounded by the chunk):
        first every line is validated, and a bad line is named and changes nothing; then the records are written.
        """
        source = Path(path)
        count = 0
        async for lineno, chunk in self._line_chunks(source):
            for offset, line in enumerate(chunk):
                if line.strip():
                    self._import_record(lineno + offset, line)
                    count += 1
        await self._ready()
        async for lineno, chunk in self._line_chunks(source):
            records = [self._import_record(lineno + i, line) for i, line in enumerate(chunk) if line.strip()]
            missing = [i for i, (_, fields) in enumerate(records) if not fields[F_VECTOR]]
            if missing:
                vectors = await self._embed([as_text(records[i][1][F_TEXT]) for i in missing], "embed import")
                for j, i in enumerate(missing):
                    records[i][1][F_VECTOR] = vector_bytes(vectors[j])
            await self._write_records(records, "import batch")
        return count

    async def _line_chunks(self, path: Path) -> AsyncIterator[tuple[int, list[str]]]:
        """(first line number, lines) of IMPORT_CHUNK lines at a time; every file operation bounded."""
        handle: IO[str] = await self._bounded("file", asyncio.to_thread(_open_text, path), f"open {path.name}")
        try:
            lineno = 1
            while True:
                lines = await self._bounded("file", asyncio.to_thread(_read_chunk, handle, IMPORT_CHUNK),
                                            f"read {path.name}")
                if not lines:
                    return
                yield lineno, lines
                lineno += len(lines)
        finally:
            handle.close()

    def _import_record(self, lineno: int, line: str) -> tuple[str, dict[str, str | bytes]]:
        where = f"line {lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(where, f"is not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise InvalidInput(where, "must be a JSON object")
        content = check_content(item.get("content"), self.settings.max_fact_chars, f"{where}.content")
        fid = check_fact_id(item.get("fact_id") or "f-" + content_hash(content)[:24], f"{where}.fact_id")
        meta = check_metadata(item.get("metadata"), f"{where}.metadata")
        tags = check_tags(item.get("tags"), f"{where}.tags")
        doc_id = item.get("doc_id")
        if doc_id is not None:
            check_fact_id(doc_id, f"{where}.doc_id")
        vector = b""
        if item.get("vector"):
            try:
                vector = base64.b64decode(item["vector"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidInput(f"{where}.vector", "is not base64") from None
            if len(vector) != 4 * self.embedding.dim:
                raise InvalidInput(f"{where}.vector", f"has {len(vector) // 4} dimensions; the model has "
                                   f"{self.embedding.dim} (drop 'vector' to re-embed)")
        now = time.time()
        created = _timestamp(item.get("created_at", now), f"{where}.created_at")
        updated = _timestamp(item.get("updated_at", created), f"{where}.updated_at")
        record = build_record(fid, content, meta, tags, vector, updated_at=format_ts(updated), doc_id=doc_id,
                              created_at=format_ts(created))
        return fid, record

    async def rebuild_index(self, wait: bool = True) -> StoreStats:
        """Drop the index (keeping every hash) and create it again from the current settings; Redis re-indexes
        in the background (it scans the whole keyspace). With `wait`, return once that scan has finished."""
        async with self._index_lock:
            try:
                await self._redis("FT.DROPINDEX", lambda r: _cmd(r, "FT.DROPINDEX", self.index_name))
            except ResponseError as exc:
                if "unknown index" not in str(exc).lower() and "no such index" not in str(exc).lower():
                    raise
            self._index_ready = False
        await self.ensure_index()
        stats = await self.stats()
        while wait and stats.index_state == "indexing":
            await asyncio.sleep(0.1)
            stats = await self.stats()
        return stats

    async def drop_namespace(self) -> None:
        """Delete the index and every fact of this namespace (tests, `kb-mcp` never calls it on its own)."""
        with suppress(ResponseError):
            await self._redis("FT.DROPINDEX DD", lambda r: _cmd(r, "FT.DROPINDEX", self.index_name, "DD"))
        async for keys in self._scan_keys():
            await self._redis("delete batch", lambda r, k=keys: r.delete(*k))  # type: ignore[misc]
        self._index_ready = False


class Backend:
    """What all namespaces of one process share: the Redis pool (and its breaker) and the embedding model."""

    def __init__(self, settings: Settings, manager: AsyncRedisManager, embedding: KbEmbedding,
                 observe: Observer | None = None) -> None:
        self.settings = settings
        self.manager = manager
        self.embedding = embedding
        self._observe: Observer = observe or no_observer
        self._stores: dict[str, KnowledgeStore] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, observe: Observer | None = None,
                   embedding: KbEmbedding | None = None) -> AsyncIterator[Backend]:
        """The pool and the model (a given embedding is borrowed, not closed); both released on exit."""
        manager = AsyncRedisManager(settings, observe=observe)
        own = embedding is None
        model = build_embedding(settings) if embedding is None else embedding
        try:
            yield cls(settings, manager, model, observe)
        finally:
            if own:
                await model.aclose()
            await manager.aclose()

    def store(self, namespace: str) -> KnowledgeStore:
        """The store of `namespace` (made once, cheap: its index is checked on first use)."""
        if namespace not in self._stores:
            self._stores[namespace] = KnowledgeStore(self.settings, self.manager, self.embedding,
                                                     observe=self._observe, namespace=namespace)
        return self._stores[namespace]


# ---------------------------------------------------------------- helpers

async def _cmd(r: Redis, *args: Any) -> Any:
    """A raw command (FT.*, WAITAOF...): redis-py types execute_command loosely."""
    return await r.execute_command(*args)  # type: ignore[no-untyped-call]


def _escape(word: str) -> str:
    """Escape every character RediSearch could read as syntax (letters, digits and _ pass through)."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in word)


def _pairs(raw: Any) -> dict[str, Any]:
    items = list(raw)
    return {as_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def vector_attributes(info: dict[str, Any]) -> dict[str, str]:
    """The vector field's attributes from FT.INFO, lower-cased names: algorithm, dim, m, ef_construction..."""
    for attr in info.get("attributes", []):
        fields = [as_text(x) for x in attr]
        if "VECTOR" in fields:
            return {fields[i].lower(): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    return {}


def _index_dim(info: dict[str, Any]) -> int | None:
    dim = vector_attributes(info).get("dim")
    return int(dim) if dim else None


def _encode_cursor(offset: int, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "s": scope}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, scope: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = int(data["o"])
        same = data["s"] == scope
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor returned by get_fact") from None
    if not same:
        raise InvalidInput("cursor", "belongs to a different query or tag filter; repeat that query to page it")
    if not 0 <= offset <= 1_000_000:
        raise InvalidInput("cursor", "is out of range")
    return offset


def _timestamp(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e11:
        raise InvalidInput(field, "must be epoch seconds")
    return float(value)


def _read_text_file(path: Path) -> str:
    if not path.is_file():
        raise InvalidInput("path", f"{str(path)!r} is not a readable file")
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidInput("path", f"{path.name} is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("path", f"{path.name} is not UTF-8 text") from None


def _open_text(path: Path) -> IO[str]:
    if not path.is_file():
        raise InvalidInput("path", f"{str(path)!r} is not a readable file")
    return path.open(encoding="utf-8")


def _read_chunk(handle: IO[str], lines: int) -> list[str]:
    chunk: list[str] = []
    try:
        for line in handle:
            chunk.append(line)
            if len(chunk) == lines:
                break
    except UnicodeDecodeError:
        raise InvalidInput("path", f"{handle.name} is not UTF-8 text") from None
    return chunk
