"""Agent memory across sessions: session 1 learns facts about a user and corrects one in place (update_fact),
session 2 (a new connection, as a new chat would be) recalls them by meaning, preferring what changed recently.
Each session is a separate stdio `kb-mcp` process.

    .venv/bin/python examples/agent_memory.py    # each session launches kb-mcp through scripts/run.sh, which
                                                 # starts (or reuses) the same local Redis (REDIS_PORT, default 6379)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mcp import Client, StdioServerParameters

# The SDK passes only a safe minimum of the environment to the child: hand it our KB_* settings (and the port of
# the local Redis) explicitly. scripts/run.sh is what Claude Desktop launches too.
KB_ENV = {k: v for k, v in os.environ.items() if k.startswith("KB_") or k == "REDIS_PORT"}
SERVER = StdioServerParameters(command=str(Path(__file__).resolve().parents[1] / "scripts" / "run.sh"), args=[],
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
        # Everything learned in one call: one embedding batch, one write.
        batch = [{"content": content, "fact_id": fact_id, "tags": ["ada"]} for fact_id, content in LEARNED]
        # A fact that stops being true: forgotten after an hour.
        batch.append({"content": "Ada is at a conference in Berlin and only reads email.", "fact_id": "user.status",
                      "tags": ["ada"], "ttl_s": 3600})
        result = await kb.call_tool("store_facts", {"facts": batch})
        if result.is_error:
            raise SystemExit(f"store_facts failed: {result.content[0].text}")  # type: ignore[union-attr]
        for saved in (result.structured_content or {"results": []})["results"]:
            print("remembered", saved["fact_id"], "until " + saved["expires_at"] if saved["expires_at"] else "")
        # The same fact in other words: kb-mcp points at the one it already has, so the agent can update it.
        again = await kb.call_tool("store_fact", {"content": "Ada doesn't eat meat and has a peanut allergy.",
                                                  "tags": ["ada"]})
        similar = (again.structured_content or {}).get("similar", [])
        if similar:
            print("already known as", similar[0]["fact_id"], "- updating that one instead")
            await kb.call_tool("delete_fact", {"fact_id": (again.structured_content or {})["fact_id"]})
        # Something changed: edit the fact in place (only the content is sent; tags and created_at are kept).
        moved = await kb.call_tool("update_fact", {"fact_id": "user.timezone",
                                                   "content": "Ada moved from Lisbon to Tokyo (Asia/Tokyo timezone)."})
        print("updated user.timezone, embedded again:", (moved.structured_content or {}).get("re_embedded"))


async def session_two() -> None:
    async with Client(SERVER) as kb:
        for question in QUESTIONS:
            # recency_half_life_days: of two equally relevant facts, the recently updated one comes first
            result = await kb.call_tool("semantic_search", {"query": question, "top_k": 1, "tags": ["ada"],
                                                            "created_after": "2020-01-01",
                                                            "recency_half_life_days": 30})
            best = (result.structured_content or {"results": []})["results"]
            print(f"Q: {question}\n   -> {best[0]['content'] if best else '(nothing)'}")


if __name__ == "__main__":
    asyncio.run(session_one())
    asyncio.run(session_two())
