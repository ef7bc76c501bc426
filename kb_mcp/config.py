"""Settings: one frozen object read from `KB_*` environment variables, including the one Timeouts policy.

Every number that bounds work lives here; no other module holds a deadline. A bad value fails at start with a
message naming the variable to fix (see `describe_validation_error`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kb_mcp.redis_url import RedisTarget, parse_redis_url

ENV_PREFIX = "KB_"
TimeoutKind = Literal["redis", "file", "index"]


class Timeouts(BaseModel):
    """Deadlines in seconds, one per kind of work; `bounded()` is the only reader."""

    model_config = {"frozen": True}

    redis_s: PositiveFloat = 2.0
    file_s: PositiveFloat = 5.0
    index_s: PositiveFloat = 10.0  # LlamaIndex work: embedding + vector query
    tool_s: PositiveFloat = 15.0  # one whole tool call

    def limit_s(self, kind: TimeoutKind) -> float:
        """The deadline for one operation of `kind`."""
        return {"redis": self.redis_s, "file": self.file_s, "index": self.index_s}[kind]


NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Namespace = Annotated[str, Field(pattern=NAMESPACE_PATTERN)]


class Settings(BaseSettings):
    """All configuration of kb-mcp. Env names are the field names upper-cased with the `KB_` prefix."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True)

    redis_url: str = "redis://127.0.0.1:6379/0"  # or redis+cluster://..., redis+sentinel://... (see redis_url.py)
    namespace: Namespace = "kb"
    redis_max_connections: Annotated[int, Field(ge=1, le=10_000)] = 50

    timeout_redis: PositiveFloat = 2.0
    timeout_file: PositiveFloat = 5.0
    timeout_index: PositiveFloat = 10.0
    timeout_tool: PositiveFloat = 15.0

    breaker_threshold: PositiveInt = 5
    breaker_cooldown: PositiveFloat = 5.0

    max_fact_chars: Annotated[int, Field(ge=1, le=1_000_000)] = 32_768

    embedding_provider: Literal["onnx", "openai"] = "onnx"
    embedding_url: str | None = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1
    embedding_model: str = "text-embedding-3-small"
    embedding_api_key: SecretStr | None = None
    embedding_dim: PositiveInt = 384
    embedding_threads: Annotated[int, Field(ge=0, le=256)] = 0  # 0: one per core
    embedding_solo_session: bool = True  # a 2nd ONNX session for a lone query: ~1 ms sooner, ~100 MB RSS

    vector_algorithm: Literal["hnsw", "flat"] = "hnsw"
    hnsw_m: Annotated[int, Field(ge=2, le=512)] = 32
    hnsw_ef_construction: Annotated[int, Field(ge=1, le=4096)] = 400
    hnsw_ef_runtime: Annotated[int, Field(ge=1, le=4096)] = 150  # recall@10 0.99 vs exact at 100k (bench)

    # Hybrid search (store/fusion.py), chosen on BEIR SciFact's train split (docs/retrieval.md).
    hybrid_vector_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.65  # linear fusion: the vector side's share
    hybrid_full_bm25: Annotated[float, Field(ge=0.0)] = 20.0  # linear: the best BM25 that earns the full keyword share
    hybrid_fusion: Literal["linear", "rrf"] = "linear"
    hybrid_candidates: Annotated[int, Field(ge=1, le=1000)] = 50  # facts asked of each side, at least top_k
    query_cache_size: Annotated[int, Field(ge=0, le=1_000_000)] = 1024  # query embeddings kept (0: no cache)

    similar_threshold: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.85  # store_fact's "similar" hints
    max_response_chars: Annotated[int, Field(ge=100, le=10_000_000)] = 16_000  # content per search/listing reply

    durability: Literal["none", "fsync", "replica"] = "none"  # fsync: WAITAOF on the master; replica: WAIT 1
    read_only: bool = False
    auth_token: SecretStr | None = None
    auth_tokens_file: Path | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 256
    max_request_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    http_stateless: bool = False  # streamable HTTP without sessions: any replica can answer any request
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value

    @field_validator("auth_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters; make one with: openssl rand -hex 24")
        return value

    @field_validator("embedding_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """A copy with `update` applied; values derived from the fields (cached properties) are derived again."""
        copy = super().model_copy(update=update, deep=deep)
        for name in DERIVED:
            copy.__dict__.pop(name, None)
        return copy

    @cached_property
    def redis_target(self) -> RedisTarget:
        """KB_REDIS_URL read: the deployment mode, its nodes and credentials."""
        return parse_redis_url(self.redis_url)

    @cached_property
    def timeouts(self) -> Timeouts:
        """The one Timeouts policy, built once from the four `KB_TIMEOUT_*` variables."""
        return Timeouts(
            redis_s=self.timeout_redis, file_s=self.timeout_file, index_s=self.timeout_index, tool_s=self.timeout_tool
        )


DERIVED = ("redis_target", "timeouts")  # Settings' cached properties
SECRET_FIELDS = {"redis_url", "auth_token", "embedding_api_key"}  # their values may hold passwords: never echoed


def env_var(loc: tuple[int | str, ...]) -> str:
    """('timeout_redis',) -> 'KB_TIMEOUT_REDIS': the variable a user must fix."""
    return ENV_PREFIX + str(loc[0]).upper() if loc else ENV_PREFIX + "*"


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad variable, naming it, for the CLI to print at start."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        shown = "" if field in SECRET_FIELDS else f" (got {err.get('input')!r})"
        lines.append(f"{env_var(err['loc'])}: {err['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
