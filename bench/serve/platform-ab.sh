#!/usr/bin/env bash
# Serving through the platform, batching on and off side by side: runs scripts/bench-platform.sh (a fresh
# server, questions through `POST /api/qa/ask` by 1 and then N clients) on SmolLM2-135M-Instruct with
# BONSAI__SERVING_SLOTS=0 (no batching: BONSAI__SERVING_SESSIONS sessions per model, the engine before
# continuous batching) and BONSAI__SERVING_SLOTS=8, interleaved for ROUNDS rounds, and prints each run's
# question rows. Speed moves between launches on a shared machine: compare the two within a round.
#
#   bench/serve/platform-ab.sh [rounds (2)] [clients (8)] [tokens (64)]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
clients=${2:-8}
tokens=${3:-64}
bin="${BONSAI_BENCH_BIN:-target/release}"
[ -n "${BONSAI_BENCH_BIN:-}" ] || cargo build --release --bin bonsai --bin bonsai-bench
models="${BONSAI_BENCH_MODELS:-$PWD/.local/bench-models}"
mkdir -p "$models"
scripts/install-smollm2.sh "$bin/bonsai" "$models"
for round in $(seq 1 "$rounds"); do
  for slots in 0 8; do
    echo "## round $round, BONSAI__SERVING_SLOTS=$slots"
    BONSAI_BENCH_BIN="$bin" BONSAI_BENCH_MODELS="$models" BONSAI__SERVING_SLOTS=$slots \
      BONSAI_BENCH_QA_MODEL=smollm2-135m-instruct scripts/bench-platform.sh --qa-clients "$clients" --qa-tokens "$tokens" \
      --users "$clients" --seconds 20 --query-rate 100 --lag-rate 50 2>/dev/null | grep -E "new questions|repeated"
  done
done
