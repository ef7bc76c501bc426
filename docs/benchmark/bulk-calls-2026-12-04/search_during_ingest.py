"""Search latency while store_many loads SciFact abstracts in the same process: a search's query waits behind the
embedding call in progress, so its size sets the wait. Calls of 6,666 tokens (now) vs 24,576 (before), alternating."""
import asyncio, statistics, sys, time, uuid
from pathlib import Path
import kb_mcp.store.context as context
from kb_mcp.bench import beir
from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

SCIFACT = Path(__file__).resolve().parents[4] / "shared" / "data" / "beir-scifact"
bench = beir.read_beir(SCIFACT, "test", max_queries=100, max_docs=800)
docs = list(bench.documents.values())[:800]
queries = list(bench.queries.values())
emb = OnnxMiniLMEmbedding()

async def one(tokens: int) -> None:
    context.SLOWEST_TOKENS_PER_S = tokens * 3 / 10
    s = Settings(redis_url=sys.argv[1], namespace="m" + uuid.uuid4().hex[:8], query_cache_size=0)
    async with KnowledgeStore.open(s, embedding=emb) as kb:
        try:
            await kb.store_fact("a first fact so that the index exists")
            loading = asyncio.ensure_future(kb.store_many([{"content": d} for d in docs]))
            took: list[float] = []
            i = 0
            while not loading.done():
                t = time.perf_counter()
                await kb.semantic_search(queries[i % len(queries)], top_k=5)
                took.append((time.perf_counter() - t) * 1000)
                i += 1
                await asyncio.sleep(0.1)
            await loading
            took.sort()
            q = statistics.quantiles(took, n=20)
            print(f"{tokens} tokens per call: {len(took)} searches during the load, p50 {statistics.median(took):.0f} ms,"
                  f" p95 {q[18]:.0f} ms, max {took[-1]:.0f} ms", flush=True)
        finally:
            await kb.drop_namespace()

async def main() -> None:
    emb.embed(docs[:16])
    for tokens in (6666, 24576, 6666, 24576):
        await one(tokens)

asyncio.run(main())
