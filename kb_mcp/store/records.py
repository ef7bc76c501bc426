"""A fact's Redis hash, both ways: the record written for a fact, and the Fact (or export line) read back.

`_node_content` and friends make each hash a regular LlamaIndex node record, so `RedisVectorStore` can rebuild the
node and a stock LlamaIndex client can open the index directly.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict

from kb_mcp.facts.identity import content_hash, encode_metadata
from kb_mcp.facts.models import Fact, Scalar
from kb_mcp.store.replies import as_text
from kb_mcp.store.schema import (
    F_CREATED,
    F_DOC,
    F_EXPIRES,
    F_HASH,
    F_ID,
    F_META,
    F_STEMS,
    F_TAGS,
    F_TEXT,
    F_UPDATED,
    F_VECTOR,
    TAG_SEPARATOR,
)
from kb_mcp.store.search.terms import stemmed_text

Record = dict[str, str | bytes]


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
    updated_at: str, doc_id: str | None = None, created_at: str | None = None, expires_at: str | None = None,
) -> Record:
    """The hash fields of one fact (created_at is added by the write script unless given; with `expires_at` the
    write script also sets the key's TTL, so Redis removes the fact and RediSearch drops it from the index)."""
    meta_json = encode_metadata(metadata)
    node = TextNode(
        id_=fact_id,
        text=content,
        metadata={F_TAGS: TAG_SEPARATOR.join(tags), F_META: meta_json, F_HASH: content_hash(content)},
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)} if doc_id else {},
    )
    record: Record = {str(k): str(v) for k, v in node_to_metadata_dict(node, remove_text=True).items()}
    record.update({F_ID: fact_id, F_DOC: doc_id or "", F_TEXT: content, F_STEMS: stemmed_text(content),
                   F_VECTOR: vector, F_UPDATED: updated_at, F_EXPIRES: expires_at or ""})
    if created_at is not None:
        record[F_CREATED] = created_at
    return record


def split_tags(raw: bytes | str | None) -> list[str]:
    return [t for t in as_text(raw).split(TAG_SEPARATOR) if t]


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
        expires_at=expires_from(fields.get(F_EXPIRES)),
    )


def expires_from(raw: bytes | str | None) -> datetime | None:
    text = as_text(raw)
    return to_datetime(text) if text else None


def ttl_ms(record: Record, now_s: float) -> int:
    """The TTL the write script gives the key: 0 for a permanent fact; at least 1 ms for one already due."""
    text = as_text(record.get(F_EXPIRES))
    return max(1, int((float(text) - now_s) * 1000)) if text else 0


def export_line(fields: dict[bytes, bytes], model: str) -> dict[str, Any]:
    """One JSONL export record of a fact's hash fields."""
    get = {k.decode(): v for k, v in fields.items()}
    return export_record(as_text(get.get(F_ID)), as_text(get.get(F_TEXT)), decode_metadata(get.get(F_META)),
                         split_tags(get.get(F_TAGS)), get.get(F_VECTOR, b""), model,
                         doc_id=as_text(get.get(F_DOC)) or None,
                         created_at=float(as_text(get.get(F_CREATED)) or 0),
                         updated_at=float(as_text(get.get(F_UPDATED)) or 0),
                         expires_at=float(as_text(get.get(F_EXPIRES))) if as_text(get.get(F_EXPIRES)) else None)


def export_record(fact_id: str, content: str, metadata: dict[str, Scalar], tags: list[str], vector: bytes,
                  model: str, *, doc_id: str | None, created_at: float, updated_at: float,
                  expires_at: float | None) -> dict[str, Any]:
    """The JSONL export format, defined once (vector base64 float32, so an import with the same `model` needs no
    embedding): `kb-mcp export` writes it from a fact's hash, the scale bench from its corpus."""
    return {"fact_id": fact_id, "content": content, "metadata": metadata, "tags": tags, "doc_id": doc_id,
            "created_at": created_at, "updated_at": updated_at, "expires_at": expires_at,
            "vector": base64.b64encode(vector).decode("ascii"), "embedding": model}
