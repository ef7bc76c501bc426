"""Durability (kill -9 with AOF, KB_DURABILITY=fsync), multi-tenant tokens, HTTP limits, metrics over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from kb_mcp.config import Settings
from kb_mcp.errors import KbError, StoreUnavailable
from kb_mcp.store import KnowledgeStore
from tests.support.mcp import KB_MCP, bearer, http_server, kb_env, stdio_exchange, text
from tests.support.redis import RedisServer, free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("appendfsync", "durability"), [("always", "none"), ("everysec", "fsync")])
async def test_acknowledged_writes_survive_kill_9(redis_server_factory: Callable[..., RedisServer],
                                                  make_settings: Callable[..., Settings], embedding: Any,
                                                  appendfsync: str, durability: str) -> None:
    """500 concurrent acknowledged stores, kill -9, restart: all present and searchable. Writes in flight at the
    kill either succeed (and are then present) or report an error: never a false success. Both ways of ruling out
    a loss: Redis fsyncing before it replies (the scripts' default), or kb-mcp waiting for the fsync (`WAITAOF`)
    on a Redis that fsyncs every second (which alone lost an acknowledged write once in CI: with an fsync running,
    Redis postpones the AOF write, not the reply)."""
    server = redis_server_factory(REDIS_APPENDFSYNC=appendfsync)
    settings = make_settings(redis_url=server.url, breaker_threshold=1000, breaker_cooldown=0.2, durability=durability)
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:
        acked = await asyncio.gather(*(kb.store_fact(f"durable fact {i}: topic {i % 17}", tags=["bulk"])
                                       for i in range(500)))
        assert len({a.fact_id for a in acked}) == 500

        acknowledged: list[str] = []

        async def store(i: int) -> str | KbError:
            try:
                saved = await kb.store_fact(f"in flight at the kill {i}", fact_id=f"flight.{i}")
            except KbError as exc:
                return exc
            acknowledged.append(saved.fact_id)
            return saved.fact_id

        async def killer() -> None:
            while len(acknowledged) < 40:
                await asyncio.sleep(0.001)
            server.kill()

        results = await asyncio.gather(*(store(i) for i in range(400)), killer())
        outcomes = results[:400]
        errors = [r for r in outcomes if isinstance(r, KbError)]
        assert errors, "the kill happened mid-way, so some writes must have failed"
        assert all("knowledge store unavailable" in str(e) or "did not answer" in str(e) for e in errors)

        server.start()
        await asyncio.sleep(0.3)
        for fact_id in [a.fact_id for a in acked] + acknowledged:
            await kb.get_fact(fact_id)  # raises NotFound if an acknowledged write was lost
        hits = await kb.semantic_search("durable fact topic 3", top_k=50, tags=["bulk"])
        assert len(hits) == 50 and all(h.content.startswith("durable fact") for h in hits)
        assert await kb.count() >= 500 + len(acknowledged)


async def test_fsync_durability_waits_for_the_aof(redis_server_factory: Callable[[], RedisServer],
                                                  make_settings: Callable[..., Settings], embedding: Any) -> None:
    server = redis_server_factory()
    settings = make_settings(redis_url=server.url, durability="fsync")
    admin = aioredis.Redis.from_url(server.url)
    async with KnowledgeStore.open(settings, embedding=embedding) as kb:
        saved = await kb.store_fact("fsynced fact", fact_id="f1")
        assert saved.created
        await kb.store_many([{"content": f"bulk fsync {i}"} for i in range(100)])
        assert await kb.delete_fact("f1")
        await admin.config_set("appendonly", "no")
        with pytest.raises(StoreUnavailable, match="appendonly yes"):
            await kb.store_fact("not confirmed", fact_id="f2")
    await admin.aclose()


# ---------------------------------------------------------------- multi-tenant HTTP

TOKENS = {
    "token-alpha-0123456789abcdef": {"namespace": "alpha", "read_only": False, "name": "alpha"},
    "token-beta-0123456789abcdefg": {"namespace": "beta", "read_only": False, "name": "beta"},
    "token-alpha-reader-0123456789": {"namespace": "alpha", "read_only": True, "name": "alpha-reader"},
}


async def test_tenants_only_ever_see_their_own_namespace(settings: Settings, tmp_path: Path,
                                                         raw_redis: aioredis.Redis) -> None:
    suffix = settings.namespace
    tokens = {t: {**spec, "namespace": f"{spec['namespace']}{suffix}"} for t, spec in TOKENS.items()}
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    alpha, beta, reader = list(TOKENS)
    try:
        with http_server(settings, KB_AUTH_TOKENS_FILE=str(tokens_file)) as base:
            url = base + "/mcp"
            async with Client(streamable_http_client(url, http_client=bearer(alpha))) as a:
                stored = await a.call_tool("store_fact", {"content": "Alpha's launch code is 1234",
                                                          "fact_id": "secret", "tags": ["secret"]})
                assert not stored.is_error
            async with Client(streamable_http_client(url, http_client=bearer(beta))) as b:
                got = await b.call_tool("get_fact", {"fact_id": "secret"})
                assert got.is_error and "fact not found" in text(got)
                found = await b.call_tool("semantic_search", {"query": "launch code", "top_k": 50})
                assert found.structured_content == {"results": []}
                listed = await b.call_tool("get_fact", {"query": "launch code"})
                assert listed.structured_content and listed.structured_content["facts"] == []
                newest = await b.call_tool("get_fact", {"tags": ["secret"]})
                assert newest.structured_content and newest.structured_content["facts"] == []
                deleted = await b.call_tool("delete_fact", {"fact_id": "secret"})
                assert deleted.structured_content == {"fact_id": "secret", "deleted": False}
                stats = await b.call_tool("kb_stats", {})
                assert stats.structured_content and stats.structured_content["facts"] == 0
                assert stats.structured_content["namespace"] == f"beta{suffix}"
                with pytest.raises(MCPError) as unseen:  # resources are tenant-scoped too
                    await b.read_resource("kb://facts/secret")
                assert unseen.value.error.code == -32002
                beta_stats = json.loads((await b.read_resource("kb://stats")).contents[0].text)  # type: ignore[union-attr]
                assert beta_stats["namespace"] == f"beta{suffix}"
            async with Client(streamable_http_client(url, http_client=bearer(reader))) as r:
                got = await r.call_tool("get_fact", {"fact_id": "secret"})
                assert got.structured_content and got.structured_content["facts"][0]["content"].startswith("Alpha")
                read = await r.read_resource("kb://facts/secret")
                assert read.contents[0].text.startswith("Alpha")  # type: ignore[union-attr]
                refused = await r.call_tool("store_fact", {"content": "sneaky write"})
                assert refused.is_error and "read-only" in text(refused)
                refused = await r.call_tool("delete_fact", {"fact_id": "secret"})
                assert refused.is_error and "read-only" in text(refused)
            assert await raw_redis.exists(f"{{alpha{suffix}}}:fact:secret") == 1
            # HTTP-level limits: oversized bodies are refused, and so are foreign Host headers (DNS rebinding).
            big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "store_fact", "arguments": {"content": "x" * 2_000_000}}}
            headers = {"Authorization": f"Bearer {alpha}", "Accept": "application/json, text/event-stream"}
            response = httpx.post(url, json=big, headers=headers, timeout=30)
            assert response.status_code == 413
            rebinding = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                   headers={**headers, "Host": "evil.example"}, timeout=30)
            assert rebinding.status_code in (403, 421)
    finally:
        for ns in ("alpha", "beta"):
            keys = [k async for k in raw_redis.scan_iter(match=f"{ns}{suffix}:*")]
            if keys:
                await raw_redis.delete(*keys)
            with contextlib.suppress(aioredis.ResponseError):
                await raw_redis.execute_command("FT.DROPINDEX", f"{{{ns}{suffix}}}:idx")


def test_tokens_file_errors_are_clear(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text(json.dumps({"short": {"namespace": "a"}}))
    env = {**os.environ, **kb_env(settings), "KB_AUTH_TOKENS_FILE": str(bad)}
    result = subprocess.run([KB_MCP, "serve", "--transport", "http", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "at least 16 characters" in result.stderr


async def test_metrics_port_in_stdio_mode(settings: Settings, raw_redis: aioredis.Redis) -> None:
    port = free_port()
    params = StdioServerParameters(command=KB_MCP, args=[], env=kb_env(settings, KB_METRICS_PORT=str(port),
                                                                          KB_LOG_FORMAT="json"))
    async with Client(params) as client:
        await client.call_tool("store_fact", {"content": "metered", "fact_id": "m1"})
        await client.call_tool("get_fact", {"fact_id": "nope"})
        body = ""
        deadline = time.monotonic() + 10
        while f'kb_facts{{namespace="{settings.namespace}"}} 1.0' not in body:
            assert time.monotonic() < deadline, body[-2000:]
            await asyncio.sleep(0.2)
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'kb_tool_calls_total{outcome="ok",tool="store_fact"} 1.0' in body
        assert 'kb_tool_calls_total{outcome="NotFound",tool="get_fact"} 1.0' in body
        assert 'kb_operation_duration_seconds_count{kind="redis"}' in body
        assert 'kb_operation_duration_seconds_count{kind="index"}' in body
        assert "kb_redis_pool_connections_max 50.0" in body
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")


def test_json_logs_one_line_per_call_without_contents(settings: Settings) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "store_fact", "arguments": {"content": "TOP-SECRET-CONTENT", "fact_id": "log.1"}}},
    ]
    replies, stderr = stdio_exchange(messages, kb_env(settings, KB_LOG_FORMAT="json",
                                                      KB_AUTH_TOKEN="a-token-that-must-not-leak"))
    assert replies[2]["result"]["structuredContent"]["fact_id"] == "log.1"
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    calls = [entry for entry in lines if entry.get("tool") == "store_fact"]
    assert len(calls) == 1 and calls[0]["outcome"] == "ok" and calls[0]["duration_ms"] > 0
    assert "TOP-SECRET-CONTENT" not in stderr and "a-token-that-must-not-leak" not in stderr

    async def drop() -> None:
        client = aioredis.Redis.from_url(str(settings.redis_url))
        await client.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")
        await client.aclose()

    asyncio.run(drop())
