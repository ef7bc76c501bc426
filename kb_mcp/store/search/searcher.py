"""semantic_search in its three modes: by meaning (KNN over the RedisVectorStore's index), by words (BM25STD over
the facts' stems, `terms`) and hybrid (both, fused in `fusion`).

Hybrid embeds the query, then asks the full text for KB_HYBRID_CANDIDATES facts and the KNN for the `top_k` nearest
in one pipeline, every hit whole (the full text's with its stored vector, so every candidate's cosine similarity is
known without a round trip and `similarity`, and `min_score`, mean the same in every mode): a search is one round
trip of two FT.SEARCH and nothing more.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.exceptions import ResponseError

from kb_mcp.connection.topology import RedisClient
from kb_mcp.facts.models import ScoredFact, SimilarFact
from kb_mcp.facts.rules import MIN_SCORE, MODE, QUERY, RECENCY, TOP_K, SearchMode, valid
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.records import decode_metadata, expires_from, split_tags
from kb_mcp.store.replies import as_text
from kb_mcp.store.schema import F_UPDATED
from kb_mcp.store.search.commands import (
    DISTANCE_FIELD,
    EXPIRES,
    META,
    SEARCH_DEADLINE,
    STEMS,
    TAGS,
    TEXT,
    UPDATED,
    VECTOR,
    Filters,
    knn_command,
    reply_rows,
    text_command,
)
from kb_mcp.store.search.fusion import Candidate, Ranked, fuse, linear, merge, ranked, rrf, with_recency
from kb_mcp.store.search.terms import Held, query_stems


class Searcher:
    """semantic_search in its three modes for one namespace."""

    def __init__(self, ctx: StoreContext, index: SearchIndex) -> None:
        self._ctx = ctx
        self._index = index

    async def search(self, query: str, top_k: int = 5, tags: list[str] | None = None,
                     min_score: float | None = None, mode: SearchMode = "hybrid", created_after: str | None = None,
                     created_before: str | None = None, where: dict[str, Any] | None = None,
                     recency_half_life_days: float | None = None) -> list[ScoredFact]:
        """Best first (equal scores in fact-id order); `min_score` keeps hits whose cosine similarity is at least
        that, in every mode. Tags, the creation-time range and `where` filter both sides inside RediSearch; with
        `recency_half_life_days` the relevance of older facts is discounted (`fusion.with_recency`) over a deeper
        candidate list, so a newer fact further down can rise."""
        valid(QUERY, query, "query")
        top_k = valid(TOP_K, top_k, "top_k")
        min_score = valid(MIN_SCORE, min_score, "min_score")
        mode = valid(MODE, mode, "mode")
        half_life = valid(RECENCY, recency_half_life_days, "recency_half_life_days")
        filters = await self._index.scope(tags, created_after, created_before, where)
        ask = Ask(top_k, max(top_k, self._ctx.settings.hybrid_candidates) if half_life else top_k, half_life)
        if mode == "hybrid":
            return await self._hybrid(query, ask, filters, min_score)
        if mode == "vector":
            vector = (await self._ctx.embed_query(query)).vector
            knn = knn_command(self._index.name, vector, ask.depth, filters, whole=True, also=ask.also)
            raw = await self._one_search("vector search", knn)
            rows = raw_vector_hits(self._ctx, raw)
            return _hits(ask.rank([(c, c.similarity or 0.0) for c, _ in rows]), _by_id(rows), top_k, min_score)
        command = text_command(self._index.name, query_stems(query), ask.depth, filters, also=ask.also)
        # Its one search overlaps the model (unlike _hybrid's): it reads only top_k hits (docs/benchmarks.md).
        asked, rows = await asyncio.gather(self._ctx.embed_query(query), self._keyword_hits(command, []))
        _similarities([c for c, _ in rows], asked.vector)
        return _hits(ask.rank([(c, c.bm25 or 0.0) for c, _ in rows]), _by_id(rows), top_k, min_score)

    async def similar(self, vector: np.ndarray[Any, Any], exclude: str, threshold: float,
                      limit: int = 3) -> list[SimilarFact]:
        """Up to `limit` facts other than `exclude` whose similarity to `vector` is at least `threshold`, by a KNN
        with the shorter candidate list KB_SIMILAR_EF_RUNTIME on an HNSW index."""
        async def nearest() -> Any:
            await self._index.ready()
            ef = self._ctx.settings.similar_ef_runtime if self._index.hnsw else None
            return await self._one_search("vector search", knn_command(self._index.name, vector, limit + 1, [],
                                                                       ef_runtime=ef))

        try:
            raw = await nearest()
        except ResponseError:
            if not self._index.hnsw:
                raise
            self._index.forget()  # rebuilt as FLAT meanwhile (kb-mcp reindex)? Read it again and ask once more
            raw = await nearest()
        near = [c for c, _ in raw_vector_hits(self._ctx, raw)]
        return [SimilarFact(fact_id=c.fact_id, similarity=round(c.similarity or 0.0, 6)) for c in near
                if c.fact_id != exclude and (c.similarity or 0.0) >= threshold][:limit]

    async def _hybrid(self, query: str, ask: Ask, filters: Filters, min_score: float | None) -> list[ScoredFact]:
        """The model first, then both sides as one pipeline. The full text needs no vector, but sent before the model
        it is read (50 whole hits) while the model's threads run, and on two cores that slowed the search more than it
        hid (docs/benchmarks.md). Its hits come back whole with their vectors and stems: every candidate's similarity
        is known when both answers are in, and a winner only the full text found needs no read of its own."""
        settings = self._ctx.settings
        top_k = ask.top_k
        depth = max(top_k, settings.hybrid_candidates)
        # Linear fusion needs no more than the top_k nearest: a fact further down by meaning that the full text did
        # not return either scores below each of them (its similarity is lower, its BM25 at most theirs). Recency
        # breaks that (a newer fact further down may rise): it asks as deep as the full text.
        nearest = depth if settings.hybrid_fusion == "rrf" else ask.depth
        stems = query_stems(query)
        text = text_command(self._index.name, stems, depth, filters, held=True, also=ask.also)
        asked = await self._ctx.embed_query(query)
        knn = knn_command(self._index.name, asked.vector, nearest, filters, whole=True, also=ask.also)
        replies = await self._searches("hybrid search", [knn, *([text] if text else [])])
        by_words = self._keyword_rows(replies[1] if text else None, stems)
        by_vector = raw_vector_hits(self._ctx, replies[0])
        _similarities([c for c, _ in by_words], asked.vector)
        fields = _by_id(by_words) | _by_id(by_vector)
        cands = merge([c for c, _ in by_vector], [c for c, _ in by_words])
        if min_score is not None:
            cands = [c for c in cands if c.similarity is not None and c.similarity >= min_score]
        score = (rrf(cands) if settings.hybrid_fusion == "rrf"
                 else linear(cands, settings.hybrid_vector_weight, len(by_words) == depth, settings.hybrid_full_bm25))
        fused = ask.rank(fuse(cands, score))
        return _hits(fused, fields, top_k, None)

    async def _keyword_hits(self, command: list[Any] | None, stems: list[str]
                            ) -> list[tuple[Candidate, dict[bytes, Any]]]:
        """The full text's candidates (none without a word to search), each with those of `stems` it holds."""
        return self._keyword_rows(await self._one_search("keyword search", command) if command else None, stems)

    async def _searches(self, op: str, commands: list[list[Any]]) -> list[Any]:
        """Several FT.SEARCH as one pipeline under the search deadline, once the index exists: both sides of a hybrid
        search take one connection, one write and one read (as two calls on two connections they cost ~0.1 ms more
        CPU per search: docs/benchmarks.md)."""

        def add(pipe: Any) -> None:
            for command in commands:
                pipe.execute_command(*command)

        return await self._index.run(lambda: self._ctx.pipeline(op, add, SEARCH_DEADLINE))

    async def _one_search(self, op: str, command: list[Any]) -> Any:
        """One FT.SEARCH under the search deadline, once the index exists."""

        async def send(r: RedisClient) -> Any:
            return await r.execute_command(*command)

        return await self._index.run(lambda: self._ctx.redis(op, send, SEARCH_DEADLINE))

    def _keyword_rows(self, raw: Any, asked: list[str] | None = None) -> list[tuple[Candidate, dict[bytes, Any]]]:
        """A full-text reply as candidates; with the query's stems `asked`, each with those it holds."""
        out: list[tuple[Candidate, dict[bytes, Any]]] = []
        holds = Held(asked or [])
        for key, score, fields in reply_rows(raw, scores=True) if raw is not None else []:
            out.append((Candidate(self._ctx.keyspace.fact_id(key), bm25=score, vector=fields.get(VECTOR),
                                  keyword_rank=len(out) + 1, held=holds(fields.get(STEMS)),
                                  updated_at=_epoch(fields.get(UPDATED))), fields))
        return out


def raw_vector_hits(ctx: StoreContext, raw: Any) -> list[tuple[Candidate, dict[bytes, Any]]]:
    """A KNN reply as candidates (similarity = 1 - cosine distance) with the fields it returned."""
    out: list[tuple[Candidate, dict[bytes, Any]]] = []
    for key, _, fields in reply_rows(raw, scores=False):
        out.append((Candidate(ctx.keyspace.fact_id(key), similarity=1.0 - float(fields.get(DISTANCE_FIELD, b"1")),
                              vector_rank=len(out) + 1, updated_at=_epoch(fields.get(UPDATED))), fields))
    return out


@dataclass(frozen=True)
class Ask:
    """How deep one search asks its sides and how it ranks what they found: by relevance alone, or (with a
    half-life) by relevance discounted by age over a deeper list."""

    top_k: int
    depth: int
    half_life_days: float | None

    @property
    def also(self) -> tuple[str, ...]:
        return (F_UPDATED,) if self.half_life_days else ()

    def rank(self, scored: Ranked) -> Ranked:
        if self.half_life_days is None:
            return ranked(scored)
        return with_recency(scored, self.half_life_days, time.time())


def _epoch(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


def _hits(scored: Ranked, fields: dict[str, dict[bytes, Any]], top_k: int, min_score: float | None
          ) -> list[ScoredFact]:
    hits = []
    for cand, score in scored:
        similarity = cand.similarity if cand.similarity is not None else 0.0
        found = fields.get(cand.fact_id)
        if found is None or (min_score is not None and similarity < min_score):
            continue
        hits.append(ScoredFact(fact_id=cand.fact_id, content=as_text(found.get(TEXT)),
                               metadata=decode_metadata(found.get(META)), tags=split_tags(found.get(TAGS)),
                               score=round(float(score), 6), similarity=round(similarity, 6),
                               expires_at=expires_from(found.get(EXPIRES))))
        if len(hits) == top_k:
            break
    return hits


def _by_id(rows: list[tuple[Candidate, dict[bytes, Any]]]) -> dict[str, dict[bytes, Any]]:
    return {c.fact_id: fields for c, fields in rows}


def _similarities(cands: list[Candidate], query: np.ndarray[Any, Any]) -> None:
    """Each candidate's cosine similarity from the stored vector the full text returned (unit length: one
    product for all); one without a vector of the query's size keeps None. `einsum` rather than `@`: BLAS's worker
    thread spins after each call, on cores the model needs (docs/benchmarks.md)."""
    q = np.asarray(query, dtype=np.float32)
    pairs = [(c, c.vector) for c in cands if c.vector and len(c.vector) == 4 * len(q)]
    if pairs:
        stacked = np.frombuffer(b"".join(v for _, v in pairs), dtype=np.float32).reshape(len(pairs), -1)
        for (cand, _), similarity in zip(pairs, np.einsum("ij,j->i", stacked, q).tolist(), strict=True):
            cand.similarity = similarity

