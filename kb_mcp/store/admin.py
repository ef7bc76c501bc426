"""Administration of a namespace: stats, count, settings drift, index rebuild, re-embedding with another model, and
dropping it all (tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from pydantic import BaseModel
from redis.asyncio.client import Pipeline

from kb_mcp.connection.manager import ManagerState
from kb_mcp.connection.topology import Placement
from kb_mcp.errors import IndexMissing, KbError, StoreUnavailable
from kb_mcp.store.context import StoreContext
from kb_mcp.store.filters import indexed_fields
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.model_record import ModelRecord
from kb_mcp.store.reembed import ReEmbedReport, embed_again
from kb_mcp.store.replies import as_text, field_names, field_types, index_dim, vector_attributes
from kb_mcp.store.scan import iter_keys
from kb_mcp.store.schema import F_HASH, F_META, F_STEMS, F_TEXT, FILTER_PREFIX
from kb_mcp.store.search.terms import stemmed_text
from kb_mcp.store.writes import Writer

REINDEX_POLL_S = 0.1


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
    filter_fields: dict[str, str] = {}  # metadata keys `where` can filter on (KB_FILTER_FIELDS) and their types
    placement: Placement | None = None  # the Redis mode, its nodes and the one holding this namespace
    error: str | None = None


class Admin:
    """Reads about the namespace and its index, and the operations that rebuild or remove them."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, writer: Writer) -> None:
        self._ctx = ctx
        self._index = index
        self._writer = writer

    async def stats(self) -> StoreStats:
        """Counts, index state, memory and breaker; never raises for a down Redis (it reports it)."""
        ctx = self._ctx
        base: dict[str, Any] = {"namespace": ctx.keyspace.namespace, "index": self._index.name,
                                "vector_algorithm": ctx.settings.vector_algorithm, "dimensions": ctx.embedding.dim,
                                "embedding": ctx.embedding.model_name,
                                "filter_fields": dict(ctx.settings.filter_field_types)}
        try:
            info = await self._index_info()
            server = await ctx.redis("INFO", lambda r: r.info(**ctx.owner_kwargs()))
            placement = await ctx.manager.placement(ctx.keyspace.index_name)
        except KbError as exc:
            return StoreStats(**base, facts=None, index_state="unknown", percent_indexed=None, redis_version=None,
                              used_memory_bytes=None, redis=ctx.manager.state(), error=str(exc))
        indexing = _indexing(info)
        pct = float(as_text(info.get("percent_indexed", 1)) or 1)
        return StoreStats(
            **base, facts=int(as_text(info.get("num_docs", 0))), index_state="indexing" if indexing else "ready",
            percent_indexed=round(pct * 100, 1), redis_version=as_text(server.get("redis_version")),
            used_memory_bytes=int(server.get("used_memory", 0)), redis=ctx.manager.state(), placement=placement)

    async def count(self) -> int:
        info = await self._index_info()
        return int(as_text(info.get("num_docs", 0)))

    async def _index_info(self) -> dict[str, Any]:
        """FT.INFO of the index, recreating the index first if it has vanished."""

        async def info() -> dict[str, Any]:
            found = await self._index.info()
            if found is None:
                raise IndexMissing("FT.INFO")
            return found

        return await self._index.run(info)

    async def index_drift(self) -> str | None:
        """How the existing index differs from the configured one (algorithm, M, EF_CONSTRUCTION, a field it
        lacks), or None."""
        info = await self._index.info() or {}
        attrs = vector_attributes(info)
        if not attrs:
            return None
        settings = self._ctx.settings
        want = {"algorithm": settings.vector_algorithm.upper()}
        if settings.vector_algorithm == "hnsw":
            want |= {"m": str(settings.hnsw_m), "ef_construction": str(settings.hnsw_ef_construction)}
        drift = [f"{k} {attrs.get(k, '?')} (configured {v})" for k, v in want.items() if attrs.get(k, v) != v]
        if F_STEMS not in field_names(info):
            drift.append(f"no {F_STEMS} field (the keyword side finds none of its facts)")
        built = {name[len(FILTER_PREFIX):]: kind.lower() for name, kind in field_types(info).items()
                 if name.startswith(FILTER_PREFIX)}
        declared: dict[str, str] = dict(settings.filter_field_types)
        if built != declared:
            drift.append(f"filter fields {_pairs(built)} (configured KB_FILTER_FIELDS={_pairs(declared)})")
        return ", ".join(drift) or None

    async def rebuild_index(self, wait: bool = True) -> StoreStats:
        """Give every fact its stems where they are missing or stale (facts written before the keyword side used
        them) and the filter fields KB_FILTER_FIELDS now declares, drop the index (keeping every hash) and create it
        again from the current settings; Redis re-indexes in the background (it scans the whole keyspace). With
        `wait`, return once that scan has finished."""
        await self.stem_every_fact()
        await self.filter_every_fact()
        await self._drop_index()
        await self._index.ensure()
        return await self._indexed(wait)

    async def re_embed(self, progress: Callable[[int], None]) -> ReEmbedReport:
        """Record the configured model, give every fact a vector from it, and return once the index holds them all
        (`kb-mcp reindex --re-embed`). The model is recorded first: from then on a server still on the old model
        has every write refused (the write script checks the record), so none of its vectors slip in behind the
        re-embedding; its searches are refused once it asks the record again (within a minute, `SearchIndex.ready`)
        and rank by noise until then (stop it first). When the dimension changes the index is dropped first (the
        hashes stay; RediSearch would not index vectors of the new dimension in a field of the old one) and created
        again at the end. Run it again after a failure: it starts over."""
        started = time.monotonic()
        ctx = self._ctx
        if index_dim(await self._index.info() or {}) not in (None, ctx.embedding.dim):
            await self._drop_index()
        await ModelRecord(ctx).write()
        written, skipped = await embed_again(ctx, self._writer, progress)
        await self._index.ensure()
        await self._indexed()
        return ReEmbedReport(facts=written, skipped=skipped, model=ctx.embedding.model_name, dim=ctx.embedding.dim,
                             seconds=round(time.monotonic() - started, 1))

    async def stem_every_fact(self) -> int:
        """Write the stems of every fact whose stored stems are missing or not those of its content (each only
        if its content did not change meanwhile); returns how many were written."""
        written = 0
        async for keys in iter_keys(self._ctx):

            def read(pipe: Pipeline, keys: list[bytes] = keys) -> None:
                for key in keys:
                    pipe.hmget(key, [F_TEXT, F_HASH, F_STEMS])  # type: ignore[arg-type]

            rows = zip(keys, await self._ctx.pipeline("read facts", read), strict=True)
            stale = [(key, as_text(chash), stemmed_text(as_text(text))) for key, (text, chash, stems) in rows
                     if text is not None and as_text(stems) != stemmed_text(as_text(text))]
            if stale:
                written += len(stale) - await self._writer.set_derived(F_STEMS, stale, "write stems")
        return written

    async def filter_every_fact(self) -> int:
        """Give every fact the filter fields its metadata makes under the current KB_FILTER_FIELDS, and remove
        those of keys no longer declared; returns how many facts were written."""
        declared = self._ctx.settings.filter_field_types
        written = 0
        async for keys in iter_keys(self._ctx):

            def read(pipe: Pipeline, keys: list[bytes] = keys) -> None:
                for key in keys:
                    pipe.hget(key, F_META)  # type: ignore[arg-type]
                    pipe.hkeys(key)  # type: ignore[arg-type]

            replies = await self._ctx.pipeline("read facts", read)
            updates = []
            for key, meta, names in zip(keys, replies[::2], replies[1::2], strict=True):
                held = {as_text(n) for n in names if as_text(n).startswith(FILTER_PREFIX)}
                fields = indexed_fields(meta or b"", declared)
                stale = sorted(held - set(fields))
                if stale or fields:
                    updates.append((key, meta or b"", stale, fields))
            if updates:
                written += len(updates) - await self._writer.set_filter_fields(updates, "write filter fields")
        return written

    async def _drop_index(self) -> None:
        """Drop the index, keeping every hash; the next index check creates it again."""
        async with self._index.lock:
            with suppress(IndexMissing):
                await self._ctx.command("FT.DROPINDEX", self._index.name)
            self._index.forget()

    async def _indexed(self, wait: bool = True) -> StoreStats:
        """The stats of a re-created index, with `wait` once RediSearch has scanned the keyspace into it. Each poll
        is one bounded FT.INFO; Redis scanning its keyspace keeps answering, and a Redis that stops answering ends
        the wait with its error instead of a report that looks like success."""
        while wait:
            try:
                if not _indexing(await self._index_info()):
                    break
            except KbError as exc:
                raise StoreUnavailable(f"the index was re-created but its state cannot be read: {exc}") from exc
            await asyncio.sleep(REINDEX_POLL_S)
        stats = await self.stats()
        if stats.error is not None:
            raise StoreUnavailable(f"the index was re-created but its state cannot be read: {stats.error}")
        return stats

    async def drop_namespace(self) -> None:
        """Delete the index and every fact of this namespace (tests and the bench; kb-mcp never calls it itself). The
        facts go in SCAN batches, each within the Redis deadline: `FT.DROPINDEX ... DD` deletes them all in one
        command, which at 1,000,000 facts outlasted it (`kb-mcp bench --scale`)."""
        with suppress(IndexMissing):
            await self._ctx.command("FT.DROPINDEX", self._index.name)
        async for keys in iter_keys(self._ctx):
            await self._writer.delete_keys(keys, "delete batch")
        async for keys in iter_keys(self._ctx, self._ctx.keyspace.dedup_prefix, "string"):
            await self._writer.delete_keys(keys, "delete batch")
        await self._writer.delete_keys([self._ctx.keyspace.embedding_key], "delete model record")
        self._index.forget()


def _pairs(fields: dict[str, str]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(fields.items())) or "(none)"


def _indexing(info: dict[str, Any]) -> bool:
    """Is RediSearch still scanning the keyspace into the index (FT.INFO `indexing`)?"""
    return bool(int(as_text(info.get("indexing", 0)) or 0))
