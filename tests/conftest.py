"""Fixtures every test may use without Redis: the anyio backend and the embedding model (loaded once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def embedding() -> Iterator[OnnxMiniLMEmbedding]:
    """One model for the whole suite (loading it costs ~0.3 s)."""
    model = OnnxMiniLMEmbedding()
    yield model
