#!/usr/bin/env bash
# Runs kb-mcp, installing it first if needed and starting a local Redis Stack (loopback, AOF on) unless
# KB_REDIS_URL points elsewhere. Arguments go to `kb-mcp` (default: serve on stdio, what MCP clients launch).
#   scripts/run.sh                                 # stdio (Claude Desktop / Cursor command)
#   scripts/run.sh serve --transport http          # streamable HTTP on 127.0.0.1:8765/mcp
#   REDIS_PORT=6411 scripts/run.sh                 # the local Redis on another port (default 6379)
#   REDIS_PORT=6411 scripts/redis-stack.sh stop    # stop it (status: the same with "status")
# Only MCP protocol goes to stdout; everything else goes to stderr.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
if [[ -z ${KB_REDIS_URL:-} ]]; then
  # Data in ~/.local/share/kb-mcp/redis-$REDIS_PORT (redis-stack.sh's default, so its stop/status find it too).
  export REDIS_PORT=${REDIS_PORT:-6379}
  bash "$ROOT/scripts/redis-stack.sh" start >&2
  export KB_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
fi
exec "$ROOT/.venv/bin/kb-mcp" "$@"
