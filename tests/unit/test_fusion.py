"""Hybrid fusion and query text, without Redis: keyword evidence rewards rare words the fact holds, not one common
word; the OR-query escapes everything; fusion orders by the blended score."""

from __future__ import annotations

import math

import numpy as np

from kb_mcp.embeddings import QueryVector
from kb_mcp.store.hybrid import (
    Candidate,
    WordCount,
    evidence,
    fuse_linear,
    fuse_rrf,
    idf,
    informative_terms,
    prune_hopeless,
    settle_ties,
)
from kb_mcp.store.querytext import TermMatcher, all_words_query, any_word_query, content_terms, singular, word_forms


def evidence_of(content: str, weights: dict[str, float], saturation: float) -> float:
    return evidence(TermMatcher(weights).held(content), weights, saturation)


def test_idf_is_higher_for_rarer_words() -> None:
    assert idf(1, 1000) > idf(100, 1000) > idf(900, 1000) > 0
    assert math.isclose(idf(0, 0), math.log(2))


def test_evidence_needs_most_of_the_weight_and_enough_of_it() -> None:
    weights = {"priya": 6.0, "raman": 6.0, "live": 1.0}
    name = evidence_of("Priya Raman moved to Lisbon.", weights, saturation=10)
    one_common_word = evidence_of("Ships live on Tuesdays.", weights, saturation=10)
    assert name > 0.8 and one_common_word < 0.01
    assert evidence_of("anything", {}, saturation=10) == 0.0
    small_kb = {"deadline": 3.0}  # one word, moderately rare in a small KB: little credit
    assert evidence_of("The deadline is March 14.", small_kb, saturation=10) == 0.3


def test_linear_fusion_lets_keyword_evidence_break_a_near_tie_only() -> None:
    weights = {"noor": 6.0, "haddad": 6.0}

    def cand(fact_id: str, content: str, similarity: float) -> Candidate:
        return Candidate(fact_id, content, None, [], similarity=similarity, evidence=evidence_of(content, weights, 10))

    near = [cand("a", "Noor Haddad adopted a parrot.", 0.50), cand("b", "Yara Aziz adopted a parrot.", 0.53)]
    assert [c.fact_id for c, _ in fuse_linear(near, 0.8)] == ["a", "b"]
    far = [cand("a", "Noor Haddad adopted a parrot.", 0.10), cand("b", "Yara Aziz adopted a parrot.", 0.60)]
    assert [c.fact_id for c, _ in fuse_linear(far, 0.95)] == ["b", "a"]


def test_keyword_hits_that_cannot_reach_the_top_are_not_loaded() -> None:
    known = [Candidate(f"v{i}", "", None, [], similarity=0.9 - i / 100, evidence=0.0) for i in range(5)]
    hopeless = Candidate("weak", "", None, [], evidence=0.01)  # at best 0.8 * 0.86 + 0.2 * 0.01 = 0.69 < 0.8 * 0.88
    hopeful = Candidate("strong", "", None, [], evidence=1.0)  # at best 0.8 * 0.86 + 0.2 = 0.888 > 0.704
    kept = prune_hopeless([*known, hopeless, hopeful], top_k=3, vector_weight=0.8, similarity_bound=0.86)
    assert [c.fact_id for c in kept] == [*(c.fact_id for c in known), "strong"]
    assert prune_hopeless([hopeless], top_k=3, vector_weight=0.8, similarity_bound=0.86) == [hopeless]


def test_rrf_adds_the_reciprocal_ranks_of_both_sides() -> None:
    both = Candidate("both", "", None, [], ranks={"vector": 2, "keyword": 2})
    one = Candidate("one", "", None, [], ranks={"vector": 1})
    ranked = fuse_rrf([one, both])
    assert [c.fact_id for c, _ in ranked] == ["both", "one"]
    assert math.isclose(ranked[0][1], 2 / 62)


def test_query_text_is_words_only_and_escaped() -> None:
    assert content_terms("What is the Deadline for the deadline, Ada?") == ["deadline", "ada"]
    assert any_word_query(["a-b", "c"]) == "@text:(a\\-b | c)"
    assert any_word_query([]) is None
    assert all_words_query("@x:{y} | *") == "@text:(x y)"
    assert all_words_query("!!!") is None
    assert all_words_query("_ snake_case") == "@text:(\\_ snake\\_case)"  # a lone "_" is RediSearch syntax
    assert word_forms("Parrots and glass") == {"parrot", "and", "glass"}


def test_common_words_stay_out_of_the_full_text_query() -> None:
    df = {"team": WordCount(30_000, 100_000, 99.0), "billing": WordCount(40, 100_000, 99.0),
          "owns": WordCount(5_000, 100_000, 99.0)}
    assert informative_terms(["team", "owns", "billing", "zephyr"], df) == ["billing", "zephyr"]


def test_when_no_word_left_occurs_the_rarest_common_ones_come_back() -> None:
    df = {"amara": WordCount(50, 2_000, 99.0), "okafor": WordCount(67, 2_000, 99.0),
          "live": WordCount(0, 2_000, 99.0), "harbour": WordCount(300, 2_000, 99.0)}
    assert informative_terms(["amara", "okafor", "live", "harbour"], df) == ["live", "amara", "okafor"]


def test_uncounted_words_are_searched_and_old_counts_still_decide() -> None:
    # past their minute: refreshed beside the search, still used meanwhile
    expired = {"team": WordCount(30_000, 100_000, 0.5), "billing": WordCount(40, 100_000, 0.5)}
    assert informative_terms(["team", "billing"], expired) == ["billing"]
    assert informative_terms(["team", "billing"], {}) == ["team", "billing"]


def test_an_uncounted_word_may_occur_so_the_common_ones_wait_for_its_count() -> None:
    df = {"kasia": WordCount(500, 2_000, 99.0), "silva": WordCount(480, 2_000, 99.0)}
    assert informative_terms(["kasia", "silva", "zorblax"], df) == ["zorblax"]
    counted = {**df, "zorblax": WordCount(0, 2_000, 99.0)}  # in no fact: the rarest common words come back
    assert informative_terms(["kasia", "silva", "zorblax"], counted) == ["zorblax", "silva", "kasia"]


def test_a_share_compares_counts_of_one_moment() -> None:
    # "billing" was counted when the namespace had 40,000 facts, "team" when it had 100,000: each against its own.
    df = {"team": WordCount(1_000, 100_000, 99.0), "billing": WordCount(1_000, 40_000, 99.0)}
    assert informative_terms(["team", "billing"], df) == ["team"]


def unit(*parts: float) -> np.ndarray:  # type: ignore[type-arg]
    v = np.zeros(8, dtype=np.float32)
    v[:len(parts)] = parts
    return v / np.linalg.norm(v)


def test_ties_on_the_same_words_are_settled_by_what_the_query_asks_besides_them() -> None:
    # Axis 0 is the name all of one person's facts share; axes 1-3 what each fact says. The query asks about axis 2,
    # but its name part makes the most name-heavy fact the nearest by plain similarity.
    facts = {"name-heavy": unit(5, 1), "asked": unit(1, 0, 1), "other": unit(1, 0, 0, 1),
             "another": unit(1, 0, 0, 0, 1)}
    query = unit(2, 0, 0.6)
    held = frozenset({"kasia", "silva"})
    tied = [Candidate(i, "", None, [], similarity=float(v @ query), evidence=0.9, vector=v.tobytes(), held=held)
            for i, v in facts.items()]
    stranger = Candidate("stranger", "", None, [], similarity=0.95, evidence=0.1, vector=unit(0, 0, 1).tobytes())
    ranked = fuse_linear([*tied, stranger], 0.8)
    assert [c.fact_id for c, _ in ranked] == ["name-heavy", "asked", "stranger", "other", "another"]
    settled = settle_ties(ranked, QueryVector(query))
    assert [c.fact_id for c, _ in settled] == ["asked", "name-heavy", "stranger", "other", "another"]
    assert [s for _, s in settled] == [s for _, s in ranked]  # the places and their scores stay
    two = [pair for pair in ranked if pair[0].fact_id not in ("other", "another")]  # two: equally far from their mean
    assert settle_ties(two, QueryVector(query)) == two
    no_words = [(Candidate(c.fact_id, "", None, [], similarity=c.similarity, vector=c.vector), s) for c, s in ranked]
    assert settle_ties(no_words, QueryVector(query)) == no_words


def test_the_term_matcher_agrees_with_word_forms() -> None:
    texts = ["Parrots and glass", "The atlas lists buses; a bus, two BUSES.", "Classes: class, glasses",
             "dress dresses", "Ships live on Tuesdays", "news is new", "ss s sss",
             # not ASCII: lower-cased word by word ("İ" lower-cases to two code points, the second no word character)
             "İstanbul ferries; Zürich's TRAMS", "ÉCOLES école Straße"]
    terms = ["parrot", "parrots", "glass", "atlas", "atla", "bus", "buses", "class", "dresses", "dress", "ship",
             "tuesday", "news", "new", "ss", "s", "live", "lives", "missing", "i̇stanbul", "istanbul", "ferry",
             "ferries", "zürich", "tram", "école", "écoles", "straße"]
    for text in texts:
        assert TermMatcher(terms).held(text) == {t for t in terms if singular(t) in word_forms(text)}, text
