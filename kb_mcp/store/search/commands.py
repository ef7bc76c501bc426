"""The FT.SEARCH commands semantic_search sends (the KNN as LlamaIndex's RedisVectorStore builds it for this index,
the full text over the facts' stems) and their replies read as rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from kb_mcp.config import TimeoutKind
from kb_mcp.store.schema import F_EXPIRES, F_META, F_STEMS, F_TAGS, F_TEXT, F_UPDATED, F_VECTOR
from kb_mcp.store.search.querytext import any_word_query

DISTANCE = "vector_distance"  # the KNN score's name (cosine distance), as RedisVectorStore names it
# Every Redis step of a search runs under the LlamaIndex/index deadline (KB_TIMEOUT_INDEX, 10 s), not the 2 s Redis
# one: a KNN or a full-text query over a large index is search work, as the README's standard timeouts say.
SEARCH_DEADLINE: TimeoutKind = "index"
HIT_FIELDS = (F_TEXT, F_TAGS, F_META, F_EXPIRES)  # what a returned hit is built from
# Field names as FT.SEARCH returns them (bytes): a hit's fields are looked up without decoding every name.
TEXT, TAGS, META, EXPIRES, VECTOR, STEMS, DISTANCE_FIELD, UPDATED = (
    name.encode() for name in (*HIT_FIELDS, F_VECTOR, F_STEMS, DISTANCE, F_UPDATED))
Filters = list[str]  # query clauses every hit must satisfy (SearchIndex.scope: tags, time range, where)


def knn_command(index: str, vector: np.ndarray[Any, Any], k: int, filters: Filters, *, whole: bool = False,
                also: tuple[str, ...] = (), ef_runtime: int | None = None) -> list[Any]:
    """The query LlamaIndex's RedisVectorStore builds for this index, as one FT.SEARCH (building it through
    VectorStoreQuery and redisvl, and parsing nodes back, cost more than the KNN itself). SORTBY: without it
    RediSearch may return the neighbours out of order. `whole`: each hit's fields too, else its distance;
    `ef_runtime` (HNSW only) overrides the index's candidate list for this query."""
    clauses = " ".join(filters)
    ef = f" EF_RUNTIME {ef_runtime}" if ef_runtime is not None else ""
    q = f"{f'({clauses})' if clauses else '*'}=>[KNN {k} @{F_VECTOR} $vector{ef} AS {DISTANCE}]"
    blob = np.asarray(vector, dtype=np.float32).tobytes()
    fields = [*HIT_FIELDS, DISTANCE, *also] if whole else [DISTANCE, *also]
    return ["FT.SEARCH", index, q, "PARAMS", 2, "vector", blob, "SORTBY", DISTANCE, "ASC",
            "RETURN", len(fields), *fields, "LIMIT", 0, k, "DIALECT", 2]

def text_command(index: str, stems: list[str], k: int, filters: Filters, *, held: bool = False,
                 also: tuple[str, ...] = ()) -> list[Any] | None:
    """BM25STD over the facts' stems, any of `stems` (escaped, VERBATIM: they are stems already), the same
    filters as the KNN; None without a word to search. Each hit comes back whole with its stored vector (its
    similarity and, should it win, its answer need no further round trip); with `held` its stems too (the query
    words it holds); `also` names more fields to return (updated_at, for recency)."""
    words = any_word_query(stems, F_STEMS)
    if words is None:
        return None
    q = " ".join([words, *filters])
    fields = [*HIT_FIELDS, F_VECTOR, *([F_STEMS] if held else []), *also]
    return ["FT.SEARCH", index, q, "VERBATIM", "WITHSCORES", "SCORER", "BM25STD",
            "RETURN", len(fields), *fields, "LIMIT", 0, k, "DIALECT", 2]


def reply_rows(raw: list[Any], *, scores: bool) -> list[tuple[bytes, float | None, dict[bytes, Any]]]:
    """An FT.SEARCH reply ([total, key, (score,) [field, value, ...], ...]) as (key, score, fields) rows; field
    names stay bytes."""
    step = 3 if scores else 2
    rows = []
    for i in range(1, len(raw) - step + 2, step):
        values = raw[i + step - 1]
        fields = dict(zip(values[::2], values[1::2], strict=False))  # [name, value, ...]
        rows.append((raw[i], float(raw[i + 1]) if scores else None, fields))
    return rows
