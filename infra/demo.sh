#!/usr/bin/env bash
# `npm run demo`: the whole product on one machine (see infra/demo.ts). This wrapper only makes sure
# the machine and the project are set up (infra/setup.sh), then hands over to the TypeScript demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1 ONNXRUNTIME_NODE_INSTALL=skip
command -v node >/dev/null || { echo "demo: Node.js 20 is missing" >&2; exit 1; }
bash infra/setup.sh # Debian packages, local PostgreSQL/Redis, npm ci, migrations: only what is missing
exec npx tsx infra/demo.ts "$@"
