"""The MCP tools, nothing else: argument shapes (the schema an agent reads, built from the field rules in `facts`),
one store call inside `tool_call`, and the result (its wire model from `wire`)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from kb_mcp.errors import InvalidInput
from kb_mcp.facts.models import ScoredFact, StoredFact
from kb_mcp.facts.rules import (
    MAX_BATCH,
    Content,
    Cursor,
    FactId,
    FactIds,
    Limit,
    Metadata,
    MinScore,
    Mode,
    Query,
    RecencyHalfLife,
    TagFilter,
    Tags,
    Timestamp,
    TopK,
    TtlSeconds,
    TtlUpdate,
    Where,
)
from kb_mcp.server.call import AppState, metrics_of, tool_call
from kb_mcp.server.results import fit
from kb_mcp.server.wire import (
    DeleteResult,
    FactIn,
    GetFactResult,
    SearchHit,
    SearchResult,
    StoreFactResult,
    StoreFactsResult,
    UpdateFactResult,
    fact_out,
    iso_or_none,
    stored_out,
)
from kb_mcp.store import DeleteReport, StoreStats


async def store_fact(
    content: Content,
    ctx: Context[AppState, Any],
    metadata: Metadata = {},  # noqa: B006 - pydantic copies defaults per call; the schema shows {}
    tags: Tags = [],  # noqa: B006
    fact_id: FactId | None = None,
    ttl_s: TtlSeconds = None,
) -> StoreFactResult:
    """Save a fact to long-term memory. With fact_id, creates or replaces that fact (created_at is kept): use a
    stable id like 'user.timezone' for facts that change. Without fact_id, an id is assigned, and storing the same
    content again (ignoring whitespace) returns the existing fact instead of a duplicate, adding any new tags and
    metadata to it. The result lists `similar` facts: if one says the same thing, update it (store with its
    fact_id) rather than piling up paraphrases. ttl_s forgets facts that stop being true."""
    async with tool_call(ctx, "store_fact", write=True) as store:
        saved: StoredFact = await store.store_fact(content, metadata=metadata, tags=tags, fact_id=fact_id,
                                                   ttl_s=ttl_s)
    return stored_out(saved)


async def update_fact(
    fact_id: FactId,
    ctx: Context[AppState, Any],
    content: Annotated[Content | None, Field(description="New content; omit to keep it")] = None,
    tags: Annotated[Tags | None, Field(description="New tags, replacing the old ones; omit to keep them")] = None,
    metadata: Annotated[Metadata | None, Field(description="New metadata, replacing the old; omit to keep it")] = None,
    ttl_s: TtlUpdate = None,
) -> UpdateFactResult:
    """Change an existing fact without sending it again: only the fields given change (tags and metadata given
    replace the old ones), created_at is kept, and the fact is embedded again only when its content changes. ttl_s=0
    makes it permanent. An unknown fact_id is an error and nothing is created."""
    async with tool_call(ctx, "update_fact", write=True) as store:
        saved = await store.update_fact(fact_id, content=content, tags=tags, metadata=metadata, ttl_s=ttl_s)
    metrics_of(ctx).fact_updates.labels(str(saved.re_embedded).lower()).inc()
    out = stored_out(saved)
    return UpdateFactResult(**out.model_dump(), re_embedded=saved.re_embedded)


async def store_facts(
    facts: Annotated[list[FactIn], Field(min_length=1, max_length=MAX_BATCH,
                                         description="1-100 facts, each like store_fact's arguments")],
    ctx: Context[AppState, Any],
) -> StoreFactsResult:
    """Save several facts in one call (1-100): far cheaper than one store_fact per fact. Every fact is checked
    first: one invalid fact is an error naming it (facts[3].tags[0]) and nothing is stored. Same rules as
    store_fact (upsert by fact_id, dedup without one, ttl_s, similar)."""
    async with tool_call(ctx, "store_facts", write=True) as store:
        saved = await store.store_facts([item.model_dump() for item in facts])
    return StoreFactsResult(results=[stored_out(s) for s in saved])


async def get_fact(
    ctx: Context[AppState, Any],
    fact_id: FactId | None = None,
    query: Annotated[Query | None, Field(description="Words that must all appear in the fact (exact keyword match, "
                                                     "not meaning: use semantic_search for that)")] = None,
    tags: TagFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    created_after: Timestamp = None,
    created_before: Timestamp = None,
    where: Where = None,
) -> GetFactResult:
    """Read facts exactly. With fact_id: that one fact (an error if it does not exist). With query: facts containing
    all the query's words. With neither: the newest facts first. Optional tags narrow the result; results come in
    pages of `limit`, continue with next_cursor; created_after/created_before keep facts created in that range,
    where filters on metadata. Long listings are cut to a response budget (truncated: true); a fact fetched by id
    always comes whole."""
    async with tool_call(ctx, "get_fact") as store:
        if fact_id is not None:
            if any(v is not None for v in (query, cursor, tags, created_after, created_before, where)):
                raise InvalidInput("fact_id", "give fact_id alone, or query/tags/where/cursor/created_* without "
                                              "fact_id")
            fact = await store.get_fact(fact_id)
            return GetFactResult(facts=[fact_out(fact)])
        page = await store.list_facts(query=query, tags=tags, limit=limit, cursor=cursor,
                                      created_after=created_after, created_before=created_before, where=where)
        budget = store.settings.max_response_chars
    fitted = fit([f.content for f in page.facts], budget)
    return GetFactResult(facts=[fact_out(f, fi) for f, fi in zip(page.facts, fitted, strict=False)],
                         next_cursor=page.next_cursor)


async def semantic_search(
    query: Annotated[Query, Field(description="What you are looking for, in natural language")],
    ctx: Context[AppState, Any],
    top_k: TopK = 5,
    tags: TagFilter = None,
    min_score: MinScore = None,
    mode: Mode = "hybrid",
    created_after: Timestamp = None,
    created_before: Timestamp = None,
    where: Where = None,
    recency_half_life_days: RecencyHalfLife = None,
) -> SearchResult:
    """Find facts by meaning, best first, even when they share no words with the query; names and rare words in
    the query count too (hybrid: vector similarity fused with keyword relevance). Use this to recall what is known
    about a topic before answering or before storing a possibly duplicate fact. created_after/created_before keep
    facts created in that range; where filters on metadata; recency_half_life_days prefers recently updated facts.
    Long results are cut to a response budget (truncated: true; get_fact by fact_id
    returns a whole fact)."""
    async with tool_call(ctx, "semantic_search") as store:
        hits: list[ScoredFact] = await store.semantic_search(query, top_k=top_k, tags=tags, min_score=min_score,
                                                             mode=mode, created_after=created_after,
                                                             created_before=created_before, where=where,
                                                             recency_half_life_days=recency_half_life_days)
        budget = store.settings.max_response_chars
    return SearchResult(results=[
        SearchHit(fact_id=h.fact_id, content=fi.content, metadata=h.metadata, tags=h.tags, score=h.score,
                  similarity=h.similarity, expires_at=iso_or_none(h.expires_at), truncated=fi.truncated,
                  content_chars=fi.content_chars if fi.truncated else None)
        for h, fi in zip(hits, fit([h.content for h in hits], budget), strict=False)])


async def delete_fact(fact_id: FactId, ctx: Context[AppState, Any]) -> DeleteResult:
    """Delete a fact by id, e.g. when it is wrong or the user asks to forget it. Deleting a missing fact is not an
    error (deleted: false)."""
    async with tool_call(ctx, "delete_fact", write=True) as store:
        deleted = await store.delete_fact(fact_id)
    metrics_of(ctx).facts_deleted.labels("delete_fact").inc(int(deleted))
    return DeleteResult(fact_id=fact_id, deleted=deleted)


async def delete_facts(
    ctx: Context[AppState, Any],
    fact_ids: FactIds = None,
    tags: TagFilter = None,
    created_before: Timestamp = None,
    created_after: Timestamp = None,
    where: Where = None,
    all: Annotated[bool, Field(description="Delete every fact (only without filters)")] = False,
    dry_run: Annotated[bool, Field(description="Count what would be deleted, delete nothing")] = False,
) -> DeleteReport:
    """Delete every fact matching ALL the filters given (fact_ids, tags, created_before/after, where), e.g. a
    project's facts or everything stored before a date. Without a filter it refuses, unless all=true. Use
    dry_run=true first to see how many match. A very large match is deleted over several calls: more=true means
    call again with the same filters."""
    async with tool_call(ctx, "delete_facts", write=True) as store:
        report = await store.delete_facts(fact_ids=fact_ids, tags=tags, created_after=created_after,
                                          created_before=created_before, where=where, all=all, dry_run=dry_run)
    metrics_of(ctx).facts_deleted.labels("delete_facts").inc(report.deleted)
    return report


async def kb_stats(ctx: Context[AppState, Any]) -> StoreStats:
    """Health and size of the knowledge base: number of facts, index state, Redis memory and connection state."""
    async with tool_call(ctx, "kb_stats") as store:
        return await store.stats()
