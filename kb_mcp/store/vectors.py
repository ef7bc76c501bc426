"""LlamaIndex's RedisVectorStore, with hits rebuilt from the fields a query returns.

Every fact hash stays a complete LlamaIndex node record (`_node_content` included), so the index can be opened with
a stock `RedisVectorStore`. On the search hot path, though, parsing each hit's `_node_content` JSON back into a node
cost more than the KNN itself; this subclass asks Redis only for id, text, tags and metadata and builds the node from
those.
"""

from __future__ import annotations

from typing import Any

from kb_mcp import logs

logs.tame_redisvl()  # before the first redisvl import below

from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.vector_stores.redis import RedisVectorStore  # noqa: E402

from kb_mcp.store.replies import as_text  # noqa: E402
from kb_mcp.store.schema import F_EXPIRES, F_ID, F_META, F_TAGS, F_TEXT  # noqa: E402  (F_ID: the key, as redisvl names it)

RETURN_FIELDS = [F_TEXT, F_TAGS, F_META, F_EXPIRES]


class KbRedisVectorStore(RedisVectorStore):
    """RedisVectorStore returning light nodes: id, text and kb-mcp's tags/metadata fields (cosine similarity)."""

    def _extract_node_and_score(self, doc: Any, redis_query: Any) -> tuple[TextNode, float | None]:
        # redisvl reports the document key as "id": the fact id is the key less the index prefix.
        key = as_text(doc[F_ID])
        prefix = self.schema.index.prefix + self.schema.index.key_separator
        node = TextNode(id_=key[len(prefix):] if key.startswith(prefix) else key, text=as_text(doc.get(F_TEXT)),
                        metadata={F_TAGS: as_text(doc.get(F_TAGS)), F_META: as_text(doc.get(F_META)),
                                  F_EXPIRES: as_text(doc.get(F_EXPIRES))})
        distance = doc.get(getattr(redis_query, "DISTANCE_ID", "vector_distance"))
        return node, (1 - float(as_text(distance)) if distance is not None else None)
