"""The embedding KB_EMBEDDING_PROVIDER names, built once by the lifespan."""

from __future__ import annotations

from kb_mcp.config import Settings
from kb_mcp.embeddings.base import KbEmbedding
from kb_mcp.embeddings.onnx import OnnxMiniLMEmbedding
from kb_mcp.embeddings.openai import OpenAICompatibleEmbedding
from kb_mcp.errors import StartupError


def build_embedding(settings: Settings) -> KbEmbedding:
    """The embedding chosen by `KB_EMBEDDING_PROVIDER`; only the chosen one is constructed."""
    if settings.embedding_provider == "openai":
        if not settings.embedding_url:
            raise StartupError("KB_EMBEDDING_URL is required when KB_EMBEDDING_PROVIDER=openai")
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        return OpenAICompatibleEmbedding(
            base_url=settings.embedding_url, model_name=settings.embedding_model, dim=settings.embedding_dim,
            # A backstop just past the index deadline: bounded("index") fires first on the async path (one clear
            # timeout message); this bounds sync callers (LlamaIndex's embed()) and a forgotten await.
            api_key=key, timeout_s=settings.timeouts.index_s + 1.0,
        )
    return OnnxMiniLMEmbedding(threads=settings.embedding_threads, solo_session=settings.embedding_solo_session)
