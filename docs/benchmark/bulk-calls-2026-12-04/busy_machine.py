"""store_many of 1,200 SciFact abstracts while two busy loops share the 2 cores (a slow machine, made on purpose):
the longest embedding call and whether the 10 s deadline held, with calls of 6,666 tokens (now) and 24,576 (before)."""
import asyncio, subprocess, sys, time, uuid
from pathlib import Path
import kb_mcp.store.context as context
from kb_mcp.bench import beir
from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.errors import OperationTimeout
from kb_mcp.store import KnowledgeStore

docs = list(beir.read_beir(Path(__file__).resolve().parents[4] / "shared" / "data" / "beir-scifact", "test", max_queries=0, max_docs=1200).documents.values())[:1200]
emb = OnnxMiniLMEmbedding()
times: list[float] = []
plain = emb.aembed

async def timed(texts: list[str]):
    t = time.perf_counter()
    try:
        return await plain(texts)
    finally:
        times.append(time.perf_counter() - t)

object.__setattr__(emb, "aembed", timed)

async def one(tokens: int) -> None:
    context.SLOWEST_TOKENS_PER_S = tokens * 3 / 10
    times.clear()
    s = Settings(redis_url=sys.argv[1], namespace="m" + uuid.uuid4().hex[:8], query_cache_size=0)
    async with KnowledgeStore.open(s, embedding=emb) as kb:
        t = time.perf_counter()
        try:
            await kb.store_many([{"content": d} for d in docs])
            outcome = f"stored, {len(docs) / (time.perf_counter() - t):.1f} abstracts/s"
        except OperationTimeout as e:
            outcome = f"FAILED after {time.perf_counter() - t:.1f} s: {e}"
        finally:
            await kb.drop_namespace()
    print(f"{tokens} tokens per call: {len(times)} calls, longest {max(times):.1f} s; {outcome}", flush=True)

async def main() -> None:
    burners = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(2)]
    try:
        for tokens in (6666, 24576, 6666, 24576):
            await one(tokens)
    finally:
        for b in burners:
            b.kill()

asyncio.run(main())
