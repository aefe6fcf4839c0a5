#!/usr/bin/env bash
# The CUDA trainer's check on a GPU machine, in two halves (the GPU machine has no Rust toolchain):
#
#   scripts/gpu-check.sh prepare   here, with cargo: builds the device test binary and the training bench
#                                  with the `cuda` feature into .gpu/ (git-ignored; carry it to the GPU)
#   scripts/gpu-check.sh run       on the GPU machine (NVIDIA driver; Python with torch + transformers + peft
#                                  and the nvidia-cublas / nvidia-cuda-nvrtc wheels, CUDA 13): runs the CUDA
#                                  tests (loss, gradients and logits equal the CPU trainer's, kernels compile)
#                                  then the training bench, ours vs PyTorch + PEFT on the same GPU, interleaved,
#                                  and prints the comparison. With $OUT set, the raw lines go to $OUT too.
#
# Environment for run: ROUNDS (2), STEPS (20), SHAPES ("tiny 8 128,smol 4 128,smol 16 512,smol 16 512 tf32";
# a fourth word `tf32` lets both sides use TF32 tensor cores), PYTHON (python3),
# DEVICE (cuda; `emulated-gpu` dry-runs this script on a machine without a GPU, the reference then on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  mkdir -p .gpu
  cargo build --release -p bonsai-ml --features cuda --example train_bench
  cp target/release/examples/train_bench .gpu/train_bench
  BIN=$(cargo test --release -p bonsai-ml --features cuda --test train_device --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "train_device":
        print(m["executable"])' | tail -n1)
  cp "$BIN" .gpu/train_device
  strip .gpu/train_bench .gpu/train_device
  ls -la .gpu
  ;;
run)
  [ -x .gpu/train_device ] || { echo "run 'scripts/gpu-check.sh prepare' first (on a machine with cargo)" >&2; exit 2; }
  # cuBLAS and NVRTC from the pip wheels beside PyTorch (or a CUDA toolkit).
  PY=${PYTHON:-python3}
  DEVICE=${DEVICE:-cuda}
  REF_DEVICE=$([ "$DEVICE" = cuda ] && echo cuda || echo cpu)
  LIBS=$("$PY" -c 'import glob, os, site
dirs = {os.path.dirname(p) for sp in site.getsitepackages()
        for p in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))')
  export LD_LIBRARY_PATH="$LIBS:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  echo "CUDA libraries from: $LIBS"
  for d in ${LIBS//:/ }; do ls "$d"; done 2>/dev/null | grep -E '^lib(cublas|nvrtc)\.' || true
  echo "== device tests"
  .gpu/train_device --test-threads=1 --nocapture 2>&1 | grep -vE '^\s*$' || echo "DEVICE TESTS FAILED (bench follows)"
  echo "== training bench (tokens/s; ours vs PyTorch + PEFT, same GPU, interleaved)"
  LINES=$(mktemp)
  IFS=, read -ra SHAPE_LIST <<<"${SHAPES:-tiny 8 128,smol 4 128,smol 16 512,smol 16 512 tf32}"
  for round in $(seq "${ROUNDS:-2}"); do
    for shape in "${SHAPE_LIST[@]}"; do
      read -r cfg batch seq math <<<"$shape"
      export BONSAI_CUDA_TF32=$([ "${math:-}" = tf32 ] && echo 1 || echo 0)
      BENCH_DEVICE=$DEVICE BENCH_BATCH=$batch BENCH_SEQ=$seq .gpu/train_bench "$cfg" "${STEPS:-20}" 3 | tee -a "$LINES" ||
        echo "bonsai failed ($shape)" >&2
      BENCH_DEVICE=$REF_DEVICE BENCH_BATCH=$batch BENCH_SEQ=$seq "$PY" bench/reference/train_peft.py "$cfg" "${STEPS:-20}" 3 \
        2>/dev/null | tee -a "$LINES" || echo "reference failed ($shape)" >&2
    done
  done
  "$PY" - "$LINES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = sorted({(r["config"], r["batch"], r["seq"], r.get("tf32", False)) for r in rows},
              key=lambda k: (k[0] != "tiny", k[1] * k[2], k[3]))
print("| config | batch x seq (math) | bonsai tok/s | pytorch+peft tok/s | ratio | bonsai GPU MiB (all buffers) | torch peak GPU MiB |")
print("|---|---|---|---|---|---|---|")
for k in keys:
    mine = [r for r in rows if (r["config"], r["batch"], r["seq"], r.get("tf32", False)) == k]
    ours = [r["tokens_per_s"] for r in mine if r["impl"] == "bonsai"]
    ref = [r["tokens_per_s"] for r in mine if r["impl"] != "bonsai"]
    if not ours or not ref:
        continue
    o, p = statistics.median(ours), statistics.median(ref)
    mib = max(r.get("device_mib", 0) for r in mine if r["impl"] == "bonsai")
    gpu = max(r.get("gpu_peak_mib", 0) for r in mine if r["impl"] != "bonsai")
    print(f"| {k[0]} | {k[1]} x {k[2]} ({'tf32' if k[3] else 'fp32'}) | {o:.0f} | {p:.0f} | {o / p:.2f}x | {mib:.0f} | {gpu:.0f} |")
PY
  if [ -n "${OUT:-}" ]; then cp "$LINES" "$OUT/gpu-bench.jsonl"; fi
  ;;
*)
  sed -n '2,13p' "$0"
  exit 2
  ;;
esac
