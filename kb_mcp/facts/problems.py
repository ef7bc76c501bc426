"""A broken field rule (a pydantic validation error) as the sentence an agent or a user acts on: one short
problem per field, `top_k must be <= 50 (got 500)`, instead of pydantic's report (`1 validation error for ...
[type=less_than_equal, ...] For further information visit https://errors.pydantic.dev/...`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

SCALAR = "a string, number, boolean or null"  # the members of a metadata value, in words
_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}
_KINDS = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
          "int_from_float": "an integer", "float_type": "a number", "float_parsing": "a number",
          "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
          "dict_type": "a JSON object"}


def problems(exc: ValidationError, base: str = "", rules: dict[str, str] | None = None) -> dict[str, str]:
    """Each field at fault (its path below `base`: `facts[3].tags[0]`, `metadata.deep`) and what is wrong with it;
    `rules` gives patterns in words."""
    found: dict[str, str] = {}
    kinds: dict[str, list[str]] = {}
    for err in exc.errors():
        field = _field(err, base)
        if _is_union_member(err):  # a value that fits none of a union's members (metadata values)
            kinds.setdefault(field, []).append(_KINDS.get(err["type"], err["type"]))
            found.setdefault(field, "")
            continue
        found.setdefault(field, _problem(err, rules or {}))
    for field, members in kinds.items():
        if not found[field]:
            given = _input(exc, field, base)
            found[field] = f"must be {_wanted(set(members), given)} (got {_kind_of(given)})"
    return found


def _wanted(members: set[str], given: Any) -> str:
    """What a union of scalars accepts, in words; a null refused says so (a metadata value may be null, a where
    value may not)."""
    if {"a string", "a number"} <= members:
        return SCALAR if given is not None else "a string, number or boolean"
    return _or(sorted(members))


def first_problem(exc: ValidationError, base: str, rules: dict[str, str] | None = None) -> tuple[str, str]:
    """The first field at fault and its problem."""
    return next(iter(problems(exc, base, rules).items()))


def _problem(err: ErrorDetails, rules: dict[str, str]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_short(value)})"
    if kind == "missing":
        return "is required"
    if kind == "kb_rule":
        return err["msg"]
    if kind == "string_unicode":
        return "is not valid Unicode (lone surrogate)"
    if kind in ("less_than_equal", "less_than"):
        return f"must be {'<=' if kind == 'less_than_equal' else '<'} {ctx.get('le', ctx.get('lt'))}{got}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be {'>=' if kind == 'greater_than_equal' else '>'} {ctx.get('ge', ctx.get('gt'))}{got}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else \
            f"must have at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters (got {len(str(value))})"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch":
        rule = rules.get(str(ctx.get("pattern")), f"the pattern {ctx.get('pattern')}")
        return f"{_short(value)} is not valid: {rule}"
    if kind == "literal_error":
        return f"must be one of {str(ctx.get('expected', '')).replace(chr(39), '').replace(' or ', ', ')}{got}"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}{got}"
    return f"is not valid: {err['msg']}{got}"


def _field(err: ErrorDetails, base: str) -> str:
    loc = list(err["loc"])
    if loc and (str(loc[-1]) in _UNION_MEMBERS or str(loc[-1]).startswith(("function-", "list[", "dict["))):
        loc = loc[:-1]
    path = base
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "arguments"


def _is_union_member(err: ErrorDetails) -> bool:
    loc = err["loc"]
    return bool(loc) and str(loc[-1]) in _UNION_MEMBERS


def _input(exc: ValidationError, field: str, base: str) -> Any:
    for err in exc.errors():
        if _field(err, base) == field:
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
