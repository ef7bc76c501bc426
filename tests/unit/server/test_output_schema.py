"""Output schemas: lean (one `type` list instead of an `anyOf` of bare types) and still exact."""

from __future__ import annotations

import json

import jsonschema
import pytest

from kb_mcp.server.wire import GetFactResult, SearchResult, StoreFactResult, lean_schema


def test_an_anyof_of_bare_types_becomes_a_type_list() -> None:
    schema = {"properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                             "b": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/X"}]}}}
    lean_schema(schema)
    assert schema["properties"]["a"] == {"type": ["string", "null"], "default": None}
    assert "anyOf" in schema["properties"]["b"]  # not only bare types: kept as it is


@pytest.mark.parametrize("model", [SearchResult, GetFactResult, StoreFactResult])
def test_result_schemas_have_no_anyof_of_bare_types(model: type) -> None:
    text = json.dumps(model.model_json_schema())
    assert '"anyOf": [{"type"' not in text


def test_the_lean_schema_accepts_and_refuses_what_the_model_does() -> None:
    schema = SearchResult.model_json_schema()
    hit = {"fact_id": "a", "content": "x", "metadata": {"n": 1, "s": "t", "b": True, "z": None}, "tags": ["t"],
           "score": 0.5, "similarity": 0.4, "expires_at": None, "content_chars": None}
    jsonschema.validate({"results": [hit]}, schema)
    for bad in ({**hit, "expires_at": 5}, {**hit, "metadata": {"n": [1]}}, {**hit, "content_chars": "7"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"results": [bad]}, schema)
