#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that `bonsai generate`, the serving worker and the ONNX tests load
# (crate `ort` with `load-dynamic`). The library comes from the PyPI `onnxruntime` wheel, fetched by version
# with pip (the ordinary client), and is unpacked into a project-local folder:
#
#     .local/onnxruntime/lib/libonnxruntime.so        (the engine's default location)
#
# Usage: scripts/install-onnxruntime.sh [--gpu]
#   --gpu   take the `onnxruntime-gpu` wheel instead (carries the CUDA execution provider).
# Environment: ORT_VERSION (default 1.31.1, the version the `ort` crate's `api-31` feature expects),
#              ORT_INSTALL_DIR (default <repo>/.local/onnxruntime).
# Idempotent: a second run with the same version and flavour does nothing.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INSTALL_DIR="${ORT_INSTALL_DIR:-$REPO_ROOT/.local/onnxruntime}"
PACKAGE="onnxruntime"
if [[ "${1:-}" == "--gpu" ]]; then
  PACKAGE="onnxruntime-gpu"
fi

STAMP="$INSTALL_DIR/INSTALLED"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PACKAGE==$ORT_VERSION" && -e "$INSTALL_DIR/lib/libonnxruntime.so" ]]; then
  echo "ONNX Runtime $PACKAGE==$ORT_VERSION already installed in $INSTALL_DIR/lib"
  exit 0
fi

PY="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [[ -z "$PY" ]]; then
  echo "error: python3 with pip is needed to fetch the $PACKAGE wheel from PyPI" >&2
  exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The wheel for this machine's Python and platform; --no-deps: only the wheel itself, its Python
# dependencies are irrelevant to the C library.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "$PACKAGE==$ORT_VERSION"
WHEEL="$(ls "$TMP"/*.whl | head -n1)"

mkdir -p "$TMP/unpacked"
"$PY" - "$WHEEL" "$TMP/unpacked" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        # The C library and, for the GPU wheel, the provider libraries it loads beside itself.
        if name.startswith("onnxruntime/capi/") and ".so" in name.rsplit("/", 1)[-1]:
            z.extract(name, dest)
PYEOF

CAPI="$TMP/unpacked/onnxruntime/capi"
LIB="$(ls "$CAPI"/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
if [[ -z "$LIB" ]]; then
  echo "error: no libonnxruntime.so.* inside $(basename "$WHEEL")" >&2
  exit 1
fi

rm -rf "$INSTALL_DIR/lib"
mkdir -p "$INSTALL_DIR/lib"
cp "$CAPI"/libonnxruntime*.so* "$INSTALL_DIR/lib/"
LIBNAME="$(basename "$LIB")"
ln -sf "$LIBNAME" "$INSTALL_DIR/lib/libonnxruntime.so"
echo "$PACKAGE==$ORT_VERSION" > "$STAMP"
echo "installed $LIBNAME ($PACKAGE==$ORT_VERSION) into $INSTALL_DIR/lib"
ls "$INSTALL_DIR/lib"
