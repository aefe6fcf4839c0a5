#!/usr/bin/env bash
# LoRA training throughput, Bonsai vs PyTorch + transformers + PEFT, on the same machine in the same run.
#
# usage: bench/train/run.sh [rounds=2] [threads=2] [configs="tiny smol"]
#
# Runs the two implementations alternately (ours, reference, ours, reference, ...) so that both see the same
# machine state (the speed of a shared 2-core machine drifts by up to 2x between launches), then prints a
# table: tokens/s of each, the per-round ratio, achieved GFLOP/s, the fraction of the measured fp32 GEMM
# ceiling, and peak resident memory. The reference is installed into bench/.venv (never in CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
THREADS=${2:-2}
CONFIGS=${3:-"tiny smol"}
VENV=bench/.venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch transformers peft
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p bonsai-ml --example train_bench
BIN="$CARGO_TARGET_DIR/release/examples/train_bench"
OUT=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for cfg in $CONFIGS; do
    case $cfg in tiny) steps=10 warm=2 ;; *) steps=4 warm=1 ;; esac
    RAYON_NUM_THREADS=$THREADS "$BIN" "$cfg" "$steps" "$warm" | sed "s/^{/{\"round\": $round, /" | tee -a "$OUT"
    OMP_NUM_THREADS=$THREADS "$VENV/bin/python" bench/reference/train_peft.py "$cfg" "$steps" "$warm" "$THREADS" \
      2>/dev/null | sed "s/^{/{\"round\": $round, /" | tee -a "$OUT"
  done
done
"$VENV/bin/python" bench/train/report.py "$OUT"
