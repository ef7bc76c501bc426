"""The state a server's lifespan owns, and the frame every tool call runs in.

`tool_call()` is the one place a call is admitted (concurrency limit, tenant, read-only), bounded
(KB_TIMEOUT_TOOL), measured, logged and mapped: a `KbError` becomes a `ToolError` (an `isError` result whose text the
agent reads); anything unexpected becomes a sentence too, never the SDK's bare "Error executing tool X", and its
traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from redis.exceptions import ResponseError

from kb_mcp.config import Settings
from kb_mcp.deadlines import call_deadline
from kb_mcp.errors import InternalError, InvalidInput, KbError, RedisRefused, ServerBusy
from kb_mcp.server.auth import Tenant, current_tenant
from kb_mcp.server.metrics import Metrics
from kb_mcp.store import Backend, KnowledgeStore

log = logging.getLogger("kb_mcp.server")


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
    verifier: TokenVerifier | None  # None: no authentication
    state: AppState | None = None


def metrics_of(ctx: Context[AppState, Any]) -> Metrics:
    """The server's metrics, for a tool that counts what it did (facts deleted, updates embedded again)."""
    app: AppState = ctx.request_context.lifespan_context
    return app.metrics


@asynccontextmanager
async def tool_call(ctx: Context[AppState, Any], tool: str, *, write: bool = False,
                    error: type[Exception] = ToolError) -> AsyncIterator[KnowledgeStore]:
    """Admit, bound, measure and map one tool call (or resource read: `error=ResourceError`). The one place a
    KbError becomes an MCP error result."""
    app: AppState = ctx.request_context.lifespan_context
    tenant = current_tenant(app.default_tenant)
    started = time.perf_counter()
    outcome = "ok"
    admitted = False
    limit = app.settings.timeouts.tool_s
    try:
        if write and tenant.read_only:
            raise InvalidInput("tool", f"{tool} is not allowed: this server or token is read-only (writing "
                                       "needs the kb:write scope)")
        if app.in_flight >= app.settings.max_concurrency:
            raise ServerBusy(app.settings.max_concurrency)
        app.in_flight += 1
        admitted = True
        async with call_deadline(limit, tool):
            yield app.store_for(tenant)
    except KbError as exc:
        outcome = type(exc).__name__
        raise error(str(exc)) from exc
    except MCPError:  # a protocol error chosen on purpose (a resource's not-found): passed on as it is
        outcome = "NotFound"
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except ResponseError as exc:  # an error reply no part of the store knew: still a sentence for the agent
        outcome = "RedisRefused"
        log.warning("tool=%s unexpected Redis error reply: %s", tool, exc)
        raise error(str(RedisRefused("ERR", tool, str(exc)[:200]))) from exc
    except Exception as exc:
        outcome = "internal_error"
        log.exception("tool=%s failed unexpectedly", tool)
        raise error(str(InternalError(tool, exc))) from exc
    finally:
        if admitted:
            app.in_flight -= 1
        seconds = time.perf_counter() - started
        app.metrics.observe_call(tool, outcome, seconds)
        if log.isEnabledFor(logging.INFO):  # one line per call; never contents or tokens
            log.info("tool=%s outcome=%s duration_ms=%.1f tenant=%s", tool, outcome, seconds * 1000, tenant.name,
                     extra={"fields": {"tool": tool, "outcome": outcome, "duration_ms": round(seconds * 1000, 2),
                                       "tenant": tenant.name}})
