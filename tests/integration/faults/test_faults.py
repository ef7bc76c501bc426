"""Real faults against private Redis servers: CLIENT PAUSE, kill -9 and restart, Redis down at start, a stalled
embedding endpoint. Nothing hangs; every failure is a typed, readable error; recovery needs no restart of kb-mcp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse

from kb_mcp.connection.breaker import BreakerState
from kb_mcp.errors import OperationTimeout, StoreUnavailable
from kb_mcp.store import KnowledgeStore
from tests.support.mcp import embedding_endpoint
from tests.support.redis import RedisServer

pytestmark = pytest.mark.anyio


async def timed(awaitable: Any) -> tuple[float, BaseException | None]:
    started = time.perf_counter()
    try:
        await awaitable
    except Exception as exc:  # the test inspects it
        return time.perf_counter() - started, exc
    return time.perf_counter() - started, None


async def until_pause_ends(admin_url: str, deadline_s: float = 10) -> None:
    client = aioredis.Redis.from_url(admin_url, socket_timeout=deadline_s)
    try:
        await client.ping()  # answered once the pause is over
    finally:
        await client.aclose()


async def test_client_pause_gives_operation_timeout_within_deadline(redis_server_factory: Callable[[], RedisServer],
                                                                    make_settings: Any, embedding: Any) -> None:
    server = redis_server_factory()
    settings = make_settings(redis_url=server.url)
    admin = aioredis.Redis.from_url(server.url)
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:
        await kb.store_fact("paused read target", fact_id="target")
        await admin.execute_command("CLIENT", "PAUSE", 3500, "ALL")
        results = await asyncio.gather(timed(kb.get_fact("target")), timed(kb.list_facts()),
                                       timed(kb.semantic_search("paused")))
        for elapsed, exc in results[:2]:
            assert isinstance(exc, OperationTimeout), exc
            assert exc.kind == "redis" and exc.seconds == 2.0
            assert "Redis did not answer within 2.0 s" in str(exc) and "retry shortly" in str(exc)
            assert 1.9 <= elapsed <= 2.5, elapsed
        # The KNN query has the LlamaIndex deadline (10 s): it waits out a 3.5 s pause instead of failing at 2 s.
        elapsed, exc = results[2]
        assert exc is None and 3.3 <= elapsed <= 5.0, (elapsed, exc)
        await until_pause_ends(server.url)
        assert (await kb.get_fact("target")).content == "paused read target"
        assert kb.manager.breaker.state is BreakerState.CLOSED
    await admin.aclose()


async def test_write_pause_bounds_writes_while_reads_go_on(redis_server_factory: Callable[[], RedisServer],
                                                           make_settings: Any, embedding: Any) -> None:
    server = redis_server_factory()
    admin = aioredis.Redis.from_url(server.url)
    async with KnowledgeStore.open(make_settings(redis_url=server.url, timeout_redis=0.5), embedding=embedding) as kb:
        await kb.store_fact("before the pause", fact_id="before")
        await admin.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        elapsed, exc = await timed(kb.store_fact("during the pause", fact_id="during"))
        assert isinstance(exc, OperationTimeout) and 0.4 <= elapsed <= 0.9, (elapsed, exc)
        assert (await kb.get_fact("before")).content == "before the pause"
        await asyncio.sleep(2.1)
        saved = await kb.store_fact("after the pause", fact_id="after")
        assert saved.created
        assert kb.manager.state().pool_in_use == 0  # timed-out writes handed their connections back
    await admin.aclose()


async def test_killed_redis_opens_the_breaker_and_a_restart_closes_it(redis_server_factory: Callable[[], RedisServer],
                                                                      make_settings: Any, embedding: Any) -> None:
    server = redis_server_factory()
    settings = make_settings(redis_url=server.url, breaker_threshold=3, breaker_cooldown=1.0)
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:
        acked = [await kb.store_fact(f"acknowledged fact {i}") for i in range(20)]
        server.kill()
        for _ in range(3):
            elapsed, exc = await timed(kb.get_fact(acked[0].fact_id))
            assert isinstance(exc, StoreUnavailable) and "cannot reach Redis" in str(exc), exc
            assert elapsed < 1.0
        assert kb.manager.breaker.state is BreakerState.OPEN
        fast = []
        for _ in range(20):
            elapsed, exc = await timed(kb.semantic_search("anything"))
            assert isinstance(exc, StoreUnavailable) and "circuit open" in str(exc) and "retry in" in str(exc)
            fast.append(elapsed)
        assert max(fast) < 0.05, max(fast)
        stats = await kb.stats()
        assert stats.error and stats.redis.breaker == "open"
        server.start()
        await asyncio.sleep(1.1)  # the cool-down: the next call is the probe
        assert (await kb.get_fact(acked[0].fact_id)).fact_id == acked[0].fact_id
        assert kb.manager.breaker.state is BreakerState.CLOSED
        assert await kb.count() == 20
        hits = await kb.semantic_search("acknowledged fact", top_k=20)
        assert {h.fact_id for h in hits} == {a.fact_id for a in acked}
        assert kb.manager.state().pool_in_use == 0


async def test_store_starts_with_redis_down_and_recovers_alone(redis_server_factory: Callable[[], RedisServer],
                                                              make_settings: Any, embedding: Any) -> None:
    server = redis_server_factory()
    server.kill()
    settings = make_settings(redis_url=server.url, breaker_threshold=2, breaker_cooldown=0.3)
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:  # does not raise
        _, exc = await timed(kb.store_fact("first fact"))
        assert isinstance(exc, StoreUnavailable)
        server.start()
        await asyncio.sleep(0.4)
        saved = await kb.store_fact("first fact")
        assert saved.created and (await kb.semantic_search("first"))[0].fact_id == saved.fact_id


async def test_stalled_embedding_is_bounded_and_writes_nothing(make_settings: Any) -> None:
    async def stall(request: Request) -> JSONResponse:
        await asyncio.sleep(30)
        return JSONResponse({})

    async with embedding_endpoint(stall) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url, timeout_index=0.5)
        async with KnowledgeStore.open(settings) as kb:
            try:
                for call in (kb.semantic_search("stalled"), kb.store_fact("never stored")):
                    elapsed, exc = await timed(call)
                    assert isinstance(exc, OperationTimeout) and exc.kind == "index", exc
                    assert "embedding/index operation did not finish within 0.5 s" in str(exc)
                    assert elapsed < 1.0
                assert await kb.count() == 0
            finally:
                await kb.drop_namespace()


async def test_openai_compatible_embedding_endpoint(make_settings: Any, embedding: Any) -> None:
    """The configurable provider, served here by our own model behind a real HTTP endpoint."""
    seen: list[str] = []

    async def serve(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(request.headers.get("authorization", ""))
        vectors = await embedding.aembed(body["input"])
        return JSONResponse({"data": [{"index": i, "embedding": (v * 3).tolist()} for i, v in enumerate(vectors)]})

    async with embedding_endpoint(serve) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url, embedding_api_key="sk-test")
        async with KnowledgeStore.open(settings) as kb:
            try:
                await kb.store_fact("The user's timezone is Europe/Paris", fact_id="tz")
                await kb.store_fact("The user drinks oat milk flat whites", fact_id="coffee")
                hits = await kb.semantic_search("Which time zone is the user in?", top_k=2)
                assert hits[0].fact_id == "tz" and hits[0].score <= 1.0001
                vector = np.frombuffer(await kb.manager.client.hget(kb.key("tz"), "vector"), dtype=np.float32)
                assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4  # normalised on our side
            finally:
                await kb.drop_namespace()
    assert seen and all(h == "Bearer sk-test" for h in seen)


