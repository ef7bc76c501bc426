"""The offline embedding: real model, real vectors; batching and coalescing must not change a single vector."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from kb_mcp.bench.corpus import generate
from kb_mcp.embeddings import STATES_MAX_TOKENS, Encoded, OnnxMiniLMEmbedding, QueryVector, token_words

pytestmark = pytest.mark.anyio


def test_vectors_are_unit_length_and_batch_independent(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.fact for item in generate(70)] + ["short", "a much longer sentence " * 40]
    batch = embedding.embed(texts)
    assert batch.shape == (72, 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.stack([embedding.embed([t])[0] for t in texts])
    assert np.abs(batch - single).max() < 1e-4
    assert len({row.tobytes() for row in batch}) == 72


def test_meaning_is_captured(embedding: OnnxMiniLMEmbedding) -> None:
    cat, feline, stocks = embedding.embed(["The cat sits on the mat", "A feline rests on a rug",
                                           "Stock markets fell sharply today"])
    assert float(cat @ feline) > 0.4 > float(cat @ stocks)


async def test_concurrent_requests_are_coalesced_and_exact(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.query for item in generate(120)]
    runs = 0
    alone: list[bool] = []
    encode = embedding._coalescer._encode

    def counting(batch: list[str], solo: bool, want: frozenset[int]) -> Encoded:
        nonlocal runs
        runs += 1
        alone.append(solo)
        return encode(batch, solo, want)

    embedding._coalescer._encode = counting
    try:
        results = await asyncio.gather(*(embedding.aembed([t]) for t in texts))
    finally:
        embedding._coalescer._encode = encode
    assert runs <= 4, runs  # 120 concurrent requests -> a few batched ONNX runs, not 120
    assert not any(alone)  # batches run on the session that never spin-waits
    expected = embedding.embed(texts)
    assert np.abs(np.concatenate(results) - expected).max() < 1e-4
    embedding._coalescer._encode = counting
    try:
        single = await embedding.aembed([texts[0]])  # one query, nothing waiting: the spinning session
    finally:
        embedding._coalescer._encode = encode
    assert alone[-1] is True
    assert np.abs(single[0] - expected[0]).max() < 1e-4  # both sessions give the same vector


async def test_a_caller_that_gives_up_does_not_hurt_the_others(embedding: OnnxMiniLMEmbedding) -> None:
    texts = [item.fact for item in generate(40)]
    tasks = [asyncio.create_task(embedding.aembed([t])) for t in texts]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(isinstance(v, np.ndarray) and v.shape == (1, 384) for i, v in enumerate(done) if i != 3)


def test_token_words_name_the_word_of_every_token(embedding: OnnxMiniLMEmbedding) -> None:
    text = "Where does Kasia Silva's cat live?"
    words = token_words(text, embedding._tokenizer.encode(text))
    assert words == ("", "where", "does", "kasia", "kasia", "silva", "'", "s", "cat", "live", "?", "")


async def test_a_query_pooled_again_without_some_words(embedding: OnnxMiniLMEmbedding) -> None:
    asked = await embedding.aembed_query("Where does Kasia Silva live these days?")
    assert asked.tokens is not None
    assert np.abs(asked.vector - embedding.embed(["Where does Kasia Silva live these days?"])[0]).max() < 1e-4
    everything = asked.without({"no such word"})  # pooled again from the kept token states: the same vector
    assert np.abs(everything - asked.vector).max() < 2e-3
    rest = asked.without({"kasia", "silva"})
    assert math.isclose(float(np.linalg.norm(rest)), 1.0, rel_tol=1e-5)
    name = embedding.embed(["Kasia Silva"])[0]
    assert float(rest @ name) < float(asked.vector @ name) - 0.1  # the name's share is gone
    assert asked.without({"where", "does", "kasia", "silva", "live", "these", "days", "?"}) is asked.vector
    assert QueryVector(asked.vector).without({"kasia"}) is asked.vector  # a model without token states
    long = await embedding.aembed_query("word " * (STATES_MAX_TOKENS + 1))
    assert long.tokens is None  # not kept: pooled whole


async def test_coalesced_queries_each_get_their_own_token_states(embedding: OnnxMiniLMEmbedding) -> None:
    queries = [item.query for item in generate(30)]
    facts = [item.fact for item in generate(30, seed=3)]
    mixed = await asyncio.gather(*(call for pair in zip((embedding.aembed_query(q) for q in queries),
                                                        (embedding.aembed([f]) for f in facts), strict=True)
                                   for call in pair))
    asked = [r for r in mixed if isinstance(r, QueryVector)]
    assert len(asked) == len(queries)
    for query, found in zip(queries, asked, strict=True):
        assert found.tokens is not None
        assert found.tokens.words == token_words(query, embedding._tokenizer.encode(query))
        assert np.abs(found.without({"no such word"}) - found.vector).max() < 2e-3
