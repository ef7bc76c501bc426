"""`kb-mcp bench`: a reproducible benchmark of kb-mcp as agents see it, with the floors measured in the same run.

For each corpus size: bulk-load a seeded synthetic corpus, then measure through a real MCP client over streamable
HTTP (and stdio for one client): semantic_search latency and throughput at several concurrencies, store_fact and
get_fact latency; beside them the floors (embedding alone, raw FT.SEARCH KNN, raw redis.asyncio vs the manager),
recall@10 of the served index against exact search on the same embeddings, and the server's RSS.
Writes JSON, a Markdown table and a PNG plot to the results folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

from kb_mcp import __version__
from kb_mcp.bench.beir import as_items, read_beir
from kb_mcp.bench.corpus import generate
from kb_mcp.bench.over_mcp import fsync_cost, over_mcp, stdio
from kb_mcp.bench.report import markdown, plot, scale_markdown
from kb_mcp.bench.store_level import floors, import_rate, ingest, read_vectors, recall, search_modes
from kb_mcp.bench.support import (
    BenchRedis,
    Result,
    RssSampler,
    machine,
    redis,
    say,
    server,
)
from kb_mcp.config import Settings


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.quick:
        args.facts, args.seconds, args.queries = "2000", 3.0, 60
    sizes = [int(x) for x in str(args.facts).split(",") if x] if not args.beir else [0]
    levels = [int(x) for x in str(args.clients).split(",") if x]
    return asyncio.run(_main(settings, args, sizes, levels))


async def _main(settings: Settings, args: argparse.Namespace, sizes: list[int], levels: list[int]) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    async with redis(settings) as bench_redis:
        redis_url = bench_redis.url
        if args.scale:
            return await _scale(settings, bench_redis, sizes, args)
        report: Result = {"kb_mcp": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                          "settings": {"vector_algorithm": settings.vector_algorithm, "hnsw_m": settings.hnsw_m,
                                       "hnsw_ef_runtime": settings.hnsw_ef_runtime,
                                       "embedding": settings.embedding_provider}, "runs": []}
        for size in sizes:
            bench_settings = settings.model_copy(update={"redis_url": redis_url,
                                                         "namespace": f"bench{size}" if size else "bench-beir"})
            say(f"== {size or args.beir} facts (namespace {bench_settings.namespace})")
            run = await _bench_size(bench_settings, size, levels, args)
            report["runs"].append(run)
            (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(markdown(report))
    plot(report, out / "latency_vs_concurrency.png")
    say(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'latency_vs_concurrency.png'}")
    print(markdown(report))
    return 0


async def _scale(settings: Settings, bench_redis: BenchRedis, sizes: list[int], args: argparse.Namespace) -> int:
    from kb_mcp.bench.scale import run_scale
    from kb_mcp.bench.vector_cache import default_cache

    args.cache = args.cache or default_cache()
    scale_settings = settings.model_copy(update={"redis_url": bench_redis.url, "namespace": "bench-scale"})
    report: Result = {"kb_mcp": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                      "embedding": settings.embedding_provider,
                      "scale": await run_scale(scale_settings, bench_redis, sizes, args)}
    (args.out / "scale.json").write_text(json.dumps(report, indent=2))
    (args.out / "scale.md").write_text(scale_markdown(report))
    print(scale_markdown(report))
    return 0


# ---------------------------------------------------------------- one corpus size


async def _bench_size(settings: Settings, size: int, levels: list[int], args: argparse.Namespace) -> Result:
    from kb_mcp.store import KnowledgeStore

    items = as_items(read_beir(Path(args.beir), "test")) if args.beir else generate(size, seed=args.seed)
    rng = random.Random(args.seed)
    run: Result = {"facts": len(items), "corpus": f"BEIR {Path(args.beir).name}" if args.beir else "synthetic"}
    async with KnowledgeStore.open(settings) as store:
        if await store.count():  # left over from a --keep run: start clean (an empty index is kept as it is)
            await store.drop_namespace()
            await store.ensure_index()
        run["bulk_ingest_facts_per_s"] = await ingest(store, items)
        run["import_with_vectors_facts_per_s"] = await import_rate(store, settings)
        vectors, ids = await read_vectors(store)
        sample = rng.sample(range(len(items)), min(200, len(items)))
        queries = [items[i].query for i in sample]
        run["floors"] = await floors(store, queries)
        run["recall"] = await recall(store, queries, sample, vectors, ids)
        run["search_modes_ms"] = await search_modes(store, queries)
    async with KnowledgeStore.open(settings.model_copy(update={"query_cache_size": 0})) as store:
        run["search_modes_uncached_ms"] = await search_modes(store, queries, modes=("vector", "hybrid"))
    with server(settings) as (url, pid):
        rss = RssSampler(pid)
        async with rss:
            run["http"] = await over_mcp(url, items, levels, args, rng)
        run["server_rss_mb"] = rss.peak_mb
    with server(settings, KB_DURABILITY="fsync") as (url, _):
        run["fsync"] = await fsync_cost(url, items, args.queries, rng)
    run["stdio"] = await stdio(settings, items, args.queries, rng)
    if not args.keep:
        async with KnowledgeStore.open(settings) as store:
            await store.drop_namespace()
    return run

