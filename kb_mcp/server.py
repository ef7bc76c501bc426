"""The MCP server: tools, lifespan, transports (stdio, streamable HTTP), auth, /health and /metrics.

Tools are thin: argument shape (schemas an agent can read), one store call, error mapping. `tool_call()` is the one
place a call is admitted (concurrency limit, tenant, read-only), bounded (KB_TIMEOUT_TOOL), measured and mapped
(`KbError` -> `ToolError`, i.e. an `isError` result whose text the agent reads).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated, Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import AnyHttpUrl, BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kb_mcp import __version__
from kb_mcp.auth import StaticTokenVerifier, Tenant, current_tenant, load_tokens
from kb_mcp.config import Settings
from kb_mcp.embeddings import KbEmbedding
from kb_mcp.errors import InvalidInput, KbError, ServerBusy
from kb_mcp.facts import Fact, ScoredFact, StoredFact
from kb_mcp.metrics import CONTENT_TYPE, Metrics
from kb_mcp.store import LIMIT_MAX, TOP_K_MAX, Backend, KnowledgeStore, StoreStats
from kb_mcp.timeouts import call_deadline

log = logging.getLogger("kb_mcp.server")

INSTRUCTIONS = """\
A long-term knowledge base. Save durable facts with store_fact (give a stable fact_id such as 'user.timezone' for
facts you will update). Find facts by meaning with semantic_search; list them, match exact words, or fetch one by id
with get_fact; remove them with delete_fact. Errors are explained in the result text; a 'retry' hint means the store
was briefly unavailable and the same call may succeed shortly."""

# ---------------------------------------------------------------- argument shapes (what the agent's schema says)

FactId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                              description="Stable id of a fact, e.g. 'user.timezone' (letters, digits, _ . : -)")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]
Tags = Annotated[list[Tag], Field(max_length=32, description="Short labels, e.g. ['preferences', 'project:x']; "
                                                             "stored lower-case")]
TagFilter = Annotated[list[Tag] | None, Field(max_length=32, description="Only facts carrying ALL of these tags")]
Scalar = str | int | float | bool | None
Metadata = Annotated[dict[str, Scalar], Field(max_length=64, description="Flat JSON object of extra attributes "
                                                                         "(string keys, scalar values)")]
Content = Annotated[str, Field(min_length=1, max_length=1_000_000,
                               description="The fact, as a self-contained sentence or paragraph "
                                           "(limit KB_MAX_FACT_CHARS, default 32768 characters)")]
Query = Annotated[str, Field(min_length=1, max_length=2000)]


class StoreFactResult(BaseModel):
    fact_id: str
    created: bool = Field(description="False when an existing fact was updated or identical content already existed")
    created_at: str
    updated_at: str


class FactOut(BaseModel):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    created_at: str
    updated_at: str


class GetFactResult(BaseModel):
    facts: list[FactOut]
    next_cursor: str | None = Field(default=None, description="Pass as cursor to get the next page; null at the end")


class SearchHit(BaseModel):
    fact_id: str
    content: str
    metadata: dict[str, Scalar]
    tags: list[str]
    score: float = Field(description="Cosine similarity, higher is closer (1.0 = same meaning)")


class SearchResult(BaseModel):
    results: list[SearchHit]


class DeleteResult(BaseModel):
    fact_id: str
    deleted: bool = Field(description="False when there was no such fact (deleting is idempotent)")


# ---------------------------------------------------------------- state and the per-call frame

@dataclass
class AppState:
    """What the lifespan owns and every tool call reads."""

    settings: Settings
    backend: Backend
    metrics: Metrics
    default_tenant: Tenant
    in_flight: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def store_for(self, tenant: Tenant) -> KnowledgeStore:
        return self.backend.store(tenant.namespace)


@dataclass
class StateHolder:
    """Lets HTTP routes (/health, /metrics) reach the lifespan's state without a module-level global."""

    metrics: Metrics
    tokens: dict[str, Tenant]
    state: AppState | None = None


def _iso(ts: Any) -> str:
    return str(ts.isoformat().replace("+00:00", "Z"))


def _fact_out(fact: Fact) -> FactOut:
    return FactOut(fact_id=fact.fact_id, content=fact.content, metadata=fact.metadata, tags=fact.tags,
                   created_at=_iso(fact.created_at), updated_at=_iso(fact.updated_at))


@asynccontextmanager
async def tool_call(ctx: Context[AppState, Any], tool: str, *, write: bool = False) -> AsyncIterator[KnowledgeStore]:
    """Admit, bound, measure and map one tool call. The one place a KbError becomes an MCP error result."""
    app: AppState = ctx.request_context.lifespan_context
    tenant = current_tenant(app.default_tenant)
    started = time.perf_counter()
    outcome = "ok"
    admitted = False
    limit = app.settings.timeouts.tool_s
    try:
        if write and tenant.read_only:
            raise InvalidInput("tool", f"{tool} is not allowed: this server or token is read-only")
        if app.in_flight >= app.settings.max_concurrency:
            raise ServerBusy(app.settings.max_concurrency)
        app.in_flight += 1
        admitted = True
        async with call_deadline(limit, tool):
            yield app.store_for(tenant)
    except KbError as exc:
        outcome = type(exc).__name__
        raise ToolError(str(exc)) from exc
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except Exception:
        outcome = "internal_error"
        raise
    finally:
        if admitted:
            app.in_flight -= 1
        seconds = time.perf_counter() - started
        app.metrics.observe_call(tool, outcome, seconds)
        if log.isEnabledFor(logging.INFO):  # one line per call; never contents or tokens
            log.info("tool=%s outcome=%s duration_ms=%.1f tenant=%s", tool, outcome, seconds * 1000, tenant.name,
                     extra={"fields": {"tool": tool, "outcome": outcome, "duration_ms": round(seconds * 1000, 2),
                                       "tenant": tenant.name}})


# ---------------------------------------------------------------- tools

async def store_fact(
    content: Content,
    ctx: Context[AppState, Any],
    metadata: Metadata = {},  # noqa: B006 - pydantic copies defaults per call; the schema shows {}
    tags: Tags = [],  # noqa: B006
    fact_id: FactId | None = None,
) -> StoreFactResult:
    """Save a fact to long-term memory. With fact_id, creates or replaces that fact (created_at is kept): use a
    stable id like 'user.timezone' for facts that change. Without fact_id, an id is assigned, and storing the same
    content again (ignoring whitespace) returns the existing fact instead of a duplicate."""
    async with tool_call(ctx, "store_fact", write=True) as store:
        saved: StoredFact = await store.store_fact(content, metadata=metadata, tags=tags, fact_id=fact_id)
    return StoreFactResult(fact_id=saved.fact_id, created=saved.created, created_at=_iso(saved.created_at),
                           updated_at=_iso(saved.updated_at))


async def get_fact(
    ctx: Context[AppState, Any],
    fact_id: FactId | None = None,
    query: Annotated[str | None, Field(min_length=1, max_length=2000,
                                       description="Words that must all appear in the fact (exact keyword match, "
                                                   "not meaning: use semantic_search for that)")] = None,
    tags: TagFilter = None,
    limit: Annotated[int, Field(ge=1, le=LIMIT_MAX)] = 20,
    cursor: Annotated[str | None, Field(max_length=512, description="next_cursor of the previous page")] = None,
) -> GetFactResult:
    """Read facts exactly. With fact_id: that one fact (an error if it does not exist). With query: facts containing
    all the query's words. With neither: the newest facts first. Optional tags narrow the result; results come in
    pages of `limit`, continue with next_cursor."""
    async with tool_call(ctx, "get_fact") as store:
        if fact_id is not None:
            if query is not None or cursor is not None:
                raise InvalidInput("fact_id", "give fact_id alone, or query/tags/cursor without fact_id")
            fact = await store.get_fact(fact_id)
            return GetFactResult(facts=[_fact_out(fact)])
        page = await store.list_facts(query=query, tags=tags, limit=limit, cursor=cursor)
    return GetFactResult(facts=[_fact_out(f) for f in page.facts], next_cursor=page.next_cursor)


async def semantic_search(
    query: Annotated[Query, Field(description="What you are looking for, in natural language")],
    ctx: Context[AppState, Any],
    top_k: Annotated[int, Field(ge=1, le=TOP_K_MAX, description="How many results at most")] = 5,
    tags: TagFilter = None,
    min_score: Annotated[float | None, Field(ge=-1.0, le=1.0, description="Drop results below this similarity; "
                                                                          "0.3-0.5 keeps related facts")] = None,
) -> SearchResult:
    """Find facts by meaning (vector similarity), best first, even when they share no words with the query. Use this
    to recall what is known about a topic before answering or before storing a possibly duplicate fact."""
    async with tool_call(ctx, "semantic_search") as store:
        hits: list[ScoredFact] = await store.semantic_search(query, top_k=top_k, tags=tags, min_score=min_score)
    return SearchResult(results=[SearchHit(**h.model_dump()) for h in hits])


async def delete_fact(fact_id: FactId, ctx: Context[AppState, Any]) -> DeleteResult:
    """Delete a fact by id, e.g. when it is wrong or the user asks to forget it. Deleting a missing fact is not an
    error (deleted: false)."""
    async with tool_call(ctx, "delete_fact", write=True) as store:
        deleted = await store.delete_fact(fact_id)
    return DeleteResult(fact_id=fact_id, deleted=deleted)


async def kb_stats(ctx: Context[AppState, Any]) -> StoreStats:
    """Health and size of the knowledge base: number of facts, index state, Redis memory and connection state."""
    async with tool_call(ctx, "kb_stats") as store:
        return await store.stats()


READ_TOOLS = (get_fact, semantic_search, kb_stats)

# ---------------------------------------------------------------- server factory


class KbServer(MCPServer[AppState]):
    """MCPServer that also refuses unknown argument names (the SDK silently drops them, so a misspelt `tag` or
    `factId` would otherwise be ignored and the agent would never learn why its filter did nothing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepted: dict[str, frozenset[str]] = {}

    def add_kb_tool(self, fn: Callable[..., Any], hints: ToolAnnotations) -> None:
        names = set(inspect.signature(fn).parameters)
        self._accepted[fn.__name__] = frozenset(names - {"ctx"})
        self.add_tool(fn, title=hints.title, annotations=hints)

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[AppState, Any] | None = None) -> Any:
        accepted = self._accepted.get(name)
        if accepted is not None:
            unknown = sorted(set(arguments) - accepted)
            if unknown:
                raise ToolError(f"invalid arguments: unknown argument(s) {', '.join(map(repr, unknown))} for {name}; "
                                f"accepted: {', '.join(sorted(accepted)) or '(none)'}")
        return await super().call_tool(name, arguments, context)



def build_server(settings: Settings, *, embedding: KbEmbedding | None = None,
                 issuer_url: str = "http://127.0.0.1:8765") -> tuple[MCPServer[AppState], StateHolder]:
    """The MCP server for `settings` and a holder through which HTTP routes see its state. Nothing is connected
    until the lifespan runs (once per stdio connection, once per process for streamable HTTP)."""
    metrics = Metrics()
    tokens = load_tokens(settings)
    holder = StateHolder(metrics=metrics, tokens=tokens)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with Backend.open(settings, observe=metrics.observe_operation, embedding=embedding) as backend:
            await backend.store(settings.namespace).try_ensure_index()
            state = AppState(settings=settings, backend=backend, metrics=metrics,
                             default_tenant=Tenant(settings.namespace, settings.read_only))
            holder.state = state
            refresher = asyncio.create_task(_refresh_forever(holder)) if settings.metrics_port else None
            try:
                yield state
            finally:
                holder.state = None
                if refresher is not None:
                    refresher.cancel()

    auth: dict[str, Any] = {}
    if tokens:
        auth = {"token_verifier": StaticTokenVerifier(tokens),
                "auth": AuthSettings(issuer_url=AnyHttpUrl(issuer_url), resource_server_url=None)}
    mcp = KbServer("kb-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan,
                              log_level=settings.log_level, **auth)
    def reader(title: str) -> ToolAnnotations:
        return ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False)

    def writer(title: str, *, destructive: bool) -> ToolAnnotations:
        return ToolAnnotations(title=title, read_only_hint=False, destructive_hint=destructive, idempotent_hint=True,
                               open_world_hint=False)

    tools: list[tuple[Callable[..., Any], ToolAnnotations]] = [
        (get_fact, reader("Get facts (by id, keywords or newest)")),
        (semantic_search, reader("Search facts by meaning")),
        (kb_stats, reader("Knowledge base statistics")),
    ]
    if not settings.read_only:  # KB_READ_ONLY exposes only the read tools
        tools += [(store_fact, writer("Store a fact", destructive=False)),
                  (delete_fact, writer("Delete a fact", destructive=True))]
    for fn, hints in tools:
        mcp.add_kb_tool(fn, hints)

    return mcp, holder


async def _authorised(request: Request, tokens: dict[str, Tenant]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return await StaticTokenVerifier(tokens).verify_token(token) is not None


async def refresh_metrics(holder: StateHolder) -> None:
    """Update the gauges that are read, not counted (breaker, pool, fact count)."""
    state = holder.state
    if state is None:
        return
    state.metrics.in_flight.set(state.in_flight)
    state.metrics.set_redis(state.backend.manager.state())
    store = state.backend.store(state.settings.namespace)
    with suppress(KbError):  # Redis down: the breaker gauge says so
        state.metrics.facts.labels(store.namespace).set(await store.count())


async def _refresh_forever(holder: StateHolder, every_s: float = 5.0) -> None:
    """stdio mode with KB_METRICS_PORT: the scrape thread cannot await, so the read gauges refresh here."""
    while True:
        await refresh_metrics(holder)
        await asyncio.sleep(every_s)


async def _health(holder: StateHolder) -> Response:
    """Liveness plus Redis status: 200 when Redis answers PING, 503 (with the reason) when not."""
    state = holder.state
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    manager = state.backend.manager
    body: dict[str, Any] = {"status": "ok", "version": __version__,
                            "uptime_s": round(time.monotonic() - state.started_at, 1)}
    try:
        body["redis"] = {"ok": True, "ping_ms": round(await manager.ping() * 1000, 2)}
        code = 200
    except KbError as exc:
        body["status"] = "degraded"
        body["redis"] = {"ok": False, "error": str(exc)}
        code = 503
    body["redis"].update(manager.state().model_dump())
    return JSONResponse(body, status_code=code)


def http_app(mcp: MCPServer[AppState], holder: StateHolder, settings: Settings, host: str) -> Starlette:
    """The streamable HTTP app at /mcp, plus GET /health (public) and GET /metrics (behind the token when auth is
    on), with the request body size limit and the SDK's DNS-rebinding protection for loopback hosts."""
    app = mcp.streamable_http_app(streamable_http_path="/mcp", host=host,
                                  max_request_body_size=settings.max_request_bytes)

    async def health(_: Request) -> Response:
        return await _health(holder)

    async def metrics(request: Request) -> Response:
        if holder.tokens and not await _authorised(request, holder.tokens):
            return JSONResponse({"error": "unauthorized"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="kb-mcp"'})
        await refresh_metrics(holder)
        return Response(holder.metrics.render(), media_type=CONTENT_TYPE)

    app.add_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return app
