"""Tool-argument validation errors as sentences an LLM acts on: `invalid arguments for semantic_search: top_k must
be <= 50 (got 500)`, one clause per field, worded by `facts.problems` exactly as the store words the same rule."""

from __future__ import annotations

from pydantic import ValidationError

from kb_mcp.facts.problems import problems
from kb_mcp.facts.rules import RULES


def describe(tool: str, exc: ValidationError) -> str:
    """`invalid arguments for <tool>: <field> must ...; <field> must ...` (one clause per field)."""
    return f"invalid arguments for {tool}: " + "; ".join(
        f"{field} {problem}" for field, problem in problems(exc, rules=RULES).items())
