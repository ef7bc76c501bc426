"""What agents need from a memory server, through a real mcp.Client on a real Redis: batch stores, expiring facts,
"similar fact exists" hints, a response budget, creation-time filters and MCP resources."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from tests.support.mcp import KB_MCP, TOOLS, http_server, in_process, kb_env, text

pytestmark = pytest.mark.anyio


def facts_of(result: Any, key: str = "facts") -> list[dict[str, Any]]:
    assert not result.is_error, text(result)
    return list(result.structured_content[key])


async def test_store_facts_is_all_or_nothing_and_in_order(settings: Settings, embedding: Any,
                                                          raw_redis: aioredis.Redis) -> None:
    batch = [{"content": f"Batch fact number {i} about the harbour.", "tags": ["batch"]} for i in range(100)]
    async with in_process(settings, embedding) as (client, _):
        bad = [*batch[:57], {**batch[57], "tags": ["not ok"]}, *batch[58:]]
        refused = await client.call_tool("store_facts", {"facts": bad})
        assert refused.is_error and "facts[57].tags[0]" in text(refused), text(refused)
        assert await raw_redis.exists(*[k async for k in raw_redis.scan_iter(f"{{{settings.namespace}}}:fact:*")] or
                                      ["none"]) == 0
        too_long = await client.call_tool("store_facts", {"facts": [{"content": "x" * 40_000}]})
        assert too_long.is_error and "facts[0].content" in text(too_long)
        stored = facts_of(await client.call_tool("store_facts", {"facts": batch}), "results")
        assert len(stored) == 100 and all(r["created"] for r in stored)
        again = facts_of(await client.call_tool("store_facts", {"facts": [batch[3], {"content": "brand new",
                                                                                       "fact_id": "new.1"}]}),
                         "results")
        assert again[0]["fact_id"] == stored[3]["fact_id"] and not again[0]["created"]  # dedup, as store_fact
        assert again[1]["fact_id"] == "new.1" and again[1]["created"]
        stats = await client.call_tool("kb_stats", {})
        assert stats.structured_content and stats.structured_content["facts"] == 101


async def test_update_fact_changes_only_what_it_is_given(settings: Settings, embedding: Any,
                                                         raw_redis: aioredis.Redis) -> None:
    key = f"{{{settings.namespace}}}:fact:pref.editor"
    async with in_process(settings, embedding) as (client, holder):
        first = await client.call_tool("store_fact", {"content": "Sam edits code in Vim.", "fact_id": "pref.editor",
                                                      "tags": ["prefs"], "metadata": {"source": "chat"}})
        assert first.structured_content
        vector = await raw_redis.hget(key, "vector")

        retagged = await client.call_tool("update_fact", {"fact_id": "pref.editor", "tags": ["Tools", "prefs"],
                                                          "ttl_s": 3600})
        out = retagged.structured_content
        assert out and not retagged.is_error and out["re_embedded"] is False and out["created"] is False
        assert out["created_at"] == first.structured_content["created_at"] and out["expires_at"]
        assert await raw_redis.hget(key, "vector") == vector  # no model run: the same bytes
        assert 3_500_000 < await raw_redis.pttl(key) <= 3_600_000
        got = facts_of(await client.call_tool("get_fact", {"fact_id": "pref.editor"}))[0]
        assert got["content"] == "Sam edits code in Vim." and got["tags"] == ["tools", "prefs"]
        assert got["metadata"] == {"source": "chat"}  # not given: kept

        rewritten = await client.call_tool("update_fact", {"fact_id": "pref.editor", "ttl_s": 0,
                                                           "content": "Sam moved from Vim to Helix last spring."})
        assert rewritten.structured_content and rewritten.structured_content["re_embedded"] is True
        counted = holder.metrics.render().decode()
        assert 'kb_fact_updates_total{re_embedded="true"} 1.0' in counted
        assert 'kb_fact_updates_total{re_embedded="false"} 1.0' in counted
        assert rewritten.structured_content["expires_at"] is None and await raw_redis.pttl(key) == -1
        assert await raw_redis.hget(key, "vector") != vector
        hits = (await client.call_tool("semantic_search", {"query": "which editor does Sam use now?",
                                                           "mode": "vector", "top_k": 1})).structured_content
        assert hits and hits["results"][0]["fact_id"] == "pref.editor"
        assert "Helix" in hits["results"][0]["content"]
        # The dedup pointer followed the content: the old text stored without an id is a new fact now.
        old = await client.call_tool("store_fact", {"content": "Sam edits code in Vim."})
        assert old.structured_content and old.structured_content["created"]
        again = await client.call_tool("store_fact", {"content": "Sam moved from Vim to Helix last spring."})
        assert again.structured_content and again.structured_content["fact_id"] == "pref.editor"

        before = await raw_redis.dbsize()
        for args, says in [({"fact_id": "no.such"}, "fact not found"),
                           ({"fact_id": "pref.editor", "ttl_s": 30}, "ttl_s must be 0 (permanent) or at least 60"),
                           ({"fact_id": "pref.editor", "content": "   "}, "content must not be empty"),
                           ({"fact_id": "pref.editor", "tags": ["bad tag"]}, "tags[0] 'bad tag' is not valid")]:
            refused = await client.call_tool("update_fact", args)
            assert refused.is_error and says in text(refused), text(refused)
        assert await raw_redis.dbsize() == before
        assert not await raw_redis.exists(f"{{{settings.namespace}}}:fact:no.such")
        unchanged = facts_of(await client.call_tool("get_fact", {"fact_id": "pref.editor"}))[0]
        assert unchanged["tags"] == ["tools", "prefs"] and "Helix" in unchanged["content"]


async def test_expiring_facts_disappear_from_every_read(settings: Settings, embedding: Any,
                                                        raw_redis: aioredis.Redis) -> None:
    async with in_process(settings, embedding) as (client, _):
        short = await client.call_tool("store_fact", {"content": "In a meeting until 3 pm", "fact_id": "busy",
                                                      "ttl_s": 60})
        assert short.structured_content and short.structured_content["expires_at"]
        ttl = await raw_redis.pttl(f"{{{settings.namespace}}}:fact:busy")
        assert 55_000 < ttl <= 60_000
        got = facts_of(await client.call_tool("get_fact", {"fact_id": "busy"}))
        assert got[0]["expires_at"] == short.structured_content["expires_at"]
        await raw_redis.pexpire(f"{{{settings.namespace}}}:fact:busy", 50)  # the minute passes
        await asyncio.sleep(0.3)
        assert (await client.call_tool("get_fact", {"fact_id": "busy"})).is_error
        assert facts_of(await client.call_tool("get_fact", {})) == []
        assert facts_of(await client.call_tool("semantic_search", {"query": "meeting"}), "results") == []
        await client.call_tool("store_fact", {"content": "Working from home", "fact_id": "where", "ttl_s": 600})
        permanent = await client.call_tool("store_fact", {"content": "Working from home", "fact_id": "where"})
        assert permanent.structured_content and permanent.structured_content["expires_at"] is None
        assert await raw_redis.pttl(f"{{{settings.namespace}}}:fact:where") == -1
        for bad in (59, 315_360_001, "soon"):
            assert (await client.call_tool("store_fact", {"content": "x", "ttl_s": bad})).is_error


async def test_a_paraphrase_of_an_existing_fact_is_pointed_out(settings: Settings, embedding: Any) -> None:
    async with in_process(settings, embedding) as (client, _):
        first = await client.call_tool("store_fact", {"content": "The user's favourite colour is green.",
                                                      "fact_id": "user.colour"})
        assert first.structured_content and first.structured_content["similar"] == []
        await client.call_tool("store_fact", {"content": "Deployments happen on Tuesdays.", "fact_id": "ops"})
        second = await client.call_tool("store_fact", {"content": "The user's favorite color is green."})
        assert second.structured_content
        similar = second.structured_content["similar"]
        assert [s["fact_id"] for s in similar] == ["user.colour"] and similar[0]["similarity"] >= 0.85


async def test_the_hint_survives_the_index_rebuilt_as_flat_under_a_running_server(
        make_settings: Callable[..., Settings], embedding: Any, raw_redis: aioredis.Redis) -> None:
    # The hint's KNN sets EF_RUNTIME, which a FLAT index refuses: a server that saw HNSW must notice the rebuild.
    async with KnowledgeStore.open(make_settings(), embedding=embedding) as running:
        try:
            await running.store_fact("The user's favourite colour is green.", fact_id="user.colour")
            assert running.index_name.encode() in await raw_redis.execute_command("FT._LIST")
            await raw_redis.execute_command("FT.DROPINDEX", running.index_name)  # the facts stay
            async with KnowledgeStore.open(make_settings(vector_algorithm="flat"), embedding=embedding) as other:
                await other.ensure_index()
                while (await other.stats()).index_state != "ready":  # FLAT re-reads the stored facts first
                    await asyncio.sleep(0.05)
            again = await running.store_fact("The user's favorite color is green.")
            assert [s.fact_id for s in again.similar] == ["user.colour"]
        finally:
            await running.drop_namespace()


async def test_the_response_budget_caps_long_results(make_settings: Callable[..., Settings], embedding: Any) -> None:
    settings = make_settings(max_response_chars=16_000)
    long_facts = [{"content": f"Fact {i}: " + "the harbour is busy with ships and cranes. " * 50, "fact_id": f"l{i}"}
                  for i in range(50)]
    async with in_process(settings, embedding) as (client, _):
        await client.call_tool("store_facts", {"facts": long_facts})
        hits = facts_of(await client.call_tool("semantic_search", {"query": "harbour ships", "top_k": 50}), "results")
        assert sum(len(h["content"]) for h in hits) <= 16_000 and 1 <= len(hits) < 50
        assert all(not h["truncated"] for h in hits[:-1]) and hits[-1]["truncated"]
        assert hits[-1]["content_chars"] == len(long_facts[0]["content"]) + (len(hits[-1]["fact_id"]) - 2)
        listed = facts_of(await client.call_tool("get_fact", {"limit": 100}))
        assert sum(len(f["content"]) for f in listed) <= 16_000 and listed[-1]["truncated"]
        whole = facts_of(await client.call_tool("get_fact", {"fact_id": "l7"}))
        assert whole[0]["content"] == long_facts[7]["content"] and not whole[0]["truncated"]
    tiny = make_settings(max_response_chars=100)
    async with in_process(tiny, embedding) as (client, _):
        first_only = facts_of(await client.call_tool("semantic_search", {"query": "harbour", "top_k": 5}), "results")
        assert len(first_only) == 1 and len(first_only[0]["content"]) == 100 and first_only[0]["truncated"]


async def test_time_filters_include_both_boundaries(settings: Settings, embedding: Any, tmp_path: Path) -> None:
    times = {"jan": 1767225600.0, "feb": 1769904000.0, "mar": 1772323200.0}  # 2026-01-01, 02-01, 03-01 UTC
    path = tmp_path / "dated.jsonl"
    path.write_text("".join(json.dumps({"content": f"Report filed in {name} about the harbour", "fact_id": name,
                                        "created_at": t, "updated_at": t}) + "\n" for name, t in times.items()))
    async with in_process(settings, embedding) as (client, holder):
        assert holder.state
        await holder.state.backend.store(settings.namespace).import_(path)
        window = {"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-03-01"}
        for mode in ("hybrid", "vector", "keyword"):
            hits = facts_of(await client.call_tool("semantic_search", {"query": "harbour report", "mode": mode,
                                                                       **window}), "results")
            assert {h["fact_id"] for h in hits} == {"feb", "mar"}, mode
        # 01:00 at +01:00 is feb's very second (inclusive); a second earlier leaves it out.
        listed = facts_of(await client.call_tool("get_fact", {"created_before": "2026-02-01T01:00:00+01:00"}))
        assert [f["fact_id"] for f in listed] == ["feb", "jan"]
        listed = facts_of(await client.call_tool("get_fact", {"created_before": "2026-01-31T23:59:59Z"}))
        assert [f["fact_id"] for f in listed] == ["jan"]
        keyword = facts_of(await client.call_tool("get_fact", {"query": "harbour", "created_after": "2026-03-01"}))
        assert [f["fact_id"] for f in keyword] == ["mar"]
        bad = await client.call_tool("semantic_search", {"query": "x", "created_after": "last week"})
        assert bad.is_error and "created_after" in text(bad) and "ISO 8601" in text(bad)
        backwards = await client.call_tool("get_fact", {"created_after": "2026-03-01", "created_before": "2026-01-01"})
        assert backwards.is_error and "earlier than created_after" in text(backwards)


async def test_facts_and_stats_as_resources(settings: Settings, embedding: Any) -> None:
    async with in_process(settings, embedding) as (client, _):
        await client.call_tool("store_fact", {"content": "The user's cat is called Pixel.", "fact_id": "user.cat",
                                              "tags": ["pets"], "metadata": {"source": "chat"}})
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["kb://facts/{fact_id}"]
        read = await client.read_resource("kb://facts/user.cat")
        body = read.contents[0].text  # type: ignore[union-attr]
        assert body.startswith("The user's cat is called Pixel.")
        about = json.loads(body.split("```json\n", 1)[1].split("\n```", 1)[0])
        assert about["tags"] == ["pets"] and about["metadata"] == {"source": "chat"}
        with pytest.raises(MCPError) as info:
            await client.read_resource("kb://facts/no.such.fact")
        assert info.value.error.code == -32002 and "fact not found" in info.value.error.message
        stats = json.loads((await client.read_resource("kb://stats")).contents[0].text)  # type: ignore[union-attr]
        assert stats["facts"] == 1 and stats["namespace"] == settings.namespace


async def test_the_new_contracts_over_stdio_and_http(settings: Settings, raw_redis: aioredis.Redis) -> None:
    params = StdioServerParameters(command=KB_MCP, args=[], env={**kb_env(settings), "PATH": os.environ["PATH"]})
    async with Client(params) as client:
        stored = facts_of(await client.call_tool("store_facts", {"facts": [
            {"content": "Stdio batch fact one", "fact_id": "io.1", "ttl_s": 3600},
            {"content": "Stdio batch fact two", "fact_id": "io.2"}]}), "results")
        assert stored[0]["expires_at"] and stored[1]["expires_at"] is None
        read = await client.read_resource("kb://facts/io.2")
        assert read.contents[0].text.startswith("Stdio batch fact two")  # type: ignore[union-attr]
    with http_server(settings) as base:
        async with Client(base + "/mcp") as client:
            hits = facts_of(await client.call_tool("semantic_search", {
                "query": "batch fact", "created_after": "2000-01-01", "mode": "keyword"}), "results")
            assert {h["fact_id"] for h in hits} == {"io.1", "io.2"}
            assert (await client.read_resource("kb://stats")).contents
    await raw_redis.execute_command("FT.DROPINDEX", f"{{{settings.namespace}}}:idx", "DD")


INSPECTOR_2 = "@modelcontextprotocol/inspector@2"


def inspector2(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The current MCP Inspector CLI (2.x, Node >= 22.19 from scripts/node22.sh); exits 5 on an isError result."""
    node_bin = os.environ.get("KB_NODE22_BIN", "")
    env = kb_env(settings, KB_FILTER_FIELDS="project:tag")
    env_flags = [flag for k, v in env.items() for flag in ("-e", f"{k}={v}")]
    return subprocess.run(["npx", "-y", INSPECTOR_2, "--cli", *env_flags, KB_MCP, *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PATH": f"{node_bin}:{os.environ['PATH']}"})


@pytest.mark.skipif(not os.environ.get("KB_NODE22_BIN") and not os.environ.get("KB_REQUIRE_INSPECTOR"),
                    reason="Node 22 for the Inspector 2.x not provisioned (scripts/test.sh does it)")
def test_the_current_inspector_calls_every_tool_and_reads_a_resource(settings: Settings) -> None:
    listed = inspector2(settings, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == TOOLS
    calls = [("store_fact", ["content=The current Inspector can reach kb-mcp", "fact_id=inspector2.1",
                             'tags=["inspector"]', "ttl_s=3600"]),
             ("store_facts", ['facts=[{"content": "Batch from the Inspector", "fact_id": "inspector2.2", '
                              '"metadata": {"project": "apollo"}}]']),
             ("update_fact", ["fact_id=inspector2.1", 'tags=["inspector", "edited"]']),
             ("get_fact", ["fact_id=inspector2.1"]),
             ("semantic_search", ["query=can the inspector reach it?", "mode=hybrid"]),
             ("semantic_search", ["query=batch", 'where={"project": "apollo"}', "recency_half_life_days=30"]),
             ("kb_stats", []),
             ("delete_facts", ['where={"project": "apollo"}', "dry_run=true"]),
             ("delete_fact", ["fact_id=inspector2.2"])]
    for tool, tool_args in calls:
        flags = [flag for a in tool_args for flag in ("--tool-arg", a)]
        result = inspector2(settings, "--method", "tools/call", "--tool-name", tool, *flags)
        assert result.returncode == 0, (tool, result.stdout[-1000:], result.stderr[-1000:])
        assert json.loads(result.stdout)["isError"] is False, tool
    missing = inspector2(settings, "--method", "tools/call", "--tool-name", "get_fact", "--tool-arg", "fact_id=nope")
    assert missing.returncode == 5 and "fact not found" in missing.stdout  # 2.x: exit 5 on an isError result
    read = inspector2(settings, "--method", "resources/read", "--uri", "kb://facts/inspector2.1")
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout)["contents"][0]["text"].startswith("The current Inspector can reach kb-mcp")
