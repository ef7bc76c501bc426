#!/usr/bin/env bash
# Drive kb-mcp with the MCP Inspector CLI (Node >= 18; Node 20 resolves inspector 0.15.0). Talks to the Redis that
# scripts/run.sh starts (127.0.0.1:$REDIS_PORT, default 6379) unless KB_REDIS_URL is set.
#   examples/inspector.sh            # tools/list, then a store -> get round trip
#   npx @modelcontextprotocol/inspector .venv/bin/kb-mcp     # the interactive web UI instead
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KB=$ROOT/.venv/bin/kb-mcp
URL=${KB_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}/0}
INSPECT=(npx -y @modelcontextprotocol/inspector@0.15.0 --cli -e "KB_NAMESPACE=${KB_NAMESPACE:-inspector}"
         -e "KB_REDIS_URL=$URL")
"${INSPECT[@]}" "$KB" --method tools/list
"${INSPECT[@]}" "$KB" --method tools/call --tool-name store_fact \
  --tool-arg 'content=The MCP Inspector can reach kb-mcp' --tool-arg fact_id=inspector.demo --tool-arg 'tags=["demo"]'
"${INSPECT[@]}" "$KB" --method tools/call --tool-name get_fact --tool-arg fact_id=inspector.demo
"${INSPECT[@]}" "$KB" --method tools/call --tool-name semantic_search --tool-arg 'query=can the inspector talk to it?'
