"""`kb-mcp bench --scale`: one namespace grown through the --facts sizes (each a prefix of the next) by importing an
export with vectors, the way a team moves a company's knowledge in, and measured at each size: import rate, index
build, Redis memory per fact, HNSW recall@10 against exact search (per EF_RUNTIME), semantic_search p50/p95 through
MCP (one client and 10 in flight). At the largest size: export, a Redis restart (load and re-index, with what
`doctor`, /health and a tool say meanwhile) and, with --re-embed, `reindex --re-embed`."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kb_mcp.bench.corpus import Item, generate
from kb_mcp.bench.over_mcp import both_modes, closed_loop
from kb_mcp.bench.restart import aof_rewriting, restart_watch
from kb_mcp.bench.support import BenchRedis, Result, RssSampler, ok, pcts, say, server
from kb_mcp.bench.vector_cache import corpus_vectors
from kb_mcp.config import Settings
from kb_mcp.embeddings.base import Vectors

EF_RUNTIMES = (10, 20, 50, 100, 200, 400, 800)  # HNSW EF_RUNTIME values whose recall and latency each size reports
BATCHES = 5  # store_facts calls of 100 facts each, through MCP at every size
QUERIES = 200  # recall queries (paraphrases of facts in the smallest size, so they exist at every size)
FACT_INDEX_FIELDS = ("vector_index_sz_mb", "inverted_sz_mb", "doc_table_size_mb", "offset_vectors_sz_mb",
                     "key_table_size_mb", "tag_overhead_sz_mb", "text_overhead_sz_mb", "total_index_memory_sz_mb")


async def run_scale(settings: Settings, bench_redis: BenchRedis, sizes: list[int], args: argparse.Namespace
                    ) -> Result:
    from kb_mcp.store import KnowledgeStore

    sizes = sorted(sizes)
    items = generate(sizes[-1], seed=args.seed)
    rng = random.Random(args.seed)
    sample = rng.sample(range(sizes[0]), min(QUERIES, sizes[0]))
    queries = [items[i].query for i in sample]
    run: Result = {"corpus": "synthetic", "sizes": sizes, "hnsw": {"m": settings.hnsw_m,
                   "ef_construction": settings.hnsw_ef_construction, "ef_runtime": settings.hnsw_ef_runtime},
                   "steps": []}
    async with KnowledgeStore.open(settings) as store:
        vectors = corpus_vectors(items, args.seed, store.embedding, args.cache)
        query_vectors = (await store.embedding.aembed(queries)).astype(np.float32)
        await store.drop_namespace()
        await store.ensure_index()
        base = await _used_memory(store)
        if args.hnsw_sweep:
            run["hnsw_sweep"] = await sweep(settings, store, items, vectors, query_vectors, sizes[0],
                                            args.hnsw_sweep)
        with tempfile.TemporaryDirectory(prefix="kb-scale-") as tmp:
            loaded = 0
            for size in sizes:
                say(f"== grow {settings.namespace} to {size} facts")
                segment = Path(tmp) / f"facts-{loaded}-{size}.jsonl"
                write_export(segment, items, vectors, loaded, size, store.embedding.model_name)
                step: Result = {"facts": size, **await grow(store, segment, size - loaded)}
                segment.unlink()
                loaded = size
                step["redis_memory"] = await redis_memory(store, size, base)
                step["recall"] = await hnsw_recall(store, query_vectors, exact_top(query_vectors, vectors[:size]),
                                                   [items[i].query for i in sample], sample)
                if not args.import_only:
                    step["mcp"] = await mcp_latency(settings, items[:size], args, rng)
                run["steps"].append(step)
                say(json.dumps(step))
            if not args.import_only:
                run["export"] = await timed_export(store, Path(tmp) / "export.jsonl")
        if bench_redis.restartable and not args.import_only:
            run["restart"] = await restart_watch(settings, bench_redis, store, queries[0])
        if args.re_embed:
            run["re_embed"] = await timed_re_embed(store)
        if not args.keep:
            await store.drop_namespace()
    return run


async def sweep(settings: Settings, store: Any, items: list[Item], vectors: Vectors, query_vectors: Vectors,
                size: int, combos: str) -> list[Result]:
    """HNSW build settings tried on the first `size` facts, each in a scratch namespace: import rate, build time,
    memory and recall per EF_RUNTIME (what --facts sizes then run with is the configured KB_HNSW_*)."""
    from kb_mcp.store import KnowledgeStore

    exact = exact_top(query_vectors, vectors[:size])
    out = []
    with tempfile.TemporaryDirectory(prefix="kb-sweep-") as tmp:
        path = Path(tmp) / "facts.jsonl"
        write_export(path, items, vectors, 0, size, store.embedding.model_name)
        for combo in combos.split(","):
            m, efc = (int(x) for x in combo.split(":"))
            trial = settings.model_copy(update={"hnsw_m": m, "hnsw_ef_construction": efc,
                                                "namespace": f"{settings.namespace}-m{m}-efc{efc}"})
            say(f"== HNSW M={m} EF_CONSTRUCTION={efc} on {size} facts")
            async with KnowledgeStore.open(trial, embedding=store.embedding) as scratch:
                await scratch.drop_namespace()
                await scratch.ensure_index()
                base = await _used_memory(scratch)
                result: Result = {"m": m, "ef_construction": efc, **await grow(scratch, path, size)}
                result["redis_memory"] = await redis_memory(scratch, size, base)
                result["recall"] = (await raw_recall(scratch, query_vectors, exact))
                await scratch.drop_namespace()
            out.append(result)
            say(json.dumps(result))
    return out


def write_export(path: Path, items: list[Item], vectors: Vectors, lo: int, hi: int, model: str) -> None:
    """Items lo..hi as the JSONL `kb-mcp export` writes (vectors included, so the import runs no model)."""
    from kb_mcp.store.records import export_record

    now = time.time()
    with path.open("w", encoding="utf-8") as out:
        for i in range(lo, hi):
            out.write(json.dumps(export_record(f"b{i}", items[i].fact, {}, [items[i].topic], vectors[i].tobytes(),
                                               model, doc_id=None, created_at=now, updated_at=now,
                                               expires_at=None)) + "\n")


async def grow(store: Any, path: Path, facts: int) -> Result:
    """Import `path` (timed), then wait for RediSearch to have indexed it all."""
    from tqdm import tqdm

    started = time.perf_counter()
    with tqdm(total=2 * facts, unit="line", desc="import (validate, then write)", file=sys.stderr) as bar:
        count = await store.import_(path, progress=lambda done: bar.update(done - bar.n))
    imported = time.perf_counter() - started
    while (await store.stats()).index_state != "ready":
        await asyncio.sleep(0.5)
    indexed = time.perf_counter() - started
    while await aof_rewriting(store.manager.client):  # Redis compacting its AOF after the import: measure after
        await asyncio.sleep(0.5)
    return {"imported": count, "import_s": round(imported, 1), "import_facts_per_s": round(count / imported, 1),
            "until_indexed_s": round(indexed, 1)}


async def _used_memory(store: Any) -> int:
    return int((await store.manager.client.info("memory"))["used_memory"])


async def redis_memory(store: Any, facts: int, base: int) -> Result:
    """Redis's used memory and RediSearch's own parts of it, in total and per fact over `base` (what it used
    before the namespace had facts), to size a shard."""
    from kb_mcp.store.replies import as_text, pairs

    client = store.manager.client
    info = await client.info("memory")
    index = pairs(await client.execute_command("FT.INFO", store.index_name))
    used = int(info["used_memory"])
    return {"used_memory_mb": round(used / 2**20, 1), "bytes_per_fact": round((used - base) / facts),
            "rss_mb": round(int(info["used_memory_rss"]) / 2**20, 1),
            "index": {k: float(as_text(index[k])) for k in FACT_INDEX_FIELDS if k in index}}


def exact_top(query_vectors: Vectors, vectors: Vectors, k: int = 10, step: int = 200_000) -> list[list[int]]:
    """Each query's k nearest rows by exact cosine (unit vectors: the dot product), best first, `step` rows at a
    time (a 200 x 1M score matrix would be 800 MB)."""
    best_score = np.full((len(query_vectors), 0), -np.inf, dtype=np.float32)
    best_row = np.zeros((len(query_vectors), 0), dtype=np.int64)
    for lo in range(0, len(vectors), step):
        scores = query_vectors @ vectors[lo:lo + step].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_score = np.concatenate([best_score, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_row = np.concatenate([best_row, top + lo], axis=1)
        keep = np.argsort(-best_score, axis=1)[:, :k]
        best_score, best_row = np.take_along_axis(best_score, keep, axis=1), np.take_along_axis(best_row, keep, 1)
    return [list(map(int, row)) for row in best_row]


async def hnsw_recall(store: Any, query_vectors: Vectors, exact: list[list[int]], queries: list[str],
                      sample: list[int]) -> Result:
    """recall@10 against exact search: raw KNN per EF_RUNTIME (with its FT.SEARCH latency), and semantic_search in
    vector mode as served (the configured EF_RUNTIME); paraphrase recall@1 of the served hybrid search."""
    out = await raw_recall(store, query_vectors, exact)
    served = paraphrase = 0
    for q, want, fact in zip(queries, exact, sample, strict=True):
        nearest = await store.semantic_search(q, top_k=10, mode="vector")
        served += len({int(h.fact_id[1:]) for h in nearest} & set(want))
        top = await store.semantic_search(q, top_k=1)
        paraphrase += bool(top) and top[0].fact_id == f"b{fact}"
    out["served_vector_recall_at_10"] = round(served / (10 * len(exact)), 4)
    out["paraphrase_recall_at_1_hybrid"] = round(paraphrase / len(queries), 4)
    return out


async def raw_recall(store: Any, query_vectors: Vectors, exact: list[list[int]]) -> Result:
    """recall@10 of raw KNN queries against exact search, and their FT.SEARCH latency, per EF_RUNTIME."""
    from kb_mcp.store.replies import as_text

    client = store.manager.client
    out: Result = {"by_ef_runtime": []}
    for ef in EF_RUNTIMES:
        hits, times = 0, []
        for vec, want in zip(query_vectors, exact, strict=True):
            started = time.perf_counter()
            reply = await client.execute_command(
                "FT.SEARCH", store.index_name, "*=>[KNN 10 @vector $v EF_RUNTIME $ef AS d]", "PARAMS", 4, "v",
                vec.tobytes(), "ef", ef, "SORTBY", "d", "RETURN", 1, "id", "LIMIT", 0, 10, "DIALECT", 2)
            times.append((time.perf_counter() - started) * 1000)
            found = {int(as_text(fields[1])[1:]) for fields in reply[2::2]}  # rows: [b"id", b"b<row>"]
            hits += len(found & set(want))
        out["by_ef_runtime"].append({"ef_runtime": ef, "recall_at_10": round(hits / (10 * len(exact)), 4),
                                     "ft_search_ms": pcts(times)})
    return out


async def mcp_latency(settings: Settings, items: list[Item], args: argparse.Namespace, rng: random.Random
                      ) -> Result:
    """semantic_search through a real MCP client over HTTP: one client (hybrid and vector mode in turn), then 10 in
    flight (the default hybrid mode), on questions asked of this size's facts; and store_facts in batches of 100
    (deleted again, so every size holds exactly its facts)."""
    from mcp import Client

    queries = [it.query for it in items]
    with server(settings) as (url, pid):
        rss = RssSampler(pid)
        async with rss:
            async with Client(url) as client:
                for _ in range(20):
                    await client.call_tool("semantic_search", {"query": rng.choice(queries)})
                hybrid, vector = await both_modes(client, queries, args.queries, rng)
                started = time.perf_counter()
                for b in range(BATCHES):  # store_facts as an agent bulk-loads: the model's rate plus the writes
                    await ok(client.call_tool("store_facts", {"facts": [
                        {"content": f"scale batch {b}.{i}: {rng.choice(items).fact}", "fact_id": f"sb{b}.{i}",
                         "tags": ["scale-batch"]} for i in range(100)]}))
                batch_rate = 100 * BATCHES / (time.perf_counter() - started)
                await ok(client.call_tool("delete_facts", {"tags": ["scale-batch"]}))
            ten = await closed_loop(url, 10, args.seconds, lambda r: ("semantic_search", {
                "query": r.choice(queries)}), "search, 10 clients")
    return {"search_1_client_ms": pcts(hybrid), "search_vector_1_client_ms": pcts(vector),
            "search_10_clients": ten, "store_facts_batch_100_facts_per_s": round(batch_rate, 1),
            "server_rss_mb": round(rss.peak_mb, 1)}


async def timed_export(store: Any, path: Path) -> Result:
    from tqdm import tqdm

    started = time.perf_counter()
    with tqdm(unit="fact", desc="export", file=sys.stderr) as bar:
        count = await store.export(path, progress=lambda done: bar.update(done - bar.n))
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {"facts": count, "seconds": round(seconds, 1), "facts_per_s": round(count / seconds, 1),
            "file_mb": round(size / 2**20, 1)}


async def timed_re_embed(store: Any) -> Result:
    from tqdm import tqdm

    marks: list[tuple[float, int]] = []
    started = time.perf_counter()
    with tqdm(unit="fact", desc="re-embed", file=sys.stderr) as bar:
        def progress(done: int) -> None:
            bar.update(done - bar.n)
            marks.append((time.perf_counter() - started, done))
        report = await store.re_embed(progress)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    return {"facts": report.facts, "skipped": report.skipped, "seconds": round(time.perf_counter() - started, 1),
            "facts_per_s": round(report.facts / max(report.seconds, 1e-9), 1),
            "longest_step_s": round(max(gaps or [0]), 2)}

