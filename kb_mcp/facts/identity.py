"""A fact's content identity: what deduplication compares, the id a fact stored without one gets, and the one
JSON form of its metadata."""

from __future__ import annotations

import hashlib
import json

from kb_mcp.facts.models import Scalar


def normalise(content: str) -> str:
    """Whitespace-normalised content: what deduplication compares."""
    return " ".join(content.split())


def content_hash(content: str) -> str:
    return hashlib.sha256(normalise(content).encode("utf-8")).hexdigest()


def derived_id(chash: str) -> str:
    """The id of a fact stored without one: derived from its content, so a repeat store finds it."""
    return "f-" + chash[:24]


def encode_metadata(metadata: dict[str, Scalar]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))
