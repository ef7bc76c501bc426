"""Settings: one frozen object read from `KB_*` environment variables, including the one Timeouts policy.

Every number that bounds work lives here; no other module holds a deadline. A bad value fails at start with a
message naming the variable to fix (see `describe_validation_error`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kb_mcp.connection.url import RedisTarget, parse_redis_url

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


def _doc(text: str) -> Any:
    """A setting's description: docs/configuration.md is generated from these."""
    return Field(description=text)


NAMESPACE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Namespace = Annotated[str, Field(pattern=NAMESPACE_PATTERN)]


class Settings(BaseSettings):
    """All configuration of kb-mcp. Env names are the field names upper-cased with the `KB_` prefix."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True)

    redis_url: Annotated[str, _doc(
        "one server (`redis://`, `rediss://`), a Redis Cluster (`redis+cluster://h1:p1,h2:p2`) or the master Sentinel "
        "names (`redis+sentinel://s1:26379,s2:26379/<service>[/<db>]`); `:password@`, TLS (`rediss`, "
        "`?ssl_ca_certs=/path/ca.crt` and redis-py's other `ssl_*` options) in every mode")] = "redis://127.0.0.1:6379/0"
    namespace: Annotated[Namespace, _doc(
        "the hash tag of every key (`{<ns>}:fact:<id>`) and of the index (`{<ns>}:idx`): one namespace, one cluster "
        "shard")] = "kb"
    redis_max_connections: Annotated[int, Field(ge=1, le=10_000), _doc(
        "Redis calls in flight per process, so at most this many connections per node (callers wait for a slot, "
        "within the Redis timeout)")] = 50

    timeout_redis: Annotated[PositiveFloat, _doc("seconds per Redis command or pipeline")] = 2.0
    timeout_file: Annotated[PositiveFloat, _doc("seconds per file operation (ingest, export, import)")] = 5.0
    timeout_index: Annotated[PositiveFloat, _doc("seconds per embedding / LlamaIndex / search operation")] = 10.0
    timeout_tool: Annotated[PositiveFloat, _doc("seconds for one whole tool call")] = 15.0

    breaker_threshold: Annotated[PositiveInt, _doc("straight Redis failures or timeouts that open the circuit "
                                                   "breaker")] = 5
    breaker_cooldown: Annotated[PositiveFloat, _doc(
        "seconds the open breaker fails fast before a call may probe; meanwhile a background PING every 0.25 s "
        "closes it as soon as Redis answers")] = 5.0

    max_fact_chars: Annotated[int, Field(ge=1, le=1_000_000), _doc("longest fact content, in characters")] = 32_768

    embedding_provider: Annotated[Literal["onnx", "openai"], _doc(
        "`onnx` (offline all-MiniLM-L6-v2 int8, 384-d) or `openai` (any OpenAI-compatible `/embeddings`)")] = "onnx"
    embedding_url: Annotated[str | None, _doc("`openai`: the endpoint's base URL, e.g. "
                                              "`http://127.0.0.1:8080/v1`")] = None
    embedding_model: Annotated[str, _doc("`openai`: the model name; a namespace records the model that made its "
                                         "vectors and refuses another one")] = "text-embedding-3-small"
    embedding_api_key: Annotated[SecretStr | None, _doc("`openai`: the bearer key")] = None
    embedding_dim: Annotated[PositiveInt, _doc("`openai`: the model's dimension")] = 384
    embedding_threads: Annotated[int, Field(ge=0, le=256), _doc(
        "ONNX intra-op threads (0: one per core); 1 serves ~20 % more searches/s under steady concurrent load on 2 "
        "cores and answers a lone query ~0.9 ms later (docs/benchmarks.md)")] = 0
    embedding_solo_session: Annotated[bool, _doc(
        "`false`: one ONNX session, spinning within each run, for lone queries and batches alike; `true`: a second, "
        "spinning session for a query that arrives alone and a non-spinning one for batches, for ~100 MB more RSS "
        "(no latency gain beyond run-to-run noise in the peers harness: docs/benchmarks.md)")] = False

    vector_algorithm: Annotated[Literal["hnsw", "flat"], _doc(
        "the vector index; `flat` is exact and about as fast up to ~10,000 facts; `kb-mcp reindex` applies a "
        "change")] = "hnsw"
    hnsw_m: Annotated[int, Field(ge=2, le=512), _doc("HNSW graph degree")] = 32
    hnsw_ef_construction: Annotated[int, Field(ge=1, le=4096), _doc("HNSW build-time candidate list")] = 400
    hnsw_ef_runtime: Annotated[int, Field(ge=1, le=4096), _doc(
        "HNSW query-time candidate list (recall@10 0.99 against exact search at 100,000 facts;"
        " at 1,000,000 0.87, and 0.95 at 800)")] = 150

    hybrid_vector_weight: Annotated[float, Field(ge=0.0, le=1.0), _doc(
        "linear fusion: the vector side's share of a hybrid score (chosen on BEIR SciFact's train split)")] = 0.65
    hybrid_full_bm25: Annotated[float, Field(ge=0.0), _doc(
        "linear fusion: keyword scores are divided by max(the query's best BM25, this)")] = 20.0
    hybrid_fusion: Annotated[Literal["linear", "rrf"], _doc(
        "`linear` (a blend of similarity and normalised BM25) or `rrf` (reciprocal-rank fusion)")] = "linear"
    hybrid_candidates: Annotated[int, Field(ge=1, le=1000), _doc(
        "facts asked of the full text (at least `top_k`); the KNN asks `top_k` under linear fusion, this many under "
        "`rrf`")] = 50
    query_cache_size: Annotated[int, Field(ge=0, le=1_000_000), _doc(
        "query embeddings kept (LRU, keyed by model and text; 0: none): a repeated question skips the model and gets "
        "the same vector")] = 1024

    filter_fields: Annotated[str, _doc(
        "metadata keys indexed for `where` filters, as `key:type` pairs, e.g. `project:tag,priority:numeric` (types "
        "`tag`, `numeric`; up to 16 keys); `kb-mcp reindex` applies a change to an existing namespace")] = ""

    similar_threshold: Annotated[float, Field(ge=-1.0, le=1.0), _doc(
        "similarity from which `store_fact` reports another fact as `similar`")] = 0.85
    similar_ef_runtime: Annotated[int, Field(ge=1, le=4096), _doc(
        "HNSW candidate list of the KNN behind `similar` (near neighbours need no deep search: at 100,000 facts 50 "
        "finds as many facts above the threshold as 150, in 60 % of the time)")] = 50
    max_response_chars: Annotated[int, Field(ge=100, le=10_000_000), _doc(
        "fact content one search or listing may return (the response budget)")] = 16_000

    durability: Annotated[Literal["none", "fsync", "replica"], _doc(
        "`fsync`: `WAITAOF 1 0` after each write (survives an OS crash); `replica`: `WAIT 1` (a replica has the "
        "write before the agent hears \"stored\")")] = "none"
    read_only: Annotated[bool, _doc("expose only `get_fact`, `semantic_search` and `kb_stats`")] = False
    auth_token: Annotated[SecretStr | None, _doc(
        "HTTP: every MCP request needs `Authorization: Bearer <token>` (at least 16 characters)")] = None
    auth_tokens_file: Annotated[Path | None, _doc(
        "HTTP, several tenants: JSON `{\"<token>\": {\"namespace\": \"team-a\", \"read_only\": false}}`")] = None
    public_url: Annotated[str | None, _doc(
        "HTTP: the URL clients reach this server at, without `/mcp` (behind a proxy: `https://kb.example.com`); "
        "default `http://<host>:<port>`. The OAuth resource (and default audience) is this plus `/mcp`")] = None
    oauth_issuer: Annotated[str | None, _doc(
        "HTTP, OAuth 2.1 resource server: the authorization server whose JWT access tokens are accepted (the `iss` "
        "claim, exactly); needs KB_OAUTH_JWKS")] = None
    oauth_jwks: Annotated[str | None, _doc(
        "the issuer's signing keys: a JWKS file path or an `https://` URL (`http://` on loopback only), cached and "
        "fetched again when a token names an unknown `kid`")] = None
    oauth_audience: Annotated[str | None, _doc(
        "the `aud` a token must carry (RFC 8707); default: the public `/mcp` URL")] = None
    oauth_namespace_claim: Annotated[str, Field(min_length=1, max_length=128), _doc(
        "the claim naming the namespace a token may use; a token without it uses KB_NAMESPACE")] = "kb_namespace"
    max_concurrency: Annotated[int, Field(ge=1, le=100_000), _doc(
        "tool calls in flight per process; beyond it callers get a fast \"server busy, retry\"")] = 256
    max_request_bytes: Annotated[int, Field(ge=1024), _doc("HTTP request body limit")] = 1_048_576
    http_stateless: Annotated[bool, _doc(
        "streamable HTTP without sessions (= `serve --stateless`): any replica answers any request")] = False
    metrics_port: Annotated[int, Field(ge=0, le=65535), _doc(
        "stdio: serve Prometheus `/metrics` on this loopback port (0: off; HTTP always has `/metrics`)")] = 0
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _doc("log level (logs go to stderr "
                                                                           "only)")] = "INFO"
    log_format: Annotated[Literal["plain", "json"], _doc("`json`: one JSON object per log line")] = "plain"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value

    @field_validator("filter_fields")
    @classmethod
    def _filter_fields(cls, value: str) -> str:
        parse_filter_fields(value)
        return value

    @field_validator("auth_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters; make one with: openssl rand -hex 24")
        return value

    @field_validator("embedding_url", "public_url", "oauth_issuer")
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


    @cached_property
    def filter_field_types(self) -> dict[str, FilterType]:
        """KB_FILTER_FIELDS read: each declared metadata key and its index type, in the order given."""
        return parse_filter_fields(self.filter_fields)


FilterType = Literal["tag", "numeric"]
FILTER_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
MAX_FILTER_FIELDS = 16


def parse_filter_fields(text: str) -> dict[str, FilterType]:
    """`project:tag,priority:numeric` -> {"project": "tag", "priority": "numeric"}; ValueError saying what is
    wrong."""
    found: dict[str, FilterType] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, _, kind = (x.strip() for x in item.partition(":"))
        if not FILTER_KEY_PATTERN.match(key):
            raise ValueError(f"{key!r} is not a filter key: 1-40 characters from A-Z a-z 0-9 _, not starting with "
                             "a digit")
        if kind not in ("tag", "numeric"):
            raise ValueError(f"{key!r} needs a type, tag or numeric (e.g. {key}:tag)")
        if key in found:
            raise ValueError(f"{key!r} is declared twice")
        found[key] = "tag" if kind == "tag" else "numeric"
    if len(found) > MAX_FILTER_FIELDS:
        raise ValueError(f"at most {MAX_FILTER_FIELDS} filter keys (got {len(found)})")
    return found


DERIVED = ("redis_target", "timeouts", "filter_field_types")  # Settings' cached properties
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
