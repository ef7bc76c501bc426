"""Hybrid retrieval on a real Redis Stack: fusion finds what each side alone misses, words meet by their stems,
hostile text stays text, tag filters bind both sides, modes are checked, and the query cache never mixes models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kb_mcp.bench import hard
from kb_mcp.embeddings.base import QueryVector
from kb_mcp.embeddings.cache import QueryCache
from kb_mcp.errors import InvalidInput
from kb_mcp.store import KnowledgeStore

pytestmark = pytest.mark.anyio


async def top1(store: KnowledgeStore, query: str, mode: Any, **kwargs: Any) -> str | None:
    hits = await store.semantic_search(query, top_k=5, mode=mode, **kwargs)
    return hits[0].fact_id if hits else None


async def test_hybrid_finds_what_each_side_alone_misses(store: KnowledgeStore) -> None:
    # 250 people x 8 facts: the same shapes, slot values shared by many, the person's name the only shared word.
    items = hard.generate(250)
    await store.store_many([{"content": it.fact, "fact_id": f"h{i}"} for i, it in enumerate(items)])
    found: dict[str, set[int]] = {"hybrid": set(), "vector": set(), "keyword": set()}
    for i in range(0, len(items), 13):  # 154 questions
        for mode, hits in found.items():
            if await top1(store, items[i].query, mode) == f"h{i}":
                hits.add(i)
    assert found["hybrid"] - found["vector"], "vector search alone should miss some that hybrid finds"
    assert found["hybrid"] - found["keyword"], "keyword search alone should miss some that hybrid finds"
    assert len(found["hybrid"]) >= len(found["vector"]) and len(found["hybrid"]) >= len(found["keyword"])


async def test_a_winner_only_the_full_text_found_comes_back_whole(store: KnowledgeStore) -> None:
    # top_k=1 asks the KNN for its nearest one only: a hybrid winner that is not the vector side's first came from
    # the full text alone, and its content, tags and metadata must be its own.
    items = hard.generate(120)
    await store.store_many([{"content": it.fact, "fact_id": f"h{i}", "tags": [f"person-{i % 7}"],
                             "metadata": {"row": i}} for i, it in enumerate(items)])
    text_only = 0
    for i in range(0, len(items), 3):
        (best,) = await store.semantic_search(items[i].query, top_k=1)
        (nearest,) = await store.semantic_search(items[i].query, top_k=1, mode="vector")
        n = int(best.fact_id[1:])
        assert (best.content, best.tags, best.metadata) == (items[n].fact, [f"person-{n % 7}"], {"row": n})
        text_only += best.fact_id != nearest.fact_id
    assert text_only, "no hybrid winner came from the full text alone: the test asks nothing"


async def test_keyword_mode_ranks_by_every_word_common_ones_too(store: KnowledgeStore) -> None:
    # "team" and the colour are in half of these facts each: without them violet-15 and red-15 would tie.
    await store.store_many([{"content": f"Team {colour}-{n} holds its stand-up at {9 + n % 3}:00.",
                             "fact_id": f"{colour}-{n}"} for n in range(50) for colour in ("violet", "red")])
    asked = [("violet" if n % 10 else "red", n) for n in range(0, 50, 5)]
    for colour, n in asked:
        assert await top1(store, f"When does team {colour}-{n} hold its stand-up?", "keyword") == f"{colour}-{n}"


async def test_words_meet_by_their_stems_and_each_stem_counts_once(store: KnowledgeStore) -> None:
    await store.store_fact("Two studies of regulatory T cells in mice.", fact_id="studies")
    await store.store_fact("A survey of bird migration routes.", fact_id="birds")
    hits = await store.semantic_search("studying a regulatory cell", mode="keyword")
    assert [h.fact_id for h in hits] == ["studies"]  # studying ~ studies, cell ~ cells
    await store.store_fact("Cell cells cell: the cell count of a cell culture.", fact_id="repeats")
    await store.store_fact("Regulatory cell study design.", fact_id="design")
    ranked = [h.fact_id for h in await store.semantic_search("regulatory cell study", mode="keyword")]
    assert ranked.index("design") < ranked.index("repeats")  # all three stems beat one stem said five times


async def test_reindex_gives_facts_stored_without_stems_their_stems(store: KnowledgeStore, raw_redis: Any) -> None:
    await store.store_fact("Grete Olsen restores harpsichords in Bergen.", fact_id="old")
    await raw_redis.hdel(store.key("old"), "stems")  # as a fact stored before the keyword side used stems
    assert await store.semantic_search("harpsichords", mode="keyword") == []
    await store.rebuild_index()
    assert [h.fact_id for h in await store.semantic_search("harpsichord", mode="keyword")] == ["old"]
    assert await store.index_drift() is None


async def test_every_hit_carries_its_similarity_and_min_score_filters_on_it(store: KnowledgeStore) -> None:
    await store.store_fact("Priya Raman keeps bees on the roof of the office.", fact_id="bees")
    await store.store_fact("The quarterly report is due on Friday.", fact_id="report")
    for mode in ("hybrid", "vector", "keyword"):
        hits = await store.semantic_search("Does Priya Raman keep bees?", mode=mode)
        assert hits[0].fact_id == "bees" and 0.3 < hits[0].similarity <= 1.0001
        assert hits == sorted(hits, key=lambda h: h.score, reverse=True)
        strict = await store.semantic_search("Does Priya Raman keep bees?", mode=mode, min_score=0.99)
        assert strict == []


HOSTILE = ['*', '@text:(x) | @tags:{a}', '"unbalanced', '-(', "~ % $ { } [ ] : ; \\\\", "FT.DROPINDEX kb:idx", "_",
           "__init__", "a b c d e f g h i j k l m n o p q r s t u v w x y z"]


@pytest.mark.parametrize("query", HOSTILE)
async def test_hostile_query_text_is_only_text(store: KnowledgeStore, query: str) -> None:
    await store.store_fact("A plain fact about gardens.", fact_id="plain")
    for mode in ("hybrid", "keyword"):
        hits = await store.semantic_search(query, mode=mode)
        assert all(h.fact_id == "plain" for h in hits)
    assert (await store.get_fact("plain")).content == "A plain fact about gardens."


async def test_tag_filters_bind_both_sides(store: KnowledgeStore) -> None:
    await store.store_fact("Noor Haddad adopted a parrot.", fact_id="home.parrot", tags=["home"])
    await store.store_fact("Noor Haddad reviews parrot firmware at work.", fact_id="work.parrot", tags=["work"])
    for mode in ("hybrid", "vector", "keyword"):
        hits = await store.semantic_search("Noor Haddad parrot", mode=mode, tags=["work"])
        assert [h.fact_id for h in hits] == ["work.parrot"], mode


async def test_mode_is_checked(store: KnowledgeStore) -> None:
    with pytest.raises(InvalidInput, match="mode: must be one of hybrid, vector, keyword"):
        await store.semantic_search("anything", mode="fuzzy")  # type: ignore[arg-type]


async def test_the_query_cache_never_returns_another_models_vector(embedding: Any) -> None:
    cache = QueryCache(8)
    other = embedding.model_copy(update={"model_name": "another-model"})
    vector = QueryVector(np.ones(embedding.dim, dtype=np.float32))
    cache.put(embedding, "same text", vector)
    assert cache.get(other, "same text") is None
    assert cache.get(embedding, "same text") is vector
    for i in range(9):  # bounded: the oldest entry goes first
        cache.put(embedding, f"text {i}", vector)
    assert cache.get(embedding, "same text") is None and cache.hits == 1 and cache.misses == 2
