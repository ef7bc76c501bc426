"""Search by meaning and by words: the vector side (KNN over the RedisVectorStore's index), the keyword side
(RediSearch full text, BM25STD scorer, the query's words OR-ed) and their fusion.

Both sides run at once once the query is embedded, the keyword side's hits weighed while RediSearch works on the
KNN; the keyword side's pipeline also asks RediSearch how many facts contain each query word (document frequencies,
cached for a minute). A hit found by one side only gets
the other's number too: its cosine similarity is computed from its stored vector, so `similarity` (and `min_score`)
mean the same in every mode. Fusion (KB_HYBRID_FUSION):
  linear  score = w * similarity + (1 - w) * evidence               (w = KB_HYBRID_VECTOR_WEIGHT)
          evidence = coverage * min(1, matched / KB_HYBRID_SATURATION)
          matched  = IDF weight (nats) of the query words the fact contains
          coverage = matched / IDF weight of all query words that some fact contains
  rrf     score = 1/(60 + rank_vector) + 1/(60 + rank_keyword)
Then the facts that tie on the query's words are ordered by what the query asks besides them (`settle_ties`).

Why not BM25 divided by the best BM25 of the query (measured with `kb-mcp eval` and the paraphrase test set):
max-normalisation turns a coincidental match on one word into full keyword credit and lost up to 0.36 recall@1
against vector search alone on paraphrase sets. Evidence is high only when the fact holds most of the query's
informative words AND they are informative in absolute terms (a rare name or code, not one common word), so keyword
relevance helps where words carry information and stays out of the way of pure paraphrases.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from redis.asyncio.client import Pipeline

from kb_mcp.config import TimeoutKind
from kb_mcp.embeddings import QueryVector
from kb_mcp.facts import (
    TOP_K_MAX,
    Scalar,
    ScoredFact,
    SearchMode,
    SimilarFact,
    check_int,
    check_mode,
    check_query,
    check_score,
    check_tags,
    check_time_range,
)
from kb_mcp.redis_topology import RedisClient
from kb_mcp.store.context import StoreContext
from kb_mcp.store.index import SearchIndex
from kb_mcp.store.querytext import TermMatcher, any_word_query, content_terms, tag_clauses, time_clauses
from kb_mcp.store.records import decode_metadata, expires_from, split_tags
from kb_mcp.store.replies import as_text, pairs
from kb_mcp.store.schema import F_EXPIRES, F_META, F_TAGS, F_TEXT, F_VECTOR
from kb_mcp.store.writes import Writer

RRF_K = 60
DISTANCE = "vector_distance"  # the KNN score's name (cosine distance), as RedisVectorStore names it
# Every Redis step of a search runs under the LlamaIndex/index deadline (KB_TIMEOUT_INDEX, 10 s), not the 2 s Redis
# one: a KNN or a full-text query over a large index is search work, as the README's standard timeouts say.
SEARCH_DEADLINE: TimeoutKind = "index"
DF_TTL_S = 60.0  # document frequencies move slowly: one count per word per minute is plenty
# The number of facts is counted again sooner once this process has written this share of it (or 10 facts) since:
# FT.INFO costs ~1-3 ms of Redis time at 10,000 facts, too much per query, but word counts weighed against an old,
# smaller total go wrong (a search on 10 facts, 1,000 stored, the next search's IDFs went negative).
TOTAL_DRIFT = 0.1
DF_CACHE_MAX = 10_000
# A word in more than this share of the facts is left out of the full-text query (see `informative_terms`).
COMMON_SHARE = 0.01
# Field names as FT.SEARCH returns them (bytes): a hit's fields are looked up without decoding every name.
TEXT, TAGS, META, EXPIRES, VECTOR, DISTANCE_FIELD = (name.encode() for name in (F_TEXT, F_TAGS, F_META, F_EXPIRES,
                                                                               F_VECTOR, DISTANCE))


@dataclass(frozen=True)
class Window:
    """A creation-time range, epoch seconds, both ends inclusive (None: open)."""

    after_s: float | None = None
    before_s: float | None = None


@dataclass
class Candidate:
    """One fact found by either side, with what each side said about it."""

    fact_id: str
    content: str
    meta_json: bytes | str | None  # decoded for the hits returned only: most candidates are not
    tags: list[str]
    similarity: float | None = None
    bm25: float | None = None
    evidence: float = 0.0
    expires_at: str = ""
    ranks: dict[str, int] = field(default_factory=dict)
    vector: bytes | None = None  # the stored vector, when a side returned it (its similarity needs no round trip)
    held: frozenset[str] = frozenset()  # the query words it holds (hybrid)

    @property
    def metadata(self) -> dict[str, Scalar]:
        return decode_metadata(self.meta_json)


def idf(df: int, n: int) -> float:
    """BM25's inverse document frequency: rare words weigh much more than common ones."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def evidence(held: frozenset[str], weights: Mapping[str, float], saturation: float) -> float:
    """How much the query's words vouch for a fact that holds the words `held` (0..1, see `TermMatcher`): the share
    of their IDF weight it holds, scaled down unless that weight is large in absolute terms (`saturation` nats)."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    matched = sum(weights[term] for term in held)
    return (matched / total) * min(1.0, matched / saturation)


class WordCount(NamedTuple):
    """How many facts held a word, out of how many facts there were when it was counted (a share and an IDF from
    counts of different moments go wrong as a namespace grows), and until when (time.monotonic()) it is trusted."""

    holding: int
    facts: int
    until: float


@dataclass
class FactTotal:
    """The namespace's number of facts (FT.INFO), when it stops being trusted, and how many facts this process had
    written when it was counted."""

    facts: int = 0
    until: float = 0.0
    written_then: int = 0


@dataclass(frozen=True)
class CountPlan:
    """Words to count in one pipeline, whether the number of facts is counted too, and the moment it was planned
    (with how many facts this process had written by then)."""

    terms: list[str]
    recount: bool
    written: int
    now: float


def informative_terms(terms: list[str], counts: Mapping[str, WordCount]) -> list[str]:
    """The query words worth a full-text search: not those that a large share of the facts contain (by their last
    count, however old: document frequencies move slowly, and an old count is refreshed beside the search). Such a
    word adds little to a fact's evidence (evidence is still computed from every word), yet RediSearch would score
    every fact holding it: measured, the keyword side cost 2.3 ms at 100,000 facts. "Large" is 1 % (COMMON_SHARE):
    against 2 %, hybrid - vector p50 at 100,000 facts +0.57 / +0.65 ms vs +0.99 / +0.91 (fewer, better candidates
    to weigh), `kb-mcp eval` hard set at 2,000 facts recall@1 0.942 vs 0.912 (1,000 questions; the same at 200, 500
    and 9,000 facts, and the bench set the same at every size); keeping words held by fewer than 50 or 100 facts
    lost 0.01 to 0.02 at 200 and 500 facts, so there is no floor. Uncounted and absent words stay
    (a word stored a second ago must still be found); if every word left is known to occur in no fact, the two
    rarest common ones come back, so a name shared by many facts still finds them. An uncounted word may occur:
    it is counted beside the search, and the search is sent again only if it turns out absent."""
    known = {t: counts[t] for t in terms if t in counts}
    common = [t for t in terms if t in known and known[t].holding > COMMON_SHARE * known[t].facts]
    kept = [t for t in terms if t not in common]
    if common and all(t in known and known[t].holding == 0 for t in kept):
        kept += sorted(common, key=lambda t: known[t].holding)[:2]
    return kept


def weigh(cands: list[Candidate], weights: Mapping[str, float], saturation: float) -> None:
    """Find the query words each candidate holds, and its keyword evidence from them."""
    matcher = TermMatcher(weights)
    for cand in cands:
        cand.held = matcher.held(cand.content)
        cand.evidence = evidence(cand.held, weights, saturation)


def fuse_linear(cands: list[Candidate], vector_weight: float) -> list[tuple[Candidate, float]]:
    """w * cosine similarity + (1 - w) * keyword evidence."""
    scored = [(c, vector_weight * (c.similarity or 0.0) + (1 - vector_weight) * c.evidence) for c in cands]
    return sorted(scored, key=lambda pair: pair[1], reverse=True)


def prune_hopeless(cands: list[Candidate], top_k: int, vector_weight: float, similarity_bound: float
                   ) -> list[Candidate]:
    """Drop the keyword-only hits that cannot reach the top `top_k` even at the highest similarity they can have:
    the vector side returned the nearest facts, so one it did not return is at most `similarity_bound` close.
    Saves loading their vectors (a round trip) for most queries."""
    known = sorted((vector_weight * c.similarity + (1 - vector_weight) * c.evidence
                    for c in cands if c.similarity is not None), reverse=True)
    if len(known) < top_k:
        return cands
    floor = known[top_k - 1]
    return [c for c in cands if c.similarity is not None
            or vector_weight * similarity_bound + (1 - vector_weight) * c.evidence >= floor]


def settle_ties(ranked: list[tuple[Candidate, float]], query: QueryVector) -> list[tuple[Candidate, float]]:
    """Re-order the facts that hold the same query words as the best keyword match by what the query asks besides
    those words; the places and scores of the list stay, only which of those facts holds which place changes.

    A question about one person ("What is Kasia Silva's profession?") finds all of that person's facts with equal
    keyword evidence, and the name then dominates their similarities as well: each of their vectors is mostly
    "Kasia Silva", and so is the query's. Two things take the name out: the query is pooled again without the words
    every one of those facts holds (from the token states of the same model run, no extra one), and the direction
    the facts share (their mean) is projected out of it and out of each fact. What is left is the question; the fact
    whose own part fits it best (cosine: a fact that says less of the name must not win for that alone) comes
    first. Measured over `kb-mcp eval`'s hard set (every question against its person's eight facts), the right one
    came first 0.83 of the time by plain similarity, 0.91 with the projection alone, 0.945 with both. It needs the
    facts' vectors (the keyword side returns them) and at least three such facts: two sit equally far from their
    mean."""
    best = max((c.evidence for c, _ in ranked), default=0.0)
    if best <= 0:
        return ranked
    places = [i for i, (c, _) in enumerate(ranked) if c.evidence == best and c.vector]
    if len(places) < 3:
        return ranked
    shared_words = frozenset.intersection(*(ranked[i][0].held for i in places))
    group = np.stack([np.frombuffer(ranked[i][0].vector or b"", dtype=np.float32) for i in places])
    shared = group.mean(axis=0)
    shared /= max(float(np.linalg.norm(shared)), 1e-12)
    rest = query.without(shared_words)
    asked = rest - float(rest @ shared) * shared
    own = group - np.outer(group @ shared, shared)  # what each fact says besides what they share
    fit = (own @ asked) / np.maximum(np.linalg.norm(own, axis=1), 1e-12)
    order = np.argsort(-fit, kind="stable")
    settled = list(ranked)
    for place, j in zip(places, order, strict=True):
        settled[place] = (ranked[places[int(j)]][0], ranked[place][1])
    return settled


def fuse_rrf(cands: list[Candidate]) -> list[tuple[Candidate, float]]:
    """Reciprocal-rank fusion: each side contributes 1 / (60 + rank)."""
    scored = [(c, sum(1.0 / (RRF_K + rank) for rank in c.ranks.values())) for c in cands]
    return sorted(scored, key=lambda pair: pair[1], reverse=True)


class Searcher:
    """semantic_search in its three modes for one namespace."""

    def __init__(self, ctx: StoreContext, index: SearchIndex, writer: Writer) -> None:
        self._ctx = ctx
        self._index = index
        self._writer = writer  # how many facts this process wrote: the total is counted again as they add up
        self._df: OrderedDict[str, WordCount] = OrderedDict()
        self._total = FactTotal()

    async def search(self, query: str, top_k: int = 5, tags: list[str] | None = None,
                     min_score: float | None = None, mode: SearchMode = "hybrid", created_after: str | None = None,
                     created_before: str | None = None) -> list[ScoredFact]:
        """Best first; `min_score` keeps hits whose cosine similarity is at least that, in every mode. Tags and the
        creation-time range filter both sides inside RediSearch."""
        check_query(query)
        top_k = check_int(top_k, "top_k", 1, TOP_K_MAX)
        tags = check_tags(tags)
        window = Window(*check_time_range(created_after, created_before))
        min_score = check_score(min_score)
        mode = check_mode(mode)
        settings = self._ctx.settings
        if mode == "vector":
            vector = (await self._ctx.embed_query(query)).vector
            cands = await self._vector_side(vector, top_k, tags, window)
            ranked = [(c, c.similarity or 0.0) for c in cands]
        elif mode == "keyword":
            asked, cands = await asyncio.gather(self._ctx.embed_query(query),
                                                self._keyword_side(query, top_k, tags, window))
            await self._fill_similarity(cands, asked.vector)
            ranked = [(c, c.bm25 or 0.0) for c in cands]
        else:
            asked, by_vector, by_words, weights = await self._both_sides(
                query, top_k, max(top_k, settings.hybrid_candidates), tags, window)
            cands = _merge(by_vector, by_words)
            weigh([c for c in cands if "keyword" not in c.ranks], weights, settings.hybrid_saturation)
            w = settings.hybrid_vector_weight
            if settings.hybrid_fusion == "linear" and len(by_vector) == top_k:
                cands = prune_hopeless(cands, top_k, w, min(c.similarity or 0.0 for c in by_vector))
            await self._fill_similarity(cands, asked.vector)
            ranked = fuse_rrf(cands) if settings.hybrid_fusion == "rrf" else fuse_linear(cands, w)
            ranked = settle_ties(ranked, asked)
        hits = []
        for cand, score in ranked:
            similarity = cand.similarity if cand.similarity is not None else 0.0
            if min_score is not None and similarity < min_score:
                continue
            hits.append(ScoredFact(fact_id=cand.fact_id, content=cand.content, metadata=cand.metadata,
                                   tags=cand.tags, score=round(float(score), 6), similarity=round(similarity, 6),
                                   expires_at=expires_from(cand.expires_at)))
            if len(hits) == top_k:
                break
        return hits

    async def similar(self, vector: np.ndarray[Any, Any], exclude: str, threshold: float,
                      limit: int = 3) -> list[SimilarFact]:
        """Up to `limit` facts other than `exclude` whose similarity to `vector` is at least `threshold`."""
        near = await self._vector_side(vector, limit + 1, [], Window())
        return [SimilarFact(fact_id=c.fact_id, similarity=round(c.similarity or 0.0, 6)) for c in near
                if c.fact_id != exclude and (c.similarity or 0.0) >= threshold][:limit]

    async def _vector_side(self, vector: np.ndarray[Any, Any], k: int, tags: list[str], window: Window
                           ) -> list[Candidate]:
        """KNN over the index's vector field, filtered inside RediSearch, under the index deadline."""
        return self._vector_hits(await self._one_search("vector search", self._knn_command(vector, k, tags, window)))

    async def _keyword_side(self, query: str, k: int, tags: list[str], window: Window) -> list[Candidate]:
        """Keyword mode: full text, BM25STD, every one of the query's content words may match (escaped), ranked by
        BM25 alone. It needs the common words too: without "team" and "violet", "team violet-257" ties with "team
        red-257" (measured: keyword recall@1 0.755 vs 0.9775)."""
        command = self._text_command(content_terms(query), k, tags, window)
        return self._keyword_hits(await self._one_search("keyword search", command)) if command else []

    async def _one_search(self, op: str, command: list[Any]) -> Any:
        """One FT.SEARCH under the search deadline, once the index exists."""

        async def send(r: RedisClient) -> Any:
            return await r.execute_command(*command)

        return await self._index.run(lambda: self._ctx.redis(op, send, SEARCH_DEADLINE))

    async def _both_sides(self, query: str, nearest: int, k: int, tags: list[str], window: Window
                          ) -> tuple[QueryVector, list[Candidate], list[Candidate], dict[str, float]]:
        """Hybrid search's two sides at once, after the embedding: the `nearest` facts by meaning, and up to `k` by
        the query's words with the words each holds and its evidence. Returns the query's vector, each side's hits
        and the IDF weight of every query word that some fact contains.

        The word side is sent first, and its hits are weighed while RediSearch works on the KNN (one pipeline
        holding both queries, weighing afterwards, cost ~0.2 ms more per search). It needs no vector, but running it
        while the model works was measured slower on 2 cores: its Redis and Python work then holds back the model's
        threads (100,000 facts, hybrid - vector p50 with the model run for every search: +1.3 to +1.5 ms that way,
        +0.75 to +1.0 this way; with a cached embedding +0.7 either way)."""

        asked = await self._ctx.embed_query(query)
        (by_words, weights), by_vector = await asyncio.gather(self._words_side(query, k, tags, window),
                                                              self._vector_side(asked.vector, nearest, tags, window))
        return asked, by_vector, by_words, weights

    async def _words_side(self, query: str, k: int, tags: list[str], window: Window
                          ) -> tuple[list[Candidate], dict[str, float]]:
        """Full text over the query's informative words, each hit weighed (`held`, `evidence`), and the IDF weight
        of every query word that some fact contains.

        The full text leaves out the words known to be common (evidence weighs all of them). A word never seen
        before is searched and counted in the same pipeline: counting it first, in a round trip of its own, cost
        every question naming a new id or name ~0.3 ms (100,000 facts, hybrid - vector p50 +1.06 / +1.21 ms with
        a new word in every question vs +0.75 to +0.98 without). What that costs: one costlier full-text search
        the first time this process meets a common word ("team" searched uncounted cost RediSearch 2.4 ms at
        100,000 facts), and a second round trip when the new words turn out to be in no fact and the common words
        must be searched after all (a misspelt word beside a name many facts share). A count older than a minute
        still decides and is refreshed in the search's pipeline."""
        terms = content_terms(query)
        now = time.monotonic()
        searched = informative_terms(terms, self._df)
        text = self._text_command(searched, k, tags, window)
        due = self._count_plan([t for t in terms if t not in self._df or self._df[t].until <= now], now)
        if text is None and not due.terms:
            return [], self._weights(terms)

        def add(pipe: Pipeline) -> None:
            if text is not None:
                pipe.execute_command(*text)
            self._queue_counts(pipe, due)

        replies = await self._index.run(lambda: self._ctx.pipeline("keyword search", add, SEARCH_DEADLINE))
        self._store_counts(due, replies[1 if text is not None else 0:])
        raw = replies[0] if text is not None else None
        wanted = informative_terms(terms, self._df)
        if not set(wanted) <= set(searched):  # the new words occur nowhere: the common ones come back
            retry = self._text_command(wanted, k, tags, window)
            raw = await self._one_search("keyword search", retry) if retry else None
        weights = self._weights(terms)
        hits = self._keyword_hits(raw) if raw is not None else []
        weigh(hits, weights, self._ctx.settings.hybrid_saturation)
        return hits, weights

    def _weights(self, terms: list[str]) -> dict[str, float]:
        known = {t: self._df[t] for t in terms if t in self._df}
        return {t: idf(c.holding, max(c.facts, c.holding)) for t, c in known.items() if c.holding > 0}

    def _knn_command(self, vector: np.ndarray[Any, Any], k: int, tags: list[str], window: Window) -> list[Any]:
        """The query LlamaIndex's RedisVectorStore builds for this index, as one FT.SEARCH (building it through
        VectorStoreQuery and redisvl, and parsing nodes back, cost more than the KNN itself: measured 1.16 vs 0.6 ms
        p50 at 2,000 facts). The RedisVectorStore stays the store: same index, same records
        (`KnowledgeStore.vector_store`). SORTBY: without it RediSearch may return the neighbours out of order."""
        filters = " ".join([*tag_clauses(tags), *time_clauses(window.after_s, window.before_s)])
        q = f"{f'({filters})' if filters else '*'}=>[KNN {k} @{F_VECTOR} $vector AS {DISTANCE}]"
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        return ["FT.SEARCH", self._index.name, q, "PARAMS", 2, "vector", blob, "SORTBY", DISTANCE, "ASC",
                "RETURN", 5, F_TEXT, F_TAGS, F_META, F_EXPIRES, DISTANCE, "LIMIT", 0, k, "DIALECT", 2]

    def _text_command(self, terms: list[str], k: int, tags: list[str], window: Window) -> list[Any] | None:
        """Full text, BM25STD, any of `terms` (escaped), the same filters as the KNN; None without a word to
        search. Each hit's stored vector comes back too: its similarity then needs no round trip."""
        words = any_word_query(terms)
        if words is None:
            return None
        q = " ".join([words, *tag_clauses(tags), *time_clauses(window.after_s, window.before_s)])
        return ["FT.SEARCH", self._index.name, q, "WITHSCORES", "SCORER", "BM25STD", "RETURN", 5, F_TEXT, F_TAGS,
                F_META, F_EXPIRES, F_VECTOR, "LIMIT", 0, k, "DIALECT", 2]

    def _vector_hits(self, raw: list[Any]) -> list[Candidate]:
        out: list[Candidate] = []
        for key, _, fields in _rows(raw, scores=False):
            out.append(Candidate(fact_id=self._ctx.keyspace.fact_id(key), content=as_text(fields.get(TEXT)),
                                 meta_json=fields.get(META), tags=split_tags(fields.get(TAGS)),
                                 similarity=1.0 - float(fields.get(DISTANCE_FIELD, b"1")),
                                 expires_at=as_text(fields.get(EXPIRES)), ranks={"vector": len(out) + 1}))
        return out

    def _keyword_hits(self, raw: list[Any]) -> list[Candidate]:
        out: list[Candidate] = []
        for key, score, fields in _rows(raw, scores=True):
            out.append(Candidate(fact_id=self._ctx.keyspace.fact_id(key), content=as_text(fields.get(TEXT)),
                                 meta_json=fields.get(META), tags=split_tags(fields.get(TAGS)),
                                 bm25=score, expires_at=as_text(fields.get(EXPIRES)),
                                 ranks={"keyword": len(out) + 1}, vector=fields.get(VECTOR)))
        return out

    def _count_plan(self, terms: list[str], now: float) -> CountPlan:
        """What to count for `terms`: each word, and the number of facts when that is due (FT.INFO, ~1-3 ms of Redis
        time at 10,000 facts: once a minute or after this process wrote 10 % more, never per query)."""
        total, written = self._total, self._writer.facts_written
        recount = bool(terms) and (total.until <= now or written - total.written_then
                                   > max(10, TOTAL_DRIFT * total.facts))
        return CountPlan(terms, recount, written, now)

    def _queue_counts(self, pipe: Pipeline, plan: CountPlan) -> None:
        name = self._index.name
        if plan.recount:  # counting "*" would walk every document
            pipe.execute_command("FT.INFO", name)
        for term in plan.terms:
            pipe.execute_command("FT.SEARCH", name, any_word_query([term]), "LIMIT", 0, 0, "DIALECT", 2)

    def _store_counts(self, plan: CountPlan, replies: list[Any]) -> None:
        if plan.recount:
            facts = int(as_text(pairs(replies[0]).get("num_docs", 0)))
            self._total = FactTotal(facts, plan.now + DF_TTL_S, plan.written)
            replies = replies[1:]
        for term, count in zip(plan.terms, replies, strict=True):
            self._df[term] = WordCount(int(count[0]), self._total.facts, plan.now + DF_TTL_S)
            self._df.move_to_end(term)
        while len(self._df) > DF_CACHE_MAX:
            self._df.popitem(last=False)

    async def _fill_similarity(self, cands: list[Candidate], vector: np.ndarray[Any, Any]) -> None:
        """Cosine similarity of the hits the vector side did not return (vectors are unit length: a dot product),
        from the vector the keyword side returned, else loaded."""
        query = np.asarray(vector, dtype=np.float32)
        returned = [c for c in cands if c.similarity is None and c.vector and len(c.vector) == 4 * len(query)]
        if returned:  # one product for all of them
            stacked = np.frombuffer(b"".join(c.vector or b"" for c in returned), dtype=np.float32)
            for cand, similarity in zip(returned, (stacked.reshape(len(returned), -1) @ query).tolist(),
                                        strict=True):
                cand.similarity = similarity
        missing = [c for c in cands if c.similarity is None]
        if not missing:
            return

        def add(pipe: Pipeline) -> None:
            for c in missing:
                pipe.hget(self._ctx.keyspace.key(c.fact_id), F_VECTOR)

        for cand, raw in zip(missing, await self._ctx.pipeline("load vectors", add, SEARCH_DEADLINE), strict=True):
            if raw:
                cand.similarity = float(np.frombuffer(raw, dtype=np.float32) @ query)


def _rows(raw: list[Any], *, scores: bool) -> list[tuple[bytes, float | None, dict[bytes, Any]]]:
    """An FT.SEARCH reply ([total, key, (score,) [field, value, ...], ...]) as (key, score, fields) rows; field
    names stay bytes."""
    step = 3 if scores else 2
    rows = []
    for i in range(1, len(raw) - step + 2, step):
        values = raw[i + step - 1]
        fields = dict(zip(values[::2], values[1::2], strict=False))  # [name, value, ...]
        rows.append((raw[i], float(raw[i + 1]) if scores else None, fields))
    return rows


def _merge(by_vector: list[Candidate], by_words: list[Candidate]) -> list[Candidate]:
    merged = {c.fact_id: c for c in by_vector}
    for cand in by_words:
        if cand.fact_id in merged:
            merged[cand.fact_id].bm25 = cand.bm25
            merged[cand.fact_id].ranks.update(cand.ranks)
            merged[cand.fact_id].vector = cand.vector
            merged[cand.fact_id].held = cand.held
            merged[cand.fact_id].evidence = cand.evidence
        else:
            merged[cand.fact_id] = cand
    return list(merged.values())
