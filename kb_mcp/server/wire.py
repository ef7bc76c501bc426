"""The tools' wire models: what an agent sends inside store_facts and what every tool returns (ISO times, the
response budget's truncation marks, lean output schemas), built from the store's domain models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kb_mcp.facts.models import Fact, Scalar, StoredFact
from kb_mcp.facts.rules import Content, FactId, Metadata, Tags, TtlSeconds
from kb_mcp.server.results import Fitted


def lean_schema(schema: dict[str, Any]) -> None:
    """Output schemas in their plainest JSON Schema form: an `anyOf` of bare types becomes one `type` list
    (`{"type": ["string", "null"]}`). Same meaning, but a client that validates every result against the schema (the
    Python SDK does, with jsonschema) checks it in one step instead of one sub-schema per branch."""
    for value in list(schema.values()):
        if isinstance(value, dict):
            lean_schema(value)
    options = schema.get("anyOf")
    if isinstance(options, list) and options and all(isinstance(o, dict) and set(o) == {"type"} for o in options):
        del schema["anyOf"]
        schema["type"] = [o["type"] for o in options]


class LeanSchema(BaseModel):
    """A result model whose JSON Schema is made lean (see `lean_schema`)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: lean_schema(schema))


class SimilarOut(LeanSchema):
    fact_id: str
    similarity: float


class StoreFactResult(LeanSchema):
    fact_id: str
    created: bool = Field(description="False when an existing fact was updated or identical content already existed")
    created_at: str
    updated_at: str
    expires_at: str | None = Field(default=None, description="When the fact will be forgotten (ttl_s); null: never")
    similar: list[SimilarOut] = Field(default_factory=list, description=(
        "Up to 3 OTHER facts that say nearly the same (similarity >= 0.85): if one is the same fact in other words, "
        "store with its fact_id to update it instead of keeping both"))


class UpdateFactResult(StoreFactResult):
    re_embedded: bool = Field(description="True when the content changed and was embedded again")


class StoreFactsResult(LeanSchema):
    results: list[StoreFactResult] = Field(description="One per input fact, in input order")


class FactIn(BaseModel):
    """One fact of a store_facts batch: the same fields as store_fact."""

    content: Content
    metadata: Metadata = {}
    tags: Tags = []
    fact_id: FactId | None = None
    ttl_s: TtlSeconds = None


class FactOut(LeanSchema):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    created_at: str
    updated_at: str
    expires_at: str | None = None
    truncated: bool = Field(default=False, description="The content was cut to fit the response budget")
    content_chars: int | None = Field(default=None, description="The full content length when truncated; fetch "
                                                                "the fact by fact_id for all of it")


class GetFactResult(LeanSchema):
    facts: list[FactOut]
    next_cursor: str | None = Field(default=None, description="Pass as cursor to get the next page; null at the end")


class SearchHit(LeanSchema):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    score: float = Field(description="What the results are ranked by, higher is better: hybrid = a blend of "
                                     "similarity and keyword relevance; vector = similarity; keyword = BM25")
    similarity: float = Field(description="Cosine similarity to the query, -1..1 (1.0 = same meaning), in every "
                                          "mode; min_score filters on it")
    expires_at: str | None = None
    truncated: bool = Field(default=False, description="The content was cut to fit the response budget")
    content_chars: int | None = Field(default=None, description="The full content length when truncated")


class SearchResult(LeanSchema):
    results: list[SearchHit]


class DeleteResult(LeanSchema):
    fact_id: str
    deleted: bool = Field(description="False when there was no such fact (deleting is idempotent)")


def iso(ts: Any) -> str:
    return str(ts.isoformat().replace("+00:00", "Z"))


def iso_or_none(ts: Any) -> str | None:
    return None if ts is None else iso(ts)


def fact_out(fact: Fact, fitted: Fitted | None = None) -> FactOut:
    return FactOut(fact_id=fact.fact_id, content=fitted.content if fitted else fact.content, metadata=fact.metadata,
                   tags=fact.tags, created_at=iso(fact.created_at), updated_at=iso(fact.updated_at),
                   expires_at=iso_or_none(fact.expires_at), truncated=bool(fitted and fitted.truncated),
                   content_chars=fitted.content_chars if fitted and fitted.truncated else None)


def stored_out(saved: StoredFact) -> StoreFactResult:
    return StoreFactResult(fact_id=saved.fact_id, created=saved.created, created_at=iso(saved.created_at),
                           updated_at=iso(saved.updated_at), expires_at=iso_or_none(saved.expires_at),
                           similar=[SimilarOut(fact_id=s.fact_id, similarity=s.similarity) for s in saved.similar])
