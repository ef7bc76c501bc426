"""The scale bench's own arithmetic: exact nearest neighbours in chunks, and the corpus vector cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb_mcp.bench.corpus import generate
from kb_mcp.bench.scale import exact_top
from kb_mcp.bench.vector_cache import corpus_vectors
from kb_mcp.embeddings.base import KbEmbedding, Vectors


@pytest.mark.parametrize("step", [7, 64, 1000])
def test_exact_top_in_chunks_is_the_full_sort(step: int) -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(500, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rows[rng.choice(500, 20, replace=False)] + rng.normal(scale=0.1, size=(20, 16)).astype(np.float32)
    want = np.argsort(-(queries @ rows.T), axis=1)[:, :10]
    assert exact_top(queries, rows, k=10, step=step) == want.tolist()


class CountingEmbedding(KbEmbedding):
    """A deterministic stand-in model that counts the texts it is asked to embed."""

    model_name: str = "counting-8d"
    dim: int = 8
    calls: int = 0

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:
        self.calls += len(texts)
        out = np.array([[float((hash(t) >> s) % 97) + 1 for s in range(8)] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)  # type: ignore[no-any-return]

    async def aembed(self, texts: list[str]) -> Any:
        return self.embed(texts)


def test_vector_cache_embeds_once_and_serves_smaller_sizes_from_a_larger_run(tmp_path: Path) -> None:
    items = generate(300, seed=5)
    model = CountingEmbedding()
    first = corpus_vectors(items, 5, model, tmp_path)
    assert model.calls == 300
    again = corpus_vectors(items, 5, model, tmp_path)
    smaller = corpus_vectors(items[:120], 5, model, tmp_path)
    assert model.calls == 300  # both read from the cache
    assert np.array_equal(again, first) and np.array_equal(smaller, first[:120])
    assert np.array_equal(first, model.embed([it.fact for it in items]))
    other_seed = corpus_vectors(generate(50, seed=6), 6, model, tmp_path)
    assert model.calls == 650 and other_seed.shape == (50, 8)  # 300 + the check above + 50


def test_vector_cache_resumes_an_interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kb_mcp.bench.vector_cache as cache

    monkeypatch.setattr(cache, "CHUNK", 100)
    items = generate(350, seed=5)
    model = CountingEmbedding()
    real = model.embed

    def dies_at_the_third_chunk(texts: list[str], *, alone: bool = False) -> Vectors:
        if model.calls >= 200:
            raise KeyboardInterrupt
        return real(texts)

    object.__setattr__(model, "embed", dies_at_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        corpus_vectors(items, 5, model, tmp_path)
    object.__setattr__(model, "embed", real)
    done = corpus_vectors(items, 5, model, tmp_path)
    assert model.calls == 350  # 200 before the interruption, the remaining 150 after
    assert np.array_equal(done, real([it.fact for it in items]))


def test_the_scale_table_shows_a_dash_for_an_ef_runtime_an_older_run_did_not_measure() -> None:
    from kb_mcp.bench.report import scale_markdown

    step = {"facts": 100, "recall": {"by_ef_runtime": [{"ef_runtime": 10, "recall_at_10": 0.9,
                                                        "ft_search_ms": {"p50": 0.2}}]}}
    report = {"kb_mcp": "0", "date": "d", "machine": {"cpus": 2},
              "scale": {"hnsw": {"m": 32, "ef_construction": 200, "ef_runtime": 150}, "steps": [step]}}
    table = scale_markdown(report)
    assert "| raw KNN recall@10 · FT.SEARCH p50, EF_RUNTIME 10 | 0.9 · 0.2 ms |" in table
    assert "| raw KNN recall@10 · FT.SEARCH p50, EF_RUNTIME 800 | - |" in table
