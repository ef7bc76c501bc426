"""In-process A/B of three orders for a hybrid search, interleaved per question (so the machine's drift hits all):
old = the full text sent before the model and read while it runs (kb-mcp before 688d54f), new = the model first, then
both searches at once (688d54f), deferred = sent first, its hits turned into candidates after the model.
Needs a Redis on 6400 whose namespace `peerkb` holds the 2,000 facts scripts/peers/compare.py stores; prints
p50/p95 wall ms and CPU ms per search (this process: the model's threads included)."""
import asyncio, time, os, sys
from contextlib import suppress
from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search import searcher as S
new = S.Searcher._hybrid
async def old(self, query, ask, filters, min_score):
    settings = self._ctx.settings
    top_k = ask.top_k
    depth = max(top_k, settings.hybrid_candidates)
    nearest = depth if settings.hybrid_fusion == "rrf" else ask.depth
    stems = S.query_stems(query)
    text = S.text_command(self._index.name, stems, depth, filters, held=True, also=ask.also)
    words = asyncio.ensure_future(self._keyword_hits(text, stems))
    try:
        asked = await self._ctx.embed_query(query)
        knn = await self._one_search("vector search", S.knn_command(self._index.name, asked.vector, nearest, filters, whole=True, also=ask.also))
    except BaseException:
        words.cancel()
        with suppress(BaseException):
            await words
        raise
    by_words = await words
    by_vector = S.raw_vector_hits(self._ctx, knn)
    S._similarities([c for c, _ in by_words], asked.vector)
    fields = S._by_id(by_words) | S._by_id(by_vector)
    cands = S.merge([c for c, _ in by_vector], [c for c, _ in by_words])
    score = S.linear(cands, settings.hybrid_vector_weight, len(by_words) == depth, settings.hybrid_full_bm25)
    return S._hits(ask.rank(S.fuse(cands, score)), fields, top_k, None)

async def deferred(self, query, ask, filters, min_score):
    settings = self._ctx.settings; top_k = ask.top_k; depth = max(top_k, settings.hybrid_candidates); nearest = ask.depth
    stems = S.query_stems(query)
    text = S.text_command(self._index.name, stems, depth, filters, held=True, also=ask.also)
    words = asyncio.ensure_future(self._one_search("keyword search", text))
    asked = await self._ctx.embed_query(query)
    knn = await self._one_search("vector search", S.knn_command(self._index.name, asked.vector, nearest, filters, whole=True, also=ask.also))
    by_words = self._keyword_rows(await words, stems)
    by_vector = S.raw_vector_hits(self._ctx, knn)
    S._similarities([c for c, _ in by_words], asked.vector)
    fields = S._by_id(by_words) | S._by_id(by_vector)
    cands = S.merge([c for c, _ in by_vector], [c for c, _ in by_words])
    score = S.linear(cands, settings.hybrid_vector_weight, len(by_words) == depth, settings.hybrid_full_bm25)
    return S._hits(ask.rank(S.fuse(cands, score)), fields, top_k, None)
async def main():
    os.environ.update(KB_REDIS_URL="redis://127.0.0.1:6400/0", KB_NAMESPACE="peerkb", KB_QUERY_CACHE_SIZE="0", KB_LOG_LEVEL="WARNING")
    async with KnowledgeStore.open(Settings()) as store:
        qs = [it.query for it in generate(2000, seed=7)[:400]]
        for q in qs[:20]: await store.semantic_search(q, top_k=5)
        fns = {"old": old, "new": new, "deferred": deferred}
        res = {k: [] for k in fns}; cpu = {k: 0.0 for k in res}
        for i, q in enumerate(qs):
            order = list(fns) if i % 2 == 0 else list(fns)[::-1]
            for k in order:
                S.Searcher._hybrid = fns[k]
                c = time.process_time(); w = time.perf_counter()
                await store.semantic_search(q, top_k=5)
                res[k].append(time.perf_counter() - w); cpu[k] += time.process_time() - c
        for k, v in res.items():
            v.sort(); print(f"{k:9s} p50 {1000*v[len(v)//2]:.2f} p95 {1000*v[int(.95*len(v))]:.2f} cpu {1000*cpu[k]/len(qs):.2f}")
asyncio.run(main())
