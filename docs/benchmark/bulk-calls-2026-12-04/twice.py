"""Every SciFact test question asked twice per mode (top 50, no query cache) against the kept eval-beir namespace:
the same question on the same data must get the same ranked list, scores included."""
import asyncio, sys
from pathlib import Path
from kb_mcp.bench import beir
from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

async def main() -> None:
    bench = beir.read_beir(Path(__file__).resolve().parents[4] / "shared" / "data" / "beir-scifact", "test")
    emb = OnnxMiniLMEmbedding()
    s = Settings(redis_url=sys.argv[1], namespace="eval-beir", query_cache_size=0)
    async with KnowledgeStore.open(s, embedding=emb) as kb:
        print("facts", (await kb.stats()).facts)
        for mode in ("hybrid", "vector", "keyword"):
            runs = []
            for _ in range(2):
                runs.append({qid: [(h.fact_id, h.score) for h in await kb.semantic_search(q, top_k=50, mode=mode)]
                             for qid, q in bench.queries.items()})
            diff = [q for q in runs[0] if runs[0][q] != runs[1][q]]
            print(mode, len(runs[0]), "questions,", len(diff), "answered differently", diff[:5], flush=True)

asyncio.run(main())
