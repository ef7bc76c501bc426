"""The offline embedding: real model, real vectors; batching and coalescing must not change a single vector."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kb_mcp.bench.corpus import generate
from kb_mcp.embeddings.base import Vectors
from kb_mcp.embeddings.coalescer import EmbeddingCoalescer
from kb_mcp.embeddings.onnx import ONNX_BATCH_TOKENS, OnnxMiniLMEmbedding, token_batches

pytestmark = pytest.mark.anyio


def test_vectors_are_unit_length_and_batch_independent(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.fact for item in generate(70)] + ["short", "a much longer sentence " * 40]
    batch = embedding.embed(texts)
    assert batch.shape == (72, 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.stack([embedding.embed([t])[0] for t in texts])
    assert np.array_equal(batch, single)  # bit for bit: a search must not depend on what was embedded beside it
    assert len({row.tobytes() for row in batch}) == 72


def test_long_texts_go_in_batches_within_the_token_budget(embedding: OnnxMiniLMEmbedding) -> None:
    lengths = [5] * 100 + [256] * 40
    batches = token_batches(list(range(len(lengths))), lengths)
    assert sorted(i for b in batches for i in b) == list(range(140))
    assert all(len(b) <= 64 and (len(b) == 1 or len(b) * lengths[b[-1]] <= ONNX_BATCH_TOKENS) for b in batches)
    assert [len(b) for b in batches if lengths[b[0]] == 256] == [16, 16, 8]
    assert token_batches([0], [10_000]) == [[0]]  # a text alone is always a batch
    long = ["word " * n + "end." for n in (40, 120, 250, 400, 900)] * 5
    assert np.array_equal(embedding.embed(long), np.stack([embedding.embed([t])[0] for t in long]))


def test_meaning_is_captured(embedding: OnnxMiniLMEmbedding) -> None:
    cat, feline, stocks = embedding.embed(["The cat sits on the mat", "A feline rests on a rug",
                                           "Stock markets fell sharply today"])
    assert float(cat @ feline) > 0.4 > float(cat @ stocks)


async def test_concurrent_requests_are_coalesced_and_exact(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.query for item in generate(120)]
    alone: list[bool] = []

    def counting(batch: list[str], solo: bool) -> Vectors:
        alone.append(solo)
        return embedding.embed(batch, alone=solo)

    with ThreadPoolExecutor(max_workers=1) as executor:
        coalescer = EmbeddingCoalescer(counting, executor, max_batch=64)
        results = await asyncio.gather(*(coalescer.embed([t]) for t in texts))
        assert len(alone) <= 4, len(alone)  # 120 concurrent requests -> a few batched ONNX runs, not 120
        assert not any(alone)  # batches run on the session that never spin-waits
        single = await coalescer.embed([texts[0]])  # one query, nothing waiting: the spinning session
    assert alone[-1] is True
    expected = embedding.embed(texts)
    assert np.abs(np.concatenate(results) - expected).max() < 1e-4
    assert np.abs(single[0] - expected[0]).max() < 1e-4  # both sessions give the same vector


async def test_a_long_list_goes_a_run_at_a_time_and_a_query_need_not_wait_for_all_of_it(
        embedding: OnnxMiniLMEmbedding) -> None:
    long = [f"Passage {i}: " + "several words of a long abstract about cells and proteins " * (8 + i % 9)
            for i in range(120)]
    assert len(token_batches(list(range(120)), [embedding.cost(t) for t in long])) > 4  # several ONNX runs
    listing = asyncio.create_task(embedding.aembed(long))
    await asyncio.sleep(0.05)  # the first run is under way
    query = await embedding.aembed(["what do proteins do in a cell?"])
    assert not listing.done()  # answered between two runs of the list, not after the whole of it
    vectors = await listing
    assert np.array_equal(vectors, embedding.embed(long))  # the runs' vectors put back in the list's order
    assert np.array_equal(query[0], embedding.embed(["what do proteins do in a cell?"])[0])


async def test_a_caller_that_gives_up_does_not_hurt_the_others(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.fact for item in generate(40)]
    tasks = [asyncio.create_task(embedding.aembed([t])) for t in texts]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(isinstance(v, np.ndarray) and v.shape == (1, 384) for i, v in enumerate(done) if i != 3)


async def test_one_session_gives_the_same_vectors_alone_batched_and_concurrently(
        embedding: OnnxMiniLMEmbedding) -> None:
    """KB_EMBEDDING_SOLO_SESSION=false: one (spinning) session serves lone queries and batches alike."""
    single = OnnxMiniLMEmbedding(solo_session=False)
    try:
        texts = ["Ada is vegetarian.", "The launch window opens in May.", "Parking permits renew in January."]
        expected = embedding.embed(texts)
        assert np.allclose(single.embed(texts), expected, atol=1e-6)
        assert np.allclose(single.embed(texts[:1], alone=True), expected[:1], atol=1e-6)
        together = await asyncio.gather(*(single.aembed([t]) for t in texts))
        assert np.allclose(np.vstack(together), expected, atol=1e-6)
    finally:
        await single.aclose()
