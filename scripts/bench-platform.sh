#!/usr/bin/env bash
# Platform benchmark: starts a release `bonsai serve` on a fresh database and data folder (per-user rate limits
# off, a random tiny model installed as the base `bench-tiny`) and drives it over HTTP with `bonsai-bench`:
# commands, queries, projection lag, and questions answered by a deployed model. Prints a table; see the
# issue's targets beside each figure. Extra arguments go to bonsai-bench (`--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
scripts/install-onnxruntime.sh
# BONSAI_BENCH_BIN=<dir> uses binaries built elsewhere (e.g. a dev build, whose dependencies are optimised).
bin="${BONSAI_BENCH_BIN:-target/release}"
[ -n "${BONSAI_BENCH_BIN:-}" ] || cargo build --release --bin bonsai --bin bonsai-bench
run=$(date +%s)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/bonsai_bench_$run"
export BONSAI_NATS_PREFIX="bench$run"
export BONSAI_ADMIN_PASSWORD="bench-admin-password"
export BONSAI_JWT_SECRET="bench-secret-bench-secret"
export BONSAI__RATE_LIMIT__REQUESTS_PER_SECOND=0
export BONSAI__RATE_LIMIT__QUESTIONS_PER_MINUTE=0
export BONSAI_DATA_DIR=$(mktemp -d)
"$bin/bonsai" model init-tiny "$BONSAI_DATA_DIR/models/bench-tiny" --corpus demo/faq.jsonl >/dev/null
# BONSAI_BENCH_MODELS=<dir>: its installed base models too (e.g. SmolLM2 from scripts/install-smollm2.sh).
for installed in "${BONSAI_BENCH_MODELS:-/nonexistent}"/*/; do
  [ -f "$installed/config.json" ] && ln -s "$(cd "$installed" && pwd)" "$BONSAI_DATA_DIR/models/$(basename "$installed")"
done
export BONSAI_HTTP_ADDR=127.0.0.1:18080
export RUST_LOG=warn
"$bin/bonsai" serve & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bonsai_bench_$run" >/dev/null 2>&1 || true; rm -rf "$BONSAI_DATA_DIR"' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done
# BONSAI_BENCH_QA_MODEL: the base model questions are asked of (default the random bench-tiny).
"$bin/bonsai-bench" --url http://127.0.0.1:18080 --qa-model "${BONSAI_BENCH_QA_MODEL:-bench-tiny}" "$@"
