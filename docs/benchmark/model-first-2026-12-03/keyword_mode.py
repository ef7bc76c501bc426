"""keyword mode, in-process, interleaved: its one full-text search (top_k hits) sent beside the model vs after it. Same setup as interleaved.py."""
import asyncio, time, os
from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search import searcher as S
async def main():
    os.environ.update(KB_REDIS_URL="redis://127.0.0.1:6400/0", KB_NAMESPACE="peerkb", KB_QUERY_CACHE_SIZE="0", KB_LOG_LEVEL="WARNING")
    async with KnowledgeStore.open(Settings()) as store:
        sr = store._searcher; ctx = sr._ctx; name = store.index_name
        qs = [it.query for it in generate(2000, seed=7)[:400]]
        async def over(q):
            cmd = S.text_command(name, S.query_stems(q), 5, [])
            asked, rows = await asyncio.gather(ctx.embed_query(q), sr._keyword_hits(cmd, []))
            S._similarities([c for c, _ in rows], asked.vector); return rows
        async def serial(q):
            cmd = S.text_command(name, S.query_stems(q), 5, [])
            asked = await ctx.embed_query(q); rows = await sr._keyword_hits(cmd, [])
            S._similarities([c for c, _ in rows], asked.vector); return rows
        fns = {"overlapped": over, "serial": serial}
        for q in qs[:20]: await over(q)
        res = {k: [] for k in fns}; cpu = {k: 0.0 for k in fns}
        for i, q in enumerate(qs):
            for k in (list(fns) if i % 2 else list(fns)[::-1]):
                c = time.process_time(); w = time.perf_counter(); await fns[k](q)
                res[k].append(time.perf_counter() - w); cpu[k] += time.process_time() - c
        for k, v in res.items():
            v.sort(); print(f"{k:10s} p50 {1000*v[len(v)//2]:.2f} p95 {1000*v[int(.95*len(v))]:.2f} cpu {1000*cpu[k]/len(qs):.2f}")
asyncio.run(main())
