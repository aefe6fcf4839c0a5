#!/usr/bin/env bash
# The test command: starts what the tests need, then builds once and runs every test of the workspace
# in one cargo invocation (real PostgreSQL and NATS; no mocks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
cargo test --workspace --no-fail-fast "$@"
