#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs kb-mcp with its test and benchmark extras. Idempotent and quiet:
# it reinstalls only when pyproject.toml changed. All output goes to stderr (stdout may be an MCP stdio wire).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KB_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
EXTRAS=${KB_EXTRAS:-dev,bench}
{
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    { echo "setup: Python >= 3.11 is required ($("$PY" --version 2>&1))"; exit 1; }
  if [[ ! -x $VENV/bin/python ]]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  stamp=$VENV/.kb-mcp-installed
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$EXTRAS
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup: installing kb-mcp[$EXTRAS] into $VENV (first time ~1 min)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$EXTRAS]"
    echo "$want" > "$stamp"
  fi
} >&2
