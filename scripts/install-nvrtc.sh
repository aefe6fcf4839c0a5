#!/usr/bin/env bash
# Installs NVIDIA's runtime compiler (libnvrtc, CUDA 13) from the PyPI wheel `nvidia-cuda-nvrtc` into
# .local/cuda/lib, so that the tests can compile the GPU trainer's kernels (`kernels.cu`) for the GPU, as
# `--device cuda` does at start, on machines without a GPU or CUDA toolkit. Nothing else needs it: a GPU
# machine brings its own. Idempotent; a failed download only warns (the compile test then says it skipped).
#
# Environment: NVRTC_VERSION (default 13.0.88), NVRTC_INSTALL_DIR (default <repo>/.local/cuda).
set -euo pipefail
NVRTC_VERSION="${NVRTC_VERSION:-13.0.88}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INSTALL_DIR="${NVRTC_INSTALL_DIR:-$REPO_ROOT/.local/cuda}"
STAMP="$INSTALL_DIR/INSTALLED"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "nvidia-cuda-nvrtc==$NVRTC_VERSION" ]]; then
  echo "NVRTC $NVRTC_VERSION already installed in $INSTALL_DIR/lib"
  exit 0
fi
PY="${PYTHON:-$(command -v python3 || true)}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
if [[ -z "$PY" ]] || ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --dest "$TMP" "nvidia-cuda-nvrtc==$NVRTC_VERSION"; then
  echo "warning: could not fetch nvidia-cuda-nvrtc==$NVRTC_VERSION; the NVRTC compile test will skip" >&2
  exit 0
fi
mkdir -p "$INSTALL_DIR/lib"
"$PY" - "$(ls "$TMP"/*.whl | head -n1)" "$INSTALL_DIR/lib" <<'PYEOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if base.startswith("libnvrtc") and ".so" in base and ".alt." not in base:
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
PYEOF
echo "nvidia-cuda-nvrtc==$NVRTC_VERSION" > "$STAMP"
echo "NVRTC $NVRTC_VERSION installed in $INSTALL_DIR/lib: $(ls "$INSTALL_DIR/lib" | tr '\n' ' ')"
