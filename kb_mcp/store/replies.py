"""Reading Redis replies: bytes to text, flat pair lists to dicts, FT.INFO's vector attributes.

Replies are bytes (vectors forbid `decode_responses`), so every reader of text goes through `as_text`.
"""

from __future__ import annotations

from typing import Any


def as_text(raw: Any) -> str:
    """A Redis reply value as text; None is ""."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8")
    return "" if raw is None else str(raw)


def pairs(raw: Any) -> dict[str, Any]:
    """A flat [name, value, name, value...] reply (FT.INFO, a MODULE LIST entry) as a dict with text keys."""
    items = list(raw) if isinstance(raw, list | tuple) else []
    return {as_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def attributes(info: dict[str, Any]) -> list[dict[str, str]]:
    """Each field of an index as FT.INFO describes it, names lower-cased: identifier, attribute, type, and per type
    its options (a vector field's algorithm, dim, m, ef_construction...)."""
    out = []
    for attr in info.get("attributes", []):
        fields = [as_text(x) for x in attr]
        out.append({fields[i].lower(): fields[i + 1] for i in range(0, len(fields) - 1, 2)})
    return out


def vector_attributes(info: dict[str, Any]) -> dict[str, str]:
    """The vector field's attributes from FT.INFO (empty when the index has none)."""
    return next((attr for attr in attributes(info) if attr.get("type") == "VECTOR"), {})


def field_names(info: dict[str, Any]) -> set[str]:
    """The names of an index's fields, from FT.INFO."""
    return {as_text(attr[1]) for attr in info.get("attributes", []) if len(attr) > 1}


def field_types(info: dict[str, Any]) -> dict[str, str]:
    """Each field of an index and its type (TAG, NUMERIC, TEXT, VECTOR), from FT.INFO."""
    return {attr["attribute"]: attr["type"] for attr in attributes(info) if "attribute" in attr and "type" in attr}


def index_dim(info: dict[str, Any]) -> int | None:
    """The vector dimension of an existing index (None if it has no vector field)."""
    dim = vector_attributes(info).get("dim")
    return int(dim) if dim else None
