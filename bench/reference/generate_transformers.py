"""Hugging Face transformers side of the generation benchmark (issue 5).

Greedy `generate()` of N new tokens after fixed prompt token ids, batch 1, float32 on the CPU with
torch.set_num_threads(T), on the Hugging Face folder the ONNX export was made from. The time to first token
is taken by a streamer (its first `put` after the prompt). Prints one JSON line per measured run, like
bench/generate/main.rs. Runs in bench/.venv (torch, transformers).

usage: generate_transformers.py <hf-dir> <comma-separated prompt ids> [--new-tokens 128] [--threads 2] [--runs 3]
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer


class FirstTokenClock(BaseStreamer):
    """Notes when generate() emits its first new token (the first `put` carries the prompt)."""

    def __init__(self):
        self.puts = 0
        self.first = None

    def put(self, value):
        self.puts += 1
        if self.puts == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self):
        pass


def run_once(model, prompt, new_tokens):
    ids = torch.tensor([prompt], dtype=torch.long)
    clock = FirstTokenClock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=clock,
                             pad_token_id=0)
    end = time.perf_counter()
    tokens = out[0, len(prompt):].tolist()
    return tokens, clock.first - start, (len(tokens) - 1) / (end - clock.first)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("prompt_ids")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    prompt = [int(t) for t in a.prompt_ids.split(",")]
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32)
    model.eval()
    run_once(model, prompt, a.new_tokens)  # warm-up
    for _ in range(a.runs):
        tokens, ttft, tps = run_once(model, prompt, a.new_tokens)
        print(json.dumps({"engine": "transformers", "prompt_tokens": len(prompt), "new_tokens": len(tokens),
                          "ttft_ms": ttft * 1e3, "tokens_per_s": tps, "first_tokens": tokens[:8]}), flush=True)


if __name__ == "__main__":
    main()
