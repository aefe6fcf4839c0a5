#!/usr/bin/env bash
# The web console's tests (web/): installs what a fresh Debian machine lacks (Node's packages with `npm ci`,
# Debian's Chromium for the browser tests), then: the generated API types are current, the unit and
# component tests (Vitest), the production build, the bundle-size bar (first page <= 300 KB gzipped), and the
# end-to-end tests (Chromium driving a real `bonsai serve`; target/debug/bonsai, built by `cargo test`).
# Screenshots of every page the end-to-end tests visit go into the folder they print.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends nodejs npm
fi
if [ ! -x /usr/bin/chromium ]; then
  apt-get update && apt-get install -y --no-install-recommends chromium fonts-noto-cjk
fi
export LD_LIBRARY_PATH="$PWD/.local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd web
npm ci --no-audit --no-fund
node scripts/gen-api.mjs --check
npx vitest run
npm run build
node scripts/bundle-size.mjs
if [ ! -x "${BONSAI_BIN:-../target/debug/bonsai}" ]; then (cd .. && cargo build --features bonsai-ml/cuda --bin bonsai); fi
node e2e/run.mjs "$@"
