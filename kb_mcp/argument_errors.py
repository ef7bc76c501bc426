"""Tool-argument validation errors as sentences an LLM acts on.

The SDK validates arguments against the input schema with pydantic and would pass pydantic's own report on
(`1 validation error for semantic_searchArguments\\ntop_k\\n  Input should be less than or equal to 50
[type=less_than_equal, ...] For further information visit https://errors.pydantic.dev/...`). This turns each error
into one short clause per field: `invalid arguments for semantic_search: top_k must be <= 50 (got 500)`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kb_mcp.facts import RULES

SCALAR = "a string, number, boolean or null"  # the members of facts.Scalar, in words
_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}
_KINDS = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
          "int_from_float": "an integer", "float_type": "a number", "float_parsing": "a number",
          "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
          "dict_type": "a JSON object"}


def describe(tool: str, exc: ValidationError) -> str:
    """`invalid arguments for <tool>: <field> must ...; <field> must ...` (one clause per field)."""
    clauses: dict[str, str] = {}
    kinds: dict[str, list[str]] = {}
    for err in exc.errors():
        field = _field(err)
        if _is_union_member(err):  # a value that fits none of a union's members (metadata values)
            kinds.setdefault(field, []).append(_KINDS.get(err["type"], err["type"]))
            clauses.setdefault(field, "")
            continue
        clauses.setdefault(field, _clause(field, err))
    for field, members in kinds.items():
        if not clauses[field]:
            wanted = SCALAR if {"a string", "a number"} <= set(members) else _or(sorted(set(members)))
            clauses[field] = f"{field} must be {wanted} (got {_kind_of(_input(exc, field))})"
    return f"invalid arguments for {tool}: " + "; ".join(clauses.values())


def _clause(field: str, err: ErrorDetails) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_short(value)})"
    if kind == "missing":
        return f"{field} is required"
    if kind in ("less_than_equal", "less_than"):
        return f"{field} must be {'<=' if kind == 'less_than_equal' else '<'} {ctx.get('le', ctx.get('lt'))}{got}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{field} must be {'>=' if kind == 'greater_than_equal' else '>'} {ctx.get('ge', ctx.get('gt'))}{got}"
    if kind == "string_too_short":
        return f"{field} must not be empty" if ctx.get("min_length") == 1 else \
            f"{field} must have at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"{field} must have at most {ctx.get('max_length')} characters (got {len(str(value))})"
    if kind == "too_long":
        return f"{field} must have at most {ctx.get('max_length')} items (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch":
        rule = RULES.get(str(ctx.get("pattern")), f"the pattern {ctx.get('pattern')}")
        return f"{field} {_short(value)} is not valid: {rule}"
    if kind in _KINDS:
        return f"{field} must be {_KINDS[kind]}{got}"
    return f"{field}: {err['msg']}{got}"


def _field(err: ErrorDetails) -> str:
    """The argument's path as an agent writes it: `facts[3].tags[0]`, `metadata.deep`."""
    loc = list(err["loc"])
    if loc and (str(loc[-1]) in _UNION_MEMBERS or str(loc[-1]).startswith(("function-", "list[", "dict["))):
        loc = loc[:-1]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "arguments"


def _is_union_member(err: ErrorDetails) -> bool:
    loc = err["loc"]
    return bool(loc) and str(loc[-1]) in _UNION_MEMBERS


def _input(exc: ValidationError, field: str) -> Any:
    for err in exc.errors():
        if _field(err) == field:
            return err.get("input")
    return None


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
