import asyncio, os, time
os.environ.update(KB_REDIS_URL="redis://127.0.0.1:6400/0", KB_NAMESPACE="pipeab", KB_LOG_LEVEL="WARNING", KB_QUERY_CACHE_SIZE="100000")
from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
async def main():
    async with KnowledgeStore.open(Settings()) as store:
        q = "who leads the platform team"
        for m in ("hybrid", "vector"): await store.semantic_search(q, mode=m)
        for rep in range(2):
            for m in ("hybrid", "vector", "keyword"):
                ts = []
                for _ in range(300):
                    await asyncio.sleep(0.002)
                    t = time.perf_counter(); await store.semantic_search(q, mode=m); ts.append(time.perf_counter() - t)
                ts.sort(); print(f"{m}: p50 {1e3*ts[150]:.3f} p95 {1e3*ts[285]:.3f}")
asyncio.run(main())
