"""Metadata filters (KB_FILTER_FIELDS): the declared metadata keys a fact's hash also holds as RediSearch TAG or
NUMERIC fields, and a `where` argument turned into the query clauses that filter on them inside Redis (so the vector
side, the full text and listings all filter before they rank, never after)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kb_mcp.config import FilterType
from kb_mcp.errors import InvalidInput
from kb_mcp.facts.models import Scalar
from kb_mcp.facts.rules import WHERE, valid
from kb_mcp.store.schema import F_META, filter_field
from kb_mcp.store.search.querytext import escape

Declared = Mapping[str, FilterType]
TAG_OPERATORS = ("eq", "ne", "in")
NUMERIC_OPERATORS = ("eq", "ne", "in", "gt", "gte", "lt", "lte")
_BOUNDS = {"gt": "({n} +inf", "gte": "{n} +inf", "lt": "-inf ({n}", "lte": "-inf {n}"}  # "(": exclusive


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def tag_text(value: Scalar) -> str:
    """A metadata value as the TAG field holds it (booleans as true/false, as JSON writes them)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def indexed_fields(metadata_json: str | bytes, declared: Declared) -> dict[str, str]:
    """The filter fields of a fact's hash, from its metadata JSON: one per declared key the metadata holds with a
    value its type can index (a non-number under a numeric key, from an import or an older fact, is left out)."""
    if not declared:
        return {}
    metadata = json.loads(metadata_json) if metadata_json else {}
    out: dict[str, str] = {}
    for key, kind in declared.items():
        value = metadata.get(key)
        if value is None or (kind == "numeric" and not is_number(value)):
            continue
        out[filter_field(key)] = repr(float(value)) if kind == "numeric" else tag_text(value)
    return out


def with_filter_fields(record: dict[str, Any], declared: Declared) -> dict[str, Any]:
    """`record` plus its filter fields (every write of a fact goes through here: the put script replaces the whole
    hash, so a key removed from the metadata leaves no stale filter field)."""
    found = indexed_fields(record.get(F_META) or "", declared)
    return {**record, **found} if found else record


def check_metadata(metadata: Mapping[str, Scalar], declared: Declared, field: str = "metadata") -> None:
    """A declared numeric key must hold a number: the fact would otherwise be invisible to that key's filters."""
    for key, kind in declared.items():
        value = metadata.get(key)
        if kind == "numeric" and value is not None and not is_number(value):
            raise InvalidInput(f"{field}.{key}", f"must be a number: KB_FILTER_FIELDS indexes {key!r} as numeric "
                                                 f"(got {value!r})")


def where_clauses(where: Any, declared: Declared, indexed: frozenset[str] | None = None) -> list[str]:
    """RediSearch clauses for a `where` argument (all must hold). `indexed`: the filter keys the index really has
    (a key declared after the index was built is refused until `kb-mcp reindex`)."""
    conditions = valid(WHERE, where, "where")
    if not conditions:
        return []
    clauses = []
    for key, condition in conditions.items():
        kind = declared.get(key)
        if kind is None:
            raise InvalidInput(f"where.{key}", f"is not a filter key; {_declared_text(declared)}")
        if indexed is not None and key not in indexed:
            raise InvalidInput(f"where.{key}", "is declared in KB_FILTER_FIELDS but the index was built before it: "
                                               "run kb-mcp reindex")
        for operator, operand in (condition if isinstance(condition, dict) else {"eq": condition}).items():
            clauses.append(_clause(key, kind, operator, operand))
    return clauses


def _clause(key: str, kind: FilterType, operator: str, operand: Any) -> str:
    where = f"where.{key}"
    allowed = TAG_OPERATORS if kind == "tag" else NUMERIC_OPERATORS
    if operator not in allowed:
        raise InvalidInput(where, f"unknown operator {operator!r}; {kind} keys take {', '.join(allowed)}")
    values = operand if isinstance(operand, list) else [operand]
    if (operator == "in") != isinstance(operand, list):
        raise InvalidInput(where, "in takes a list of values" if operator == "in"
                           else f"{operator} takes one value, not a list")
    name = filter_field(key)
    if kind == "tag":
        union = " | ".join(escape(tag_text(v)) for v in values)
        clause = f"@{name}:{{{union}}}"
        return f"-{clause}" if operator == "ne" else clause
    for value in values:
        if not is_number(value):
            raise InvalidInput(where, f"{key!r} is numeric: {operator} needs a number (got {value!r})")
    if operator in _BOUNDS:
        return f"@{name}:[{_BOUNDS[operator].format(n=repr(float(values[0])))}]"
    ranges = " | ".join(f"@{name}:[{float(v)!r} {float(v)!r}]" for v in values)
    clause = ranges if len(values) == 1 else f"({ranges})"
    return f"-{clause}" if operator == "ne" else clause


def _declared_text(declared: Declared) -> str:
    if not declared:
        return "no metadata keys are indexed for filtering (declare them with KB_FILTER_FIELDS, e.g. project:tag)"
    return "the filter keys are: " + ", ".join(f"{k} ({t})" for k, t in declared.items())
