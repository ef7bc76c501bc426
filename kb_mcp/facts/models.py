"""The fact models the store returns (the tools turn them into their wire results)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

Scalar = str | int | float | bool | None  # a metadata value


class FactContent(BaseModel):
    """What every returned fact carries: its id, content, metadata and tags."""

    fact_id: str
    content: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class Fact(FactContent):
    """One stored fact, as the store returns it."""

    created_at: datetime
    updated_at: datetime
    doc_id: str | None = None
    expires_at: datetime | None = None


class SimilarFact(BaseModel):
    """Another fact close in meaning to one just stored (a hint to update it rather than pile up paraphrases)."""

    fact_id: str
    similarity: float


class StoredFact(BaseModel):
    """The outcome of `store_fact`: `created` is false for an update or a deduplicated store."""

    fact_id: str
    created: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    similar: list[SimilarFact] = Field(default_factory=list)


class UpdatedFact(StoredFact):
    """The outcome of `update_fact`: `re_embedded` is true when the content changed and got a new vector."""

    re_embedded: bool = False


class ScoredFact(FactContent):
    """A search hit: `score` is what it was ranked by (higher is better; see SearchMode), `similarity` its cosine
    similarity to the query in [-1, 1] whatever the mode."""

    score: float
    similarity: float
    expires_at: datetime | None = None


class FactPage(BaseModel):
    """One page of facts and the opaque cursor of the next page (None on the last)."""

    facts: list[Fact]
    next_cursor: str | None = None
    total: int = 0
