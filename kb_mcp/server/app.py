"""The MCP server: `build_server()` registers the tools on a `KbServer` whose lifespan owns the backend (Redis pool,
embedding model). Nothing is connected at import; the transports are in `cli` (stdio) and `http` (streamable HTTP).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import ValidationError

from kb_mcp import __version__
from kb_mcp.config import Settings
from kb_mcp.embeddings.base import KbEmbedding
from kb_mcp.errors import InternalError, KbError
from kb_mcp.server.argument_errors import describe
from kb_mcp.server.auth import Tenant, load_tokens, may_write
from kb_mcp.server.call import AppState, StateHolder
from kb_mcp.server.metrics import Metrics
from kb_mcp.server.oauth import auth_for
from kb_mcp.server.pipes import native_stdio, native_stdio_possible
from kb_mcp.server.resources import FACT_URI, STATS_URI, fact_resource, read_stats
from kb_mcp.server.tools import (
    delete_fact,
    delete_facts,
    get_fact,
    kb_stats,
    semantic_search,
    store_fact,
    store_facts,
    update_fact,
)
from kb_mcp.store import Backend

INSTRUCTIONS = """\
A long-term knowledge base. Save durable facts with store_fact (give a stable fact_id such as 'user.timezone' for
facts you will update). Find facts by meaning with semantic_search; list them, match exact words, or fetch one by id
with get_fact; change one with update_fact; remove them with delete_fact (or a whole scope with delete_facts).
Errors are explained in the result text; a 'retry' hint means the store was briefly unavailable and the same call
may succeed shortly."""

METRICS_REFRESH_S = 5.0
# What a caller lists and reads depends on its token (its namespace, its scopes) and facts change at any time: every
# cacheable result is private to the caller's authorization and stale at once. That is the SDK's default today;
# said here so that a change of default cannot share one tenant's tools or facts with another.
PER_CALLER = {method: CacheHint(ttl_ms=0, scope="private")
              for method in ("tools/list", "resources/list", "resources/templates/list", "resources/read")}
UNKNOWN_TOOL = "(unknown)"
log = logging.getLogger("kb_mcp.server")


def _reader(title: str) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False)


def _writer(title: str, *, destructive: bool) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=False, destructive_hint=destructive, idempotent_hint=True,
                           open_world_hint=False)


READ_TOOLS: list[tuple[Callable[..., Any], ToolAnnotations]] = [
    (get_fact, _reader("Get facts (by id, keywords or newest)")),
    (semantic_search, _reader("Search facts by meaning")),
    (kb_stats, _reader("Knowledge base statistics")),
]
WRITE_TOOLS: list[tuple[Callable[..., Any], ToolAnnotations]] = [
    (store_fact, _writer("Store a fact", destructive=False)),
    (store_facts, _writer("Store several facts", destructive=False)),
    (update_fact, _writer("Update a fact", destructive=False)),
    (delete_fact, _writer("Delete a fact", destructive=True)),
    (delete_facts, _writer("Delete facts by filter", destructive=True)),
]


def compact(result: Any) -> Any:
    """The text copy of a structured result as compact JSON: the SDK indents it by 2, which an agent's model reads as
    tokens (a 5-hit search result: 1,541 -> 1,123 characters) and both ends of the wire move and parse."""
    if (isinstance(result, CallToolResult) and result.structured_content is not None and len(result.content) == 1
            and isinstance(result.content[0], TextContent)):
        result.content[0].text = json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
    return result


class KbServer(MCPServer[AppState]):
    """MCPServer that also refuses unknown tool and argument names (the SDK silently drops unknown arguments, so a
    misspelt `tag` or `factId` would otherwise be ignored and the agent would never learn why its filter did
    nothing), turns schema errors into one sentence per field, and counts every refused call in the metrics."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._accepted: dict[str, frozenset[str]] = {}
        self._writes: set[str] = set()

    async def run_stdio_async(self) -> None:
        """stdio served by the event loop itself when stdin and stdout are pipes (`pipes`), else the SDK's own."""
        if not native_stdio_possible():
            await super().run_stdio_async()
            return
        async with (native_stdio() as (stdin, stdout),
                    stdio_server(cast(Any, stdin), cast(Any, stdout)) as (read, write)):
            await self._lowlevel_server.run(read, write, self._lowlevel_server.create_initialization_options())

    def add_kb_tool(self, fn: Callable[..., Any], hints: ToolAnnotations) -> None:
        names = set(inspect.signature(fn).parameters)
        self._accepted[fn.__name__] = frozenset(names - {"ctx"})
        if not hints.read_only_hint:
            self._writes.add(fn.__name__)
        self.add_tool(fn, title=hints.title, annotations=hints)

    async def list_tools(self) -> list[MCPTool]:
        """The tools this caller may use: a token without kb:write (a read-only tenant) sees no write tools."""
        tools = await super().list_tools()
        if may_write(get_access_token()):
            return tools
        return [tool for tool in tools if tool.name not in self._writes]

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[AppState, Any] | None = None) -> Any:
        accepted = self._accepted.get(name)
        if accepted is None:
            self.metrics.rejected(UNKNOWN_TOOL, "UnknownTool")  # not the name itself: labels must stay bounded
            raise ToolError(f"unknown tool {name!r}; the tools are: {', '.join(sorted(self._accepted))}")
        unknown = sorted(set(arguments) - accepted)
        if unknown:
            self.metrics.rejected(name)
            raise ToolError(f"invalid arguments for {name}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                            f"accepted: {', '.join(sorted(accepted)) or '(none)'}")
        try:
            return compact(await super().call_tool(name, arguments, context))
        except UnexpectedToolError as exc:  # a crash outside tool_call (e.g. building the result): still a sentence
            cause = exc.__cause__ or exc
            log.error("tool=%s failed unexpectedly", name, exc_info=cause)
            raise ToolError(str(InternalError(name, cause))) from exc
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):  # the arguments do not fit the input schema
                self.metrics.rejected(name)
                raise ToolError(describe(name, exc.__cause__)) from exc
            raise


def build_server(settings: Settings, *, embedding: KbEmbedding | None = None,
                 public_url: str = "http://127.0.0.1:8765") -> tuple[KbServer, StateHolder]:
    """The MCP server for `settings` and a holder through which HTTP routes see its state. Nothing is connected
    until the lifespan runs (once per stdio connection, once per process for streamable HTTP). `public_url`: where
    HTTP clients reach it (KB_PUBLIC_URL wins)."""
    metrics = Metrics()
    found = auth_for(settings, load_tokens(settings), public_url,
                     refused=lambda reason: metrics.tokens_refused.labels(reason).inc())
    holder = StateHolder(metrics=metrics, verifier=found[0] if found else None)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with Backend.open(settings, observe=metrics.observe_operation, embedding=embedding) as backend:
            await backend.store(settings.namespace).try_ensure_index()
            state = AppState(settings=settings, backend=backend, metrics=metrics,
                             default_tenant=Tenant(settings.namespace, settings.read_only))
            holder.state = state
            # Everything loaded so far (modules, schemas, the model's wrappers) lives as long as the process: moved
            # out of the collector's sight, so its collections stop walking it again and again. Measured: search p50
            # 7.8 / 6.9 ms against 10.9 / 10.5 without, store p50 8.1 / 7.2 against 10.3 / 8.7 (docs/benchmarks.md).
            gc.collect()
            gc.freeze()
            refresher = asyncio.create_task(_refresh_forever(holder)) if settings.metrics_port else None
            try:
                yield state
            finally:
                holder.state = None
                if refresher is not None:
                    refresher.cancel()

    auth: dict[str, Any] = {"token_verifier": found[0], "auth": found[1]} if found else {}
    mcp = KbServer("kb-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan,
                   log_level=settings.log_level, metrics=metrics, cache_hints=PER_CALLER, **auth)
    for fn, hints in READ_TOOLS + ([] if settings.read_only else WRITE_TOOLS):  # KB_READ_ONLY: the read tools only
        mcp.add_kb_tool(fn, hints)
    mcp.resource(FACT_URI, name="fact", title="A fact", mime_type="text/markdown",
                 description="One fact: its text, then its id, tags, metadata and times as JSON")(fact_resource)

    async def stats() -> str:  # a static resource gets no Context: it reads the lifespan state through the holder
        return await read_stats(holder)

    mcp.resource(STATS_URI, name="stats", title="Knowledge base statistics", mime_type="application/json",
                 description="The same as the kb_stats tool")(stats)
    return mcp, holder


async def refresh_metrics(holder: StateHolder) -> None:
    """Update the gauges that are read, not counted (breaker, pool, fact count)."""
    state = holder.state
    if state is None:
        return
    state.metrics.in_flight.set(state.in_flight)
    state.metrics.set_redis(state.backend.manager.state())
    cache = state.backend.query_cache
    state.metrics.set_query_cache(cache.hits, cache.misses)
    store = state.backend.store(state.settings.namespace)
    with suppress(KbError):  # Redis down: the breaker gauge says so
        state.metrics.facts.labels(store.namespace).set(await store.count())


async def _refresh_forever(holder: StateHolder) -> None:
    """stdio mode with KB_METRICS_PORT: the scrape thread cannot await, so the read gauges refresh here."""
    while True:
        await refresh_metrics(holder)
        await asyncio.sleep(METRICS_REFRESH_S)
