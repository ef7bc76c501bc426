"""MCP resources: `kb://facts/{fact_id}` (one fact: its text, then its metadata as JSON) and `kb://stats`. They run
in the same frame as the tools: the caller's tenant (namespace), the deadline, metrics and error mapping."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError

from kb_mcp.errors import NotFound
from kb_mcp.server.auth import current_tenant
from kb_mcp.server.call import AppState, StateHolder, tool_call

RESOURCE_NOT_FOUND = -32002  # the MCP specification's error code for an unknown resource
FACT_URI = "kb://facts/{fact_id}"
STATS_URI = "kb://stats"


async def fact_resource(fact_id: str, ctx: Context[AppState, Any]) -> str:
    """One fact: its content, then its id, tags, metadata and times as JSON."""
    async with tool_call(ctx, "resource:fact", error=ResourceError) as store:
        try:
            fact = await store.get_fact(fact_id)
        except NotFound as exc:  # the protocol's not-found error, not a failed read
            raise MCPError(code=RESOURCE_NOT_FOUND, message=str(exc), data={"uri": f"kb://facts/{fact_id}"}) from exc
    about = {"fact_id": fact.fact_id, "tags": fact.tags, "metadata": fact.metadata,
             "created_at": fact.created_at.isoformat(), "updated_at": fact.updated_at.isoformat(),
             "expires_at": fact.expires_at.isoformat() if fact.expires_at else None}
    return f"{fact.content}\n\n```json\n{json.dumps(about, ensure_ascii=False, indent=2)}\n```\n"


async def read_stats(holder: StateHolder) -> str:
    """kb_stats of the caller's namespace, as JSON. (The SDK gives a static resource no Context, so the state comes
    from the holder; stats() bounds every step and reports a down Redis instead of raising.)"""
    state = holder.state
    if state is None:
        raise ResourceError("the server is starting; retry in a moment")
    stats = await state.store_for(current_tenant(state.default_tenant)).stats()
    return stats.model_dump_json(indent=2)
