"""The MCP side of `kb-mcp bench`: a real client over streamable HTTP and stdio, closed-loop load, fsync cost."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from kb_mcp.bench.corpus import Item
from kb_mcp.bench.store_level import in_turn
from kb_mcp.bench.support import (
    Result,
    kb_mcp_command,
    ok,
    pcts,
    say,
    timed,
)
from kb_mcp.config import Settings


async def both_modes(client: Any, queries: list[str], n: int, rng: random.Random) -> tuple[list[float], list[float]]:
    """`n` single-client searches in each of hybrid (the default) and vector mode, taking turns (the order turning
    with each pair), each on a question of its own: a machine getting slower or faster during the loop weighs on
    both modes alike (two loops one after the other were seen to differ by more than the modes do)."""
    times: dict[str, list[float]] = {"hybrid": [], "vector": []}
    for i in range(n):
        for mode in in_turn(("vector", "hybrid"), i):
            times[mode].append(await timed(ok(client.call_tool("semantic_search", {"query": rng.choice(queries),
                                                                                    "mode": mode}))))
    return times["hybrid"], times["vector"]


async def over_mcp(url: str, items: list[Item], levels: list[int], args: argparse.Namespace,
                    rng: random.Random) -> Result:
    from mcp import Client

    result: Result = {}
    queries = [it.query for it in items]
    async with Client(url) as client:
        for _ in range(20):  # warm-up
            await client.call_tool("semantic_search", {"query": rng.choice(queries)})
        hybrid, vector = await both_modes(client, queries, args.queries, rng)
        result["semantic_search_1_client_ms"] = pcts(hybrid)
        result["semantic_search_vector_1_client_ms"] = pcts(vector)
        get = [await timed(ok(client.call_tool("get_fact", {"fact_id": f"b{rng.randrange(len(items))}"})))
               for _ in range(args.queries)]
        result["get_fact_by_id_ms"] = pcts(get)
        store = [await timed(ok(client.call_tool("store_fact", {
            "content": f"bench store {i}: {rng.choice(items).fact}", "fact_id": f"s{i}"})))
            for i in range(args.queries)]
        result["store_fact_1_client_ms"] = pcts(store)
        batches = max(1, args.queries // 30)
        started = time.perf_counter()
        for b in range(batches):  # batches of 100 through store_facts: one embedding batch, one write each
            await ok(client.call_tool("store_facts", {"facts": [
                {"content": f"bench batch {b}.{i}: {rng.choice(items).fact}", "fact_id": f"sb{b}.{i}"}
                for i in range(100)]}))
        result["store_facts_batch_100_facts_per_s"] = round(100 * batches / (time.perf_counter() - started), 1)
        result["store_fact_facts_per_s"] = round(1000 / statistics.mean(store), 1)
    result["protocol_ping_ms"] = await ping(url, args.queries)
    levels_out = []
    for clients in levels:
        level = await closed_loop(url, clients, args.seconds, lambda r: ("semantic_search", {
            "query": r.choice(queries)}), f"search, {clients} clients")
        levels_out.append({"clients": clients, **level})
    result["semantic_search_by_concurrency"] = levels_out
    counter = iter(range(10**9))
    result["store_fact_10_clients"] = await closed_loop(url, 10, args.seconds, lambda r: ("store_fact", {
        "content": f"concurrent store {next(counter)} {r.random()}"}), "store, 10 clients")
    return result


async def ping(target: Any, n: int) -> Result:
    """The protocol's own round trip: `ping` (no tool, no store). The 2026-07-28 protocol dropped ping, so this
    one session speaks the initialize-handshake (legacy) protocol; the transport and JSON-RPC work are the same."""
    from mcp import Client

    async with Client(target, mode="legacy") as client:
        for _ in range(20):
            await client.send_ping()
        return pcts([await timed(client.send_ping()) for _ in range(n)])


async def fsync_cost(url: str, items: list[Item], n: int, rng: random.Random) -> Result:
    """store_fact with KB_DURABILITY=fsync (WAITAOF after each write: ~nothing on `appendfsync always`, up to 1 s on
    `everysec`)."""
    from mcp import Client

    async with Client(url) as client:
        times = [await timed(ok(client.call_tool("store_fact", {
            "content": f"fsync store {i}: {rng.choice(items).fact}", "fact_id": f"fs{i}"}))) for i in range(n)]
    return {"store_fact_1_client_ms": pcts(times)}


async def closed_loop(url: str, clients: int, seconds: float,
                       make: Callable[[random.Random], tuple[str, dict[str, Any]]], desc: str) -> Result:
    """`clients` MCP sessions, each calling back-to-back for `seconds`; throughput and latency percentiles."""
    from mcp import Client

    latencies: list[float] = []
    errors = 0
    stop = asyncio.Event()
    started = asyncio.Event()
    ready = 0

    async def one(n: int) -> None:
        nonlocal errors, ready
        r = random.Random(n)
        async with Client(url) as client:
            ready += 1
            if ready == clients:
                started.set()
            await started.wait()
            while not stop.is_set():
                name, arguments = make(r)
                t = time.perf_counter()
                res = await client.call_tool(name, arguments)
                latencies.append((time.perf_counter() - t) * 1000)
                errors += bool(res.is_error)

    tasks = [asyncio.create_task(one(n)) for n in range(clients)]
    await started.wait()
    say(f"{desc}: {seconds:.0f} s")
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return {"calls_per_s": round(len(latencies) / elapsed, 1), "errors": errors, **pcts(latencies, already_ms=True)}


async def stdio(settings: Settings, items: list[Item], n: int, rng: random.Random) -> Result:
    from mcp import Client, StdioServerParameters

    env = {"KB_REDIS_URL": str(settings.redis_url), "KB_NAMESPACE": settings.namespace, "KB_LOG_LEVEL": "WARNING"}
    params = StdioServerParameters(command=kb_mcp_command(), args=["serve"], env=env)
    async with Client(params) as client:
        for _ in range(20):
            await client.call_tool("semantic_search", {"query": rng.choice(items).query})
        times, vector = await both_modes(client, [it.query for it in items], n, rng)
        store = [await timed(ok(client.call_tool("store_fact", {
            "content": f"stdio store {i}: {rng.choice(items).fact}", "fact_id": f"io{i}"}))) for i in range(n)]
    return {"semantic_search_1_client_ms": pcts(times), "semantic_search_vector_1_client_ms": pcts(vector),
            "store_fact_1_client_ms": pcts(store), "protocol_ping_ms": await ping(params, n)}


