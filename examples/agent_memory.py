"""Agent memory across sessions: session 1 learns facts about a user, session 2 (a new connection, as a new chat
would be) recalls them by meaning. Each session is a separate stdio `kb-mcp` process.

    python examples/agent_memory.py          # needs Redis Stack (scripts/redis-stack.sh start)
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

# The SDK passes only a safe minimum of the environment to the child: hand it our KB_* settings explicitly.
KB_ENV = {k: v for k, v in os.environ.items() if k.startswith("KB_")}
SERVER = StdioServerParameters(command=str(Path(sys.executable).with_name("kb-mcp")), args=[],
                               env={"KB_NAMESPACE": "agent-memory-demo", **KB_ENV})

LEARNED = [
    ("user.name", "The user's name is Ada."),
    ("user.timezone", "Ada lives in Lisbon (Europe/Lisbon timezone)."),
    ("user.diet", "Ada is vegetarian and allergic to peanuts."),
    ("user.work", "Ada maintains a Rust web service called 'ledger' deployed on Tuesdays."),
]
QUESTIONS = ["What should I avoid cooking for her?", "What time is it where she lives?",
             "On which weekday does her software get released?"]


async def session_one() -> None:
    async with Client(SERVER) as kb:
        for fact_id, content in LEARNED:
            result = await kb.call_tool("store_fact", {"content": content, "fact_id": fact_id, "tags": ["ada"]})
            if result.is_error:
                raise SystemExit(f"store_fact failed: {result.content[0].text}")  # type: ignore[union-attr]
            print("remembered", result.structured_content)


async def session_two() -> None:
    async with Client(SERVER) as kb:
        for question in QUESTIONS:
            result = await kb.call_tool("semantic_search", {"query": question, "top_k": 1, "tags": ["ada"]})
            best = (result.structured_content or {"results": []})["results"]
            print(f"Q: {question}\n   -> {best[0]['content'] if best else '(nothing)'}")


if __name__ == "__main__":
    asyncio.run(session_one())
    asyncio.run(session_two())
