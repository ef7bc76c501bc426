"""What production Redis does, injected for real: the index vanishes (FT.DROPINDEX, FLUSHALL), maxmemory is reached,
the server becomes a read-only replica, it is loading its data; and what an agent sees: a specific sentence, the
breaker closed (Redis answered), recovery without restarting kb-mcp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from mcp import Client

from kb_mcp.config import Settings
from kb_mcp.errors import RedisRefused
from kb_mcp.store import KnowledgeStore
from tests.support.mcp import in_process, text
from tests.support.redis import RedisServer, free_port

pytestmark = pytest.mark.anyio


async def until_ok(client: Client, tool: str, args: dict[str, Any], deadline_s: float = 15.0) -> float:
    """Seconds until `tool` succeeds; every failure on the way must be a readable sentence, not a bare error."""
    started = time.perf_counter()
    while True:
        result = await client.call_tool(tool, args)
        if not result.is_error:
            return time.perf_counter() - started
        message = text(result)
        assert message.strip() != f"Error executing tool {tool}", message
        assert time.perf_counter() - started < deadline_s, message
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["FT.DROPINDEX", "FLUSHALL"])
async def test_a_vanished_index_is_recreated_inside_the_call(settings: Settings, embedding: Any,
                                                             raw_redis: aioredis.Redis, fault: str) -> None:
    async with in_process(settings, embedding) as (client, _):
        for i in range(20):
            assert not (await client.call_tool("store_fact", {"content": f"Fact number {i} about the Atlas "
                                                                        "migration", "fact_id": f"atlas.{i}"})).is_error
        stop = asyncio.Event()
        failures: list[str] = []

        async def traffic() -> None:  # searches and stores running through the fault
            n = 0
            while not stop.is_set():
                for tool, args in (("semantic_search", {"query": "Atlas migration"}),
                                   ("store_fact", {"content": f"traffic fact {n}"}),
                                   ("get_fact", {"query": "atlas"})):
                    result = await client.call_tool(tool, args)
                    if result.is_error:
                        failures.append(text(result))
                n += 1

        runner = asyncio.create_task(traffic())
        await asyncio.sleep(0.2)
        if fault == "FT.DROPINDEX":
            await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx")
        else:
            await raw_redis.flushall()
        await asyncio.sleep(0.5)
        stop.set()
        await runner
        assert failures == [], failures  # each call healed the index inside its own deadline
        found = await client.call_tool("semantic_search", {"query": "Which migration?", "top_k": 50})
        ids = {r["fact_id"] for r in (found.structured_content or {})["results"]}
        if fault == "FT.DROPINDEX":  # the hashes stayed: RediSearch re-indexed them
            assert {f"atlas.{i}" for i in range(20)} <= ids
        stats = await client.call_tool("kb_stats", {})
        assert stats.structured_content and stats.structured_content["redis"]["breaker"] == "closed"


async def test_maxmemory_refuses_writes_clearly_and_reads_go_on(redis_server_factory: Callable[[], RedisServer],
                                                                make_settings: Callable[..., Settings],
                                                                embedding: Any) -> None:
    server = redis_server_factory()
    admin = aioredis.Redis.from_url(server.url)
    async with in_process(make_settings(redis_url=server.url), embedding) as (client, _):
        for i in range(5):
            await client.call_tool("store_fact", {"content": f"kept fact {i}", "fact_id": f"kept.{i}"})
        used = int((await admin.info("memory"))["used_memory"])
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", str(used // 2))
        for args in ({"content": "one fact too many " * 50, "fact_id": "too.many"},
                     {"content": "and another one without an id " * 50}):
            refused = await client.call_tool("store_fact", args)
            assert refused.is_error and "Redis is out of memory (maxmemory)" in text(refused), text(refused)
            assert "delete facts or raise maxmemory" in text(refused)
        assert int((await admin.info("memory"))["used_memory"]) < used * 1.2  # the script never ran
        assert await admin.exists(f"{{{make_settings().namespace}}}:fact:too.many") == 0
        got = await client.call_tool("get_fact", {"fact_id": "kept.0"})
        assert not got.is_error
        found = await client.call_tool("semantic_search", {"query": "kept fact"})
        assert not found.is_error and found.structured_content and found.structured_content["results"]
        stats = await client.call_tool("kb_stats", {})
        assert stats.structured_content and stats.structured_content["redis"]["breaker"] == "closed"
        deleted = await client.call_tool("delete_fact", {"fact_id": "kept.4"})  # deleting is how to get out
        assert not deleted.is_error and deleted.structured_content and deleted.structured_content["deleted"]
        await admin.config_set("maxmemory", "0")
        stored = await client.call_tool("store_fact", {"content": "fits again", "fact_id": "fits"})
        assert not stored.is_error, text(stored)
    await admin.aclose()


async def test_a_read_only_replica_refuses_writes_until_promoted(redis_server_factory: Callable[[], RedisServer],
                                                                 make_settings: Callable[..., Settings],
                                                                 embedding: Any) -> None:
    server = redis_server_factory()
    admin = aioredis.Redis.from_url(server.url)
    async with in_process(make_settings(redis_url=server.url), embedding) as (client, _):
        assert not (await client.call_tool("store_fact", {"content": "before", "fact_id": "b"})).is_error
        # A replica of a master that is not there: it keeps its data, serves reads, refuses writes.
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        for tool, args in (("store_fact", {"content": "during", "fact_id": "d"}),
                           ("delete_fact", {"fact_id": "b"})):
            refused = await client.call_tool(tool, args)
            assert refused.is_error and "read-only replica" in text(refused) and "retry" in text(refused)
        got = await client.call_tool("get_fact", {"fact_id": "b"})
        assert not got.is_error
        stats = await client.call_tool("kb_stats", {})
        assert stats.structured_content and stats.structured_content["redis"]["breaker"] == "closed"
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        elapsed = await until_ok(client, "store_fact", {"content": "after", "fact_id": "a"})
        assert elapsed < 1.0
    await admin.aclose()


async def test_a_loading_redis_says_so_then_serves(redis_server_factory: Callable[[], RedisServer],
                                                   make_settings: Callable[..., Settings], embedding: Any) -> None:
    server = redis_server_factory()
    admin = aioredis.Redis.from_url(server.url)
    async with KnowledgeStore.open(make_settings(redis_url=server.url), embedding=embedding) as kb:
        await kb.store_fact("survives the restart", fact_id="s")
    # A large dataset in the AOF's RDB base, loaded slowly (but answering LOADING) after a restart.
    await admin.eval("for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'load:' .. i, 'x') end", 0, 60_000)
    await admin.bgrewriteaof()
    while int((await admin.info("persistence"))["aof_rewrite_in_progress"]) or int(
            (await admin.info("persistence"))["aof_rewrite_scheduled"]):
        await asyncio.sleep(0.05)
    await admin.aclose()
    server.stop()
    slow_load = "--key-load-delay 25 --loading-process-events-interval-bytes 1024"
    server.start(wait=False, extra_args=slow_load)
    code, line = server.status()
    for _ in range(50):  # the daemon may not be listening yet (1: alive, not answering)
        if code != 1:
            break
        await asyncio.sleep(0.1)
        code, line = server.status()
    assert code == 4 and line.startswith("loading pid=") and "% read" in line, (code, line)
    async with in_process(make_settings(redis_url=server.url), embedding) as (client, _):
        loading = await client.call_tool("get_fact", {"fact_id": "s"})
        assert loading.is_error and "Redis is loading its data" in text(loading), text(loading)
        assert "retry in a few seconds" in text(loading)
        stats = await client.call_tool("kb_stats", {})
        assert stats.structured_content and stats.structured_content["redis"]["breaker"] == "closed"
        await until_ok(client, "get_fact", {"fact_id": "s"}, deadline_s=30)
        found = await client.call_tool("semantic_search", {"query": "what survives a restart?"})
        assert found.structured_content and found.structured_content["results"][0]["fact_id"] == "s"
    # The script's own start waits out a load longer than its start timeout (it answers LOADING, so it is alive).
    server.stop()
    logged = server.start(extra_args=slow_load, REDIS_START_TIMEOUT="1")
    assert "loading its data into memory" in logged and "ready: redis://" in logged, logged
    assert server.status()[0] == 0


def test_every_refusal_has_its_own_sentence() -> None:
    texts = {code: str(RedisRefused(code, "store fact")) for code in
             ("OOM", "READONLY", "LOADING", "MISCONF", "NOPERM", "AUTH", "BUSY")}
    assert len(set(texts.values())) == len(texts)
    assert all("(store fact" in t for t in texts.values())
    assert "cannot persist" in texts["MISCONF"] and "credentials" in texts["AUTH"] and "script" in texts["BUSY"]


async def test_wrong_password_is_a_credentials_error_not_an_outage(redis_server_factory: Callable[[], RedisServer],
                                                                   make_settings: Callable[..., Settings],
                                                                   embedding: Any) -> None:
    server = redis_server_factory()
    admin = aioredis.Redis.from_url(server.url)
    await admin.config_set("requirepass", "right-password")
    try:
        settings = make_settings(redis_url=f"redis://:wrong-password@127.0.0.1:{server.port}/0", breaker_threshold=2)
        async with in_process(settings, embedding) as (client, holder):
            for _ in range(3):
                denied = await client.call_tool("get_fact", {"fact_id": "x"})
                assert denied.is_error and "credentials in KB_REDIS_URL" in text(denied), text(denied)
            assert holder.state and holder.state.backend.manager.breaker.state.value == "closed"
    finally:
        await admin.execute_command("AUTH", "right-password")
        await admin.config_set("requirepass", "")
        await admin.aclose()
