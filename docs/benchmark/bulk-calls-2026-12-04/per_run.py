"""A long list sent to the model one ONNX run at a time (now) vs as one executor call (before): store_many rate of
800 SciFact abstracts and the latency of a search every 100 ms beside it, alternating, same process."""
import asyncio, statistics, sys, time, uuid
from pathlib import Path
from kb_mcp.bench import beir
from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

SCIFACT = Path(__file__).resolve().parents[4] / "shared" / "data" / "beir-scifact"
bench = beir.read_beir(SCIFACT, "test", max_queries=100, max_docs=800)
docs = list(bench.documents.values())[:800]
queries = list(bench.queries.values())
emb = OnnxMiniLMEmbedding()
piecewise = emb.aembed

async def whole(texts: list[str]):
    return await emb._coalescer.embed(texts)

async def one(label: str, searching: bool) -> None:
    object.__setattr__(emb, "aembed", piecewise if label == "per-run" else whole)
    s = Settings(redis_url=sys.argv[1], namespace="m" + uuid.uuid4().hex[:8], query_cache_size=0)
    async with KnowledgeStore.open(s, embedding=emb) as kb:
        try:
            await kb.store_fact("a first fact so that the index exists")
            t0 = time.perf_counter()
            loading = asyncio.ensure_future(kb.store_many([{"content": d} for d in docs]))
            took: list[float] = []
            i = 0
            while searching and not loading.done():
                t = time.perf_counter()
                await kb.semantic_search(queries[i % len(queries)], top_k=5)
                took.append((time.perf_counter() - t) * 1000)
                i += 1
                await asyncio.sleep(0.1)
            await loading
            rate = len(docs) / (time.perf_counter() - t0)
            if searching:
                took.sort()
                print(f"{label}: {rate:.1f} abstracts/s with {len(took)} searches beside it, search p50 "
                      f"{statistics.median(took):.0f} ms, max {took[-1]:.0f} ms", flush=True)
            else:
                print(f"{label}: {rate:.1f} abstracts/s alone", flush=True)
        finally:
            await kb.drop_namespace()

async def main() -> None:
    emb.embed(docs[:16])
    for searching in (False, True):
        for rnd in range(2):
            for label in (("per-run", "whole") if rnd == 0 else ("whole", "per-run")):
                await one(label, searching)

asyncio.run(main())
