"""docs/configuration.md, generated from `Settings` (each field's type, default and description), so the table
cannot drift from the code: `python -m kb_mcp.cli.settings_doc > docs/configuration.md` (a test compares)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic.fields import FieldInfo

from kb_mcp.config import ENV_PREFIX, SECRET_FIELDS, Settings

HEADER = """# Configuration

Every setting is an environment variable with the `KB_` prefix (an empty value counts as unset). A bad value stops
the start with a message naming the variable, e.g. `KB_TIMEOUT_REDIS: Input should be greater than 0`. This file is
generated from `kb_mcp/config.py`: `python -m kb_mcp.cli.settings_doc > docs/configuration.md`.

| variable | default | values | meaning |
| --- | --- | --- | --- |
"""


def markdown() -> str:
    """The whole configuration page."""
    rows = [_row(name, field) for name, field in Settings.model_fields.items()]
    return HEADER + "\n".join(rows) + "\n"


def _row(name: str, field: FieldInfo) -> str:
    default = "unset" if field.default is None else f"`{_shown(field.default)}`"
    meaning = (field.description or "") + (" (never echoed in messages)" if name in SECRET_FIELDS else "")
    return f"| `{ENV_PREFIX}{name.upper()}` | {default} | {_values(field)} | {meaning} |"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _values(field: FieldInfo) -> str:
    """What the variable accepts: the choices of a Literal, else its type and bounds."""
    kind = field.annotation
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(kind))
    base = getattr(args[0] if args else kind, "__name__", str(kind))
    limits = {attr: getattr(item, attr) for item in field.metadata for attr in ("ge", "gt", "le")
              if getattr(item, attr, None) is not None}
    low = f">= {limits['ge']}" if "ge" in limits else f"> {limits['gt']}" if "gt" in limits else ""
    bounds = [f"{limits['ge']}..{limits['le']}"] if "ge" in limits and "le" in limits else \
        [b for b in (low, f"<= {limits['le']}" if "le" in limits else "") if b]
    return " ".join([{"SecretStr": "secret", "PosixPath": "path", "Path": "path"}.get(base, base), *bounds])


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
