#!/usr/bin/env bash
# The one test command: installs everything (venv, packages, Redis Stack), starts a private Redis Stack on a
# loopback port, then runs ruff, mypy --strict and the whole pytest suite (integration tests on the real Redis,
# faults injected for real, the MCP Inspector CLI). Extra arguments go to pytest, e.g. scripts/test.sh -k store.
#   scripts/test.sh tests/unit     # unit tests only: no Redis is provisioned or started (needs nothing but Python)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh

needs_redis=0
paths=0
for arg in "$@"; do
  case $arg in
    -*) ;;
    tests/unit | tests/unit/*) paths=$((paths + 1)) ;;
    *) paths=$((paths + 1)); needs_redis=1 ;;
  esac
done
((paths == 0)) && needs_redis=1

if ((needs_redis)); then
  PORT=${KB_TEST_REDIS_PORT:-6390}
  DATA=$(mktemp -d "${TMPDIR:-/tmp}/kb-mcp-test-redis.XXXXXX")
  export REDIS_PORT=$PORT REDIS_DATA_DIR=$DATA
  cleanup() { bash scripts/redis-stack.sh stop >/dev/null 2>&1 || true; rm -rf "$DATA"; }
  trap cleanup EXIT
  bash scripts/redis-stack.sh start
  export KB_TEST_REDIS_URL=redis://127.0.0.1:$PORT/0
  if command -v npx >/dev/null 2>&1; then
    export KB_REQUIRE_INSPECTOR=1
    KB_NODE22_BIN=$(bash scripts/node22.sh)  # Node 22 for the current Inspector (2.x); the 0.15 run keeps Node 20
    export KB_NODE22_BIN
  fi
fi
echo "== ruff" >&2
.venv/bin/ruff check kb_mcp tests examples
echo "== mypy --strict kb_mcp" >&2
.venv/bin/mypy --strict kb_mcp
echo "== pytest" >&2
.venv/bin/python -m pytest "$@"
