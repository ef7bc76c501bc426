#!/usr/bin/env bash
# Drive kb-mcp with the MCP Inspector CLI (Node >= 18; Node 20 resolves inspector 0.15.0). Needs Redis Stack.
#   examples/inspector.sh            # tools/list, then a store -> get round trip
#   npx @modelcontextprotocol/inspector .venv/bin/kb-mcp     # the interactive web UI instead
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KB=$ROOT/.venv/bin/kb-mcp
INSPECT=(npx -y @modelcontextprotocol/inspector@0.15.0 --cli -e "KB_NAMESPACE=${KB_NAMESPACE:-inspector}")
[[ -n ${KB_REDIS_URL:-} ]] && INSPECT+=(-e "KB_REDIS_URL=$KB_REDIS_URL")
"${INSPECT[@]}" "$KB" --method tools/list
"${INSPECT[@]}" "$KB" --method tools/call --tool-name store_fact \
  --tool-arg 'content=The MCP Inspector can reach kb-mcp' --tool-arg fact_id=inspector.demo --tool-arg 'tags=["demo"]'
"${INSPECT[@]}" "$KB" --method tools/call --tool-name get_fact --tool-arg fact_id=inspector.demo
"${INSPECT[@]}" "$KB" --method tools/call --tool-name semantic_search --tool-arg 'query=can the inspector talk to it?'
