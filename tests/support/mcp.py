"""Talking to kb-mcp as clients do: in-process `mcp.Client`, a stdio child (raw JSON-RPC too), a streamable HTTP
child, and a fake OpenAI-compatible embedding endpoint on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import uvicorn
from mcp import Client
from mcp.types import CallToolResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kb_mcp.config import Settings
from kb_mcp.server.app import build_server
from kb_mcp.server.call import StateHolder
from tests.support.redis import free_port

KB_MCP = str(Path(sys.executable).with_name("kb-mcp"))
TOOLS = {"store_fact", "store_facts", "update_fact", "get_fact", "semantic_search", "delete_fact", "delete_facts",
         "kb_stats"}


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@asynccontextmanager
async def in_process(settings: Settings, embedding: Any = None) -> AsyncIterator[tuple[Client, StateHolder]]:
    mcp, holder = build_server(settings, embedding=embedding)
    async with Client(mcp) as client:
        yield client, holder


@asynccontextmanager
async def embedding_endpoint(handler: Callable[[Request], Any]) -> AsyncIterator[str]:
    """A real HTTP server on loopback speaking OpenAI's /v1/embeddings (its behaviour is `handler`)."""
    app = Starlette(routes=[Route("/v1/embeddings", handler, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 5)


async def stall(request: Request) -> JSONResponse:
    await asyncio.sleep(30)
    return JSONResponse({})


def kb_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"KB_REDIS_URL": str(settings.redis_url), "KB_NAMESPACE": settings.namespace, **extra}


def stdio_exchange(messages: list[dict[str, Any]], env: dict[str, str]) -> tuple[dict[int, Any], str]:
    """Speak raw JSON-RPC to a `kb-mcp` child: every stdout line must be a JSON-RPC message. Waits for each
    request's reply before sending on, then closes stdin (the server exits at EOF)."""
    proc = subprocess.Popen([KB_MCP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env}, text=True)
    assert proc.stdin and proc.stdout
    replies: dict[int, Any] = {}
    try:
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            while "id" in message and message["id"] not in replies:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
                parsed = json.loads(line)
                assert parsed["jsonrpc"] == "2.0"
                if "id" in parsed:
                    replies[parsed["id"]] = parsed
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)
    return replies, proc.stderr.read() if proc.stderr else ""


@contextmanager
def http_server(settings: Settings, *args: str, **env: str) -> Iterator[str]:
    port = free_port()
    full_env = {**os.environ, **kb_env(settings, **env)}
    proc = subprocess.Popen([KB_MCP, "serve", "--transport", "http", "--port", str(port), *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(base + "/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "HTTP server did not start"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bearer(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
