"""KnowledgeStore on a real Redis Stack: CRUD, upsert/dedup, validation, pagination, keyword and semantic search,
documents, export/import, concurrency and the connection bound."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kb_mcp.errors import InvalidInput, NotFound, StartupError
from kb_mcp.store import KnowledgeStore
from tests.support.corpus import FACTS_AND_QUERIES

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Every test here runs on one server, on the namespace's shard of a Redis Cluster, and on the master Sentinel
    names."""
    if request.param == "cluster":
        return str(request.getfixturevalue("local_cluster").url)
    if request.param == "sentinel":
        return str(request.getfixturevalue("local_sentinel").url)
    return redis_url


async def snapshot(client: aioredis.Redis, store: KnowledgeStore) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of the namespace, field by field (bytes)."""
    keys = [k async for k in client.scan_iter(match=store.key_prefix + "*")]
    return {k: await client.hgetall(k) for k in keys}


async def test_store_get_delete_roundtrip(store: KnowledgeStore) -> None:
    saved = await store.store_fact("The user's timezone is Europe/Paris", {"source": "chat", "n": 2, "ok": True},
                                   ["Prefs", "user"])
    assert saved.created
    fact = await store.get_fact(saved.fact_id)
    assert fact.content == "The user's timezone is Europe/Paris"
    assert fact.metadata == {"source": "chat", "n": 2, "ok": True}
    assert fact.tags == ["prefs", "user"]
    assert fact.created_at == saved.created_at
    assert await store.delete_fact(saved.fact_id) is True
    assert await store.delete_fact(saved.fact_id) is False
    with pytest.raises(NotFound, match="fact not found"):
        await store.get_fact(saved.fact_id)


async def test_upsert_keeps_created_at_and_replaces_everything_else(store: KnowledgeStore) -> None:
    first = await store.store_fact("Coffee: flat white", {"a": 1}, ["drinks"], fact_id="user.coffee")
    await asyncio.sleep(0.01)
    second = await store.store_fact("Coffee: espresso", {"b": 2}, [], fact_id="user.coffee")
    assert first.created and not second.created
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    fact = await store.get_fact("user.coffee")
    assert (fact.content, fact.metadata, fact.tags) == ("Coffee: espresso", {"b": 2}, [])
    hits = await store.semantic_search("espresso coffee", top_k=1)
    assert hits[0].fact_id == "user.coffee" and hits[0].content == "Coffee: espresso"
    assert (await store.list_facts(tags=["drinks"])).facts == []


async def test_identical_content_is_deduplicated_even_concurrently(store: KnowledgeStore) -> None:
    first = await store.store_fact("The sky  is\tblue.")
    again = await store.store_fact("  The sky is blue.  ")
    assert first.created and not again.created and again.fact_id == first.fact_id
    results = await asyncio.gather(*(store.store_fact(f"Concurrent   fact {i % 3}") for i in range(30)))
    assert len({r.fact_id for r in results}) == 3
    assert sum(r.created for r in results) == 3
    assert await store.count() == 4


async def test_dedup_finds_content_stored_under_an_explicit_id(store: KnowledgeStore) -> None:
    await store.store_fact("Water boils at 100 C at sea level", fact_id="physics.boil")
    again = await store.store_fact("Water boils at 100 C at sea level")
    assert again.fact_id == "physics.boil" and not again.created


async def test_store_facts_dedups_within_the_call_and_against_what_is_stored(store: KnowledgeStore) -> None:
    # Item 40 repeats a fact stored before, item 55 repeats item 2 of the same call; every vector must be its own
    # content's (one embedding batch for all 60).
    here = await store.store_fact("The lighthouse keeper was already here.")
    batch: list[dict[str, Any]] = [{"content": f"Batch fact {i}: the lighthouse keeper logs ship number {i}."}
                                   for i in range(60)]
    batch[40] = {"content": "The lighthouse keeper was already here.", "tags": ["again"]}
    batch[55] = {"content": batch[2]["content"]}
    batch[30] = {"content": "Given id, given lifetime.", "fact_id": "given.30", "ttl_s": 3600}
    stored = await store.store_facts(batch)
    assert stored[30].fact_id == "given.30" and stored[30].expires_at is not None
    assert stored[40].fact_id == here.fact_id and not stored[40].created
    assert "again" in (await store.get_fact(here.fact_id)).tags
    assert stored[55].fact_id == stored[2].fact_id and stored[2].created + stored[55].created == 1
    assert await store.count() == 1 + 58
    for i in (0, 24, 25, 49, 50, 59):
        (hit,) = await store.semantic_search(batch[i]["content"], top_k=1, mode="vector")
        assert hit.fact_id == stored[i].fact_id and hit.similarity > 0.9999, (i, hit)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"content": ""}, "content"),
    ({"content": "   \n"}, "content"),
    ({"content": "x" * 40_000}, "content"),
    ({"content": "ok", "metadata": {"nested": {"a": 1}}}, "metadata.nested"),
    ({"content": "ok", "metadata": {"list": [1, 2]}}, "metadata.list"),
    ({"content": "ok", "metadata": {"nan": float("nan")}}, "metadata.nan"),
    ({"content": "ok", "metadata": {"": 1}}, "metadata"),
    ({"content": "ok", "tags": ["has space"]}, "tags[0]"),  # the element at fault, as a tool's error names it
    ({"content": "ok", "tags": ["ok", "a,b"]}, "tags[1]"),
    ({"content": "ok", "tags": ["{x}"]}, "tags[0]"),
    ({"content": "ok", "tags": ["t"] * 33}, "tags"),
    ({"content": "ok", "fact_id": "a b"}, "fact_id"),
    ({"content": "ok", "fact_id": "*"}, "fact_id"),
    ({"content": "ok", "fact_id": "../etc/passwd"}, "fact_id"),
    ({"content": "ok", "fact_id": "x" * 129}, "fact_id"),
    ({"content": "bad \ud800 surrogate"}, "content"),
])
async def test_invalid_input_is_refused_and_changes_nothing(store: KnowledgeStore, raw_redis: aioredis.Redis,
                                                            kwargs: dict[str, Any], field: str) -> None:
    await store.store_fact("an existing fact", fact_id="keep.me")
    before = await snapshot(raw_redis, store)
    with pytest.raises(InvalidInput) as info:
        await store.store_fact(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert await snapshot(raw_redis, store) == before


async def test_newest_first_pagination_covers_every_fact_once(store: KnowledgeStore) -> None:
    for i in range(25):
        await store.store_fact(f"numbered fact {i}", fact_id=f"n{i:02d}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list_facts(limit=10, cursor=cursor)
        seen += [f.fact_id for f in page.facts]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"n{i:02d}" for i in reversed(range(25))]


async def test_cursor_is_checked(store: KnowledgeStore) -> None:
    for i in range(3):
        await store.store_fact(f"apple fact {i}", fact_id=f"a{i}")
    page = await store.list_facts(query="apple", limit=1)
    assert page.next_cursor
    with pytest.raises(InvalidInput, match="different query"):
        await store.list_facts(query="pear", limit=1, cursor=page.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        await store.list_facts(limit=1, cursor="not-a-cursor!")


SPECIALS = ['@', '|', '-', '*', '{', '}', '(', ')', '"', "'", ':', ';', '~', '%', '\\']


async def test_keyword_queries_escape_every_special_character(store: KnowledgeStore) -> None:
    await store.store_fact("Email alice@example.com about the (urgent) budget-review; 50% done ~ \"soon\"",
                           fact_id="mail")
    await store.store_fact("Le café à Zürich sert des crêpes délicieuses", fact_id="cafe")
    await store.store_fact("Unrelated sentence about gardening", fact_id="garden")
    for char in SPECIALS:
        page = await store.list_facts(query=f"budget{char}review {char}urgent{char}")
        assert [f.fact_id for f in page.facts] == ["mail"], char
    for query in ["alice@example.com", "(urgent)", "-budget", "@Email:(about)", "*", "50%", "\"soon\"", "{urgent}"]:
        page = await store.list_facts(query=f"{query} budget")
        assert [f.fact_id for f in page.facts] == ["mail"], query
    assert [f.fact_id for f in (await store.list_facts(query="Zürich crêpes")).facts] == ["cafe"]
    assert [f.fact_id for f in (await store.list_facts(query="café")).facts] == ["cafe"]
    with pytest.raises(InvalidInput, match="no words"):
        await store.list_facts(query="@|{}()")


async def test_tag_filters_require_every_tag(store: KnowledgeStore) -> None:
    await store.store_fact("Tagged both", tags=["red", "blue"], fact_id="both")
    await store.store_fact("Tagged red", tags=["red"], fact_id="red")
    assert {f.fact_id for f in (await store.list_facts(tags=["red"])).facts} == {"both", "red"}
    assert [f.fact_id for f in (await store.list_facts(tags=["red", "BLUE"])).facts] == ["both"]
    hits = await store.semantic_search("tagged", tags=["blue"])
    assert [h.fact_id for h in hits] == ["both"]


async def test_semantic_recall_at_1_on_paraphrases(store: KnowledgeStore) -> None:
    ids = await store.store_many([{"content": fact, "fact_id": f"c{i:02d}"}
                                  for i, (fact, _) in enumerate(FACTS_AND_QUERIES)])
    assert len(ids) == len(FACTS_AND_QUERIES) >= 30
    correct = 0
    for i, (_, query) in enumerate(FACTS_AND_QUERIES):
        hits = await store.semantic_search(query, top_k=3)
        assert hits == sorted(hits, key=lambda h: h.score, reverse=True)
        correct += hits[0].fact_id == f"c{i:02d}"
    recall = correct / len(FACTS_AND_QUERIES)
    assert recall >= 0.85, f"recall@1 {recall:.2f}"


async def test_min_score_and_top_k(store: KnowledgeStore) -> None:
    await store.store_many([{"content": fact} for fact, _ in FACTS_AND_QUERIES[:10]])
    assert len(await store.semantic_search("anything at all", top_k=7)) == 7
    every = await store.semantic_search("What coffee order does the user have?", top_k=10)
    threshold = (max(h.similarity for h in every) + min(h.similarity for h in every)) / 2
    hits = await store.semantic_search("What coffee order does the user have?", top_k=10, min_score=threshold)
    assert hits == [h for h in every if h.similarity >= threshold] and 0 < len(hits) < 10
    for bad in (0, 51):
        with pytest.raises(InvalidInput, match="top_k"):
            await store.semantic_search("q", top_k=bad)
    with pytest.raises(InvalidInput, match="min_score"):
        await store.semantic_search("q", min_score=float("nan"))


async def test_documents_are_chunked_and_replaced(store: KnowledgeStore, tmp_path: Path) -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(300))
    ids = await store.add_document(text=text, doc_id="manual", tags=["docs"], metadata={"v": 1})
    assert len(ids) > 3 and all(i.startswith("manual.") for i in ids)
    first = await store.get_fact(ids[0])
    assert first.doc_id == "manual" and first.metadata["v"] == 1 and first.tags == ["docs"]
    assert await store.add_document(text=text, doc_id="manual", tags=["docs"], metadata={"v": 1}) == ids  # same text
    again = await store.add_document(text="A much shorter manual.", doc_id="manual")
    assert len(again) == 1 and again[0].startswith("manual.") and again[0].endswith(".00000")
    assert await store.count() == 1 and (await store.get_fact(again[0])).content == "A much shorter manual."
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nThe deploy key lives in the vault.\n", encoding="utf-8")
    file_ids = await store.add_document(path=path)
    fact = await store.get_fact(file_ids[0])
    assert "deploy key" in fact.content and fact.metadata["source"] == str(path)
    with pytest.raises(InvalidInput, match="not a readable file"):
        await store.add_document(path=tmp_path / "missing.md")
    (tmp_path / "bin.md").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInput, match="UTF-8"):
        await store.add_document(path=tmp_path / "bin.md")


async def test_export_wipe_import_is_byte_for_byte(store: KnowledgeStore, raw_redis: aioredis.Redis,
                                                   tmp_path: Path) -> None:
    await store.store_fact("Plain fact", fact_id="p1")
    await store.store_fact("Ünïcödé fact with \"quotes\" and \\ backslash", {"k": "v", "f": 1.5, "n": None},
                           ["a", "b:c"])
    await store.add_document(text="First sentence. " * 50, doc_id="doc1")
    await store.store_many([{"content": fact} for fact, _ in FACTS_AND_QUERIES[:20]])
    before = await snapshot(raw_redis, store)
    path = tmp_path / "kb.jsonl"
    assert await store.export(path) == len(before)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(before) and all("vector" in json.loads(line) for line in lines)
    await store.drop_namespace()
    assert await snapshot(raw_redis, store) == {}
    await store.ensure_index()
    assert await store.import_(path) == len(before)
    assert await snapshot(raw_redis, store) == before
    hits = await store.semantic_search("Which time zone does the user live in?", top_k=1)
    assert "Paris" in hits[0].content


async def test_import_validates_the_whole_file_first(store: KnowledgeStore, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"content": "good one"}) + "\n" + json.dumps({"content": ""}) + "\n")
    with pytest.raises(InvalidInput, match=r"line 2\.content"):
        await store.import_(path)
    assert await store.count() == 0
    many = "".join(json.dumps({"content": f"fact {i}"}) + "\n" for i in range(2500))  # spans three read chunks
    path.write_text(many + json.dumps({"content": "ok", "tags": ["bad tag"]}) + "\n")
    with pytest.raises(InvalidInput, match=r"line 2501\.tags"):
        await store.import_(path)
    assert await store.count() == 0
    path.write_text(json.dumps({"content": "hand written, no vector", "tags": ["x"]}) + "\n")
    assert await store.import_(path) == 1
    assert (await store.semantic_search("hand written"))[0].content == "hand written, no vector"


class ConnectionWatch:
    """Samples CLIENT LIST every few ms from a separate, named client; `peak` is the most other clients seen."""

    def __init__(self, observer: aioredis.Redis) -> None:
        self.observer = observer
        self.peak = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConnectionWatch:
        await self.observer.client_setname("kb-test-observer")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            clients = await self.observer.client_list()
            # redis-py clients only: not a replica's link, nor the sentinels' connections
            self.peak = max(self.peak, sum(1 for c in clients if c.get("name") != "kb-test-observer"
                                           and c.get("lib-name") == "redis-py"))
            await asyncio.sleep(0.003)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def test_concurrent_stores_and_searches_stay_within_the_pool(store: KnowledgeStore,
                                                                   raw_redis: aioredis.Redis) -> None:
    """50 concurrent stores and 100 concurrent searches all succeed; never more than 50 connections."""
    async with ConnectionWatch(raw_redis) as watch:
        stored = await asyncio.gather(*(store.store_fact(f"concurrent fact number {i} about topic {i % 5}")
                                        for i in range(50)))
        found = await asyncio.gather(*(store.semantic_search(f"topic {i % 5}", top_k=3) for i in range(100)))
        reads = await asyncio.gather(*(store.get_fact(stored[i % 50].fact_id) for i in range(300)))
    assert len({s.fact_id for s in stored}) == 50
    assert all(len(hits) == 3 for hits in found)
    assert len(reads) == 300
    assert 0 < watch.peak <= 50, watch.peak
    assert store.manager.state().pool_in_use == 0


async def test_a_small_pool_bounds_connections_and_still_serves_everyone(make_settings: Any, embedding: Any,
                                                                         raw_redis: aioredis.Redis) -> None:
    async with KnowledgeStore.open(make_settings(redis_max_connections=4), embedding=embedding) as kb:
        try:
            await kb.store_fact("seed fact", fact_id="seed")
            async with ConnectionWatch(raw_redis) as watch:
                results = await asyncio.gather(*(kb.get_fact("seed") for _ in range(300)))
            assert all(r.fact_id == "seed" for r in results)
            assert 1 <= watch.peak <= 4, watch.peak
        finally:
            await kb.drop_namespace()


async def test_no_synchronous_redis_client_is_ever_built(make_settings: Any, embedding: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a synchronous redis.Redis client was created")

    monkeypatch.setattr(redis.Redis, "__init__", forbidden)
    monkeypatch.setattr(redis.ConnectionPool, "__init__", forbidden)
    async with KnowledgeStore.open(make_settings(), embedding=embedding) as kb:
        try:
            saved = await kb.store_fact("async only", tags=["t"])
            assert (await kb.semantic_search("async", tags=["t"]))[0].fact_id == saved.fact_id
            assert (await kb.list_facts(query="async")).facts
            await kb.stats()
            await kb.rebuild_index()
        finally:
            await kb.drop_namespace()


async def test_index_creation_is_idempotent_and_keeps_data(store: KnowledgeStore, make_settings: Any,
                                                           embedding: Any) -> None:
    await store.store_fact("survives restarts", fact_id="keep")
    async with KnowledgeStore.open(make_settings(), embedding=embedding) as again:
        assert (await again.get_fact("keep")).content == "survives restarts"
        assert await again.count() == 1
    stats = await store.rebuild_index()
    assert stats.facts == 1 and stats.index_state == "ready"
    assert (await store.semantic_search("survives"))[0].fact_id == "keep"


async def test_dimension_mismatch_is_a_clear_startup_error(make_settings: Any, embedding: Any,
                                                           raw_redis: aioredis.Redis, namespace: str) -> None:
    await raw_redis.execute_command("FT.CREATE", f"{{{namespace}}}:idx", "ON", "HASH", "PREFIX", 1,
                                    f"{{{namespace}}}:fact:",
                                    "SCHEMA", "vector", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 8,
                                    "DISTANCE_METRIC", "COSINE")
    try:
        with pytest.raises(StartupError, match="8-d vectors but the embedding model gives 384-d"):
            async with KnowledgeStore.open(make_settings(), embedding=embedding):
                pass
    finally:
        await raw_redis.execute_command("FT.DROPINDEX", f"{{{namespace}}}:idx")


async def test_stats_report_count_index_and_breaker(store: KnowledgeStore) -> None:
    await store.store_many([{"content": f"stat fact {i}"} for i in range(7)])
    stats = await store.stats()
    for _ in range(100):  # a new index scans the whole keyspace once in the background
        if stats.index_state == "ready":
            break
        await asyncio.sleep(0.05)
        stats = await store.stats()
    assert stats.facts == 7 and stats.index_state == "ready" and stats.dimensions == 384
    assert stats.redis.breaker == "closed" and stats.redis.pool_max == 50
    assert stats.redis_version and stats.used_memory_bytes and stats.error is None


async def test_records_are_plain_llamaindex_nodes(store: KnowledgeStore) -> None:
    """A stock RedisVectorStore (LlamaIndex, `store.vector_store`) on the same index finds the facts with their full
    node metadata."""
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.redis import RedisVectorStore

    saved = await store.store_fact("The user's timezone is Europe/Paris", {"src": "chat"}, ["prefs"])
    await store.store_fact("Deployments happen on Tuesdays", tags=["ops"])
    stock = store.vector_store
    assert type(stock) is RedisVectorStore
    vector = (await store.embedding.aembed(["Which time zone is the user in?"]))[0]
    result = await stock.aquery(VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=1))
    node = result.nodes[0]
    assert node.node_id == saved.fact_id and node.get_content() == "The user's timezone is Europe/Paris"
    assert node.metadata["tags"] == "prefs" and json.loads(node.metadata["metadata"]) == {"src": "chat"}
    ours = await store.semantic_search("Which time zone is the user in?", top_k=1)
    assert result.similarities and abs(ours[0].similarity - result.similarities[0]) < 1e-5
