"""The fact model, its validation rules and its Redis record: what a fact is, independent of MCP and of I/O.

Validation lives here so every entry point (tools, CLI, import) refuses the same bad input with the same text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from pydantic import BaseModel, Field

from kb_mcp.errors import InvalidInput

Scalar = str | int | float | bool | None

FACT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:/-]{0,63}$")
MAX_TAGS = 32
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_JSON_CHARS = 16_384
MAX_QUERY_CHARS = 2_000
FACT_ID_RULE = "1-128 characters from A-Z a-z 0-9 _ . : -, starting with a letter or digit"
TAG_RULE = "1-64 characters from a-z 0-9 _ . : / -, starting with a letter or digit (tags are lower-cased)"

# Fields of one fact's Redis hash (also the record of the LlamaIndex RedisVectorStore index).
F_ID, F_DOC, F_TEXT, F_VECTOR = "id", "doc_id", "text", "vector"
F_TAGS, F_META, F_HASH, F_CREATED, F_UPDATED = "tags", "metadata", "content_hash", "created_at", "updated_at"
READ_FIELDS = (F_ID, F_TEXT, F_META, F_TAGS, F_CREATED, F_UPDATED, F_DOC)


class Fact(BaseModel):
    """One stored fact, as the store returns it."""

    fact_id: str
    content: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    doc_id: str | None = None


class StoredFact(BaseModel):
    """The outcome of `store_fact`: `created` is false for an update or a deduplicated store."""

    fact_id: str
    created: bool
    created_at: datetime
    updated_at: datetime


class ScoredFact(BaseModel):
    """A semantic search hit: cosine similarity in [-1, 1], higher is closer."""

    fact_id: str
    content: str
    metadata: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    score: float


class FactPage(BaseModel):
    """One page of facts and the opaque cursor of the next page (None on the last)."""

    facts: list[Fact]
    next_cursor: str | None = None
    total: int = 0


# ---------------------------------------------------------------- validation

def check_fact_id(fact_id: Any, field: str = "fact_id") -> str:
    if not isinstance(fact_id, str) or not FACT_ID_RE.match(fact_id):
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
        if not TAG_RE.match(norm):
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


# ---------------------------------------------------------------- record <-> fact

def normalise(content: str) -> str:
    """Whitespace-normalised content: what deduplication compares."""
    return " ".join(content.split())


def content_hash(content: str) -> str:
    return hashlib.sha256(normalise(content).encode("utf-8")).hexdigest()


def encode_metadata(metadata: dict[str, Scalar]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))


def format_ts(epoch_s: float) -> str:
    """Timestamps are stored as epoch seconds with millisecond precision (a NUMERIC field)."""
    return f"{epoch_s:.3f}"


def to_datetime(raw: bytes | str | float) -> datetime:
    value = float(raw.decode() if isinstance(raw, bytes) else raw)
    return datetime.fromtimestamp(value, tz=UTC)


def vector_bytes(vector: np.ndarray[Any, Any]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def build_record(
    fact_id: str, content: str, metadata: dict[str, Scalar], tags: list[str], vector: bytes, *,
    updated_at: str, doc_id: str | None = None, created_at: str | None = None,
) -> dict[str, str | bytes]:
    """The hash fields of one fact (created_at is added by the write script unless given).

    `_node_content` and friends make the hash a regular LlamaIndex node record, so `RedisVectorStore.aquery`
    rebuilds the node (tags and metadata included) and the index can be opened from LlamaIndex directly.
    """
    meta_json = encode_metadata(metadata)
    chash = content_hash(content)
    node = TextNode(
        id_=fact_id,
        text=content,
        metadata={F_TAGS: ",".join(tags), F_META: meta_json, F_HASH: chash},
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)} if doc_id else {},
    )
    record: dict[str, str | bytes] = {str(k): str(v) for k, v in node_to_metadata_dict(node, remove_text=True).items()}
    record.update({F_ID: fact_id, F_DOC: doc_id or "", F_TEXT: content, F_VECTOR: vector, F_UPDATED: updated_at})
    if created_at is not None:
        record[F_CREATED] = created_at
    return record


def as_text(raw: Any) -> str:
    """A Redis reply value as text (replies are bytes: vectors forbid decode_responses); None is ""."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8")
    return "" if raw is None else str(raw)


def split_tags(raw: bytes | str | None) -> list[str]:
    text = as_text(raw)
    return [t for t in text.split(",") if t]


def decode_metadata(raw: bytes | str | None) -> dict[str, Scalar]:
    text = as_text(raw)
    return json.loads(text) if text else {}


def fact_from_fields(fields: dict[str, bytes | str | None]) -> Fact:
    """A Fact from the READ_FIELDS of its hash."""
    doc = as_text(fields.get(F_DOC))
    created = fields.get(F_CREATED) or fields.get(F_UPDATED) or b"0"
    return Fact(
        fact_id=as_text(fields.get(F_ID)),
        content=as_text(fields.get(F_TEXT)),
        metadata=decode_metadata(fields.get(F_META)),
        tags=split_tags(fields.get(F_TAGS)),
        created_at=to_datetime(created),
        updated_at=to_datetime(fields.get(F_UPDATED) or created),
        doc_id=doc or None,
    )


def export_line(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """One JSONL export record (vector base64 float32, so an import needs no embedding)."""
    get = {k.decode(): v for k, v in fields.items()}
    return {
        "fact_id": as_text(get.get(F_ID)),
        "content": as_text(get.get(F_TEXT)),
        "metadata": decode_metadata(get.get(F_META)),
        "tags": split_tags(get.get(F_TAGS)),
        "doc_id": as_text(get.get(F_DOC)) or None,
        "created_at": float(as_text(get.get(F_CREATED)) or 0),
        "updated_at": float(as_text(get.get(F_UPDATED)) or 0),
        "vector": base64.b64encode(get.get(F_VECTOR, b"")).decode("ascii"),
    }
