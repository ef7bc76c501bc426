"""Agent memory II through a real mcp.Client on a real Redis: metadata filters (KB_FILTER_FIELDS, `where`), scoped
deletes (delete_facts) and recency. The cluster runs the same filters and deletes in tests/integration/scale_out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from mcp import Client

from kb_mcp.config import Settings
from kb_mcp.store import KnowledgeStore
from tests.support.mcp import in_process, text

pytestmark = pytest.mark.anyio
FILTERS = "project:tag,priority:numeric,source:tag"
FACTS = [
    ("apollo.launch", "The Apollo launch window opens on 14 May.", {"project": "apollo", "priority": 3,
                                                                     "source": "slack"}, ["launch"]),
    ("apollo.budget", "The Apollo budget was cut by a tenth.", {"project": "apollo", "priority": 1,
                                                                 "source": "mail"}, ["money"]),
    ("gemini.launch", "The Gemini launch slipped to autumn.", {"project": "Gemini", "priority": 5,
                                                               "source": "wiki"}, ["launch"]),
    ("misc.lunch", "Lunch on Fridays is at noon.", {"source": "mail, weekly"}, []),
]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return text(result)


async def fill(client: Client) -> None:
    await call(client, "store_facts", facts=[{"fact_id": i, "content": c, "metadata": m, "tags": t}
                                             for i, c, m, t in FACTS])


async def ids_of_search(client: Client, **arguments: Any) -> list[str]:
    found = await call(client, "semantic_search", **{"query": "launch", "top_k": 10, **arguments})
    return [hit["fact_id"] for hit in found["results"]]


async def ids_of_listing(client: Client, **arguments: Any) -> set[str]:
    return {f["fact_id"] for f in (await call(client, "get_fact", **arguments))["facts"]}


async def test_where_filters_search_and_listings_inside_redis(make_settings: Callable[..., Settings],
                                                              embedding: Any) -> None:
    async with in_process(make_settings(filter_fields=FILTERS), embedding) as (client, _):
        await fill(client)
        cases: list[tuple[dict[str, Any], set[str]]] = [
            ({"project": "apollo"}, {"apollo.launch", "apollo.budget"}),
            ({"project": "GEMINI"}, {"gemini.launch"}),  # tag values match without regard to case
            ({"priority": {"gte": 3}}, {"apollo.launch", "gemini.launch"}),
            ({"priority": {"gt": 1, "lt": 5}}, {"apollo.launch"}),
            ({"priority": 1}, {"apollo.budget"}),
            ({"priority": {"in": [1, 5]}}, {"apollo.budget", "gemini.launch"}),
            ({"source": {"in": ["slack", "wiki"]}}, {"apollo.launch", "gemini.launch"}),
            ({"source": "mail, weekly"}, {"misc.lunch"}),  # punctuation and spaces: one value, one tag
            ({"project": {"ne": "apollo"}}, {"gemini.launch", "misc.lunch"}),  # ne: facts without the key too
            ({"project": "apollo", "source": "mail"}, {"apollo.budget"}),  # every condition must hold
        ]
        for where, expected in cases:
            for mode in ("hybrid", "vector", "keyword"):
                found = set(await ids_of_search(client, where=where, mode=mode))
                # keyword mode only returns facts holding the word; the filter must still hold for each
                assert found <= expected and (mode == "keyword" or found == expected), (where, mode, found)
            assert await ids_of_listing(client, where=where) == expected, where
        assert set(await ids_of_search(client, where={"project": "apollo"}, tags=["launch"])) == {"apollo.launch"}

        stats = await call(client, "kb_stats")
        assert stats["filter_fields"] == {"project": "tag", "priority": "numeric", "source": "tag"}


async def test_bad_where_and_bad_filter_metadata_get_one_sentence_and_change_nothing(
        make_settings: Callable[..., Settings], embedding: Any, raw_redis: aioredis.Redis) -> None:
    settings = make_settings(filter_fields=FILTERS)
    async with in_process(settings, embedding) as (client, _):
        await fill(client)
        for where, words in [
            ({"team": "x"}, "where.team: is not a filter key; the filter keys are: project (tag), priority (numeric)"),
            ({"priority": "high"}, "where.priority: 'priority' is numeric: eq needs a number (got 'high')"),
            ({"project": {"gte": 2}}, "unknown operator 'gte'; tag keys take eq, ne, in"),
            ({"priority": {"between": [1, 2]}}, "unknown operator 'between'"),
            ({"source": {"in": "slack"}}, "in takes a list of values"),
            ({"source": {"in": []}}, "a list of 1-100 values"),
            ({"project": {}}, "needs at least one operator"),
            ({"priority": None}, "where.priority must be a string, number or boolean (got NoneType)"),
            ({"priority": {"in": [1, None]}}, "where.priority"),
        ]:
            for tool, extra in (("semantic_search", {"query": "launch"}), ("get_fact", {}),
                                ("delete_facts", {})):
                message = await refused(client, tool, where=where, **extra)
                assert words in message, (tool, where, message)
        message = await refused(client, "store_fact", content="Priority is high.", metadata={"priority": "high"})
        assert "metadata.priority: must be a number: KB_FILTER_FIELDS indexes 'priority' as numeric" in message
        message = await refused(client, "update_fact", fact_id="apollo.launch", metadata={"priority": "urgent"})
        assert "metadata.priority" in message
        assert (await call(client, "get_fact", fact_id="apollo.launch"))["facts"][0]["metadata"]["priority"] == 3
        assert (await call(client, "kb_stats"))["facts"] == len(FACTS)
    async with in_process(make_settings(), embedding) as (client, _):  # no KB_FILTER_FIELDS: says how to declare
        message = await refused(client, "semantic_search", query="launch", where={"project": "apollo"})
        assert "no metadata keys are indexed for filtering (declare them with KB_FILTER_FIELDS" in message


async def test_changed_filter_fields_are_detected_and_reindex_applies_them(make_settings: Callable[..., Settings],
                                                                           embedding: Any) -> None:
    async with in_process(make_settings(), embedding) as (client, _):
        await fill(client)  # stored before any filter field was declared
    declared = make_settings(filter_fields=FILTERS)
    async with KnowledgeStore.open(declared, embedding=embedding) as kb:
        drift = await kb.index_drift()
        assert drift and "filter fields (none) (configured KB_FILTER_FIELDS=priority:numeric,project:tag" in drift
        async with in_process(declared, embedding) as (client, _):
            message = await refused(client, "semantic_search", query="launch", where={"project": "apollo"})
            assert "declared in KB_FILTER_FIELDS but the index was built before it: run kb-mcp reindex" in message
        await kb.rebuild_index()
        assert await kb.index_drift() is None
    async with in_process(declared, embedding) as (client, _):
        assert await ids_of_listing(client, where={"project": "apollo"}) == {"apollo.launch", "apollo.budget"}
        assert set(await ids_of_search(client, where={"priority": {"lte": 1}})) == {"apollo.budget"}
    fewer = make_settings(filter_fields="project:tag")  # a key dropped: reindex removes its field from every fact
    async with KnowledgeStore.open(fewer, embedding=embedding) as kb:
        assert "configured KB_FILTER_FIELDS=project:tag" in (await kb.index_drift() or "")
        await kb.rebuild_index()
        assert await kb.index_drift() is None
        raw = kb.manager.client
        assert await raw.hget(kb.key("apollo.launch"), "mf_priority") is None
        assert await raw.hget(kb.key("apollo.launch"), "mf_project") == b"apollo"
        await kb.drop_namespace()


async def test_delete_facts_scopes_dry_runs_and_refuses_no_scope(make_settings: Callable[..., Settings],
                                                                 embedding: Any, raw_redis: aioredis.Redis) -> None:
    settings = make_settings(filter_fields=FILTERS)
    async with in_process(settings, embedding) as (client, holder):
        await fill(client)
        await call(client, "store_fact", fact_id="Apollo.Launch", content="A fact whose id differs only in case.")
        message = await refused(client, "delete_facts")
        assert "give at least one filter" in message and "all=true" in message and "dry_run=true" in message
        message = await refused(client, "delete_facts", all=True, tags=["launch"])
        assert "all=true deletes every fact and takes no filters" in message
        message = await refused(client, "delete_facts", fact_ids=[])
        assert "fact_ids" in message
        counted = await call(client, "delete_facts", where={"project": "apollo"}, dry_run=True)
        assert counted == {"matched": 2, "deleted": 0, "dry_run": True, "more": False}
        assert (await call(client, "kb_stats"))["facts"] == len(FACTS) + 1  # a dry run deletes nothing

        both = await call(client, "delete_facts", tags=["launch"], where={"priority": {"gte": 4}})  # AND
        assert (both["matched"], both["deleted"]) == (1, 1)
        assert await ids_of_listing(client, tags=["launch"]) == {"apollo.launch"}

        exact = await call(client, "delete_facts", fact_ids=["apollo.launch", "no.such.fact"])
        assert (exact["matched"], exact["deleted"]) == (1, 1)
        assert (await call(client, "get_fact", fact_id="Apollo.Launch"))["facts"]  # ids are case-sensitive

        future = await call(client, "delete_facts", created_before="2000-01-01")
        assert (future["matched"], future["deleted"]) == (0, 0)
        dedup = await raw_redis.keys(f"{{{settings.namespace}}}:dedup:*")
        assert len(dedup) == 3  # each deleted fact took its dedup pointer with it
        everything = await call(client, "delete_facts", all=True)
        assert (everything["matched"], everything["deleted"], everything["more"]) == (3, 3, False)
        assert 'kb_facts_deleted_total{tool="delete_facts"} 5.0' in holder.metrics.render().decode()
        assert (await call(client, "kb_stats"))["facts"] == 0
        assert await raw_redis.keys(f"{{{settings.namespace}}}:dedup:*") == []


async def test_delete_facts_larger_than_one_call_answers_more_and_finishes_on_the_next(store: KnowledgeStore) -> None:
    await store.store_many([{"content": f"Batch fact {i} about the archive.", "tags": ["archive"]}
                            for i in range(25)])
    await store.store_fact("A fact that stays.", tags=["keep"])
    first = await store.delete_facts(tags=["archive"], budget_s=0.0, batch=10)
    assert (first.matched, first.deleted, first.more) == (25, 10, True)
    second = await store.delete_facts(tags=["archive"], budget_s=60.0, batch=10)
    assert (second.matched, second.deleted, second.more) == (15, 15, False)
    assert await store.count() == 1


async def test_read_only_hides_delete_facts(make_settings: Callable[..., Settings], embedding: Any) -> None:
    async with in_process(make_settings(read_only=True), embedding) as (client, _):
        assert "delete_facts" not in {t.name for t in (await client.list_tools()).tools}


async def test_recency_prefers_the_newer_of_equal_facts_and_a_long_half_life_changes_nothing(
        settings: Settings, embedding: Any, raw_redis: aioredis.Redis) -> None:
    day = 86_400.0
    async with in_process(settings, embedding) as (client, _):
        same = "The team standup moved to 9:30 in the small meeting room."
        await call(client, "store_facts", facts=[
            {"fact_id": "a.old", "content": same}, {"fact_id": "b.new", "content": same},
            {"fact_id": "c.older", "content": "Standups used to be held at ten o'clock."},
            {"fact_id": "d.other", "content": "Parking permits are renewed every January."}])
        now = time.time()
        days = {"a.old": 30, "b.new": 1, "c.older": 400, "d.other": 2}
        for fact_id, age_days in days.items():
            key = f"{{{settings.namespace}}}:fact:{fact_id}"
            await raw_redis.hset(key, "updated_at", f"{now - age_days * day:.3f}")
        for mode in ("hybrid", "vector", "keyword"):
            query = {"query": "where did the team standup move to?", "top_k": 4, "mode": mode}
            plain = (await call(client, "semantic_search", **query))["results"]
            assert [h["fact_id"] for h in plain][:2] == ["a.old", "b.new"], mode  # equal: fact-id order
            recent = (await call(client, "semantic_search", **query, recency_half_life_days=30))["results"]
            assert [h["fact_id"] for h in recent][:2] == ["b.new", "a.old"], mode
            assert recent[0]["score"] > recent[1]["score"]  # score is what they are ordered by
            assert [h["score"] for h in recent] == sorted((h["score"] for h in recent), reverse=True)
            relevance = {h["fact_id"]: h["score"] for h in plain}
            for hit in recent:  # 0.5 ** (age / half-life) of the relevance, as documented
                if relevance[hit["fact_id"]] > 0:
                    expected = relevance[hit["fact_id"]] * 0.5 ** (days[hit["fact_id"]] / 30)
                    assert hit["score"] == pytest.approx(expected, abs=2e-6)
            long = (await call(client, "semantic_search", **query, recency_half_life_days=36_500))["results"]
            # the order by relevance, only an exact tie now going to the newer fact
            by_relevance = sorted(plain, key=lambda h: (-h["score"], days[h["fact_id"]]))
            assert [h["fact_id"] for h in long] == [h["fact_id"] for h in by_relevance], mode
        message = await refused(client, "semantic_search", query="standup", recency_half_life_days=0)
        assert "recency_half_life_days" in message and "must be > 0" in message
