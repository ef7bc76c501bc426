"""What a fact is, independent of MCP and of Redis: the models the store returns, and THE one definition of every
field rule (id and tag patterns, lengths, scalar metadata).

Each rule is written once and used twice: as an `Annotated` type, which the MCP tools put in the input schema an
agent reads, and by the `check_*` functions, which every entry point (tools, CLI, import) runs before touching Redis,
so the same bad input is refused with the same text everywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from kb_mcp.errors import InvalidInput

Scalar = str | int | float | bool | None

# ---------------------------------------------------------------- the rules

FACT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
FACT_ID_MAX = 128
FACT_ID_RULE = "1-128 characters from A-Z a-z 0-9 _ . : -, starting with a letter or digit"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"  # checked after lower-casing: tags are stored lower-case
TAG_MAX = 64
TAG_RULE = "1-64 characters from a-z 0-9 _ . : / -, starting with a letter or digit (tags are lower-cased)"
MAX_TAGS = 32
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_JSON_CHARS = 16_384
MAX_QUERY_CHARS = 2_000
MAX_CONTENT_SCHEMA_CHARS = 1_000_000  # the schema's bound; the real one is KB_MAX_FACT_CHARS (config)
TOP_K_MAX = 50
MAX_BATCH = 100  # facts per store_facts call
LIMIT_MAX = 100
CURSOR_MAX_CHARS = 512
TTL_MIN_S = 60
TTL_MAX_S = 315_360_000  # ten years

RULES = {FACT_ID_PATTERN: FACT_ID_RULE, TAG_PATTERN: TAG_RULE}  # pattern -> the rule in words (error messages)
_FACT_ID_RE = re.compile(FACT_ID_PATTERN)
_TAG_RE = re.compile(TAG_PATTERN)

# ---------------------------------------------------------------- the same rules as schema types (MCP tools)

FactId = Annotated[str, Field(min_length=1, max_length=FACT_ID_MAX, pattern=FACT_ID_PATTERN,
                              description="Stable id of a fact, e.g. 'user.timezone' (letters, digits, _ . : -)")]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX, pattern=TAG_PATTERN)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS, description="Short labels, e.g. ['preferences', 'project:x']; "
                                                                   "stored lower-case")]
TagFilter = Annotated[list[Tag] | None, Field(max_length=MAX_TAGS, description="Only facts carrying ALL of these tags")]
Metadata = Annotated[dict[str, Scalar], Field(max_length=MAX_METADATA_KEYS,
                                              description="Flat JSON object of extra attributes (string keys, "
                                                          "scalar values)")]
Content = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_SCHEMA_CHARS,
                               description="The fact, as a self-contained sentence or paragraph "
                                           "(limit KB_MAX_FACT_CHARS, default 32768 characters)")]
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
TopK = Annotated[int, Field(ge=1, le=TOP_K_MAX, description="How many results at most")]
Limit = Annotated[int, Field(ge=1, le=LIMIT_MAX)]
MinScore = Annotated[float | None, Field(ge=-1.0, le=1.0, description="Drop results whose similarity is below "
                                                                      "this; 0.3-0.5 keeps related facts")]
SearchMode = Literal["hybrid", "vector", "keyword"]
Mode = Annotated[SearchMode, Field(description="hybrid (default): meaning and exact words, fused; vector: meaning "
                                               "only; keyword: exact words only (BM25)")]
Timestamp = Annotated[str | None, Field(max_length=64, description=(
    "ISO 8601 date or time, e.g. '2026-11-27' or '2026-11-27T09:30:00+01:00'; without a timezone UTC is assumed. "
    "Inclusive."))]
TtlSeconds = Annotated[int | None, Field(ge=TTL_MIN_S, le=TTL_MAX_S, description=(
    "Forget the fact after this many seconds, for facts that stop being true (e.g. 'in a meeting until 3 pm': "
    "ttl_s=3600). Omit it for a permanent fact; storing the fact again without ttl_s makes it permanent."))]
Cursor = Annotated[str | None, Field(max_length=CURSOR_MAX_CHARS, description="next_cursor of the previous page")]


# ---------------------------------------------------------------- models


class Fact(BaseModel):
    """One stored fact, as the store returns it."""

    fact_id: str
    content: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
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


class ScoredFact(BaseModel):
    """A search hit: `score` is what it was ranked by (higher is better; see SearchMode), `similarity` its cosine
    similarity to the query in [-1, 1] whatever the mode."""

    fact_id: str
    content: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    score: float
    similarity: float
    expires_at: datetime | None = None


class FactPage(BaseModel):
    """One page of facts and the opaque cursor of the next page (None on the last)."""

    facts: list[Fact]
    next_cursor: str | None = None
    total: int = 0


# ---------------------------------------------------------------- checks (store side)

def check_fact_id(fact_id: Any, field: str = "fact_id") -> str:
    if not isinstance(fact_id, str) or not _FACT_ID_RE.match(fact_id):
        raise InvalidInput(field, f"{fact_id!r} is not a valid id ({FACT_ID_RULE})")
    return fact_id


def check_content(content: Any, max_chars: int, field: str = "content") -> str:
    if not isinstance(content, str):
        raise InvalidInput(field, "must be a string")
    if not content.strip():
        raise InvalidInput(field, "must not be empty or only whitespace")
    if len(content) > max_chars:
        raise InvalidInput(field, f"is {len(content)} characters; the limit is {max_chars} (KB_MAX_FACT_CHARS)")
    _check_encodable(content, field)
    return content


def check_query(query: Any, field: str = "query") -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput(field, "must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(field, f"is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    _check_encodable(query, field)
    return query


def check_tags(tags: Any, field: str = "tags") -> list[str]:
    """Lower-case, de-duplicate (order kept) and check every tag; the charset keeps them safe in TAG queries."""
    if tags is None:
        return []
    if not isinstance(tags, list | tuple):
        raise InvalidInput(field, "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise InvalidInput(field, f"has {len(tags)} tags; the limit is {MAX_TAGS}")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidInput(field, f"{tag!r} is not a string")
        norm = tag.strip().lower()
        if not _TAG_RE.match(norm):
            raise InvalidInput(field, f"{tag!r} is not a valid tag ({TAG_RULE})")
        if norm not in out:
            out.append(norm)
    return out


def check_metadata(metadata: Any, field: str = "metadata") -> dict[str, Scalar]:
    """A flat JSON object: string keys, scalar values (no lists, no nested objects, no NaN/inf)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(field, "must be a JSON object of string keys to scalar values")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(field, f"has {len(metadata)} keys; the limit is {MAX_METADATA_KEYS}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidInput(field, f"key {key!r} must be a string of 1-{MAX_METADATA_KEY_CHARS} characters")
        _check_encodable(key, f"{field}.{key}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{field}.{key}", "must be a finite number (NaN and infinity are not JSON)")
        if value is not None and not isinstance(value, str | int | float | bool):
            kind = type(value).__name__
            raise InvalidInput(f"{field}.{key}", f"must be a string, number, boolean or null, not {kind}")
        if isinstance(value, str):
            _check_encodable(value, f"{field}.{key}")
    if len(encode_metadata(metadata)) > MAX_METADATA_JSON_CHARS:
        raise InvalidInput(field, f"is larger than {MAX_METADATA_JSON_CHARS} characters as JSON")
    return dict(metadata)


def check_int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(field, f"must be an integer from {low} to {high}, got {value!r}")
    return value


SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "keyword")


def check_mode(value: Any) -> SearchMode:
    for mode in SEARCH_MODES:
        if value == mode:
            return mode
    raise InvalidInput("mode", f"must be one of {', '.join(SEARCH_MODES)}, got {value!r}")


def check_ttl(value: Any, field: str = "ttl_s") -> int | None:
    if value is None:
        return None
    return check_int(value, field, TTL_MIN_S, TTL_MAX_S)


def check_time(value: Any, field: str) -> float | None:
    """An ISO 8601 date/time as epoch seconds (UTC when no timezone is given); None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be an ISO 8601 date or time string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-27T09:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_time_range(after: Any, before: Any) -> tuple[float | None, float | None]:
    low, high = check_time(after, "created_after"), check_time(before, "created_before")
    if low is not None and high is not None and low > high:
        raise InvalidInput("created_before", "is earlier than created_after")
    return low, high


def check_score(value: Any, field: str = "min_score") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and -1 <= value <= 1):
        raise InvalidInput(field, f"must be a number from -1 to 1, got {value!r}")
    return float(value)


def _check_encodable(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "is not valid Unicode (lone surrogate)") from None


# ---------------------------------------------------------------- content identity

def normalise(content: str) -> str:
    """Whitespace-normalised content: what deduplication compares."""
    return " ".join(content.split())


def content_hash(content: str) -> str:
    return hashlib.sha256(normalise(content).encode("utf-8")).hexdigest()


def encode_metadata(metadata: dict[str, Scalar]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))
