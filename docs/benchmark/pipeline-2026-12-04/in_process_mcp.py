import asyncio, os, sys, time, json
sys.path.insert(0, "/work/main")
os.environ.update(KB_REDIS_URL="redis://127.0.0.1:6400/0", KB_NAMESPACE="pipeab", KB_LOG_LEVEL="WARNING", KB_QUERY_CACHE_SIZE="100000")
from kb_mcp.config import Settings
from tests.support.mcp import in_process
async def main():
    import gc
    async with in_process(Settings()) as (c, holder):
        if os.environ.get("GCOFF"): gc.disable()
        q = "who leads the platform team"
        for m in ("hybrid", "vector"):
            r = await c.call_tool("semantic_search", {"query": q, "mode": m})
            print(m, len(json.dumps(r.structured_content)), [h["fact_id"][:8] for h in r.structured_content["results"]])
        for rep in range(2):
            for m in ("hybrid", "vector"):
                ts = []
                for _ in range(300):
                    await asyncio.sleep(0.002)
                    t = time.perf_counter(); await c.call_tool("semantic_search", {"query": q, "mode": m}); ts.append(time.perf_counter() - t)
                ts.sort(); print(f"{m}: p50 {1e3*ts[150]:.3f} p95 {1e3*ts[285]:.3f}")
asyncio.run(main())
