"""Redis names defined once: the index definition drives FT.CREATE, the write script names the schema's fields."""

from __future__ import annotations

from kb_mcp.config import Settings
from kb_mcp.store.schema import (
    F_CREATED,
    F_HASH,
    F_TAGS,
    F_TEXT,
    F_VECTOR,
    Keyspace,
    create_index_args,
    index_schema,
)
from kb_mcp.store.writes import PUT_SCRIPT


def test_keyspace_layout() -> None:
    ks = Keyspace("team-a")
    assert (ks.index_name, ks.key_prefix, ks.key("user.tz")) == ("{team-a}:idx", "{team-a}:fact:",
                                                                 "{team-a}:fact:user.tz")
    assert ks.dedup_key("abc") == "{team-a}:dedup:abc"  # one hash tag: one cluster slot for all of a namespace
    assert ks.fact_id(b"{team-a}:fact:user.tz") == "user.tz"


def test_ft_create_comes_from_the_one_schema() -> None:
    settings = Settings(hnsw_m=16, hnsw_ef_construction=200, hnsw_ef_runtime=50)
    schema = index_schema(Keyspace("ns"), settings, 384)
    args = [str(getattr(a, "value", a)) for a in create_index_args(schema, Keyspace("ns").key_prefix)]
    assert args[:9] == ["FT.CREATE", "{ns}:idx", "ON", "HASH", "PREFIX", "1", "{ns}:fact:", "STOPWORDS",
                         "0"]
    fields = args[args.index("SCHEMA") + 1:]
    for name in (F_TEXT, F_TAGS, F_CREATED, F_VECTOR):
        assert name in fields
    vector = fields[fields.index(F_VECTOR):]
    assert vector[1:3] == ["VECTOR", "HNSW"]
    for key, value in (("DIM", "384"), ("DISTANCE_METRIC", "COSINE"), ("M", "16"), ("EF_CONSTRUCTION", "200"),
                       ("EF_RUNTIME", "50")):
        assert vector[vector.index(key) + 1] == value
    assert fields[fields.index(F_TAGS) + 1:fields.index(F_TAGS) + 4] == ["TAG", "SEPARATOR", ","]
    flat = [str(getattr(a, "value", a)) for a in create_index_args(
        index_schema(Keyspace("ns"), Settings(vector_algorithm="flat"), 8), "ns:fact:")]
    assert "FLAT" in flat and "M" not in flat


def test_the_write_script_names_the_schema_fields() -> None:
    assert f"'{F_CREATED}'" in PUT_SCRIPT and f"'{F_HASH}'" in PUT_SCRIPT and "$" not in PUT_SCRIPT
