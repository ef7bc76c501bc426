"""Side-by-side single-client comparison of kb-mcp and RedisVL's `rvl mcp` over stdio (run by scripts/peers/rvl-mcp.sh).

Both servers get the same work on the same Redis and the same ONNX model file: N facts stored one call at a time,
then paraphrase searches (top 5) one at a time, then the same searches with 8 in flight on one session. Servers run
one after another (never together) and alternate order between rounds, so drift on a busy machine hits both. Reports
p50/p95 per call, searches/s, recall@5 (the expected fact's text among the hits: a check that both did the same
work), the server's peak RSS (VmHWM of the server process and its children) and, with 8 in flight, the CPU each
search cost this client, the server and Redis (from /proc: on 2 shared cores their sum bounds searches/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kb_mcp.bench.corpus import Item, generate
from kb_mcp.bench.support import kb_mcp_command

RVL_INDEX = "rvlbench"
KB_NAMESPACE = "peerkb"

Call = tuple[str, dict[str, Any]]


@dataclass
class Server:
    """How to start one server and phrase the two calls for it."""

    name: str
    params: StdioServerParameters
    store: Callable[[str], Call]
    searches: dict[str, Callable[[str], Call]]  # label -> call; all share one stored corpus
    process_name: str


@dataclass
class Row:
    server: str
    store_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    searches_per_s_1: float = 0.0
    searches_per_s_8: float = 0.0
    recall_at_5: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_ms_8: tuple[float, float, float] = (0.0, 0.0, 0.0)  # CPU per search with 8 in flight: client, server, Redis


def servers(args: argparse.Namespace, redis_url: str) -> list[Server]:
    # The query-embedding cache off: the runs repeat their queries, and rvl mcp has no cache to match it.
    kb_env = {**os.environ, "KB_REDIS_URL": redis_url, "KB_NAMESPACE": KB_NAMESPACE, "KB_LOG_LEVEL": "WARNING",
              "KB_QUERY_CACHE_SIZE": "0"}
    kbs = [Server(
        f"kb-mcp{' ' + algorithm if algorithm != 'hnsw' else ''}",
        StdioServerParameters(command=kb_mcp_command(), args=["serve"],
                              env={**kb_env, "KB_VECTOR_ALGORITHM": algorithm}),
        store=lambda text: ("store_fact", {"content": text}),
        searches={"vector": lambda q: ("semantic_search", {"query": q, "top_k": 5, "mode": "vector"}),
                  "hybrid": lambda q: ("semantic_search", {"query": q, "top_k": 5, "mode": "hybrid"})},
        process_name="kb-mcp") for algorithm in ["hnsw", *(["flat"] if args.kb_flat else [])]]
    for variant in args.kb_variant:  # NAME:KEY=VALUE,KEY=VALUE: kb-mcp under other settings, side by side
        name, _, pairs = variant.partition(":")
        extra = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        kbs.append(Server(f"kb-mcp {name}", StdioServerParameters(command=kb_mcp_command(), args=["serve"],
                                                                  env={**kb_env, **extra}),
                          store=kbs[0].store, searches=kbs[0].searches, process_name="kb-mcp"))
    if args.rvl is None:
        return kbs
    config = Path(tempfile.mkdtemp(prefix="rvl-peer-")) / "mcp.yaml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "server": {"redis_url": redis_url},
        "indexes": {"facts": {
            "redis_name": RVL_INDEX,
            "vectorizer": {"class": "HFTextVectorizer", "model": args.model, "backend": "onnx",
                           "model_kwargs": {"file_name": "onnx/model.onnx"}},
            "search": {"type": "vector"},
            "runtime": {"text_field_name": "content", "vector_field_name": "embedding",
                        "default_embed_text_field": "content"}}}}))
    rvl = Server(
        "rvl mcp", StdioServerParameters(command=args.rvl, args=["mcp", "--config", str(config)],
                                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}),
        store=lambda text: ("upsert-records", {"records": [{"content": text}]}),
        searches={"vector": lambda q: ("search-records", {"query": q, "limit": 5})},
        process_name="rvl")
    return [*kbs, rvl]


async def reset(redis: Redis) -> None:
    """Both indexes empty; rvl's created the way the issue measured it (FLAT, cosine), kb-mcp's by kb-mcp itself."""
    for index in (RVL_INDEX, f"{{{KB_NAMESPACE}}}:idx"):
        try:
            await redis.execute_command("FT.DROPINDEX", index, "DD")  # type: ignore[no-untyped-call]
        except ResponseError as exc:  # "Unknown index name" on a first run
            if "unknown index" not in str(exc).lower() and "no such index" not in str(exc).lower():
                raise
    async for key in redis.scan_iter(match=f"{{{KB_NAMESPACE}}}:*", count=1000):
        await redis.delete(key)
    await redis.execute_command(  # type: ignore[no-untyped-call]
        "FT.CREATE", RVL_INDEX, "ON", "HASH", "PREFIX", "1", f"{RVL_INDEX}:", "SCHEMA", "content", "TEXT",
        "embedding", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "384", "DISTANCE_METRIC", "COSINE")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None for a process gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def server_pids(name: str) -> list[int]:
    """Our child processes running `name` (the stdio server), with their own children."""
    found: list[int] = []
    parents = {os.getpid()}
    for _ in range(3):
        for stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(stat.parent.name)
            fields = proc_stat(pid)
            if fields is not None and int(fields[1]) in parents and pid not in found:
                found.append(pid)
        parents |= set(found)
    return [p for p in found if name in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")] or found


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def text_of(result: Any) -> str:
    if result.is_error:
        raise RuntimeError(result.content[0].text if result.content else "error")
    return json.dumps(result.structured_content) if result.structured_content else result.content[0].text


async def timed(client: Client, call: Call) -> tuple[float, str]:
    started = time.perf_counter()
    result = await client.call_tool(*call)
    return (time.perf_counter() - started) * 1000, text_of(result)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (0 for one that is gone or not on this host)."""
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_now(pids: list[int], redis_pid: int) -> tuple[float, float, float]:
    return time.process_time(), cpu_s(pids), cpu_s([redis_pid])


async def run_one(server: Server, items: list[Item], queries: list[Item], inflight: int,
                  redis_pid: int) -> list[Row]:
    async with Client(server.params) as client:
        pids = server_pids(server.process_name)
        for i in range(10):  # warm-up: model, pools, code paths
            await client.call_tool(*server.store(f"warm-up fact number {i} about nothing in particular"))
            for search in server.searches.values():
                await client.call_tool(*search(f"warm-up question {i}"))
        store_ms = [(await timed(client, server.store(it.fact)))[0] for it in items]
        rows = []
        for label, search in server.searches.items():
            row = Row(f"{server.name} ({label})" if len(server.searches) > 1 else server.name, store_ms=store_ms)
            found = 0
            started = time.perf_counter()
            for it in queries:
                ms, text = await timed(client, search(it.query))
                row.search_ms.append(ms)
                found += json.dumps(it.fact)[1:-1] in text
            row.searches_per_s_1 = len(queries) / (time.perf_counter() - started)
            row.recall_at_5 = found / len(queries)
            todo = iter(queries * 2)

            async def worker(todo: Any = todo, search: Callable[[str], Call] = search) -> None:
                for it in todo:
                    text_of(await client.call_tool(*search(it.query)))

            started, before = time.perf_counter(), cpu_now(pids, redis_pid)
            await asyncio.gather(*(worker() for _ in range(inflight)))
            row.searches_per_s_8 = 2 * len(queries) / (time.perf_counter() - started)
            after = cpu_now(pids, redis_pid)
            c, sv, rd = (1000 * (a - b) / (2 * len(queries)) for a, b in zip(after, before, strict=True))
            row.cpu_ms_8 = (c, sv, rd)
            rows.append(row)
        rss = peak_rss_mb(pids)
        for row in rows:
            row.peak_rss_mb = rss
        return rows


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def table(rows: list[Row]) -> str:
    lines = ["| server | store p50/p95 ms | search p50/p95 ms | searches/s, 1 client | searches/s, 8 in flight "
             "| recall@5 | peak RSS MB | CPU ms per search, 8 in flight: client / server / Redis |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.server} | {pct(r.store_ms, .5):.2f}/{pct(r.store_ms, .95):.2f} "
                     f"| {pct(r.search_ms, .5):.2f}/{pct(r.search_ms, .95):.2f} | {r.searches_per_s_1:.1f} "
                     f"| {r.searches_per_s_8:.1f} | {r.recall_at_5:.3f} | {r.peak_rss_mb:.0f} "
                     f"| {' / '.join(f'{v:.2f}' for v in r.cpu_ms_8)} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[Row]:
    """Every round's rows, in the order they ran."""
    redis_url = os.environ["KB_REDIS_URL"]
    corpus = generate(args.facts, seed=7)
    queries = random.Random(7).sample(corpus, args.searches)
    redis = Redis.from_url(redis_url)
    redis_pid = int((await redis.info("server"))["process_id"])  # its CPU is read only if it runs on this host
    results: list[Row] = []
    try:
        for round_no in range(args.rounds):
            order = servers(args, redis_url)
            for server in order if round_no % 2 == 0 else order[::-1]:
                await reset(redis)
                print(f"round {round_no + 1}: {server.name}", file=sys.stderr)
                results += await run_one(server, corpus, queries, args.inflight, redis_pid)
        await reset(redis)
        await redis.execute_command("FT.DROPINDEX", RVL_INDEX, "DD")
    finally:
        await redis.aclose()
    return results


def report(args: argparse.Namespace, results: list[Row]) -> None:
    """All rounds pooled per server: percentiles over every call, rates as medians, RSS as the peak."""
    merged: dict[str, Row] = {}
    for r in results:
        m = merged.setdefault(r.server, Row(r.server))
        m.store_ms += r.store_ms
        m.search_ms += r.search_ms
    for name, m in merged.items():
        mine = [r for r in results if r.server == name]
        m.searches_per_s_1 = statistics.median(r.searches_per_s_1 for r in mine)
        m.searches_per_s_8 = statistics.median(r.searches_per_s_8 for r in mine)
        m.recall_at_5 = statistics.fmean(r.recall_at_5 for r in mine)
        m.peak_rss_mb = max(r.peak_rss_mb for r in mine)
        client, server, redis = (statistics.median(r.cpu_ms_8[k] for r in mine) for k in range(3))
        m.cpu_ms_8 = (client, server, redis)
    print(table(list(merged.values())))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "facts": args.facts, "searches": args.searches, "rounds": args.rounds, "inflight": args.inflight,
            "per_round": [{**r.__dict__, "store_ms": [round(v, 2) for v in r.store_ms],
                           "search_ms": [round(v, 2) for v in r.search_ms]} for r in results]}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rvl", help="the rvl command of a redisvl[mcp]==0.28 install (omitted: kb-mcp only)")
    parser.add_argument("--model", help="sentence-transformers folder around kb-mcp's ONNX file (for --rvl)")
    parser.add_argument("--kb-variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also run kb-mcp with these settings, e.g. no-solo:KB_EMBEDDING_SOLO_SESSION=false")
    parser.add_argument("--facts", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--kb-flat", action="store_true",
                        help="also run kb-mcp on a FLAT index (rvl's index type here) beside its default HNSW")
    parser.add_argument("--json", help="write every round's raw figures here")
    arguments = parser.parse_args()
    report(arguments, asyncio.run(main(arguments)))
