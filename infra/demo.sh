#!/usr/bin/env bash
# `npm run demo`: the whole product on one machine (see infra/demo.ts). This wrapper only makes sure
# the project is installed, then hands over to the TypeScript demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1 ONNXRUNTIME_NODE_INSTALL=skip
command -v node >/dev/null || { echo "demo: Node.js 20 is missing" >&2; exit 1; }
if [ ! -d node_modules ]; then
  echo "==> installing (npm ci)"
  npm ci --no-audit --no-fund
fi
exec npx tsx infra/demo.ts "$@"
