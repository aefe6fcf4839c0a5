"""ONNX Runtime GenAI side of the generation benchmark (issue 5).

Greedy decode of N new tokens after fixed prompt token ids, batch 1, on a model folder with a
genai_config.json (our export, or one made by onnxruntime_genai.models.builder). Prints one JSON line per
measured run, like bench/generate/main.rs. Runs in bench/.venv (pip install onnxruntime-genai==0.18.*).

usage: generate_genai.py <model-dir> <comma-separated prompt ids> [--new-tokens 128] [--threads 2] [--runs 3]
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import onnxruntime_genai as og


def with_threads(model_dir: str, threads: int) -> str:
    """A copy of the folder (files linked) whose genai_config.json pins the intra-op thread count."""
    tmp = tempfile.mkdtemp(prefix="genai-")
    for name in os.listdir(model_dir):
        if name != "genai_config.json":
            os.symlink(os.path.join(os.path.abspath(model_dir), name), os.path.join(tmp, name))
    with open(os.path.join(model_dir, "genai_config.json")) as f:
        config = json.load(f)
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = threads
    config["model"]["decoder"]["session_options"]["inter_op_num_threads"] = 1
    with open(os.path.join(tmp, "genai_config.json"), "w") as f:
        json.dump(config, f)
    return tmp


def run_once(model, prompt, new_tokens):
    params = og.GeneratorParams(model)
    total = len(prompt) + new_tokens
    params.set_search_options(do_sample=False, max_length=total, min_length=total, batch_size=1)
    start = time.perf_counter()
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    tokens = []
    first = None
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
        if first is None:
            first = time.perf_counter()
        if len(tokens) >= new_tokens:
            break
    end = time.perf_counter()
    return tokens, first - start, (len(tokens) - 1) / (end - first)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("prompt_ids")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--label", default="onnxruntime-genai")
    a = ap.parse_args()
    prompt = [int(t) for t in a.prompt_ids.split(",")]
    folder = with_threads(a.model_dir, a.threads)
    try:
        model = og.Model(folder)
        run_once(model, prompt, a.new_tokens)  # warm-up
        for _ in range(a.runs):
            tokens, ttft, tps = run_once(model, prompt, a.new_tokens)
            print(json.dumps({"engine": a.label, "prompt_tokens": len(prompt), "new_tokens": len(tokens),
                              "ttft_ms": ttft * 1e3, "tokens_per_s": tps, "first_tokens": tokens[:8]}), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
