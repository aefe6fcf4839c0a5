#!/usr/bin/env bash
# Issue 3 benchmark: validation MB/s and peak RSS on generated 50 MB and 200 MB JSONL files, one core.
# Usage: bench/datasets/run.sh [SIZE_MB...] [--shape qa|chat]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-datasets}"
cargo build --release -q -p bonsai-datasets --example validate_bench
# taskset pins to one core where available; the validator is single-threaded either way.
if command -v taskset >/dev/null; then pin=(taskset -c 0); else pin=(); fi
exec "${pin[@]}" "$CARGO_TARGET_DIR/release/examples/validate_bench" "$@"
