"""The embedding interface the store uses: unit-length float32 rows, the model's dimension and token cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_index.core.base.embeddings.base import BaseEmbedding

MINILM_DIM = 384
MINILM_MAX_TOKENS = 256  # what sentence-transformers uses for this model

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class QueryVector:
    """A search query's vector (unit length)."""

    vector: Vectors


class KbEmbedding(BaseEmbedding):
    """A BaseEmbedding that also yields float32 matrices directly (the store's fast path) and knows its dimension."""

    dim: int = MINILM_DIM

    async def aembed(self, texts: list[str]) -> Vectors:  # pragma: no cover - abstract
        """Rows of unit-length float32 vectors, one per text."""
        raise NotImplementedError

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:  # pragma: no cover - abstract
        raise NotImplementedError

    async def aembed_query(self, text: str) -> QueryVector:
        """A search query's vector."""
        return QueryVector((await self.aembed([text]))[0])

    def tokens(self, text: str) -> list[Any]:
        """`text` as the model's tokens, for chunking by token count (a model without a tokenizer of its own:
        whitespace words)."""
        return text.split()

    def cost(self, text: str) -> int:
        """What embedding `text` weighs, in tokens as the model reads them (truncation included): batches of texts
        to embed are cut by it so that each fits its deadline."""
        return len(self.tokens(text))

    # LlamaIndex's entry points, all through the matrix methods above.
    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()  # type: ignore[no-any-return]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self.aembed([query]))[0].tolist()  # type: ignore[no-any-return]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self.aembed([text]))[0].tolist()  # type: ignore[no-any-return]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return (await self.aembed(texts)).tolist()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        return None
