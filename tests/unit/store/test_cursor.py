"""The page cursor codec: round trip, bound to its query, refuses garbage and out-of-range offsets."""

from __future__ import annotations

import base64
import json

import pytest

from kb_mcp.errors import InvalidInput
from kb_mcp.store.cursor import MAX_OFFSET, decode_cursor, encode_cursor, scope_of


def test_round_trip_and_opacity() -> None:
    scope = scope_of("@text:(apple)")
    cursor = encode_cursor(40, scope)
    assert decode_cursor(cursor, scope) == 40
    assert "=" not in cursor and "apple" not in cursor


def test_a_cursor_belongs_to_its_query() -> None:
    cursor = encode_cursor(10, scope_of("@text:(apple)"))
    with pytest.raises(InvalidInput, match="different query or tag filter"):
        decode_cursor(cursor, scope_of("@text:(pear)"))


@pytest.mark.parametrize("cursor", ["garbage", "", "!!!", base64.urlsafe_b64encode(b"[1,2]").decode(),
                                    base64.urlsafe_b64encode(b'{"o": "x", "s": "y"}').decode()])
def test_garbage_is_refused_by_name(cursor: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_cursor(cursor, "scope")
    assert info.value.field == "cursor" and "not a cursor returned by get_fact" in str(info.value)


@pytest.mark.parametrize("offset", [-1, MAX_OFFSET + 1])
def test_out_of_range_offsets_are_refused(offset: int) -> None:
    forged = base64.urlsafe_b64encode(json.dumps({"o": offset, "s": "s"}).encode()).decode()
    with pytest.raises(InvalidInput, match="out of range"):
        decode_cursor(forged, "s")
