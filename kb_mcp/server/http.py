"""Streamable HTTP: the SDK's app at /mcp, plus GET /health (public) and GET /metrics (behind the token when auth
is on), with the request body size limit and the SDK's DNS-rebinding protection for loopback hosts."""

from __future__ import annotations

import time
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.routes import create_protected_resource_routes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kb_mcp import __version__
from kb_mcp.config import Settings
from kb_mcp.errors import KbError
from kb_mcp.server.app import KbServer, refresh_metrics
from kb_mcp.server.auth import READ_SCOPE, WRITE_SCOPE
from kb_mcp.server.call import StateHolder
from kb_mcp.server.metrics import CONTENT_TYPE

MCP_PATH = "/mcp"


def http_app(mcp: KbServer, holder: StateHolder, settings: Settings, host: str) -> Starlette:
    """The Starlette app `kb-mcp serve --transport http` runs."""
    app = mcp.streamable_http_app(streamable_http_path=MCP_PATH, host=host, stateless_http=settings.http_stateless,
                                  max_request_body_size=settings.max_request_bytes)

    async def health(_: Request) -> Response:
        return await _health(holder)

    async def metrics(request: Request) -> Response:
        if holder.verifier is not None and not await _authorised(request, holder.verifier):
            return JSONResponse({"error": "unauthorized"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="kb-mcp"'})
        await refresh_metrics(holder)
        return Response(holder.metrics.render(), media_type=CONTENT_TYPE)

    auth = mcp.settings.auth
    if auth is not None and auth.resource_server_url is not None:  # RFC 9728 metadata naming both scopes (the
        # SDK's own route lists only the required one, kb:read); ahead of it, so this one answers
        app.router.routes[:0] = create_protected_resource_routes(
            resource_url=auth.resource_server_url, authorization_servers=[auth.issuer_url],
            scopes_supported=[READ_SCOPE, WRITE_SCOPE], resource_name="kb-mcp")
    app.add_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return app


async def _authorised(request: Request, verifier: TokenVerifier) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return await verifier.verify_token(token) is not None


async def _health(holder: StateHolder) -> Response:
    """Liveness plus Redis status: 200 when Redis answers PING, 503 (with the reason) when not."""
    state = holder.state
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    manager = state.backend.manager
    body: dict[str, Any] = {"status": "ok", "version": __version__, "stateless": state.settings.http_stateless,
                            "uptime_s": round(time.monotonic() - state.started_at, 1)}
    try:
        body["redis"] = {"ok": True, "ping_ms": round(await manager.ping() * 1000, 2)}
        placement = await state.backend.store(state.settings.namespace).placement()
        body["redis"] |= placement.model_dump()
        code = 200
    except KbError as exc:
        body["status"] = "degraded"
        body["redis"] = {"ok": False, "error": str(exc)}
        code = 503
    body["redis"].update(manager.state().model_dump())
    return JSONResponse(body, status_code=code)
