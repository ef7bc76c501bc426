"""Redis names, defined once: the key layout of a namespace, the fields of a fact's hash and the search index.

The index is described once, as a redisvl `IndexSchema`: LlamaIndex's `RedisVectorStore` reads it to query, and
`FT.CREATE` is built from the same object (`IndexSchema.redis_fields`), so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kb_mcp.config import Settings

if TYPE_CHECKING:
    from redisvl.schema import IndexSchema

# Every name of a namespace carries the namespace as a hash tag ("{kb}:fact:<id>", "{kb}:idx"): in a Redis Cluster
# all of a namespace's keys, and its index, sit on one shard (RediSearch 2.10 has no coordinator: an index only sees
# its own shard's keys), while different namespaces spread over the cluster. One namespace must fit on one shard.
FACT_KEY = "{{{ns}}}:fact:{fact_id}"  # one hash per fact
DEDUP_KEY = "{{{ns}}}:dedup:{content_hash}"  # -> the id of a fact with that content (see writes.PUT_SCRIPT)
INDEX_NAME = "{{{ns}}}:idx"  # RediSearch index over the namespace's fact hashes
EMBEDDING_KEY = "{{{ns}}}:embedding"  # hash: the model that made the namespace's vectors (store/model_record.py)
F_MODEL, F_DIM = "model", "dim"  # its fields
# The layout before hash tags; `kb-mcp migrate` moves a namespace from it (store/migrate.py).
LEGACY_FACT_KEY = "{ns}:fact:{fact_id}"
LEGACY_DEDUP_KEY = "{ns}:dedup:{content_hash}"
LEGACY_INDEX_NAME = "{ns}:idx"

# Fields of one fact's hash (also the record of the LlamaIndex RedisVectorStore index).
F_ID, F_DOC, F_TEXT, F_VECTOR = "id", "doc_id", "text", "vector"
F_TAGS, F_META, F_HASH, F_CREATED, F_UPDATED = "tags", "metadata", "content_hash", "created_at", "updated_at"
F_STEMS = "stems"  # the content's words as stems (store/search/terms.py): what the keyword side's BM25 scores
F_EXPIRES = "expires_at"  # epoch seconds, or "" for a permanent fact (the key's own TTL does the expiring)
READ_FIELDS = (F_ID, F_TEXT, F_META, F_TAGS, F_CREATED, F_UPDATED, F_DOC, F_EXPIRES)  # what a Fact is rebuilt from
TAG_SEPARATOR = ","
FILTER_PREFIX = "mf_"  # a declared metadata key's own field (KB_FILTER_FIELDS): "project" -> "mf_project"
FILTER_TAG_SEPARATOR = "\x1f"  # a metadata value is one tag, whatever punctuation it holds


def filter_field(key: str) -> str:
    return FILTER_PREFIX + key


@dataclass(frozen=True)
class Keyspace:
    """Where one namespace lives: `{<ns>}:fact:<fact_id>` hashes indexed by `{<ns>}:idx`."""

    namespace: str

    @property
    def index_name(self) -> str:
        return INDEX_NAME.format(ns=self.namespace)

    @cached_property
    def key_prefix(self) -> str:  # cached: every search hit's key is cut by it
        return FACT_KEY.format(ns=self.namespace, fact_id="")

    def key(self, fact_id: str) -> str:
        return FACT_KEY.format(ns=self.namespace, fact_id=fact_id)

    @property
    def embedding_key(self) -> str:
        return EMBEDDING_KEY.format(ns=self.namespace)

    @property
    def dedup_prefix(self) -> str:
        return DEDUP_KEY.format(ns=self.namespace, content_hash="")

    def dedup_key(self, content_hash: str) -> str:
        return DEDUP_KEY.format(ns=self.namespace, content_hash=content_hash)

    @cached_property
    def _key_prefix_bytes(self) -> bytes:
        return self.key_prefix.encode()

    def fact_id(self, key: bytes | str) -> str:
        """The fact id of a key of this namespace (the key less the prefix)."""
        if isinstance(key, bytes):  # search replies: cut before decoding (every hit of every search comes here)
            prefix = self._key_prefix_bytes
            return (key[len(prefix):] if key.startswith(prefix) else key).decode()
        return key[len(self.key_prefix):] if key.startswith(self.key_prefix) else key


def vector_attrs(settings: Settings, dim: int) -> dict[str, Any]:
    """The vector field as configured (KB_VECTOR_ALGORITHM, KB_HNSW_*): cosine distance over float32."""
    attrs: dict[str, Any] = {"dims": dim, "distance_metric": "cosine", "datatype": "float32",
                             "algorithm": settings.vector_algorithm}
    if settings.vector_algorithm == "hnsw":
        attrs.update(m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                     ef_runtime=settings.hnsw_ef_runtime)
    return attrs


def index_schema(keyspace: Keyspace, settings: Settings, dim: int) -> IndexSchema:
    """THE index definition (redisvl form; `create_index_args` turns it into FT.CREATE)."""
    from kb_mcp import logs

    logs.tame_redisvl()  # before the first redisvl import
    from redisvl.schema import IndexSchema

    return IndexSchema.from_dict({
        "index": {"name": keyspace.index_name, "prefix": keyspace.key_prefix.rstrip(":"), "key_separator": ":",
                  "storage_type": "hash"},
        "fields": [
            {"name": F_ID, "type": "tag"},
            {"name": F_DOC, "type": "tag"},
            {"name": F_TEXT, "type": "text"},
            {"name": F_STEMS, "type": "text", "attrs": {"no_stem": True}},
            {"name": F_TAGS, "type": "tag", "attrs": {"separator": TAG_SEPARATOR}},
            {"name": F_HASH, "type": "tag"},
            {"name": F_CREATED, "type": "numeric"},
            {"name": F_UPDATED, "type": "numeric"},
            {"name": F_VECTOR, "type": "vector", "attrs": vector_attrs(settings, dim)},
            *({"name": filter_field(key), "type": kind}
              | ({"attrs": {"separator": FILTER_TAG_SEPARATOR}} if kind == "tag" else {})
              for key, kind in settings.filter_field_types.items()),
        ],
    })


def create_index_args(schema: IndexSchema, key_prefix: str) -> list[Any]:
    """FT.CREATE for `schema`: hashes under `key_prefix` (with its trailing ':'), no stop-words (facts are short
    and every word may matter to a keyword match)."""
    args: list[Any] = ["FT.CREATE", schema.index.name, "ON", "HASH", "PREFIX", 1, key_prefix, "STOPWORDS", 0,
                       "SCHEMA"]
    for field in schema.redis_fields:
        args += field.redis_args()
    return args
