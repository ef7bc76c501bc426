import asyncio, random, time, statistics
import redis.asyncio as aioredis
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search.terms import query_stems
from kb_mcp.store.search.commands import text_command, knn_command
items = generate(1_000_000, seed=7)
rng = random.Random(11)
qs = [items[i].query for i in rng.sample(range(1_000_000), 60)]
async def main():
    r = aioredis.Redis(port=int(__import__("os").environ.get("PORT", "6379")))
    idx = "{bench-scale}:idx"
    rows = []
    for q in qs:
        stems = query_stems(q)
        cmd = text_command(idx, stems, 50, [])
        t = time.perf_counter(); raw = await r.execute_command(*cmd); ms = (time.perf_counter()-t)*1000
        per = []
        for s in stems:
            n = (await r.execute_command("FT.SEARCH", idx, f"@stems:({s})", "VERBATIM", "LIMIT", 0, 0))[0]
            per.append((s, n))
        rows.append((ms, raw[0], q, per))
    rows.sort()
    for ms, total, q, per in rows[::6] + rows[-3:]:
        print(f"{ms:7.1f} ms matched {total:7d}  {q!r} {per}")
    print("keyword FT.SEARCH p50", statistics.median([x[0] for x in rows]), "p95", sorted(x[0] for x in rows)[int(.95*len(rows))])
asyncio.run(main())
