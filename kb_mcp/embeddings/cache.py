"""Recent query vectors, kept in memory."""

from __future__ import annotations

from collections import OrderedDict

from kb_mcp.embeddings.base import KbEmbedding, QueryVector


class QueryCache:
    """The last `size` query embeddings, keyed by model and text: agents repeat their questions, and a hit skips
    the model (~4 ms). The key carries the model's name and dimension, so two models never share a vector."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, int, str], QueryVector] = OrderedDict()

    def get(self, embedding: KbEmbedding, text: str) -> QueryVector | None:
        key = (embedding.model_name, embedding.dim, text)
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, embedding: KbEmbedding, text: str, vector: QueryVector) -> None:
        if self.size <= 0:
            return
        self._entries[(embedding.model_name, embedding.dim, text)] = vector
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
