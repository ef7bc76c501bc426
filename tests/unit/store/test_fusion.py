"""Hybrid fusion and query text, without Redis: each hit's score is its own, ties go by fact id, a fact the full
text did not return is scored as what it can at most be, and user text is words only, escaped, stemmed."""

from __future__ import annotations

import math
import random

from kb_mcp.store.search.fusion import Candidate, Ranked, fuse, linear, merge, rrf
from kb_mcp.store.search.querytext import all_words_query, any_word_query
from kb_mcp.store.search.terms import Held, query_stems, stemmed_text


def fuse_linear(cands: list[Candidate], weight: float, words_cut: bool, full_bm25: float = 0.0) -> Ranked:
    return fuse(cands, linear(cands, weight, words_cut, full_bm25))


def fuse_rrf(cands: list[Candidate]) -> Ranked:
    return fuse(cands, rrf(cands))


def test_linear_fusion_blends_similarity_with_bm25_over_the_best() -> None:
    cands = [Candidate("a", similarity=0.50, bm25=10.0, held=frozenset({"x", "y"})),
             Candidate("b", similarity=0.70, bm25=2.0, held=frozenset({"x"})),
             Candidate("c", similarity=0.60)]  # the vector side's alone; the full text returned every match
    ranked = fuse_linear(cands, 0.65, words_cut=False)
    scores = {c.fact_id: s for c, s in ranked}
    assert math.isclose(scores["a"], 0.65 * 0.50 + 0.35 * 1.0)
    assert math.isclose(scores["b"], 0.65 * 0.70 + 0.35 * 0.2)
    assert math.isclose(scores["c"], 0.65 * 0.60)  # holds no query word: no keyword share
    assert [c.fact_id for c, _ in ranked] == ["a", "b", "c"]
    assert [s for _, s in ranked] == sorted(scores.values(), reverse=True)  # ordered by the scores shown


def test_facts_holding_the_same_query_words_get_the_same_keyword_score() -> None:
    name = frozenset({"kasia", "silva"})
    short = Candidate("short", similarity=0.60, bm25=9.0, held=name)  # says less, so BM25 likes it more
    answer = Candidate("answer", similarity=0.66, bm25=6.0, held=name)
    other = Candidate("other", similarity=0.70, bm25=3.0, held=frozenset({"kasia"}))
    ranked = fuse_linear([short, answer, other], 0.7, words_cut=False)
    scores = {c.fact_id: s for c, s in ranked}
    assert math.isclose(scores["answer"], 0.7 * 0.66 + 0.3 * 1.0)  # the best BM25 of its words, not its own
    assert math.isclose(scores["other"], 0.7 * 0.70 + 0.3 * 3.0 / 9.0)
    assert [c.fact_id for c, _ in ranked] == ["answer", "short", "other"]


def test_a_weak_best_match_earns_only_part_of_the_keyword_share() -> None:
    cands = [Candidate("coincidence", similarity=0.3, bm25=2.0, held=frozenset({"user"})),
             Candidate("meaning", similarity=0.6)]
    scores = {c.fact_id: s for c, s in fuse_linear(cands, 0.65, words_cut=False, full_bm25=20.0)}
    assert math.isclose(scores["coincidence"], 0.65 * 0.3 + 0.35 * 2.0 / 20.0)
    assert scores["meaning"] > scores["coincidence"]  # with the plain best it would be 0.195 + 0.35 = 0.545 > 0.39
    strong = [Candidate("name", similarity=0.3, bm25=40.0, held=frozenset({"kasia"}))]
    assert math.isclose(fuse_linear(strong, 0.65, False, 20.0)[0][1], 0.65 * 0.3 + 0.35)


def test_a_fact_the_cut_full_text_did_not_return_gets_the_last_hits_bm25() -> None:
    cands = [Candidate("a", similarity=0.5, bm25=8.0, held=frozenset("a")),
             Candidate("b", similarity=0.5, bm25=4.0, held=frozenset("b")), Candidate("c", similarity=0.5)]
    scores = {c.fact_id: s for c, s in fuse_linear(cands, 0.5, words_cut=True)}
    assert math.isclose(scores["c"], 0.25 + 0.5 * 4.0 / 8.0)
    only_vector = {c.fact_id: s for c, s in fuse_linear([Candidate("x", similarity=0.4)], 0.5, words_cut=False)}
    assert math.isclose(only_vector["x"], 0.2)  # no keyword hit at all: the vector side's order


def test_equal_scores_are_ordered_by_fact_id_whatever_order_they_came_in() -> None:
    cands = [Candidate(f"f{i}", similarity=0.5, bm25=1.0) for i in range(20)]
    expected = sorted(c.fact_id for c in cands)
    for seed in range(5):
        random.Random(seed).shuffle(cands)
        assert [c.fact_id for c, _ in fuse_linear(cands, 0.65, words_cut=False)] == expected
        assert [c.fact_id for c, _ in fuse_rrf([Candidate(c.fact_id, 0.1, vector_rank=1) for c in cands])] == expected


def test_rrf_adds_the_reciprocal_ranks_of_both_sides() -> None:
    ranked = fuse_rrf([Candidate("one", 0.9, vector_rank=1), Candidate("both", 0.5, vector_rank=2, keyword_rank=2)])
    assert [c.fact_id for c, _ in ranked] == ["both", "one"]
    assert math.isclose(ranked[0][1], 2 / 62)


def test_only_facts_whose_similarity_is_known_are_ranked() -> None:
    assert [c.fact_id for c, _ in fuse_linear([Candidate("gone", bm25=9.0), Candidate("here", 0.1, 1.0)], 0.5,
                                              words_cut=False)] == ["here"]  # deleted before its vector was read


def test_merge_keeps_one_candidate_with_both_sides_numbers() -> None:
    merged = merge([Candidate("a", similarity=0.9, vector_rank=1)],
                   [Candidate("a", bm25=3.0, keyword_rank=2, vector=b"v"), Candidate("b", bm25=1.0, keyword_rank=3)])
    by_id = {c.fact_id: c for c in merged}
    assert (by_id["a"].similarity, by_id["a"].bm25, by_id["a"].vector_rank, by_id["a"].keyword_rank) == (
        0.9, 3.0, 1, 2)
    assert by_id["b"].similarity is None and by_id["b"].bm25 == 1.0


def test_held_finds_whole_stems_only() -> None:
    holds = Held(["cell", "mice", "regulatori"])
    assert holds(b"two studi of regulatori t cell in mice") == {"cell", "mice", "regulatori"}
    assert holds(b"cellular mice") == {"mice"} and holds(b"cell") == {"cell"} and holds(None) == frozenset()


def test_query_and_fact_words_meet_by_their_stems() -> None:
    assert query_stems("What is the Deadline for the deadlines, Ada?") == ["deadlin", "ada"]
    assert stemmed_text("Cells and the cell's studies") == "cell and the cell s studi"
    assert set(query_stems("studying cells")) <= set(stemmed_text("Two studies of a cell").split())
    assert query_stems("the of and") == []


def test_query_text_is_words_only_and_escaped() -> None:
    assert any_word_query(["a-b", "c"]) == "@text:(a\\-b | c)"
    assert any_word_query(["x"], "stems") == "@stems:(x)"
    assert any_word_query([]) is None
    assert all_words_query("@x:{y} | *") == "@text:(x y)"
    assert all_words_query("!!!") is None
    assert all_words_query("_ snake_case") == "@text:(\\_ snake\\_case)"  # a lone "_" is RediSearch syntax
