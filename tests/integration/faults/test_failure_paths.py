"""Failure paths that must still end in a clear sentence and change nothing they should not: a bug in any tool, pool
waits under load, a model failing half-way through a re-ingest, dedup while the index rebuilds, a file changing
during an import, commands bounded on a paused Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from llama_index.core.bridge.pydantic import PrivateAttr
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from kb_mcp.config import Settings
from kb_mcp.embeddings.base import KbEmbedding, Vectors
from kb_mcp.errors import InvalidInput, NotFound, StoreUnavailable
from kb_mcp.server import tools
from kb_mcp.store import KnowledgeStore
from kb_mcp.store.context import call_tokens
from kb_mcp.store.transfer import Transfer
from tests.support.faultproxy import FaultProxy
from tests.support.mcp import KB_MCP, embedding_endpoint, in_process, kb_env, stall, text
from tests.support.redis import RedisServer

pytestmark = pytest.mark.anyio

CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "store_fact": ("store_fact", {"content": "x"}),
    "get_fact": ("get_fact", {"fact_id": "x"}),
    "list_facts": ("get_fact", {}),
    "semantic_search": ("semantic_search", {"query": "x"}),
    "delete_fact": ("delete_fact", {"fact_id": "x"}),
    "stats": ("kb_stats", {}),
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_a_bug_in_any_tool_is_a_sentence_and_a_logged_traceback(settings: Settings, embedding: Any,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     method: str) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(KnowledgeStore, method, broken)
    tool, args = CALLS[method]
    with caplog.at_level(logging.ERROR):
        async with in_process(settings, embedding) as (client, holder):
            result = await client.call_tool(tool, args)
    message = text(result)
    assert result.is_error and f"{tool} failed unexpectedly (ZeroDivisionError)" in message, message
    assert "secret internals" not in message and "server log" in message
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    assert f'kb_tool_calls_total{{outcome="internal_error",tool="{tool}"}} 1.0' in holder.metrics.render().decode()


async def test_a_bug_outside_the_call_frame_is_a_sentence_too(settings: Settings, embedding: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fact: Any) -> Any:
        raise KeyError("while building the result")

    monkeypatch.setattr(tools, "fact_out", broken)  # the result builder, as the tools module calls it
    async with in_process(settings, embedding) as (client, _):
        await client.call_tool("store_fact", {"content": "y", "fact_id": "y"})
        result = await client.call_tool("get_fact", {"fact_id": "y"})
    assert result.is_error and "get_fact failed unexpectedly (KeyError)" in text(result), text(result)


async def test_waiting_for_a_pool_slot_never_opens_the_breaker(redis_server_factory: Callable[[], RedisServer],
                                                               make_settings: Callable[..., Settings],
                                                               embedding: Any) -> None:
    """400 concurrent searches through 4 connections to a Redis 20 ms away: the queue for a connection is long, but
    Redis answers every command it gets, so no call reads "circuit open". Searches (one KNN each, index deadline)
    all succeed; keyword listings (two commands each, 1 s Redis deadline) partly give up queueing, and say so."""
    server = redis_server_factory()
    with FaultProxy(server.port) as proxy:
        settings = make_settings(redis_url=proxy.url, redis_max_connections=4, timeout_redis=1.0,
                                 breaker_threshold=3)
        async with KnowledgeStore.open(settings, embedding=embedding) as kb:
            await kb.store_fact("a fact to find", fact_id="f")
            proxy.latency_s = 0.02
            searches = await asyncio.gather(*(kb.semantic_search("which fact?") for _ in range(400)),
                                            return_exceptions=True)
            assert [r for r in searches if isinstance(r, BaseException)] == []
            assert all(hits[0].fact_id == "f" for hits in searches if not isinstance(hits, BaseException))
            listings = await asyncio.gather(*(kb.list_facts(query="fact") for _ in range(400)),
                                            return_exceptions=True)
            errors = [str(r) for r in listings if isinstance(r, BaseException)]
            assert not any("circuit open" in e for e in errors), errors[:3]
            assert all("waiting for one of 4 Redis connections" in e for e in errors), errors[:3]  # not Redis
            assert kb.manager.breaker.state.value == "closed" and kb.manager.state().pool_in_use == 0


class FlakyEmbedding(KbEmbedding):
    """The real model, until told to fail after `ok_calls` more calls."""

    model_name: str = "flaky"
    _inner: KbEmbedding = PrivateAttr()
    _left: int | None = PrivateAttr(default=None)

    def __init__(self, inner: KbEmbedding) -> None:
        super().__init__(dim=inner.dim)
        self._inner = inner

    def fail_after(self, ok_calls: int) -> None:
        self._left = ok_calls

    async def aembed(self, texts: list[str]) -> Vectors:
        if self._left is not None:
            if self._left == 0:
                raise StoreUnavailable("embedding model failed")
            self._left -= 1
        return await self._inner.aembed(texts)

    def tokens(self, text: str) -> list[Any]:
        return self._inner.tokens(text)


async def test_a_failed_reingest_leaves_the_old_document_whole(settings: Settings, embedding: Any) -> None:
    flaky = FlakyEmbedding(embedding)
    old_text = " ".join(f"Old sentence {i} says something about topic {i % 5}." for i in range(400))
    new_text = " ".join(f"New sentence {i} says something else about {i % 3}." for i in range(400))
    tight = settings.model_copy(update={"timeout_index": 2.0})  # 1,333 tokens per embedding call
    async with KnowledgeStore.open(tight, embedding=flaky) as kb:
        try:
            old_ids = await kb.add_document(text=old_text, doc_id="manual", chunk_tokens=40, overlap_tokens=0)
            assert len(old_ids) * 40 > 2 * call_tokens(tight.timeouts.index_s)  # three embedding calls or more
            before = {i: (await kb.get_fact(i)).content for i in old_ids}
            flaky.fail_after(1)  # the second embedding call of the new text fails
            with pytest.raises(StoreUnavailable):
                await kb.add_document(text=new_text, doc_id="manual", chunk_tokens=40, overlap_tokens=0)
            assert {i: (await kb.get_fact(i)).content for i in old_ids} == before
            assert await kb.count() == len(old_ids)
            flaky.fail_after(1000)
            new_ids = await kb.add_document(text=new_text, doc_id="manual", chunk_tokens=40, overlap_tokens=0)
            assert await kb.count() == len(new_ids) and not set(new_ids) & set(old_ids)
        finally:
            await kb.drop_namespace()


async def test_dedup_merges_tags_and_metadata_and_holds_while_the_index_rebuilds(store: KnowledgeStore,
                                                                                raw_redis: aioredis.Redis) -> None:
    first = await store.store_fact("Water boils at 100 C at sea level", {"source": "a"}, ["physics"],
                                   fact_id="physics.boil")
    again = await store.store_fact("Water  boils at 100 C at sea level", {"checked": True}, ["Chemistry"])
    assert again.fact_id == "physics.boil" and not again.created and again.created_at == first.created_at
    fact = await store.get_fact("physics.boil")
    assert fact.tags == ["physics", "chemistry"] and fact.metadata == {"source": "a", "checked": True}
    same = await store.store_fact("Water boils at 100 C at sea level")  # nothing new: nothing written
    assert same.updated_at == again.updated_at
    # The keyword index is rebuilt from scratch (background scan over many facts): the dedup still holds.
    await store.store_many([{"content": f"filler fact {i}", "fact_id": f"fill.{i}"} for i in range(3000)])
    for i in range(5):
        await store.store_fact(f"Unique statement number {i} for dedup", fact_id=f"explicit.{i}")
    await raw_redis.execute_command("FT.DROPINDEX", store.index_name)
    results = [await store.store_fact(f"Unique statement number {i} for dedup") for i in range(5)]
    assert [r.fact_id for r in results] == [f"explicit.{i}" for i in range(5)]
    while (await store.stats()).index_state != "ready":
        await asyncio.sleep(0.05)
    assert await store.count() == 3000 + 5 + 1


async def test_deleting_a_fact_frees_its_content_for_a_new_store(store: KnowledgeStore) -> None:
    saved = await store.store_fact("Short-lived fact", fact_id="gone")
    assert await store.delete_fact(saved.fact_id)
    again = await store.store_fact("Short-lived fact")
    assert again.created and again.fact_id != "gone"


async def test_an_import_file_that_changes_is_refused(store: KnowledgeStore, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps({"content": f"imported fact {i}", "fact_id": f"imp.{i}"}) + "\n"
                            for i in range(10)), encoding="utf-8")
    original = Transfer.parse_line

    def parse_and_append(self: Transfer, lineno: int, line: str) -> Any:  # the file grows while it is validated
        if lineno == 10:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"content": "sneaked in", "fact_id": "sneaky"}) + "\n")
        return original(self, lineno, line)

    monkeypatch.setattr(Transfer, "parse_line", parse_and_append)
    with pytest.raises(InvalidInput, match="changed while it was being validated; nothing was written"):
        await store.import_(path)
    assert await store.count() == 0
    monkeypatch.undo()
    assert await store.import_(path) == 11


async def test_an_import_file_changed_between_its_passes_keeps_exactly_the_lines_before_the_change(
        store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write pass reads and parses chunk k+1 while chunk k is written: when chunk k+1 turns out changed,
    chunk k's write is finished (not cancelled) before the refusal, so "the lines before N were written" holds."""
    import kb_mcp.store.transfer as transfer

    monkeypatch.setattr(transfer, "IMPORT_CHUNK", 4)
    path = tmp_path / "facts.jsonl"
    lines = [json.dumps({"content": f"chunked fact {i}", "fact_id": f"chk.{i}"}) + "\n" for i in range(12)]
    path.write_text("".join(lines), encoding="utf-8")
    original = transfer._read_chunk
    reads = 0

    def read_changed_third_chunk_on_the_second_pass(handle: Any, count: int) -> list[str]:
        nonlocal reads
        reads += 1
        chunk = original(handle, count)
        if reads == 4 + 3:  # the first pass read 3 chunks and an empty end; this is the write pass's third chunk
            chunk = [line.replace("chunked", "changed") for line in chunk]
        return chunk

    monkeypatch.setattr(transfer, "_read_chunk", read_changed_third_chunk_on_the_second_pass)
    with pytest.raises(InvalidInput, match="the lines before 9 were written, none from 9 on"):
        await store.import_(path)
    assert await store.count() == 8
    assert (await store.get_fact("chk.7")).content == "chunked fact 7"
    with pytest.raises(NotFound):
        await store.get_fact("chk.8")


async def test_doctor_and_reindex_are_bounded_on_a_paused_redis(redis_server_factory: Callable[[], RedisServer],
                                                                make_settings: Callable[..., Settings]) -> None:
    server = redis_server_factory()
    settings = make_settings(redis_url=server.url)
    admin = aioredis.Redis.from_url(server.url)
    env = {**os.environ, **kb_env(settings)}
    for command in ("doctor", "reindex"):
        await admin.execute_command("CLIENT", "PAUSE", 8000, "ALL")
        started = time.perf_counter()
        result = await asyncio.to_thread(subprocess.run, [KB_MCP, command], env=env, capture_output=True,
                                         text=True, timeout=60)
        elapsed = time.perf_counter() - started
        assert result.returncode == 1 and elapsed < 15, (command, elapsed, result.stderr[-500:])
        assert "did not answer within 2.0 s" in result.stdout + result.stderr
        await admin.execute_command("CLIENT", "UNPAUSE")  # held back until the pause ends (see README facts)
    await admin.aclose()


async def test_doctor_is_bounded_on_a_stalled_embedding_endpoint(make_settings: Callable[..., Settings]) -> None:
    async with embedding_endpoint(stall) as url:
        env = {**os.environ, **kb_env(make_settings()), "KB_EMBEDDING_PROVIDER": "openai",
               "KB_EMBEDDING_URL": url, "KB_TIMEOUT_INDEX": "1"}
        started = time.perf_counter()
        result = await asyncio.to_thread(subprocess.run, [KB_MCP, "doctor"], env=env, capture_output=True,
                                         text=True, timeout=60)
    assert result.returncode == 1 and time.perf_counter() - started < 10
    assert "FAIL  embedding model" in result.stdout


async def not_json(request: Request) -> PlainTextResponse:
    return PlainTextResponse("<html>gateway error</html>")


async def test_an_embedding_endpoint_answering_garbage_is_a_clear_error(make_settings: Callable[..., Settings]
                                                                        ) -> None:
    async with embedding_endpoint(not_json) as url:
        settings = make_settings(embedding_provider="openai", embedding_url=url)
        async with in_process(settings) as (client, _):
            result = await client.call_tool("semantic_search", {"query": "anything"})
    assert result.is_error and "embedding endpoint failed: the response is not JSON" in text(result), text(result)


async def test_search_runs_under_the_index_deadline(settings: Settings, embedding: Any) -> None:
    """Every Redis step of semantic_search (the KNN, the full text, or hybrid's pipeline of both) is search work: it
    runs under the 10 s index deadline, none under the 2 s Redis one; and each mode is the model plus one Redis
    round trip (hybrid's two FT.SEARCH go as one pipeline)."""
    async with in_process(settings, embedding) as (client, holder):
        await client.call_tool("store_fact", {"content": "deadline kinds"})

        def ops(kind: str) -> float:
            prefix = f'kb_operation_duration_seconds_count{{kind="{kind}"}}'
            rendered = holder.metrics.render().decode()
            return float(next(x for x in rendered.splitlines() if x.startswith(prefix)).split()[-1])

        for mode, index_ops in (("vector", 2), ("hybrid", 2), ("keyword", 2)):  # embedding, then the Redis step
            before = (ops("index"), ops("redis"))
            await client.call_tool("semantic_search", {"query": f"deadline {mode}", "mode": mode})
            assert ops("index") - before[0] == index_ops and ops("redis") == before[1], mode


class DeletingEmbedding(KbEmbedding):
    """The real model, which first deletes a fact through another client: a delete landing while update_fact
    embeds its new content (between its read and its write)."""

    model_name: str = "deleting"
    _inner: KbEmbedding = PrivateAttr()
    _victim: tuple[aioredis.Redis, str] | None = PrivateAttr(default=None)

    def __init__(self, inner: KbEmbedding) -> None:
        super().__init__(dim=inner.dim)
        self._inner = inner

    def delete_next(self, client: aioredis.Redis, key: str) -> None:
        self._victim = (client, key)

    async def aembed(self, texts: list[str]) -> Vectors:
        if self._victim is not None:
            client, key = self._victim
            self._victim = None
            await client.delete(key)
        return await self._inner.aembed(texts)

    def tokens(self, text: str) -> list[Any]:
        return self._inner.tokens(text)


async def test_a_fact_deleted_during_update_fact_stays_deleted(settings: Settings, embedding: Any,
                                                               raw_redis: aioredis.Redis) -> None:
    model = DeletingEmbedding(embedding)
    async with KnowledgeStore.open(settings, embedding=model) as kb:
        try:
            await kb.store_fact("The office plant is watered on Mondays.", fact_id="plant")
            model.delete_next(raw_redis, kb.key("plant"))
            with pytest.raises(NotFound):
                await kb.update_fact("plant", content="The office plant is watered on Thursdays.")
            assert await raw_redis.exists(kb.key("plant")) == 0
            assert await kb.count() == 0
        finally:
            await kb.drop_namespace()
