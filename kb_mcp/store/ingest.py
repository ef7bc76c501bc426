"""Storing facts: one fact (upsert by id, or dedup by content) and the bulk path (embedding overlapped with writes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from kb_mcp.errors import InvalidInput, NotFound
from kb_mcp.facts import rules
from kb_mcp.facts.identity import content_hash, derived_id
from kb_mcp.facts.models import Fact, Scalar, SimilarFact, StoredFact, UpdatedFact
from kb_mcp.facts.rules import CONTENT, FACT_ID, MAX_BATCH, TTL, TTL_UPDATE, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.filters import check_metadata
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.listing import Reader
from kb_mcp.store.records import Record, build_record, format_ts, to_datetime, vector_bytes
from kb_mcp.store.schema import F_EXPIRES
from kb_mcp.store.search.searcher import Searcher
from kb_mcp.store.writes import PUT_MISSING, PutMode, Writer

ID_ATTEMPTS = 3


@dataclass(frozen=True)
class Incoming:
    """One fact to store, checked."""

    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    fact_id: str | None
    ttl_s: int | None
    chash: str
Prepared = tuple[str, str, dict[str, Scalar], list[str]]  # fact_id, content, metadata, tags


class Ingest:
    """store_fact and store_many for one namespace."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, reader: Reader, writer: Writer,
                 searcher: Searcher) -> None:
        self._ctx = ctx
        self._index = index
        self._reader = reader
        self._writer = writer
        self._searcher = searcher

    async def store_fact(self, content: str, metadata: dict[str, Scalar] | None = None,
                         tags: list[str] | None = None, fact_id: str | None = None,
                         ttl_s: int | None = None) -> StoredFact:
        """Upsert by id, embedding first: a slow or failed model leaves the old fact intact, never a hash without a
        vector. Without an id, content equal after whitespace normalisation returns the existing fact."""
        item = {"content": content, "metadata": metadata, "tags": tags, "fact_id": fact_id, "ttl_s": ttl_s}
        return (await self._store([self._prepare(item, "")]))[0]

    async def store_facts(self, items: list[dict[str, Any]]) -> list[StoredFact]:
        """store_fact for up to MAX_BATCH facts at once: every item is checked before anything is written (an
        invalid one is named, `facts[3].tags`, and nothing is stored); then they are embedded together (in calls
        sized to the deadline) and written in one pipeline. Results come in input order."""
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise InvalidInput("facts", f"must be a list of 1 to {MAX_BATCH} facts")
        prepared = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"facts[{i}]", "must be an object with content (and metadata, tags, fact_id, ttl_s)")
            prepared.append(self._prepare(item, f"facts[{i}]."))
        return await self._store(prepared)

    async def update_fact(self, fact_id: str, content: str | None = None, tags: list[str] | None = None,
                          metadata: dict[str, Scalar] | None = None, ttl_s: int | None = None) -> UpdatedFact:
        """Change only the fields given (None keeps a field; tags and metadata given replace the old ones; ttl_s 0
        makes the fact permanent). The model runs only when the content changes; created_at is kept; an unknown id
        is NotFound and nothing is created."""
        fact_id = valid(FACT_ID, fact_id, "fact_id")
        text = None if content is None else valid(CONTENT, content, "content",
                                                  max_fact_chars=self._ctx.settings.max_fact_chars)
        new_tags = None if tags is None else rules.tags(tags)
        new_meta = None if metadata is None else self._metadata(metadata, "metadata")
        ttl = valid(TTL_UPDATE, ttl_s, "ttl_s")
        await self._index.ready()
        old = await self._reader.get_fact(fact_id)
        text = old.content if text is None else text
        re_embed = text != old.content
        vector = (await self._ctx.embed([text], "embed fact"))[0] if re_embed else None
        stored = vector_bytes(vector) if vector is not None else await self._reader.get_vector(fact_id)
        now_s = time.time()
        now = format_ts(now_s)
        if ttl is None:  # not given: the fact keeps its expiry
            expires = format_ts(old.expires_at.timestamp()) if old.expires_at else None
        else:  # 0: permanent
            expires = format_ts(now_s + ttl) if ttl else None
        record = build_record(fact_id, text, old.metadata if new_meta is None else new_meta,
                              old.tags if new_tags is None else new_tags, stored, updated_at=now, doc_id=old.doc_id,
                              expires_at=expires)
        put, similar = await asyncio.gather(
            self._writer.put(fact_id, record, "update", now, content_hash(text)),
            self._similar({0: (vector, fact_id)} if vector is not None else {}))
        if put.status == PUT_MISSING:  # deleted between the read and the write: it stays deleted
            raise NotFound(fact_id)
        return UpdatedFact(fact_id=fact_id, created=False, created_at=to_datetime(put.created_at),
                           updated_at=to_datetime(now), expires_at=to_datetime(expires) if expires else None,
                           similar=similar.get(0, []), re_embedded=re_embed)

    def _prepare(self, item: dict[str, Any], where: str) -> Incoming:
        content = valid(CONTENT, item.get("content"), f"{where}content",
                        max_fact_chars=self._ctx.settings.max_fact_chars)
        fact_id = item.get("fact_id")
        return Incoming(content=content, metadata=self._metadata(item.get("metadata"), f"{where}metadata"),
                        tags=rules.tags(item.get("tags"), f"{where}tags"),
                        fact_id=None if fact_id is None else valid(FACT_ID, fact_id, f"{where}fact_id"),
                        ttl_s=valid(TTL, item.get("ttl_s"), f"{where}ttl_s"), chash=content_hash(content))

    def _metadata(self, value: Any, field: str) -> dict[str, Scalar]:
        """Metadata checked by its rule and, for the keys KB_FILTER_FIELDS indexes as numeric, holding numbers."""
        found = rules.metadata(value, field)
        check_metadata(found, self._ctx.settings.filter_field_types, field)
        return found

    async def _store(self, batch: list[Incoming]) -> list[StoredFact]:
        await self._index.ready()
        # Without an id, existing identical content is the answer (and gets the new tags/metadata). The model works
        # while Redis is asked: a new fact, the usual case, waits for the slower of the two, not for both (an
        # identical one wastes its embedding).
        found, embedded = await asyncio.gather(
            asyncio.gather(*(self._reader.find_by_hash(p.chash) for p in batch if p.fact_id is None)),
            self._ctx.embed([p.content for p in batch], "embed facts"))
        existing: dict[int, Fact] = {}
        lookups = iter(found)
        for i, p in enumerate(batch):
            hit = next(lookups) if p.fact_id is None else None
            if hit is not None:
                existing[i] = hit
        fresh = [i for i in range(len(batch)) if i not in existing]
        now_s = time.time()
        now = format_ts(now_s)
        writes: list[tuple[str, Record, PutMode]] = []
        for i in fresh:
            p = batch[i]
            target = p.fact_id if p.fact_id is not None else derived_id(p.chash)
            expires = format_ts(now_s + p.ttl_s) if p.ttl_s else None
            record = build_record(target, p.content, p.metadata, p.tags, vector_bytes(embedded[i]), updated_at=now,
                                  expires_at=expires)
            mode: PutMode = "upsert" if p.fact_id is not None else "create"
            writes.append((target, record, mode))
        # The similar-facts KNN needs only the vector: it runs beside the write instead of after it.
        puts, similar = await asyncio.gather(
            self._writer.put_many([(t, r, m, now, batch[i].chash) for (t, r, m), i in zip(writes, fresh, strict=True)]),
            self._similar({i: (embedded[i], target) for (target, _, _), i in zip(writes, fresh, strict=True)}))
        results: dict[int, StoredFact] = {}
        for (target, record, mode), i, put in zip(writes, fresh, puts, strict=True):
            p = batch[i]
            if put.owner is not None or (put.status == 0 and mode == "create"):  # stored meanwhile: a dedup hit
                existing[i] = await self._reader.get_fact(put.owner or target)
            elif put.status < 0:  # the derived id is taken by other content: a random id, one fact at a time
                results[i] = await self._store_under_new_id(p, vector_bytes(embedded[i]), now)
            else:
                results[i] = StoredFact(fact_id=target, created=bool(put.status), updated_at=to_datetime(now),
                                        created_at=to_datetime(put.created_at),
                                        expires_at=to_datetime(record[F_EXPIRES]) if p.ttl_s else None)
        for i, fact in existing.items():
            results[i] = await self._merge(fact, batch[i].metadata, batch[i].tags)
        for i, near in similar.items():
            if i in results and i not in existing:
                results[i].similar = [s for s in near if s.fact_id != results[i].fact_id]
        return [results[i] for i in range(len(batch))]

    async def _store_under_new_id(self, p: Incoming, vector: bytes, now: str) -> StoredFact:
        for _ in range(ID_ATTEMPTS):
            target = "f-" + uuid.uuid4().hex[:24]
            expires = format_ts(time.time() + p.ttl_s) if p.ttl_s else None
            record = build_record(target, p.content, p.metadata, p.tags, vector, updated_at=now, expires_at=expires)
            put = await self._writer.put(target, record, "create", now, p.chash)
            if put.status > 0:
                return StoredFact(fact_id=target, created=True, created_at=to_datetime(put.created_at),
                                  updated_at=to_datetime(now), expires_at=to_datetime(expires) if expires else None)
        raise RuntimeError("could not allocate a fact id")  # pragma: no cover - three uuid collisions

    async def _similar(self, written: dict[int, tuple[Any, str]]) -> dict[int, list[SimilarFact]]:
        """Up to 3 OTHER facts at least KB_SIMILAR_THRESHOLD close to each written one (index -> (vector, fact id)),
        found with the vector already computed for the write (one KNN each, no model call): the agent can update one
        of them instead of storing a paraphrase."""
        threshold = self._ctx.settings.similar_threshold
        found = await asyncio.gather(*(self._searcher.similar(vector, fact_id, threshold)
                                       for vector, fact_id in written.values()))
        return dict(zip(written, found, strict=True))

    async def _merge(self, existing: Fact, metadata: dict[str, Scalar], tags: list[str]) -> StoredFact:
        """A dedup hit keeps the existing fact and adds the new tags and metadata to it (new metadata values win),
        so storing a fact again never silently drops what the caller added. No change: no write."""
        merged_tags = rules.tags(existing.tags + [t for t in tags if t not in existing.tags])
        merged_meta = rules.metadata({**existing.metadata, **metadata})
        if merged_tags == existing.tags and merged_meta == existing.metadata:
            return StoredFact(fact_id=existing.fact_id, created=False, created_at=existing.created_at,
                              updated_at=existing.updated_at, expires_at=existing.expires_at)
        vector = await self._reader.get_vector(existing.fact_id)
        now = format_ts(time.time())
        expires = format_ts(existing.expires_at.timestamp()) if existing.expires_at else None  # a merge keeps it
        record = build_record(existing.fact_id, existing.content, merged_meta, merged_tags, vector, updated_at=now,
                              doc_id=existing.doc_id, expires_at=expires)
        await self._writer.put(existing.fact_id, record, "upsert", now, content_hash(existing.content))
        return StoredFact(fact_id=existing.fact_id, created=False, created_at=existing.created_at,
                          updated_at=to_datetime(now), expires_at=existing.expires_at)

    async def store_many(self, facts: list[dict[str, Any]]) -> list[str]:
        """Bulk path: validate all, embed in batches, pipelined writes. Items take store_fact's arguments;
        an item without fact_id gets its content-derived id (no dedup search). Nothing is written if any is bad."""
        prepared: list[Prepared] = []
        for i, item in enumerate(facts):
            content = valid(CONTENT, item.get("content"), f"facts[{i}].content",
                        max_fact_chars=self._ctx.settings.max_fact_chars)
            fid = item.get("fact_id")
            fid = valid(FACT_ID, fid, f"facts[{i}].fact_id") if fid is not None else derived_id(content_hash(content))
            prepared.append((fid, content, self._metadata(item.get("metadata"), f"facts[{i}].metadata"),
                             rules.tags(item.get("tags"), f"facts[{i}].tags")))
        await self._index.ready()
        # One embedding call per chunk: the write of one overlaps the model's work on the next.
        chunks = await self._ctx.cut_for_embedding(prepared, lambda p: p[1])

        def embed(chunk: list[Prepared]) -> asyncio.Task[np.ndarray[Any, Any]]:
            return asyncio.ensure_future(self._ctx.embed_call([p[1] for p in chunk], "embed batch"))

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
