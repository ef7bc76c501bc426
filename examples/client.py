"""Talk to kb-mcp with the official `mcp.Client`, over stdio (spawning `kb-mcp`) or streamable HTTP.

    .venv/bin/python examples/client.py stdio            # spawns scripts/run.sh: the same Redis it starts
    .venv/bin/python examples/client.py http http://127.0.0.1:8765/mcp [TOKEN]

Run it with the project's `.venv/bin/python` (it has the `mcp` SDK). Over stdio it launches kb-mcp through
`scripts/run.sh`, which starts (or reuses) the local Redis on REDIS_PORT (default 6379) unless KB_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def connect(argv: list[str]) -> Client:
    if argv and argv[0] == "http":
        url = argv[1] if len(argv) > 1 else "http://127.0.0.1:8765/mcp"
        headers = {"Authorization": f"Bearer {argv[2]}"} if len(argv) > 2 else {}
        return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30)))
    return Client(StdioServerParameters(command=RUN_SH, args=["serve"], env=server_env()))


RUN_SH = str(Path(__file__).resolve().parents[1] / "scripts" / "run.sh")


def server_env() -> dict[str, str]:
    """KB_* and REDIS_PORT: the SDK passes the child no other variables of ours."""
    return {k: v for k, v in os.environ.items() if k.startswith("KB_") or k == "REDIS_PORT"}


async def main(argv: list[str]) -> None:
    async with connect(argv) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        saved = await client.call_tool("store_fact", {"content": "The example client ran successfully.",
                                                      "fact_id": "example.client", "tags": ["example"]})
        print("store_fact ->", saved.structured_content)
        found = await client.call_tool("semantic_search", {"query": "did the sample program work?", "top_k": 3})
        for hit in (found.structured_content or {}).get("results", []):
            print(f"  {hit['score']:.3f}  {hit['fact_id']}: {hit['content']}")
        missing = await client.call_tool("get_fact", {"fact_id": "no.such.fact"})
        print("error result ->", missing.is_error, missing.content[0].text)  # type: ignore[union-attr]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
