"""How hybrid search ranks the facts its two sides found: a fact's score is a function of that fact's own numbers
and the query's lists alone, and ties are broken by fact id, so the same request on the same facts always gets the
same list (no caches, no earlier queries, no process state).

  linear  score = w * similarity + (1 - w) * keyword / max(best keyword, B)
          (w = KB_HYBRID_VECTOR_WEIGHT, B = KB_HYBRID_FULL_BM25)
          keyword = the best BM25 among the facts holding the same query words
  rrf     score = sum over the sides that found it of 1 / (60 + rank)

A fact only the vector side found gets the BM25 of the full text's last hit when that list was cut at its depth
(it scores at most that), else 0 (the full text returned every fact holding a query word). Chosen on BEIR SciFact's
train split, reported on its test split: docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

RRF_K = 60


@dataclass
class Candidate:
    """One fact found by either side, with what each side said about it (a number a side did not give is None)."""

    fact_id: str
    similarity: float | None = None
    bm25: float | None = None
    vector: bytes | None = None  # the stored vector when the full text returned it (its similarity, no round trip)
    vector_rank: int | None = None
    keyword_rank: int | None = None
    held: frozenset[str] = frozenset()  # the query's stems it holds (when the full text returned it)
    updated_at: float | None = None  # epoch seconds, when recency was asked for


Ranked = list[tuple[Candidate, float]]


def ranked(scored: Iterable[tuple[Candidate, float]]) -> Ranked:
    """Best first; equal scores in fact-id order (never in the order a side happened to return them)."""
    return sorted(scored, key=lambda pair: (-pair[1], pair[0].fact_id))


def merge(by_vector: list[Candidate], by_words: list[Candidate]) -> list[Candidate]:
    """One candidate per fact, holding both sides' numbers."""
    merged = {c.fact_id: c for c in by_vector}
    for cand in by_words:
        known = merged.get(cand.fact_id)
        if known is None:
            merged[cand.fact_id] = cand
        else:
            known.bm25, known.keyword_rank, known.vector, known.held = (cand.bm25, cand.keyword_rank, cand.vector,
                                                                        cand.held)
            known.updated_at = known.updated_at if known.updated_at is not None else cand.updated_at
    return list(merged.values())


Score = Callable[[Candidate, float], float]  # a candidate's fused score at a given similarity


def linear(cands: list[Candidate], vector_weight: float, words_cut: bool, full_bm25: float) -> Score:
    """w * cosine similarity + (1 - w) * a fact's keyword score over the best one of the query, or over `full_bm25`
    when the best is below it (a query whose best match is one common word earns little keyword credit). The keyword
    score of a fact the full text returned is the best BM25 among the facts holding the same query words: BM25's
    length and repetition terms, made for documents, decide nothing between facts that hold the same words (a short
    fact about the person asked of would otherwise outrank the one that answers). `words_cut`: the full text's list
    stopped at its depth, so a fact it did not return may still hold query words (at most the last hit's score)."""
    by_words: dict[frozenset[str], float] = {}
    for c in cands:
        if c.bm25 is not None:
            by_words[c.held] = max(by_words.get(c.held, c.bm25), c.bm25)
    best = max(by_words.values(), default=0.0)
    missing = min(by_words.values()) if words_cut and by_words else 0.0
    scale = (1.0 - vector_weight) / max(best, full_bm25) if best > 0 else 0.0

    def score(c: Candidate, similarity: float) -> float:
        return vector_weight * similarity + (by_words[c.held] if c.bm25 is not None else missing) * scale

    return score


def rrf(cands: list[Candidate]) -> Score:
    """Reciprocal-rank fusion: each side that found a fact adds 1 / (60 + its rank there)."""

    def score(c: Candidate, similarity: float) -> float:
        return sum(1.0 / (RRF_K + rank) for rank in (c.vector_rank, c.keyword_rank) if rank is not None)

    return score


def fuse(cands: list[Candidate], score: Score) -> Ranked:
    """The candidates whose similarity is known, best first by `score`."""
    return ranked((c, score(c, c.similarity)) for c in cands if c.similarity is not None)


def with_recency(scored: Ranked, half_life_days: float, now_s: float) -> Ranked:
    """Relevance blended with age: score x 0.5 ** (days since updated_at / half_life_days), so a fact that old counts
    half (a score below 0 is divided by the same factor instead: age always lowers a score). Of two equally
    relevant facts the newer ranks first; a half-life far longer than the facts' ages leaves the order as it was."""
    out = []
    for cand, score in scored:
        age_days = max(0.0, now_s - (cand.updated_at or now_s)) / 86_400.0
        decay = max(0.5 ** (age_days / half_life_days), 1e-12)  # never 0: a negative score is divided by it
        out.append((cand, score * decay if score >= 0 else score / decay))
    return ranked(out)
