"""The MCP tools and their result models, nothing else: argument shapes (the schema an agent reads, built from the
field rules in `facts`), one store call inside `tool_call`, and the result."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from kb_mcp.errors import InvalidInput
from kb_mcp.facts import (
    Content,
    Cursor,
    Fact,
    FactId,
    Limit,
    Metadata,
    MinScore,
    Mode,
    Query,
    Scalar,
    ScoredFact,
    StoredFact,
    TagFilter,
    Tags,
    TopK,
)
from kb_mcp.frame import AppState, tool_call
from kb_mcp.store import StoreStats


class StoreFactResult(BaseModel):
    fact_id: str
    created: bool = Field(description="False when an existing fact was updated or identical content already existed")
    created_at: str
    updated_at: str


class FactOut(BaseModel):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    created_at: str
    updated_at: str


class GetFactResult(BaseModel):
    facts: list[FactOut]
    next_cursor: str | None = Field(default=None, description="Pass as cursor to get the next page; null at the end")


class SearchHit(BaseModel):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    score: float = Field(description="What the results are ranked by, higher is better: hybrid = a blend of "
                                     "similarity and keyword relevance; vector = similarity; keyword = BM25")
    similarity: float = Field(description="Cosine similarity to the query, -1..1 (1.0 = same meaning), in every "
                                          "mode; min_score filters on it")


class SearchResult(BaseModel):
    results: list[SearchHit]


class DeleteResult(BaseModel):
    fact_id: str
    deleted: bool = Field(description="False when there was no such fact (deleting is idempotent)")


def _iso(ts: Any) -> str:
    return str(ts.isoformat().replace("+00:00", "Z"))


def _fact_out(fact: Fact) -> FactOut:
    return FactOut(fact_id=fact.fact_id, content=fact.content, metadata=fact.metadata, tags=fact.tags,
                   created_at=_iso(fact.created_at), updated_at=_iso(fact.updated_at))


async def store_fact(
    content: Content,
    ctx: Context[AppState, Any],
    metadata: Metadata = {},  # noqa: B006 - pydantic copies defaults per call; the schema shows {}
    tags: Tags = [],  # noqa: B006
    fact_id: FactId | None = None,
) -> StoreFactResult:
    """Save a fact to long-term memory. With fact_id, creates or replaces that fact (created_at is kept): use a
    stable id like 'user.timezone' for facts that change. Without fact_id, an id is assigned, and storing the same
    content again (ignoring whitespace) returns the existing fact instead of a duplicate, adding any new tags and
    metadata to it."""
    async with tool_call(ctx, "store_fact", write=True) as store:
        saved: StoredFact = await store.store_fact(content, metadata=metadata, tags=tags, fact_id=fact_id)
    return StoreFactResult(fact_id=saved.fact_id, created=saved.created, created_at=_iso(saved.created_at),
                           updated_at=_iso(saved.updated_at))


async def get_fact(
    ctx: Context[AppState, Any],
    fact_id: FactId | None = None,
    query: Annotated[Query | None, Field(description="Words that must all appear in the fact (exact keyword match, "
                                                     "not meaning: use semantic_search for that)")] = None,
    tags: TagFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> GetFactResult:
    """Read facts exactly. With fact_id: that one fact (an error if it does not exist). With query: facts containing
    all the query's words. With neither: the newest facts first. Optional tags narrow the result; results come in
    pages of `limit`, continue with next_cursor."""
    async with tool_call(ctx, "get_fact") as store:
        if fact_id is not None:
            if query is not None or cursor is not None or tags is not None:
                raise InvalidInput("fact_id", "give fact_id alone, or query/tags/cursor without fact_id")
            fact = await store.get_fact(fact_id)
            return GetFactResult(facts=[_fact_out(fact)])
        page = await store.list_facts(query=query, tags=tags, limit=limit, cursor=cursor)
    return GetFactResult(facts=[_fact_out(f) for f in page.facts], next_cursor=page.next_cursor)


async def semantic_search(
    query: Annotated[Query, Field(description="What you are looking for, in natural language")],
    ctx: Context[AppState, Any],
    top_k: TopK = 5,
    tags: TagFilter = None,
    min_score: MinScore = None,
    mode: Mode = "hybrid",
) -> SearchResult:
    """Find facts by meaning, best first, even when they share no words with the query; names and rare words in
    the query count too (hybrid: vector similarity fused with keyword relevance). Use this to recall what is known
    about a topic before answering or before storing a possibly duplicate fact."""
    async with tool_call(ctx, "semantic_search") as store:
        hits: list[ScoredFact] = await store.semantic_search(query, top_k=top_k, tags=tags, min_score=min_score,
                                                             mode=mode)
    return SearchResult(results=[SearchHit(**h.model_dump()) for h in hits])


async def delete_fact(fact_id: FactId, ctx: Context[AppState, Any]) -> DeleteResult:
    """Delete a fact by id, e.g. when it is wrong or the user asks to forget it. Deleting a missing fact is not an
    error (deleted: false)."""
    async with tool_call(ctx, "delete_fact", write=True) as store:
        deleted = await store.delete_fact(fact_id)
    return DeleteResult(fact_id=fact_id, deleted=deleted)


async def kb_stats(ctx: Context[AppState, Any]) -> StoreStats:
    """Health and size of the knowledge base: number of facts, index state, Redis memory and connection state."""
    async with tool_call(ctx, "kb_stats") as store:
        return await store.stats()
