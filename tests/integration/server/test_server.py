"""The MCP server through a real `mcp.Client`: in-process, as a stdio subprocess (the installed `kb-mcp`), over
streamable HTTP with and without a token, and through the MCP Inspector CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from kb_mcp.config import Settings
from tests.support.mcp import (
    KB_MCP,
    TOOLS,
    bearer,
    embedding_endpoint,
    http_server,
    in_process,
    kb_env,
    stall,
    stdio_exchange,
    text,
)
from tests.support.redis import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(settings: Settings, embedding: Any, raw_redis: aioredis.Redis) -> AsyncIterator[Client]:
    async with in_process(settings, embedding) as (c, _):
        yield c
    keys = [k async for k in raw_redis.scan_iter(match=f"{settings.namespace}:*")]
    if keys:
        await raw_redis.delete(*keys)
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx")


async def test_tools_list_names_params_limits_annotations_and_schemas(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    store, get, search, delete = (tools[n] for n in ("store_fact", "get_fact", "semantic_search", "delete_fact"))
    assert store.input_schema["required"] == ["content"]
    assert set(store.input_schema["properties"]) == {"content", "metadata", "tags", "fact_id", "ttl_s"}
    assert get.input_schema.get("required", []) == []
    assert set(get.input_schema["properties"]) == {"fact_id", "query", "tags", "limit", "cursor", "created_after",
                                                   "created_before", "where"}
    assert search.input_schema["required"] == ["query"]
    assert set(search.input_schema["properties"]) == {"query", "top_k", "tags", "min_score", "mode",
                                                      "created_after", "created_before", "where",
                                                      "recency_half_life_days"}
    assert search.input_schema["properties"]["mode"]["enum"] == ["hybrid", "vector", "keyword"]
    assert delete.input_schema["required"] == ["fact_id"]
    top_k = search.input_schema["properties"]["top_k"]
    assert (top_k["minimum"], top_k["maximum"], top_k["default"]) == (1, 50, 5)
    limit = get.input_schema["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    assert store.input_schema["properties"]["content"]["minLength"] == 1
    assert store.input_schema["properties"]["tags"]["maxItems"] == 32
    assert search.input_schema["properties"]["query"]["maxLength"] == 2000
    for name in ("get_fact", "semantic_search", "kb_stats"):
        assert tools[name].annotations and tools[name].annotations.read_only_hint is True
    assert store.annotations and store.annotations.read_only_hint is False and store.annotations.idempotent_hint
    assert delete.annotations and delete.annotations.destructive_hint and delete.annotations.idempotent_hint
    scoped = tools["delete_facts"]
    assert scoped.annotations and scoped.annotations.destructive_hint and not scoped.annotations.read_only_hint
    assert set(scoped.input_schema["properties"]) == {"fact_ids", "tags", "created_before", "created_after", "where",
                                                      "all", "dry_run"}
    for tool in tools.values():
        assert tool.title and tool.description and len(tool.description) > 60
        assert tool.output_schema and tool.output_schema["type"] == "object"
    assert set(store.output_schema["properties"]) == {"fact_id", "created", "created_at", "updated_at", "expires_at",
                                                      "similar"}
    assert set(get.output_schema["properties"]) == {"facts", "next_cursor"}
    assert set(search.output_schema["properties"]) == {"results"}
    assert set(delete.output_schema["properties"]) == {"fact_id", "deleted"}


async def test_every_tool_happy_path(client: Client) -> None:
    stored = await client.call_tool("store_fact", {"content": "The user prefers dark mode", "tags": ["UI"],
                                                   "metadata": {"source": "chat", "confidence": 0.9}})
    assert not stored.is_error and stored.structured_content
    fact_id = stored.structured_content["fact_id"]
    assert stored.structured_content["created"] is True
    assert stored.structured_content["created_at"].endswith("Z")
    again = await client.call_tool("store_fact", {"content": "The user  prefers dark mode"})
    assert again.structured_content == {**stored.structured_content, "created": False}
    upsert = await client.call_tool("store_fact", {"content": "Timezone: Europe/Paris", "fact_id": "user.tz"})
    assert upsert.structured_content and upsert.structured_content["fact_id"] == "user.tz"

    got = await client.call_tool("get_fact", {"fact_id": fact_id})
    assert got.structured_content == {"facts": [{
        "fact_id": fact_id, "content": "The user prefers dark mode", "metadata": {"source": "chat", "confidence": 0.9},
        "tags": ["ui"], "created_at": stored.structured_content["created_at"],
        "updated_at": stored.structured_content["updated_at"], "expires_at": None, "truncated": False,
        "content_chars": None}], "next_cursor": None}
    newest = await client.call_tool("get_fact", {"limit": 1})
    assert newest.structured_content and newest.structured_content["facts"][0]["fact_id"] == "user.tz"
    assert newest.structured_content["next_cursor"]
    page2 = await client.call_tool("get_fact", {"limit": 1, "cursor": newest.structured_content["next_cursor"]})
    assert page2.structured_content and page2.structured_content["facts"][0]["fact_id"] == fact_id
    keyword = await client.call_tool("get_fact", {"query": "europe/paris"})
    assert keyword.structured_content and [f["fact_id"] for f in keyword.structured_content["facts"]] == ["user.tz"]

    found = await client.call_tool("semantic_search", {"query": "Which colour scheme does the user like?"})
    assert found.structured_content
    results = found.structured_content["results"]
    assert results[0]["fact_id"] == fact_id and results[0]["tags"] == ["ui"]
    assert results == sorted(results, key=lambda r: r["score"], reverse=True)
    text = found.content[0].text  # type: ignore[union-attr]
    assert json.loads(text) == found.structured_content and "\n" not in text  # the agent's copy, compact
    filtered = await client.call_tool("semantic_search", {"query": "theme", "tags": ["ui"], "top_k": 50})
    assert filtered.structured_content and [r["fact_id"] for r in filtered.structured_content["results"]] == [fact_id]

    stats = await client.call_tool("kb_stats", {})
    assert stats.structured_content and stats.structured_content["facts"] == 2
    assert stats.structured_content["redis"]["breaker"] == "closed"

    deleted = await client.call_tool("delete_fact", {"fact_id": fact_id})
    assert deleted.structured_content == {"fact_id": fact_id, "deleted": True}
    deleted = await client.call_tool("delete_fact", {"fact_id": fact_id})
    assert deleted.structured_content == {"fact_id": fact_id, "deleted": False} and not deleted.is_error


async def test_unknown_fact_is_an_error_the_agent_can_read(client: Client) -> None:
    result = await client.call_tool("get_fact", {"fact_id": "no.such.fact"})
    assert result.is_error
    assert "fact not found: no fact with fact_id 'no.such.fact'" in text(result)


@pytest.mark.parametrize(("tool", "args", "expect"), [
    ("store_fact", {}, "content"),
    ("store_fact", {"content": ""}, "content"),
    ("store_fact", {"content": "   "}, "content"),
    ("store_fact", {"content": "x" * 40_000}, "the limit is 32768"),
    ("store_fact", {"content": "ok", "fact_id": "bad id"}, "fact_id"),
    ("store_fact", {"content": "ok", "fact_id": "a" * 129}, "fact_id"),
    ("store_fact", {"content": "ok", "tags": ["not ok"]}, "tags[0]"),
    ("store_fact", {"content": "ok", "tags": "notalist"}, "tags"),
    ("store_fact", {"content": "ok", "metadata": {"deep": {"x": 1}}}, "metadata.deep"),
    ("store_fact", {"content": "ok", "metadata": [1]}, "metadata"),
    ("store_fact", {"content": 42}, "content"),
    ("get_fact", {"limit": 0}, "limit"),
    ("get_fact", {"limit": 101}, "limit"),
    ("get_fact", {"cursor": "garbage"}, "cursor"),
    ("get_fact", {"fact_id": "a", "query": "b"}, "fact_id"),
    ("get_fact", {"fact_id": "keep", "tags": ["x"]}, "give fact_id alone"),
    ("get_fact", {"query": "{}()"}, "query"),
    ("semantic_search", {"query": "q", "top_k": 0}, "top_k"),
    ("semantic_search", {"query": "q", "top_k": 51}, "top_k"),
    ("semantic_search", {"query": "q", "min_score": 2}, "min_score"),
    ("semantic_search", {"query": ""}, "query"),
    ("semantic_search", {}, "query"),
    ("delete_fact", {"fact_id": "*"}, "fact_id"),
    ("delete_fact", {}, "fact_id"),
])
async def test_invalid_input_names_the_field_and_changes_nothing(client: Client, tool: str, args: dict[str, Any],
                                                                 expect: str) -> None:
    await client.call_tool("store_fact", {"content": "keep me", "fact_id": "keep"})
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    assert expect in text(result)
    stats = await client.call_tool("kb_stats", {})
    assert stats.structured_content and stats.structured_content["facts"] == 1


async def test_read_only_mode_exposes_only_read_tools(make_settings: Callable[..., Settings], embedding: Any) -> None:
    async with in_process(make_settings(read_only=True), embedding) as (client, _):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"get_fact", "semantic_search", "kb_stats"}
        result = await client.call_tool("store_fact", {"content": "x"})
        assert result.is_error


async def test_redis_paused_killed_and_back_without_restarting(redis_server_factory: Callable[[], RedisServer],
                                                               make_settings: Callable[..., Settings],
                                                               embedding: Any) -> None:
    server = redis_server_factory()
    settings = make_settings(redis_url=server.url, breaker_threshold=3, breaker_cooldown=0.5)
    admin = aioredis.Redis.from_url(server.url)
    async with in_process(settings, embedding) as (client, _):
        assert not (await client.call_tool("store_fact", {"content": "durable", "fact_id": "d"})).is_error
        await admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        started = time.perf_counter()
        paused = await client.call_tool("get_fact", {"fact_id": "d"})
        elapsed = time.perf_counter() - started
        assert paused.is_error and "Redis did not answer within 2.0 s" in text(paused) and elapsed < 2.5
        await asyncio.sleep(1.2)
        assert not (await client.call_tool("get_fact", {"fact_id": "d"})).is_error

        server.kill()
        for _ in range(3):
            down = await client.call_tool("semantic_search", {"query": "durable"})
            assert down.is_error and "knowledge store unavailable" in text(down)
        started = time.perf_counter()
        fast = await client.call_tool("get_fact", {"fact_id": "d"})
        assert fast.is_error and "circuit open" in text(fast) and "retry in" in text(fast)
        assert time.perf_counter() - started < 0.05

        server.start()
        await asyncio.sleep(0.6)
        back = await client.call_tool("get_fact", {"fact_id": "d"})
        assert not back.is_error and back.structured_content
        assert back.structured_content["facts"][0]["content"] == "durable"
    await admin.aclose()


async def test_whole_call_is_bounded_by_the_tool_deadline(make_settings: Callable[..., Settings]) -> None:
    async with embedding_endpoint(stall) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url, timeout_tool=0.4)
        async with in_process(settings) as (client, holder):
            started = time.perf_counter()
            result = await client.call_tool("semantic_search", {"query": "slow"})
            assert time.perf_counter() - started < 1.0
            assert result.is_error and "tool call did not finish within 0.4 s (semantic_search)" in text(result)
            assert holder.state and holder.state.in_flight == 0


async def test_overload_gets_a_fast_busy_error(make_settings: Callable[..., Settings]) -> None:
    async with embedding_endpoint(stall) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url, timeout_index=1.0,
                                 max_concurrency=2)
        async with in_process(settings) as (client, _):
            calls = [client.call_tool("semantic_search", {"query": f"q{i}"}) for i in range(6)]
            started = time.perf_counter()
            results = await asyncio.gather(*calls)
            busy = [r for r in results if "server busy" in text(r)]
            timeouts = [r for r in results if "did not finish within 1.0 s" in text(r)]
            assert len(busy) == 4 and len(timeouts) == 2 and all(r.is_error for r in results)
            assert time.perf_counter() - started < 1.8


async def test_client_cancellation_cancels_the_work(make_settings: Callable[..., Settings]) -> None:
    async with embedding_endpoint(stall) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url)
        async with in_process(settings) as (client, holder):
            with anyio.move_on_after(0.3):
                await client.call_tool("semantic_search", {"query": "cancel me"})
            deadline = time.monotonic() + 2
            while holder.state and holder.state.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert holder.state and holder.state.in_flight == 0
            rendered = holder.metrics.render().decode()
            assert 'kb_tool_calls_total{outcome="cancelled",tool="semantic_search"} 1.0' in rendered


# ---------------------------------------------------------------- stdio subprocess


async def test_stdio_subprocess_round_trip(settings: Settings, raw_redis: aioredis.Redis) -> None:
    params = StdioServerParameters(command=KB_MCP, args=[], env=kb_env(settings))
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        stored = await client.call_tool("store_fact", {"content": "stdio works", "fact_id": "io.1"})
        assert not stored.is_error
        found = await client.call_tool("semantic_search", {"query": "does stdio work?"})
        assert found.structured_content and found.structured_content["results"][0]["fact_id"] == "io.1"
        missing = await client.call_tool("get_fact", {"fact_id": "io.2"})
        assert missing.is_error and "fact not found" in text(missing)
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")


async def test_stdio_carries_messages_larger_than_a_pipe_buffer(settings: Settings, raw_redis: aioredis.Redis
                                                                 ) -> None:
    """A request and a reply far over the 64 KiB a pipe holds (and asyncio's default line limit) pass whole."""
    params = StdioServerParameters(command=KB_MCP, args=[], env=kb_env(settings, KB_MAX_FACT_CHARS="600000"))
    content = " ".join(f"w{i}" for i in range(80_000))  # ~470 KB of JSON each way
    async with Client(params) as client:
        stored = await client.call_tool("store_fact", {"content": content, "fact_id": "big.1"})
        assert not stored.is_error, text(stored)
        fetched = await client.call_tool("get_fact", {"fact_id": "big.1"})
        assert fetched.structured_content and fetched.structured_content["facts"][0]["content"] == content
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")


def test_stdout_carries_nothing_but_protocol(settings: Settings) -> None:
    """Raw stdio: every stdout line is a JSON-RPC message (redisvl, LlamaIndex and logs stay off stdout)."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "store_fact", "arguments": {"content": "raw stdio fact", "tags": ["x"]}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "semantic_search", "arguments": {"query": "raw", "tags": ["x"]}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "kb_stats", "arguments": {}}},
    ]
    replies, stderr = stdio_exchange(messages, kb_env(settings, KB_LOG_LEVEL="DEBUG"))
    assert replies[3]["result"]["structuredContent"]["results"][0]["content"] == "raw stdio fact"
    assert "tool=semantic_search outcome=ok" in stderr  # the logs went to stderr
    async def drop() -> None:
        client = aioredis.Redis.from_url(str(settings.redis_url))
        await client.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")
        await client.aclose()
    asyncio.run(drop())


# ---------------------------------------------------------------- streamable HTTP


async def test_http_with_token(settings: Settings, raw_redis: aioredis.Redis) -> None:
    token = "s3cret-token-for-tests-0123456789"
    with http_server(settings, KB_AUTH_TOKEN=token) as base:
        async with httpx.AsyncClient() as plain:
            denied = await plain.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                      headers={"Accept": "application/json, text/event-stream"})
            assert denied.status_code == 401
            wrong = await plain.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                     headers={"Authorization": "Bearer nope",
                                              "Accept": "application/json, text/event-stream"})
            assert wrong.status_code == 401
            health = await plain.get(base + "/health")
            assert health.status_code == 200 and health.json()["redis"]["ok"] is True
            assert (await plain.get(base + "/metrics")).status_code == 401
        async with Client(streamable_http_client(base + "/mcp", http_client=bearer(token))) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            stored = await client.call_tool("store_fact", {"content": "over http", "fact_id": "http.1"})
            assert not stored.is_error
            got = await client.call_tool("get_fact", {"fact_id": "http.1"})
            assert got.structured_content and got.structured_content["facts"][0]["content"] == "over http"
        async with httpx.AsyncClient() as plain:
            metrics = await plain.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
            assert metrics.status_code == 200
            assert 'kb_tool_calls_total{outcome="ok",tool="store_fact"} 1.0' in metrics.text
            assert "kb_circuit_breaker_state 0.0" in metrics.text
            assert f'kb_facts{{namespace="{settings.namespace}"}} 1.0' in metrics.text
        stats = subprocess.run([KB_MCP, "stats", "--server", base], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **kb_env(settings, KB_AUTH_TOKEN=token)})
        assert stats.returncode == 0, stats.stderr
        assert "store_fact" in stats.stdout and "ok 1" in stats.stdout
        assert "kb_circuit_breaker_state: 0" in stats.stdout
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")


async def test_http_without_token_and_health_when_redis_is_down(settings: Settings,
                                                                 redis_server_factory: Callable[[], RedisServer]
                                                                 ) -> None:
    server = redis_server_factory()
    local = settings.model_copy(update={"redis_url": server.url})
    with http_server(local) as base:
        async with Client(base + "/mcp") as client:
            assert not (await client.call_tool("store_fact", {"content": "no auth needed"})).is_error
        server.kill()
        health = httpx.get(base + "/health", timeout=5)
        assert health.status_code == 503 and health.json()["redis"]["ok"] is False
        server.start()
        deadline = time.monotonic() + 10
        while httpx.get(base + "/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


def test_non_loopback_bind_without_token_is_refused(settings: Settings) -> None:
    result = subprocess.run([KB_MCP, "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "1"],
                            env={**os.environ, **kb_env(settings)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "without authentication" in result.stderr and "--allow-unauthenticated" in result.stderr


# ---------------------------------------------------------------- MCP Inspector CLI

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"


def inspector(settings: Settings, *args: str) -> dict[str, Any]:
    env_flags = [flag for k, v in kb_env(settings).items() for flag in ("-e", f"{k}={v}")]
    result = subprocess.run(["npx", "-y", INSPECTOR, "--cli", *env_flags, KB_MCP, *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.skipif(shutil.which("npx") is None and not os.environ.get("KB_REQUIRE_INSPECTOR"),
                    reason="npx (Node.js) not installed")
def test_mcp_inspector_cli_lists_tools_and_round_trips(settings: Settings) -> None:
    listed = inspector(settings, "--method", "tools/list")
    assert {t["name"] for t in listed["tools"]} == TOOLS
    stored = inspector(settings, "--method", "tools/call", "--tool-name", "store_fact",
                       "--tool-arg", "content=Stored by the MCP Inspector", "--tool-arg", "fact_id=inspector.1",
                       "--tool-arg", 'tags=["inspector"]')
    assert stored["isError"] is False and stored["structuredContent"]["fact_id"] == "inspector.1"
    got = inspector(settings, "--method", "tools/call", "--tool-name", "get_fact", "--tool-arg", "fact_id=inspector.1")
    assert got["structuredContent"]["facts"][0]["content"] == "Stored by the MCP Inspector"
    assert got["structuredContent"]["facts"][0]["tags"] == ["inspector"]
    missing = inspector(settings, "--method", "tools/call", "--tool-name", "get_fact", "--tool-arg", "fact_id=nope")
    assert missing["isError"] is True and "fact not found" in missing["content"][0]["text"]
    inspector(settings, "--method", "tools/call", "--tool-name", "delete_fact", "--tool-arg", "fact_id=inspector.1")


async def test_server_starts_with_redis_down_and_recovers(redis_server_factory: Callable[[], RedisServer],
                                                          make_settings: Callable[..., Settings],
                                                          embedding: Any) -> None:
    server = redis_server_factory()
    server.kill()
    async with in_process(make_settings(redis_url=server.url), embedding) as (client, _):
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        down = await client.call_tool("store_fact", {"content": "written once Redis is back", "fact_id": "later"})
        assert down.is_error and "nothing is listening at" in text(down) and "KB_REDIS_URL" in text(down)
        server.start()
        deadline = time.monotonic() + 10
        while (result := await client.call_tool("store_fact", {"content": "written once Redis is back",
                                                               "fact_id": "later"})).is_error:
            assert time.monotonic() < deadline, text(result)
            await asyncio.sleep(0.2)
        got = await client.call_tool("get_fact", {"fact_id": "later"})
        assert got.structured_content and got.structured_content["facts"][0]["content"].startswith("written once")
