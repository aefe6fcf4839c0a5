#!/usr/bin/env bash
# The test command: starts what the tests need, then builds once and runs every test of the workspace
# in one cargo invocation (real PostgreSQL, NATS, Redis and ClamAV; no mocks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
# The tests' virus scanner: a real clamd that knows only the EICAR test string (nothing to download).
scripts/ensure-clamd.sh --test
export BONSAI_TEST_CLAMD="${BONSAI_TEST_CLAMD:-tcp://127.0.0.1:3319}"
if [ -x scripts/install-onnxruntime.sh ]; then scripts/install-onnxruntime.sh; fi
# NVRTC, so the tests compile the GPU trainer's kernels for a GPU (no GPU or driver needed for that); the
# tests build with the `cuda` feature, which checks the CUDA backend compiles and makes `--device cuda` say
# what is missing on a machine without a GPU.
scripts/install-nvrtc.sh
export LD_LIBRARY_PATH="$PWD/.local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Every black-box test makes its own database and data folder; drop those that earlier runs left (one
# still in use by a concurrent run refuses the drop and stays).
for db in $(psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'bonsai\_test\_%'" 2>/dev/null); do
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE \"$db\"" >/dev/null 2>&1 || true
done
find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'bonsai_test_*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
status=0
cargo test --workspace --features bonsai-ml/cuda --no-fail-fast "$@" || status=$?
if [ $# -eq 0 ]; then
  # Schemathesis over the OpenAPI document against a real `bonsai serve` (the debug binary the tests built):
  # 0 server errors, 0 schema violations, within about 3 minutes.
  BONSAI_ST_SECONDS=180 scripts/schemathesis.sh 100 || status=$?
  # The operations layer (deploy/): promtool, docker compose config, nginx -t, and two real nodes behind a real
  # Nginx (scripts/check-ops.sh). Skipped when a test-name filter is given (a filtered run is for those tests).
  scripts/check-ops.sh || status=$?
  # The OpenAI-compatible door through the official `openai` Python client against a live server.
  scripts/test-openai.sh || status=$?
fi
# The web console: unit tests, build, bundle size, and Chromium end to end against the debug binary
# (BONSAI_SKIP_CONSOLE=1 skips them).
if [ -z "${BONSAI_SKIP_CONSOLE:-}" ]; then scripts/test-console.sh || status=$?; fi
exit "$status"
