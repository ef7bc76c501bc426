"""Any OpenAI-compatible `/embeddings` endpoint, chosen by KB_EMBEDDING_PROVIDER=openai."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr

from kb_mcp.embeddings.base import KbEmbedding, Vectors
from kb_mcp.errors import StoreUnavailable


class OpenAICompatibleEmbedding(KbEmbedding):
    """Any server speaking OpenAI's `POST {base}/embeddings` (OpenAI, vLLM, llama.cpp, Ollama's /v1, LocalAI...)."""

    base_url: str
    model_name: str
    embed_batch_size: int = 64
    timeout_s: float = 10.0
    _headers: dict[str, str] = PrivateAttr()
    _client: httpx.AsyncClient | None = PrivateAttr(default=None)

    def __init__(self, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @classmethod
    def class_name(cls) -> str:
        return "OpenAICompatibleEmbedding"

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model_name, "input": texts}

    def _parse(self, body: Any, count: int) -> Vectors:
        try:
            rows = sorted(body["data"], key=lambda item: item.get("index", 0))
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable(f"embedding endpoint returned an unexpected body: {exc}") from exc
        if matrix.shape != (count, self.dim):
            raise StoreUnavailable(f"embedding endpoint returned shape {matrix.shape}, expected ({count}, {self.dim})")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit: Vectors = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit

    def embed(self, texts: list[str], *, alone: bool = False) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            response = httpx.post(f"{self.base_url.rstrip('/')}/embeddings", json=self._payload(texts),
                                  headers=self._headers, timeout=self.timeout_s)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise StoreUnavailable(f"embedding endpoint failed: {_describe(exc)}") from exc
        return self._parse(body, len(texts))

    async def aembed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self.timeout_s)
        try:
            response = await self._client.post(f"{self.base_url.rstrip('/')}/embeddings", json=self._payload(texts))
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise StoreUnavailable(f"embedding endpoint failed: {_describe(exc)}") from exc
        vectors: Vectors = self._parse(body, len(texts))
        return vectors

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    if isinstance(exc, ValueError):
        return "the response is not JSON"
    return str(exc) or type(exc).__name__
