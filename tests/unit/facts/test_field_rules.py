"""Every field rule, once: the types the tools publish are the validators the store runs (`rules.valid`), and a
broken rule reads the same from either side."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from kb_mcp.errors import InvalidInput
from kb_mcp.facts import rules
from kb_mcp.facts.identity import content_hash
from kb_mcp.facts.rules import (
    CONTENT,
    FACT_ID,
    MAX_QUERY_CHARS,
    MAX_TAGS,
    MIN_SCORE,
    MODE,
    QUERY,
    TOP_K,
    Content,
    FactId,
    Metadata,
    MinScore,
    Query,
    Tag,
    Tags,
    TopK,
    valid,
)
from kb_mcp.server.argument_errors import describe

GOOD_IDS = ["a", "user.timezone", "A-1_b:c", "9" * 128]
BAD_IDS = ["", " a", "a b", "*", "../etc/passwd", "x" * 129, "-leading", ".dot", "é"]


def schema_accepts(kind: Any, value: Any) -> bool:
    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", GOOD_IDS + BAD_IDS)
def test_fact_id_rule(value: str) -> None:
    try:
        valid(FACT_ID, value, "fact_id")
        store_ok = True
    except InvalidInput as exc:
        store_ok = False
        assert exc.field == "fact_id"
    assert store_ok == schema_accepts(FactId, value) == (value in GOOD_IDS)


@pytest.mark.parametrize(("value", "ok"), [("prefs", True), ("project:x/y", True), ("a" * 64, True), ("UI", True),
                                            ("a" * 65, False), ("has space", False), ("a,b", False), ("{x}", False),
                                            ("", False), ("-x", False)])
def test_tag_rule(value: str, ok: bool) -> None:
    try:
        rules.tags([value])
        store_ok = True
    except InvalidInput:
        store_ok = False
    assert store_ok == schema_accepts(Tag, value) == ok


def test_tags_are_lower_cased_deduplicated_and_bounded() -> None:
    assert rules.tags(["UI", "ui", " Prefs "]) == ["ui", "prefs"]
    assert TypeAdapter(Tags).validate_python(["UI", "ui"]) == ["ui"]  # the tools get the same normal form
    assert rules.tags(None) == []
    with pytest.raises(InvalidInput, match=f"must have at most {MAX_TAGS} items"):
        rules.tags([f"t{i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(InvalidInput, match="must be a list"):
        rules.tags("notalist")
    with pytest.raises(InvalidInput) as info:
        rules.tags(["ok", "bad tag"], "facts[3].tags")
    assert info.value.field == "facts[3].tags[1]" and "is not valid: 1-64 characters" in str(info.value)


@pytest.mark.parametrize(("value", "problem"), [("", "must not be empty"), ("  \n", "only whitespace"),
                                                (42, "must be a string"), ("x" * 11, "the limit is 10"),
                                                ("bad \ud800", "lone surrogate")])
def test_content_rule(value: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as info:
        valid(CONTENT, value, "content", max_fact_chars=10)
    assert info.value.field == "content"
    assert valid(CONTENT, " ok ", "content", max_fact_chars=10) == " ok "


def test_query_rule_matches_the_schema_bound() -> None:
    assert schema_accepts(Query, "q" * MAX_QUERY_CHARS) and not schema_accepts(Query, "q" * (MAX_QUERY_CHARS + 1))
    valid(QUERY, "q" * MAX_QUERY_CHARS, "query")
    for bad in ("", "   ", "q" * (MAX_QUERY_CHARS + 1), None):
        with pytest.raises(InvalidInput, match="invalid query: "):
            valid(QUERY, bad, "query")


@pytest.mark.parametrize(("value", "field"), [({"nested": {"a": 1}}, "metadata.nested"), ({"l": [1]}, "metadata.l"),
                                              ({"nan": float("nan")}, "metadata.nan"), ({"": 1}, "metadata"),
                                              ([1], "metadata"), ({"k": "x" * 20_000}, "metadata")])
def test_metadata_rule(value: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        rules.metadata(value)
    assert info.value.field == field
    assert rules.metadata({"a": 1, "b": None, "c": True, "d": 0.5, "e": "x"}) == {"a": 1, "b": None, "c": True,
                                                                                  "d": 0.5, "e": "x"}


def test_int_score_and_mode_rules() -> None:
    assert valid(TOP_K, 5, "top_k") == 5
    for bad in (0, 51, True, 2.5, "5"):  # the store takes no silent conversion
        with pytest.raises(InvalidInput, match="top_k"):
            valid(TOP_K, bad, "top_k")
    assert valid(MIN_SCORE, None, "min_score") is None and valid(MIN_SCORE, 1, "min_score") == 1.0
    for bad_score in (1.5, -2, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(InvalidInput, match="min_score"):
            valid(MIN_SCORE, bad_score, "min_score")
    with pytest.raises(InvalidInput, match="mode: must be one of hybrid, vector, keyword"):
        valid(MODE, "fuzzy", "mode")


def test_time_range_rule() -> None:
    assert rules.time_range("2026-11-27", None) == (1_795_737_600.0, None)
    with pytest.raises(InvalidInput, match="created_after: 'soon' is not an ISO 8601 date"):
        rules.time_range("soon", None)
    with pytest.raises(InvalidInput, match="created_before: is earlier than created_after"):
        rules.time_range("2026-11-28", "2026-11-27")


class Arguments(BaseModel):
    """A tool's arguments, typed as the tools type them."""

    content: Content = "x"
    fact_id: FactId = "a"
    tags: Tags = []
    metadata: Metadata = {}
    query: Query = "q"
    top_k: TopK = 5
    min_score: MinScore = None


@pytest.mark.parametrize(("field", "value"), [
    ("fact_id", "a b"), ("tags", ["bad tag"]), ("metadata", {"deep": {"x": 1}}), ("metadata", {"n": float("nan")}),
    ("top_k", 500), ("min_score", 3.0), ("query", "  "), ("content", "\ud800")])
def test_a_broken_rule_reads_the_same_from_a_tool_and_from_the_store(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as tool_side:
        Arguments(**{field: value})
    tool_text = describe("t", tool_side.value).removeprefix("invalid arguments for t: ")
    adapters = {"fact_id": FACT_ID, "tags": rules.TAGS, "metadata": rules.METADATA, "query": QUERY, "top_k": TOP_K,
                "min_score": MIN_SCORE, "content": CONTENT}
    with pytest.raises(InvalidInput) as store_side:
        valid(adapters[field], value, field)
    assert f"invalid {tool_text.replace(' ', ': ', 1)}" == str(store_side.value)


def test_content_hash_ignores_whitespace_only() -> None:
    assert content_hash("The sky  is\tblue.") == content_hash("  The sky is blue. ")
    assert content_hash("The sky is blue.") != content_hash("The sky is Blue.")
