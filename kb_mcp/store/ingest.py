"""Storing facts: one fact (upsert by id, or dedup by content) and the bulk path (embedding overlapped with writes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np

from kb_mcp.facts import (
    Fact,
    Scalar,
    StoredFact,
    check_content,
    check_fact_id,
    check_metadata,
    check_tags,
    content_hash,
)
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.records import build_record, format_ts, to_datetime, vector_bytes
from kb_mcp.store.search import Reader
from kb_mcp.store.writes import PutMode, Writer

BULK_EMBED_CHUNK = 1024  # per embedding call on the bulk path: ~2.5 s of model time, well inside KB_TIMEOUT_INDEX
ID_ATTEMPTS = 3
Prepared = tuple[str, str, dict[str, Scalar], list[str]]  # fact_id, content, metadata, tags


def derived_id(chash: str) -> str:
    """The id of a fact stored without one: derived from its content, so a repeat store finds it."""
    return "f-" + chash[:24]


class Ingest:
    """store_fact and store_many for one namespace."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, reader: Reader, writer: Writer) -> None:
        self._ctx = ctx
        self._index = index
        self._reader = reader
        self._writer = writer

    async def store_fact(self, content: str, metadata: dict[str, Scalar] | None = None,
                         tags: list[str] | None = None, fact_id: str | None = None) -> StoredFact:
        """Upsert by id, embedding first: a slow or failed model leaves the old fact intact, never a hash without a
        vector. Without an id, content equal after whitespace normalisation returns the existing fact."""
        content = check_content(content, self._ctx.settings.max_fact_chars)
        metadata = check_metadata(metadata)
        tags = check_tags(tags)
        if fact_id is not None:
            check_fact_id(fact_id)
        await self._index.ready()
        chash = content_hash(content)
        if fact_id is None:
            existing = await self._reader.find_by_hash(chash)
            if existing is not None:
                return await self._merge(existing, metadata, tags)
        vector = vector_bytes((await self._ctx.embed([content], "embed fact"))[0])
        now = format_ts(time.time())
        mode: PutMode = "upsert" if fact_id is not None else "create"
        target = fact_id if fact_id is not None else derived_id(chash)
        for _ in range(ID_ATTEMPTS):
            record = build_record(target, content, metadata, tags, vector, updated_at=now)
            put = await self._writer.put(target, record, mode, now, chash)
            if put.owner is not None or (put.status == 0 and mode == "create"):  # stored meanwhile: a dedup hit
                return await self._merge(await self._reader.get_fact(put.owner or target), metadata, tags)
            if put.status >= 0:
                return StoredFact(fact_id=target, created=bool(put.status), created_at=to_datetime(put.created_at),
                                  updated_at=to_datetime(now))
            target = "f-" + uuid.uuid4().hex[:24]  # the derived id is taken by other content
        raise RuntimeError("could not allocate a fact id")  # pragma: no cover - three uuid collisions

    async def _merge(self, existing: Fact, metadata: dict[str, Scalar], tags: list[str]) -> StoredFact:
        """A dedup hit keeps the existing fact and adds the new tags and metadata to it (new metadata values win),
        so storing a fact again never silently drops what the caller added. No change: no write."""
        merged_tags = check_tags(existing.tags + [t for t in tags if t not in existing.tags])
        merged_meta = check_metadata({**existing.metadata, **metadata})
        if merged_tags == existing.tags and merged_meta == existing.metadata:
            return StoredFact(fact_id=existing.fact_id, created=False, created_at=existing.created_at,
                              updated_at=existing.updated_at)
        vector = await self._reader.get_vector(existing.fact_id)
        now = format_ts(time.time())
        record = build_record(existing.fact_id, existing.content, merged_meta, merged_tags, vector, updated_at=now,
                              doc_id=existing.doc_id)
        await self._writer.put(existing.fact_id, record, "upsert", now, content_hash(existing.content))
        return StoredFact(fact_id=existing.fact_id, created=False, created_at=existing.created_at,
                          updated_at=to_datetime(now))

    async def store_many(self, facts: list[dict[str, Any]]) -> list[str]:
        """Bulk path: validate all, embed in batches, pipelined writes. Items take store_fact's arguments;
        an item without fact_id gets its content-derived id (no dedup search). Nothing is written if any is bad."""
        prepared: list[Prepared] = []
        for i, item in enumerate(facts):
            content = check_content(item.get("content"), self._ctx.settings.max_fact_chars, f"facts[{i}].content")
            fid = item.get("fact_id")
            fid = check_fact_id(fid, f"facts[{i}].fact_id") if fid is not None else derived_id(content_hash(content))
            prepared.append((fid, content, check_metadata(item.get("metadata"), f"facts[{i}].metadata"),
                             check_tags(item.get("tags"), f"facts[{i}].tags")))
        await self._index.ready()
        chunks = [prepared[i:i + BULK_EMBED_CHUNK] for i in range(0, len(prepared), BULK_EMBED_CHUNK)]

        def embed(chunk: list[Prepared]) -> asyncio.Task[np.ndarray[Any, Any]]:
            return asyncio.ensure_future(self._ctx.embed([p[1] for p in chunk], "embed batch"))

        pending = embed(chunks[0]) if chunks else None
        try:
            for k, chunk in enumerate(chunks):
                if pending is None:  # pragma: no cover - one task per chunk
                    break
                vectors = await pending
                # The model embeds the next chunk while this one is written: the CPU and Redis work overlap.
                pending = embed(chunks[k + 1]) if k + 1 < len(chunks) else None
                now = format_ts(time.time())
                await self._writer.replace_all(
                    [(fid, build_record(fid, text, meta, tg, vector_bytes(vectors[i]), updated_at=now,
                                        created_at=now)) for i, (fid, text, meta, tg) in enumerate(chunk)],
                    "write batch")
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
        return [p[0] for p in prepared]
