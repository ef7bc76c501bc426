"""What leaving common stems out of the keyword side's OR-query would buy and cost (for #25's hybrid p95 at 1M).

Text-only indexes (the stems field exactly as kb-mcp indexes it, no vectors): BEIR SciFact (keyword nDCG@10 on its
train and test splits) and the bench's synthetic corpus at 100k and 1M facts (the full-text FT.SEARCH kb-mcp sends,
its latency and how many facts it matched). Variants of the query for a cut-off share `theta` of the namespace:
  all        every query stem (kb-mcp today)
  drop       stems held by more than theta of the facts left out (all kept when every stem is that common)
  optional   those stems kept as RediSearch optional terms (~): they score, but a fact needs a rarer stem to match
Run: PORT=6411 .venv/bin/python docs/benchmark/scale-2026-12-02/df_cutoff.py ../shared/data/beir-scifact
"""
import asyncio, math, os, random, statistics, sys, time
from pathlib import Path

import redis.asyncio as aioredis

from kb_mcp.bench.beir import ndcg_at, read_beir
from kb_mcp.bench.corpus import generate
from kb_mcp.store.search.querytext import escape
from kb_mcp.store.search.terms import query_stems, stemmed_text

THETAS = (1.0, 0.2, 0.1, 0.05, 0.02)


async def build(r, name, texts):
    try:
        await r.execute_command("FT.DROPINDEX", f"{{{name}}}:idx", "DD")
    except Exception:
        pass
    await r.execute_command("FT.CREATE", f"{{{name}}}:idx", "ON", "HASH", "PREFIX", 1, f"{{{name}}}:f:",
                            "SCHEMA", "stems", "TEXT", "NOSTEM")
    for lo in range(0, len(texts), 5000):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(lo + 5000, len(texts))):
            pipe.hset(f"{{{name}}}:f:{texts[i][0]}", "stems", stemmed_text(texts[i][1]))
        await pipe.execute()
    while True:
        info = await r.execute_command("FT.INFO", f"{{{name}}}:idx")
        d = dict(zip(info[::2], info[1::2]))
        if int(d[b"indexing"]) == 0 and int(d[b"num_docs"]) >= len(texts):
            return int(d[b"num_docs"])
        await asyncio.sleep(0.5)


async def dfs(r, idx, stems):
    pipe = r.pipeline(transaction=False)
    for s in stems:
        pipe.execute_command("FT.SEARCH", idx, f"@stems:({escape(s)})", "VERBATIM", "LIMIT", 0, 0)
    return [row[0] for row in await pipe.execute()]


def query(stems, df, n, theta, variant):
    rare = [s for s, d in zip(stems, df) if d <= theta * n]
    common = [s for s, d in zip(stems, df) if d > theta * n]
    if variant == "all" or not rare or not common:
        return "@stems:(" + " | ".join(map(escape, stems)) + ")"
    q = "@stems:(" + " | ".join(map(escape, rare)) + ")"
    if variant == "optional":
        q = "(" + q + ") " + " ".join(f"~@stems:{escape(s)}" for s in common)
    return q


async def ask(r, idx, q, k):
    raw = await r.execute_command("FT.SEARCH", idx, q, "VERBATIM", "WITHSCORES", "SCORER", "BM25STD",
                                  "RETURN", 1, "stems", "LIMIT", 0, k, "DIALECT", 2)
    rows = [(raw[i].decode().split(":f:", 1)[1], float(raw[i + 1])) for i in range(1, len(raw), 3)]
    return raw[0], [d for d, _ in sorted(rows, key=lambda x: (-x[1], x[0]))]


async def main():
    r = aioredis.Redis(port=int(os.environ.get("PORT", "6379")))
    root = Path(sys.argv[1])
    splits = {s: read_beir(root, s) for s in ("train", "test")}
    docs = list(splits["test"].documents.items())
    n = await build(r, "sf", docs)
    print(f"SciFact: {n} documents; keyword nDCG@10 (top 10 by BM25STD, ties by id)")
    for split, bench in splits.items():
        for variant in ("drop", "optional"):
            cells = []
            for theta in THETAS:
                scores = []
                for qid, text in bench.queries.items():
                    stems = query_stems(text)
                    if not stems:
                        scores.append(0.0); continue
                    df = await dfs(r, "{sf}:idx", stems)
                    _, ranked = await ask(r, "{sf}:idx", query(stems, df, n, theta, variant), 10)
                    scores.append(ndcg_at(ranked, bench.qrels[qid]))
                cells.append(f"theta {theta}: {statistics.mean(scores):.4f}")
            print(f"  {split:5s} {variant:8s} " + "  ".join(cells))
    items = generate(1_000_000, seed=7)
    rng = random.Random(11)
    qs = [items[i].query for i in rng.sample(range(100_000), 200)]
    for size in (100_000, 1_000_000):
        name = f"syn{size}"
        t = time.perf_counter()
        n = await build(r, name, [(str(i), items[i].fact) for i in range(size)])
        print(f"synthetic {size}: built in {time.perf_counter() - t:.0f} s")
        for variant in ("drop", "optional"):
            for theta in THETAS:
                ms, matched, count_ms = [], [], []
                for q in qs:
                    stems = query_stems(q)
                    t0 = time.perf_counter()
                    df = await dfs(r, f"{{{name}}}:idx", stems)
                    t1 = time.perf_counter()
                    total, _ = await ask(r, f"{{{name}}}:idx", query(stems, df, n, theta, variant), 50)
                    t2 = time.perf_counter()
                    count_ms.append((t1 - t0) * 1000); ms.append((t2 - t1) * 1000); matched.append(total)
                ms.sort(); count_ms.sort(); matched.sort()
                print(f"  {variant:8s} theta {theta}: FT.SEARCH p50 {ms[100]:.1f} p95 {ms[190]:.1f} max {ms[-1]:.1f} ms;"
                      f" df counts p50 {count_ms[100]:.2f} p95 {count_ms[190]:.2f} ms; matched p50 {matched[100]}"
                      f" p95 {matched[190]}")
        if size != 1_000_000:
            await r.execute_command("FT.DROPINDEX", f"{{{name}}}:idx", "DD")


asyncio.run(main())
