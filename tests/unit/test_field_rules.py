"""Every field rule, once: the store-side `check_*` functions and the schema types the tools publish must accept
and refuse the same values (they share one definition in `kb_mcp.facts`)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from kb_mcp.errors import InvalidInput
from kb_mcp.facts import (
    MAX_QUERY_CHARS,
    MAX_TAGS,
    FactId,
    Query,
    Tag,
    check_content,
    check_fact_id,
    check_int,
    check_metadata,
    check_query,
    check_score,
    check_tags,
    content_hash,
)

GOOD_IDS = ["a", "user.timezone", "A-1_b:c", "9" * 128]
BAD_IDS = ["", " a", "a b", "*", "../etc/passwd", "x" * 129, "-leading", ".dot", "é"]


def schema_accepts(kind: Any, value: Any) -> bool:
    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", GOOD_IDS + BAD_IDS)
def test_fact_id_rule_is_the_same_in_schema_and_store(value: str) -> None:
    try:
        check_fact_id(value)
        store_ok = True
    except InvalidInput as exc:
        store_ok = False
        assert exc.field == "fact_id" and "not a valid id" in str(exc)
    assert store_ok == schema_accepts(FactId, value) == (value in GOOD_IDS)


@pytest.mark.parametrize(("value", "ok"), [("prefs", True), ("project:x/y", True), ("a" * 64, True), ("UI", True),
                                            ("a" * 65, False), ("has space", False), ("a,b", False), ("{x}", False),
                                            ("", False), ("-x", False)])
def test_tag_rule_is_the_same_in_schema_and_store(value: str, ok: bool) -> None:
    try:
        check_tags([value])
        store_ok = True
    except InvalidInput:
        store_ok = False
    assert store_ok == schema_accepts(Tag, value) == ok


def test_tags_are_lower_cased_deduplicated_and_bounded() -> None:
    assert check_tags(["UI", "ui", " Prefs "]) == ["ui", "prefs"]
    assert check_tags(None) == []
    with pytest.raises(InvalidInput, match=f"the limit is {MAX_TAGS}"):
        check_tags([f"t{i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(InvalidInput, match="list of strings"):
        check_tags("notalist")


@pytest.mark.parametrize(("value", "problem"), [("", "empty"), ("  \n", "empty"), (42, "must be a string"),
                                                ("x" * 11, "the limit is 10"), ("bad \ud800", "lone surrogate")])
def test_content_rule(value: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as info:
        check_content(value, 10)
    assert info.value.field == "content"
    assert check_content(" ok ", 10) == " ok "


def test_query_rule_matches_the_schema_bound() -> None:
    assert schema_accepts(Query, "q" * MAX_QUERY_CHARS) and not schema_accepts(Query, "q" * (MAX_QUERY_CHARS + 1))
    check_query("q" * MAX_QUERY_CHARS)
    for bad in ("", "   ", "q" * (MAX_QUERY_CHARS + 1), None):
        with pytest.raises(InvalidInput):
            check_query(bad)


@pytest.mark.parametrize(("value", "field"), [({"nested": {"a": 1}}, "metadata.nested"), ({"l": [1]}, "metadata.l"),
                                              ({"nan": float("nan")}, "metadata.nan"), ({"": 1}, "metadata"),
                                              ([1], "metadata"), ({"k": "x" * 20_000}, "metadata")])
def test_metadata_rule(value: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_metadata(value)
    assert info.value.field == field
    assert check_metadata({"a": 1, "b": None, "c": True, "d": 0.5, "e": "x"}) == {"a": 1, "b": None, "c": True,
                                                                                  "d": 0.5, "e": "x"}


def test_int_and_score_rules() -> None:
    assert check_int(5, "top_k", 1, 50) == 5
    for bad in (0, 51, True, 2.5, "5"):
        with pytest.raises(InvalidInput, match="top_k"):
            check_int(bad, "top_k", 1, 50)
    assert check_score(None) is None and check_score(1) == 1.0
    for bad in (1.5, -2, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(InvalidInput, match="min_score"):
            check_score(bad)


def test_content_hash_ignores_whitespace_only() -> None:
    assert content_hash("The sky  is\tblue.") == content_hash("  The sky is blue. ")
    assert content_hash("The sky is blue.") != content_hash("The sky is Blue.")
