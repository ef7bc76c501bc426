"""In-process A/B of hybrid search: its two FT.SEARCH on two connections at once (kb-mcp before the pipeline) against
one pipeline (main). Interleaved per question; argv[1] = KB_QUERY_CACHE_SIZE (0: the model in every search; large:
vectors cached, so only the Redis side and fusion are timed); one client, then 8 in flight. Needs a Redis on 6400
(the namespace pipeab is filled with the 2,000 bench facts on first use). CPU = this process (model threads included)."""
import asyncio, time, os, sys
from contextlib import suppress
os.environ.update(KB_REDIS_URL="redis://127.0.0.1:6400/0", KB_NAMESPACE="pipeab", KB_LOG_LEVEL="WARNING",
                  KB_QUERY_CACHE_SIZE=sys.argv[1] if len(sys.argv) > 1 else "0")
from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search import searcher as S
pipe = S.Searcher._hybrid
async def concurrent(self, query, ask, filters, min_score):
    settings = self._ctx.settings; top_k = ask.top_k; depth = max(top_k, settings.hybrid_candidates); nearest = ask.depth
    stems = S.query_stems(query)
    text = S.text_command(self._index.name, stems, depth, filters, held=True, also=ask.also)
    asked = await self._ctx.embed_query(query)
    words = asyncio.ensure_future(self._keyword_hits(text, stems))
    knn = await self._one_search("vector search", S.knn_command(self._index.name, asked.vector, nearest, filters, whole=True, also=ask.also))
    by_words = await words
    by_vector = S.raw_vector_hits(self._ctx, knn)
    S._similarities([c for c, _ in by_words], asked.vector)
    fields = S._by_id(by_words) | S._by_id(by_vector)
    cands = S.merge([c for c, _ in by_vector], [c for c, _ in by_words])
    score = S.linear(cands, settings.hybrid_vector_weight, len(by_words) == depth, settings.hybrid_full_bm25)
    return S._hits(ask.rank(S.fuse(cands, score)), fields, top_k, None)
async def main():
    corpus = generate(2000, seed=7)
    async with KnowledgeStore.open(Settings()) as store:
        if (await store.stats()).facts < 2000:
            for j in range(0, 2000, 100): await store.store_facts([{"content": it.fact} for it in corpus[j:j+100]])
        qs = [it.query for it in corpus[:400]]
        for q in (qs if os.environ["KB_QUERY_CACHE_SIZE"] != "0" else qs[:20]): await store.semantic_search(q, top_k=5)
        fns = {"concurrent": concurrent, "pipeline": pipe}
        res = {k: [] for k in fns}; cpu = {k: 0.0 for k in res}; same = 0
        for i, q in enumerate(qs):
            order = list(fns) if i % 2 == 0 else list(fns)[::-1]
            got = {}
            for k in order:
                S.Searcher._hybrid = fns[k]
                c = time.process_time(); w = time.perf_counter()
                got[k] = await store.semantic_search(q, top_k=5)
                res[k].append(time.perf_counter() - w); cpu[k] += time.process_time() - c
            same += got["concurrent"] == got["pipeline"]
        print("same results", same, "of", len(qs))
        for k, v in res.items():
            v.sort(); print(f"1 client  {k:10s} p50 {1000*v[len(v)//2]:.3f} p95 {1000*v[int(.95*len(v))]:.3f} cpu/search {1000*cpu[k]/len(qs):.3f}")
        for rep in range(2):
            for k in (fns if rep == 0 else list(fns)[::-1]):
                S.Searcher._hybrid = fns[k]
                todo = iter(qs * 2)
                async def worker():
                    for q in todo: await store.semantic_search(q, top_k=5)
                c = time.process_time(); w = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(8)))
                n = 2 * len(qs); wall = time.perf_counter() - w
                print(f"8 in flight {k:10s} {n/wall:.1f}/s cpu/search {1000*(time.process_time()-c)/n:.3f}")
asyncio.run(main())
