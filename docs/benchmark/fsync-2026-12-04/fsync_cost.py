"""What `appendfsync always` costs a store: 300 sequential and 500 concurrent store_fact per policy, two rounds.

Run against a scratch Redis from scripts/redis-stack.sh on 6400 (the policy is switched with CONFIG SET):
    .venv/bin/python docs/benchmark/fsync-2026-12-04/fsync_cost.py everysec always no
"""
import asyncio
import sys
import time

import redis.asyncio as aioredis

from kb_mcp.config import Settings
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.store import KnowledgeStore

URL = "redis://127.0.0.1:6400/0"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main() -> None:
    emb = OnnxMiniLMEmbedding()
    admin = aioredis.Redis.from_url(URL)
    for rnd in range(2):
        for policy in sys.argv[1:]:
            await admin.config_set("appendfsync", policy)
            async with KnowledgeStore.open(Settings(redis_url=URL, namespace=f"fs{rnd}{policy}"),
                                           embedding=emb) as kb:
                for i in range(20):
                    await kb.store_fact(f"warm {policy} {i} {rnd}")
                lat = []
                for i in range(300):
                    t = time.perf_counter()
                    await kb.store_fact(f"sequential fact {i} about {policy} r{rnd}")
                    lat.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                await asyncio.gather(*(kb.store_fact(f"concurrent fact {i} {policy} r{rnd}") for i in range(500)))
                rate = 500 / (time.perf_counter() - t)
                print(f"round {rnd} {policy:9s} store_fact p50 {pct(lat, .5):.2f} p95 {pct(lat, .95):.2f} ms; "
                      f"500 concurrent {rate:.0f}/s", flush=True)
                await kb.drop_namespace()
    await admin.config_set("appendfsync", "always")
    await admin.aclose()


asyncio.run(main())
