"""KnowledgeStore, the one facade the server and the CLI call, and Backend, what all namespaces of a process share.

No MCP types here. Every Redis command or pipeline goes through `AsyncRedisManager.run` (breaker + Redis deadline),
every embedding through `bounded("index", ...)`, every file operation through `bounded("file", ...)`: the parts
below only ever reach Redis, the model or a file through `StoreContext`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb_mcp import logs
from kb_mcp.config import Settings
from kb_mcp.connection.manager import AsyncRedisManager
from kb_mcp.connection.topology import Placement
from kb_mcp.deadlines import Observer, no_observer
from kb_mcp.embeddings.base import KbEmbedding
from kb_mcp.embeddings.cache import QueryCache
from kb_mcp.embeddings.factory import build_embedding
from kb_mcp.facts.models import Fact, FactPage, Scalar, ScoredFact, StoredFact, UpdatedFact
from kb_mcp.facts.rules import FACT_ID, SearchMode, valid
from kb_mcp.store.admin import Admin, StoreStats
from kb_mcp.store.context import StoreContext
from kb_mcp.store.deletion import DELETE_BATCH, Deleter, DeleteReport
from kb_mcp.store.documents import Documents
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.ingest import Ingest
from kb_mcp.store.listing import Reader
from kb_mcp.store.migrate import Migration, MigrationReport
from kb_mcp.store.reembed import ReEmbedReport
from kb_mcp.store.scan import iter_keys
from kb_mcp.store.schema import Keyspace
from kb_mcp.store.search.searcher import Searcher
from kb_mcp.store.transfer import Transfer
from kb_mcp.store.writes import Writer

if TYPE_CHECKING:
    from llama_index.vector_stores.redis import RedisVectorStore
    from redisvl.schema import IndexSchema


class KnowledgeStore:
    """Facts in Redis hashes under a namespace, indexed by RediSearch for keywords and vectors."""

    def __init__(self, settings: Settings, manager: AsyncRedisManager, embedding: KbEmbedding,
                 observe: Observer | None = None, namespace: str | None = None,
                 query_cache: QueryCache | None = None) -> None:
        logs.silence_stdout_loggers()
        keyspace = Keyspace(namespace or settings.namespace)
        self._ctx = StoreContext(settings=settings, manager=manager, embedding=embedding, keyspace=keyspace,
                                 observe=observe or no_observer,
                                 query_cache=query_cache or QueryCache(settings.query_cache_size))
        self.index = SearchIndex(self._ctx)
        writer = Writer(self._ctx)
        self._reader = Reader(self._ctx, self.index)
        self._searcher = Searcher(self._ctx, self.index)
        self._ingest = Ingest(self._ctx, self.index, self._reader, writer, self._searcher)
        self._writer = writer
        self._documents = Documents(self._ctx, self._reader, writer)
        self._transfer = Transfer(self._ctx, self.index, writer)
        self._admin = Admin(self._ctx, self.index, writer)
        self._deleter = Deleter(self._ctx, self.index, writer)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, observe: Observer | None = None,
                   embedding: KbEmbedding | None = None) -> AsyncIterator[KnowledgeStore]:
        """Pool, embedding model and index check; all closed on exit. A down Redis does not stop the start."""
        async with Backend.open(settings, observe=observe, embedding=embedding) as backend:
            store = backend.store(settings.namespace)
            await store.try_ensure_index()
            yield store

    # ------------------------------------------------------------ what callers may read

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    @property
    def manager(self) -> AsyncRedisManager:
        return self._ctx.manager

    @property
    def embedding(self) -> KbEmbedding:
        return self._ctx.embedding

    @property
    def namespace(self) -> str:
        return self._ctx.keyspace.namespace

    @property
    def index_name(self) -> str:
        return self._ctx.keyspace.index_name

    @property
    def key_prefix(self) -> str:
        return self._ctx.keyspace.key_prefix

    @property
    def schema(self) -> IndexSchema:
        """The index definition (redisvl form): a stock LlamaIndex RedisVectorStore can open the index with it."""
        return self.index.schema

    @cached_property
    def vector_store(self) -> RedisVectorStore:
        """LlamaIndex's RedisVectorStore on this namespace's index (for a LlamaIndex application over the same
        facts; semantic_search sends its KNN itself). Built on first use, with the async client only: no synchronous
        Redis client exists anywhere in kb-mcp; the index is ours to create (never `overwrite=True`)."""
        logs.tame_redisvl()  # before the first redisvl import
        from llama_index.vector_stores.redis import RedisVectorStore

        # Typed for redis.asyncio.Redis; redisvl's query path also works on a RedisCluster client (measured).
        store = RedisVectorStore(schema=self.index.schema,
                                 redis_client_async=self._ctx.manager.client)  # type: ignore[arg-type]
        store.created_async_index = True
        return store

    def key(self, fact_id: str) -> str:
        return self._ctx.keyspace.key(fact_id)

    # ------------------------------------------------------------ index

    async def ensure_index(self) -> None:
        """Create the index if missing (idempotent, never dropping data); refuse a dimension mismatch."""
        await self.index.ensure()

    async def try_ensure_index(self) -> None:
        """ensure_index, but a down Redis only logs (the server starts and recovers by itself)."""
        await self.index.try_ensure()

    # ------------------------------------------------------------ facts

    async def store_fact(self, content: str, metadata: dict[str, Scalar] | None = None,
                         tags: list[str] | None = None, fact_id: str | None = None,
                         ttl_s: int | None = None) -> StoredFact:
        return await self._ingest.store_fact(content, metadata=metadata, tags=tags, fact_id=fact_id, ttl_s=ttl_s)

    async def update_fact(self, fact_id: str, content: str | None = None, tags: list[str] | None = None,
                          metadata: dict[str, Scalar] | None = None, ttl_s: int | None = None) -> UpdatedFact:
        """Change only the given fields of an existing fact (the model runs only for new content)."""
        return await self._ingest.update_fact(fact_id, content=content, tags=tags, metadata=metadata, ttl_s=ttl_s)

    async def store_facts(self, items: list[dict[str, Any]]) -> list[StoredFact]:
        """Up to 100 facts, all checked first (nothing stored if one is invalid); embedded together, one write."""
        return await self._ingest.store_facts(items)

    async def store_many(self, facts: list[dict[str, Any]]) -> list[str]:
        return await self._ingest.store_many(facts)

    async def get_fact(self, fact_id: str) -> Fact:
        return await self._reader.get_fact(fact_id)

    async def list_facts(self, *, query: str | None = None, tags: list[str] | None = None, limit: int = 20,
                         cursor: str | None = None, created_after: str | None = None,
                         created_before: str | None = None, where: dict[str, Any] | None = None) -> FactPage:
        return await self._reader.list_facts(query=query, tags=tags, limit=limit, cursor=cursor,
                                             created_after=created_after, created_before=created_before, where=where)

    async def semantic_search(self, query: str, top_k: int = 5, tags: list[str] | None = None,
                              min_score: float | None = None, mode: SearchMode = "hybrid",
                              created_after: str | None = None, created_before: str | None = None,
                              where: dict[str, Any] | None = None, recency_half_life_days: float | None = None
                              ) -> list[ScoredFact]:
        """Hybrid (BM25 + vectors, fused) by default; "vector" or "keyword" for one side alone; `where` filters on
        KB_FILTER_FIELDS, `recency_half_life_days` prefers newer facts."""
        return await self._searcher.search(query, top_k=top_k, tags=tags, min_score=min_score, mode=mode,
                                           created_after=created_after, created_before=created_before, where=where,
                                           recency_half_life_days=recency_half_life_days)

    async def delete_fact(self, fact_id: str) -> bool:
        """True when a fact was deleted, False when there was none (idempotent)."""
        valid(FACT_ID, fact_id, "fact_id")
        return await self._writer.delete_fact(fact_id)

    async def delete_facts(self, *, fact_ids: list[str] | None = None, tags: list[str] | None = None,
                           created_after: str | None = None, created_before: str | None = None,
                           where: dict[str, Any] | None = None, all: bool = False, dry_run: bool = False,
                           budget_s: float | None = None, batch: int = DELETE_BATCH) -> DeleteReport:
        """Every fact matching all the filters given (or, with `all`, every fact), in batches of `batch` within
        `budget_s` (default: half the tool deadline); `more` says a call must follow to finish."""
        return await self._deleter.delete(fact_ids=fact_ids, tags=tags, created_after=created_after,
                                          created_before=created_before, where=where, everything=all,
                                          dry_run=dry_run, budget_s=budget_s, batch=batch)

    # ------------------------------------------------------------ documents, transfer

    async def add_document(self, *, text: str | None = None, path: str | Path | None = None,
                           metadata: dict[str, Scalar] | None = None, tags: list[str] | None = None,
                           doc_id: str | None = None, chunk_tokens: int = 200, overlap_tokens: int = 30) -> list[str]:
        return await self._documents.add(text=text, path=path, metadata=metadata, tags=tags, doc_id=doc_id,
                                         chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)

    async def delete_document(self, doc_id: str) -> int:
        return await self._documents.delete(doc_id)

    async def export(self, path: str | Path, progress: Callable[[int], None] = lambda done: None) -> int:
        """Every fact to a JSONL file, vectors included; `progress` hears the running count."""
        return await self._transfer.export(path, progress)

    async def import_(self, path: str | Path, progress: Callable[[int], None] = lambda done: None) -> int:
        """A JSONL export into this namespace; `progress` hears lines validated plus lines written."""
        return await self._transfer.import_(path, progress)

    # ------------------------------------------------------------ admin

    async def stats(self) -> StoreStats:
        return await self._admin.stats()

    async def count(self) -> int:
        return await self._admin.count()

    async def index_drift(self) -> str | None:
        return await self._admin.index_drift()

    async def rebuild_index(self, wait: bool = True) -> StoreStats:
        return await self._admin.rebuild_index(wait=wait)

    async def re_embed(self, progress: Callable[[int], None] = lambda done: None) -> ReEmbedReport:
        """Embed every fact again with the configured model and record it (`kb-mcp reindex --re-embed`)."""
        return await self._admin.re_embed(progress)

    async def placement(self) -> Placement:
        """The Redis mode, its nodes and the node holding this namespace."""
        return await self._ctx.manager.placement(self._ctx.keyspace.index_name)

    async def migrate_layout(self) -> MigrationReport:
        """Move this namespace from the layout before hash tags (`kb-mcp migrate`; idempotent, resumable)."""
        return await Migration(self._ctx).run(self.index)

    async def drop_namespace(self) -> None:
        await self._admin.drop_namespace()

    def iter_keys(self) -> AsyncIterator[list[bytes]]:
        """Batches of this namespace's fact keys (SCAN, never KEYS)."""
        return iter_keys(self._ctx)


class Backend:
    """What all namespaces of one process share: the Redis pool (and its breaker) and the embedding model."""

    def __init__(self, settings: Settings, manager: AsyncRedisManager, embedding: KbEmbedding,
                 observe: Observer | None = None) -> None:
        self.settings = settings
        self.manager = manager
        self.embedding = embedding
        self.query_cache = QueryCache(settings.query_cache_size)  # one per process: every namespace, one model
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
                                                     observe=self._observe, namespace=namespace,
                                                     query_cache=self.query_cache)
        return self._stores[namespace]
