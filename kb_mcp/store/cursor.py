"""Opaque page cursors for keyword listings: an offset bound to the query it pages, so a cursor cannot be replayed
against a different query or tag filter."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from kb_mcp.errors import InvalidInput

MAX_OFFSET = 1_000_000


def scope_of(query: str) -> str:
    """The scope a cursor is bound to: a short digest of the RediSearch query it pages."""
    return hashlib.sha256(query.encode()).hexdigest()[:12]


def encode_cursor(offset: int, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "s": scope}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> int:
    """The offset of `cursor`, or InvalidInput naming what is wrong with it."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = int(data["o"])
        same = data["s"] == scope
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor returned by get_fact") from None
    if not same:
        raise InvalidInput("cursor", "belongs to a different query or tag filter; repeat that query to page it")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput("cursor", "is out of range")
    return offset
