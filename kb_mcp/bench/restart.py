"""A Redis restart under a running kb-mcp, timed: how long Redis takes to load its data and RediSearch to re-index
it before searches are whole again, and what `/health`, a `semantic_search` call and `kb-mcp doctor` said meanwhile
(each change of what they say is one timeline entry)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

from kb_mcp.bench.support import BenchRedis, Result, kb_mcp_command, say, server
from kb_mcp.config import Settings

POLL_S = 0.5
DOCTOR_EVERY_S = 10.0
GIVE_UP_S = 3600.0


async def restart_watch(settings: Settings, bench_redis: BenchRedis, store: Any, query: str) -> Result:
    """Stop Redis (SIGTERM: AOF flushed, RDB saved), start it on the same data and watch until the index is whole."""
    import httpx
    import redis.asyncio as aioredis

    facts = await store.count()
    rewrite_s = await _rewrite_aof(store.manager.client)
    timeline: list[Result] = []
    with server(settings) as (url, _):
        health_url = url.rsplit("/", 1)[0] + "/health"
        started = time.perf_counter()
        await asyncio.to_thread(bench_redis.stop)
        stop_s = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.to_thread(bench_redis.start, False)
        raw = aioredis.Redis.from_url(bench_redis.url, socket_timeout=2)
        marks: dict[str, float] = {}
        last: tuple[Any, ...] = ()
        doctor_task: asyncio.Task[str] | None = None
        doctor_at = -DOCTOR_EVERY_S
        doctor_said = ""
        async with httpx.AsyncClient(timeout=15) as http:
            while (now := time.perf_counter() - started) < GIVE_UP_S:
                redis_said, percent = await _redis_state(raw, store.index_name)
                health = await _health(http, health_url)
                tool = await _tool(url, query)
                if doctor_task is None and now - doctor_at >= DOCTOR_EVERY_S:
                    doctor_task, doctor_at = asyncio.create_task(asyncio.to_thread(_doctor, settings)), now
                if doctor_task is not None and doctor_task.done():
                    doctor_said, doctor_task = doctor_task.result(), None
                seen = (redis_said, health, tool["said"], doctor_said)
                if seen != last:
                    timeline.append({"t_s": round(now, 1), "redis": redis_said, "percent_indexed": percent,
                                     "health": health, "semantic_search": tool, "doctor": doctor_said})
                    say(f"restart +{now:.1f} s: {timeline[-1]}")
                    last = seen
                if redis_said == "ok":
                    marks.setdefault("redis_answers_s", now)
                if tool["ok"]:
                    marks.setdefault("first_search_answered_s", now)
                if redis_said == "ok" and percent == 100.0 and tool["ok"] and tool["hits"]:
                    marks.setdefault("index_whole_s", now)
                    break
                await asyncio.sleep(POLL_S)
        if doctor_task is not None:
            await doctor_task
        await raw.aclose()
    return {"facts": facts, "aof_rewrite_s": rewrite_s, "stop_s": round(stop_s, 1),
            **{k: round(v, 1) for k, v in marks.items()}, "timeline": timeline}


async def _rewrite_aof(client: Any) -> float:
    """Compact the AOF to an RDB preamble first (what Redis does by itself as the file grows), so the restart reads
    the namespace as it is, not every write since the server started; returns how long the rewrite took."""
    started = time.perf_counter()
    await client.execute_command("BGREWRITEAOF")
    await asyncio.sleep(0.5)
    while await aof_rewriting(client):
        await asyncio.sleep(0.5)
    return round(time.perf_counter() - started, 1)


async def aof_rewriting(client: Any) -> bool:
    """Is Redis rewriting its AOF (or about to)? The child's disk writes weigh on any measurement meanwhile."""
    info = await client.info("persistence")
    return bool(int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0)))


async def _redis_state(raw: Any, index: str) -> tuple[str, float | None]:
    """What Redis itself answers: ok / loading / down, and the namespace index's percent_indexed once it answers."""
    import redis.exceptions as rex

    from kb_mcp.store.replies import as_text, pairs

    try:
        await raw.ping()
    except rex.BusyLoadingError:
        return "loading", None
    except (rex.ConnectionError, rex.TimeoutError, OSError):
        return "down", None
    try:
        found = pairs(await raw.execute_command("FT.INFO", index))
    except rex.RedisError:  # not there (yet)
        return "ok", None
    return "ok", round(float(as_text(found.get("percent_indexed", 1))) * 100, 1)


async def _health(http: Any, url: str) -> str:
    import httpx

    try:
        reply = await http.get(url)
    except httpx.HTTPError as exc:
        return f"no answer: {type(exc).__name__}"
    body = reply.json()
    error = body.get("redis", {}).get("error")
    return f"{reply.status_code} {body.get('status')}" + (f": {error}" if error else "")


async def _tool(url: str, query: str) -> Result:
    """One semantic_search through a fresh MCP session: its error text, or how many hits it found."""
    from mcp import Client

    started = time.perf_counter()
    try:
        async with Client(url) as client:
            result = await client.call_tool("semantic_search", {"query": query, "top_k": 5})
    except Exception as exc:  # the bench records whatever the client met
        return {"ok": False, "hits": 0, "said": f"client: {type(exc).__name__}: {exc}"[:200], "ms": None}
    ms = round((time.perf_counter() - started) * 1000, 1)
    if result.is_error:
        said = " ".join(getattr(part, "text", "") for part in result.content)
        return {"ok": False, "hits": 0, "said": said[:300], "ms": ms}
    hits = len((result.structured_content or {}).get("results", []))
    return {"ok": True, "hits": hits, "said": f"{hits} hit(s)", "ms": ms}


def _doctor(settings: Settings) -> str:
    """`kb-mcp doctor`'s redis and index lines, those that are not OK, and its verdict."""
    env = {**os.environ, "KB_REDIS_URL": str(settings.redis_url), "KB_NAMESPACE": settings.namespace,
           "KB_LOG_LEVEL": "WARNING"}
    done = subprocess.run([kb_mcp_command(), "doctor"], env=env, capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    notable = [line for line in lines if not line.startswith("OK") or line.split()[1:2] in (["redis"], ["index"])]
    return f"exit {done.returncode}: " + " | ".join(notable)[:400]
