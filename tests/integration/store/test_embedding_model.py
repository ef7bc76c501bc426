"""The model that made a namespace's vectors is recorded with it: a server with another model is refused with what to
do, `kb-mcp reindex --re-embed` moves a namespace to another model (same or another dimension), facts changed while it
runs keep what their own write gave them, and an import embeds again what another model made."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from llama_index.core.bridge.pydantic import PrivateAttr
from starlette.requests import Request
from starlette.responses import JSONResponse

from kb_mcp.config import Settings
from kb_mcp.embeddings.base import KbEmbedding, Vectors
from kb_mcp.errors import StartupError
from kb_mcp.store import Backend, KnowledgeStore
from kb_mcp.store import index as index_module
from tests.support.mcp import KB_MCP, embedding_endpoint, in_process, kb_env, text
from tests.support.redis import free_port

pytestmark = pytest.mark.anyio
FACTS = {
    "ledger": "The ledger service is restarted with systemctl restart ledger.",
    "oncall": "On-call duty rotates every Monday at ten in the morning.",
    "parrot": "Kasia keeps two green parrots in her kitchen.",
    "wifi": "The office wifi password is printed under the coffee machine.",
}
QUESTIONS = {"How do I restart the ledger?": "ledger", "When does on-call change hands?": "oncall",
             "What pets does Kasia have?": "parrot", "Where can I find the wifi password?": "wifi"}


class Mapped(KbEmbedding):
    """Another model: the real one's vectors through a fixed random linear map (orthogonal when the dimension stays:
    same rankings among its own vectors, unrelated to the real model's), unit length."""

    _inner: KbEmbedding = PrivateAttr()
    _map: Any = PrivateAttr()

    def __init__(self, inner: KbEmbedding, model_name: str, dim: int | None = None) -> None:
        super().__init__(model_name=model_name, dim=dim or inner.dim)
        self._inner = inner
        basis, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((inner.dim, inner.dim)))
        self._map = basis[: self.dim].astype(np.float32)

    async def aembed(self, texts: list[str]) -> Vectors:
        mapped = (await self._inner.aembed(texts)) @ self._map.T
        unit: Vectors = (mapped / np.linalg.norm(mapped, axis=1, keepdims=True)).astype(np.float32)
        return unit


async def top1(store: KnowledgeStore, question: str) -> str:
    return (await store.semantic_search(question, top_k=1, mode="vector"))[0].fact_id


async def test_a_server_with_another_model_is_refused_with_what_to_do(store: KnowledgeStore, settings: Settings,
                                                                      embedding: Any) -> None:
    await store.store_fact("written by MiniLM", fact_id="m")
    with pytest.raises(StartupError) as refused:
        async with KnowledgeStore.open(settings, embedding=Mapped(embedding, "other-model")):
            pass
    said = str(refused.value)
    assert f"holds vectors of the embedding model {embedding.model_name!r}" in said and "'other-model'" in said
    assert "kb-mcp reindex --re-embed" in said and "KB_NAMESPACE" in said
    async with KnowledgeStore.open(settings, embedding=embedding) as same:  # the same model is still welcome
        assert (await same.get_fact("m")).content == "written by MiniLM"


async def test_re_embed_through_the_cli_moves_a_namespace_to_another_model(store: KnowledgeStore, settings: Settings,
                                                                           embedding: Any) -> None:
    await store.store_many([{"content": c, "fact_id": i} for i, c in FACTS.items()])
    other = Mapped(embedding, "minilm-mapped")

    async def serve(request: Request) -> JSONResponse:  # an OpenAI-compatible endpoint for the other model
        texts = (await request.json())["input"]
        rows = (await other.aembed(texts)).tolist()
        return JSONResponse({"data": [{"index": i, "embedding": row} for i, row in enumerate(rows)]})

    async with embedding_endpoint(serve) as url:
        env = {**os.environ, **kb_env(settings), "KB_EMBEDDING_PROVIDER": "openai", "KB_EMBEDDING_URL": url,
               "KB_EMBEDDING_MODEL": "minilm-mapped"}

        def kb_mcp(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([KB_MCP, *args], env=env, capture_output=True, text=True, timeout=120, input="")

        refused = await asyncio.to_thread(kb_mcp, "doctor")
        assert refused.returncode == 1 and "holds vectors of the embedding model" in refused.stdout, refused.stdout
        for serve in (["serve"], ["serve", "--transport", "http", "--port", str(free_port())]):
            said = await asyncio.to_thread(kb_mcp, *serve)  # one sentence, no traceback around it
            assert said.returncode == 1 and said.stderr.strip().splitlines()[-1].startswith(
                f"kb-mcp: namespace {settings.namespace!r} holds vectors of the embedding model"), said.stderr
            assert "Traceback" not in said.stderr, said.stderr
        done = await asyncio.to_thread(kb_mcp, "reindex", "--re-embed")
        assert done.returncode == 0, done.stderr
        assert "4 fact(s) embedded again with minilm-mapped (384-d)" in done.stderr, done.stderr
        doctor = await asyncio.to_thread(kb_mcp, "doctor")
        assert doctor.returncode == 0 and "vectors of minilm-mapped" in doctor.stdout, doctor.stdout
    async with KnowledgeStore.open(settings, embedding=Mapped(embedding, "minilm-mapped")) as moved:
        assert {q: await top1(moved, q) for q in QUESTIONS} == QUESTIONS
        assert (await moved.semantic_search("What pets does Kasia have?"))[0].fact_id == "parrot"  # hybrid too
    with pytest.raises(StartupError, match="'minilm-mapped'"):  # and now MiniLM is the other model
        async with KnowledgeStore.open(settings, embedding=embedding):
            pass
    await store.drop_namespace()


async def test_re_embed_to_another_dimension_builds_the_index_again(store: KnowledgeStore, settings: Settings,
                                                                    embedding: Any) -> None:
    await store.store_many([{"content": c, "fact_id": i} for i, c in FACTS.items()])
    smaller = Mapped(embedding, "minilm-128", dim=128)
    async with Backend.open(settings, embedding=smaller) as backend:
        report = await backend.store(settings.namespace).re_embed()
    assert (report.facts, report.skipped, report.model, report.dim) == (4, 0, "minilm-128", 128)
    async with KnowledgeStore.open(settings, embedding=smaller) as moved:
        stats = await moved.stats()
        assert stats.dimensions == 128 and stats.facts == 4 and stats.embedding == "minilm-128"
        assert {q: await top1(moved, q) for q in QUESTIONS} == QUESTIONS
        await moved.drop_namespace()


async def test_a_server_left_on_the_old_model_is_refused_once_the_namespace_moved(
        store: KnowledgeStore, settings: Settings, embedding: Any, raw_redis: aioredis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Writes are refused at once (the write script checks the record); searches once the server asks again
    # (once a minute; here at every call).
    monkeypatch.setattr(index_module, "MODEL_RECHECK_S", 0.0)
    await store.store_fact("Stored before the move.", fact_id="before")
    async with in_process(settings, embedding) as (client, _):  # an agent's server, still on MiniLM
        assert not (await client.call_tool("store_fact", {"content": "Still MiniLM.", "fact_id": "ok"})).is_error
        async with Backend.open(settings, embedding=Mapped(embedding, "minilm-mapped")) as backend:
            assert (await backend.store(settings.namespace).re_embed()).facts == 2
        for tool, args in (("store_fact", {"content": "Too late.", "fact_id": "late"}),
                           ("store_facts", {"facts": [{"content": "Too late as well."}]}),
                           ("semantic_search", {"query": "What was stored before the move?"})):
            refused = await client.call_tool(tool, args)
            assert refused.is_error and "holds vectors of the embedding model 'minilm-mapped'" in text(refused), (
                tool, text(refused))
    assert await raw_redis.exists(store.key("before"), store.key("ok")) == 2
    assert not await raw_redis.exists(store.key("late"))  # nothing of the old model slipped in


class Meddling(Mapped):
    """The other model; while it embeds a batch, the next of `meddles` are called, one per text of the batch (however
    SCAN happens to split the namespace into batches)."""

    _meddles: list[Any] = PrivateAttr(default_factory=list)

    def meddle_with(self, meddles: list[Any]) -> None:
        self._meddles = list(meddles)

    async def aembed(self, texts: list[str]) -> Vectors:
        for first_texts in texts[:len(self._meddles)]:
            await self._meddles.pop(0)(first_texts)
        return await super().aembed(texts)


async def test_facts_changed_during_a_re_embed_keep_what_their_own_write_gave_them(
        store: KnowledgeStore, settings: Settings, embedding: Any, raw_redis: aioredis.Redis) -> None:
    await store.store_many([{"content": c, "fact_id": i} for i, c in FACTS.items()])
    meddling = Meddling(embedding, "minilm-mapped")
    by_content = {c: i for i, c in FACTS.items()}
    changed: dict[str, str] = {}

    async def delete(text: str) -> None:  # a fact read for this batch: deleted before its new vector is written
        changed["gone"] = by_content[text]
        await store.delete_fact(changed["gone"])

    async def rewrite(text: str) -> None:  # rewritten (with a vector of its own) before its new vector is written
        changed["rewritten"] = by_content[text]  # by a server on the new model: one on the old is refused now
        await moving[0].store_fact("Rewritten while the model ran.", fact_id=changed["rewritten"])

    meddling.meddle_with([delete, rewrite])
    moving: list[KnowledgeStore] = []
    async with Backend.open(settings, embedding=meddling) as backend:
        moving.append(backend.store(settings.namespace))
        report = await moving[0].re_embed()
    assert (report.facts, report.skipped) == (2, 2)
    assert not await raw_redis.exists(store.key(changed["gone"]))  # not brought back as a half fact
    kept = np.frombuffer(await raw_redis.hget(store.key(changed["rewritten"]), "vector"), dtype=np.float32)
    # the rewrite's own vector, not the one made from the content read before it
    assert np.allclose(kept, (await meddling.aembed(["Rewritten while the model ran."]))[0], atol=1e-6)
    untouched = next(i for i in FACTS if i not in changed.values())
    moved = np.frombuffer(await raw_redis.hget(store.key(untouched), "vector"), dtype=np.float32)
    assert np.allclose(moved, (await meddling.aembed([FACTS[untouched]]))[0], atol=1e-6)


async def test_an_import_embeds_again_what_another_model_made(store: KnowledgeStore, settings: Settings,
                                                             make_settings: Any, embedding: Any,
                                                             tmp_path: Path) -> None:
    await store.store_many([{"content": c, "fact_id": i} for i, c in FACTS.items()])
    export = tmp_path / "kb.jsonl"
    await store.export(export)
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert {line["embedding"] for line in lines} == {embedding.model_name}
    other = Mapped(embedding, "minilm-mapped")
    async with KnowledgeStore.open(make_settings(namespace=settings.namespace + "x"), embedding=other) as copy:
        try:
            assert await copy.import_(export) == 4
            # MiniLM's vectors against the other model's queries would rank by noise
            assert {q: await top1(copy, q) for q in QUESTIONS} == QUESTIONS
        finally:
            await copy.drop_namespace()
