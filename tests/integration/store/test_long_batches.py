"""Many long texts at once under a tight index deadline (BEIR SciFact abstracts, read from ../shared/data): each
embedding call fits KB_TIMEOUT_INDEX, so store_facts and store_many finish where one call for the whole batch would
overrun it (100 abstracts, ~23,000 tokens: over 2 s of model time on 2 cores), and every fact gets its own vector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kb_mcp.bench import beir
from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

pytestmark = pytest.mark.anyio
SCIFACT = Path(__file__).resolve().parents[4] / "shared" / "data" / "beir-scifact"
TIGHT_INDEX_S = 1.5

if not SCIFACT.is_dir():  # pragma: no cover - the checkout always has ../shared beside it
    pytest.skip(f"BEIR SciFact not found at {SCIFACT}", allow_module_level=True)


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    return list(beir.read_beir(SCIFACT, "test", max_queries=0, max_docs=100).documents.values())[:100]


async def each_finds_itself(kb: KnowledgeStore, facts: dict[str, str]) -> None:
    """A fact's own text, searched by vector, finds that fact first: its vector is its own, not a neighbour's (the
    query's 2,000 characters hold more than the 256 tokens the model reads)."""
    for fact_id, text in list(facts.items())[::9]:
        hits = await kb.semantic_search(text[:2000], top_k=1, mode="vector")
        assert hits[0].fact_id == fact_id


async def test_store_facts_of_long_texts_fits_the_deadline(make_settings: Callable[..., Settings],
                                                         embedding: OnnxMiniLMEmbedding, abstracts: list[str]) -> None:
    async with KnowledgeStore.open(make_settings(timeout_index=TIGHT_INDEX_S), embedding=embedding) as kb:
        try:
            assert sum(embedding.cost(t) for t in abstracts) > 20_000
            stored = await kb.store_facts([{"content": t} for t in abstracts])
            assert all(s.created for s in stored)
            await each_finds_itself(kb, {s.fact_id: t for s, t in zip(stored, abstracts, strict=True)})
        finally:
            await kb.drop_namespace()


async def test_store_many_of_long_texts_fits_the_deadline(make_settings: Callable[..., Settings],
                                                        embedding: OnnxMiniLMEmbedding, abstracts: list[str]) -> None:
    async with KnowledgeStore.open(make_settings(timeout_index=TIGHT_INDEX_S), embedding=embedding) as kb:
        try:
            ids = await kb.store_many([{"content": t} for t in abstracts])
            assert (await kb.stats()).facts == len(abstracts)
            await each_finds_itself(kb, dict(zip(ids, abstracts, strict=True)))
        finally:
            await kb.drop_namespace()
