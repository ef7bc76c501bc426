"""Does the similar-facts KNN (k=4, threshold 0.85) need the index's EF_RUNTIME? Recall of the exact >=0.85 set at
100k facts (the bench's synthetic corpus, cached vectors, default HNSW build) per EF_RUNTIME, and FT.SEARCH time.
Run: KB_REDIS_URL=redis://... .venv/bin/python docs/benchmark/similar-ef-2026-12-03/similar_ef.py 100000
(needs the corpus vectors `kb-mcp bench --scale` caches; leaves the namespace simef in Redis)."""
import asyncio, os, random, sys, tempfile, time
from pathlib import Path
import numpy as np
from kb_mcp.bench.corpus import generate
from kb_mcp.bench.scale import grow, write_export
from kb_mcp.bench.vector_cache import corpus_vectors, default_cache
from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from kb_mcp.store.schema import F_VECTOR
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
async def main():
    items = generate(1_000_000, seed=7)[:N]
    s = Settings(redis_url=os.environ["KB_REDIS_URL"], namespace="simef")
    async with KnowledgeStore.open(s) as store:
        vectors = corpus_vectors(items, 7, store.embedding, default_cache())
        if await store.count() != N:
            await store.drop_namespace(); await store.ensure_index()
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "x.jsonl"; write_export(path, items, vectors, 0, N, store.embedding.model_name)
                print(await grow(store, path, N))
        rng = random.Random(5)
        picks = rng.sample(range(N), 400)
        texts = [f"scale batch 0.{k}: {items[i].fact}" for k, i in enumerate(picks[:200])]
        texts += [f"Note to self: {items[i].fact.rstrip('.')}, as I was told." for i in picks[200:]]
        probes = (await store.embedding.aembed(texts)).astype(np.float32)
        sims = probes @ vectors.T
        exact = [set(np.nonzero(row >= 0.85)[0][np.argsort(-row[row >= 0.85])][:4].tolist()) for row in sims]
        print("probes", len(texts), "with a fact >= 0.85:", sum(bool(e) for e in exact),
              "facts >= 0.85 (top 4):", sum(len(e) for e in exact))
        r = store.manager.client
        for ef in (4, 10, 20, 50, 150):
            found = hit = 0; ts = []
            for e, p in zip(exact, probes):
                q = f"*=>[KNN 4 @{F_VECTOR} $v EF_RUNTIME {ef} AS d]"
                t = time.perf_counter()
                raw = await r.execute_command("FT.SEARCH", store.index_name, q, "PARAMS", 2, "v", p.tobytes(),
                                              "SORTBY", "d", "ASC", "RETURN", 1, "d", "LIMIT", 0, 4, "DIALECT", 2)
                ts.append(time.perf_counter() - t)
                got = {int(raw[j].decode().rsplit(":", 1)[1][1:]) for j in range(1, len(raw), 2)
                       if 1 - float(raw[j + 1][1]) >= 0.85}
                found += len(e & got); hit += len(e)
            ts.sort()
            print(f"EF_RUNTIME {ef}: recall of the >=0.85 set {found}/{hit} = {found / max(hit, 1):.4f}; "
                  f"FT.SEARCH p50 {ts[len(ts)//2]*1000:.3f} ms p95 {ts[int(len(ts)*.95)]*1000:.3f} ms")
asyncio.run(main())
