#!/usr/bin/env python3
"""PyTorch + transformers + PEFT reference for the LoRA trainer benchmark (bench/train/run.sh).

Trains a randomly initialised Llama of the given shape with LoRA (r=8, alpha=16, q_proj and v_proj, no
dropout) and AdamW on a fixed random batch whose every token is a label, as the Rust bench does, and prints
one JSON line: tokens/s, seconds per step, peak resident memory, and the GFLOP/s of a 1024^3 fp32 matmul.

usage: train_peft.py <tiny|smol> [timed steps] [warmup steps] [threads]
environment: BENCH_DEVICE=cpu|cuda (default cpu), BENCH_BATCH / BENCH_SEQ override the batch shape.
"""
import json
import os
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

CONFIGS = {
    "tiny": (dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=2000, rope_theta=10000.0), 8, 128),
    "smol": (dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0), 4, 128),
}


def gemm_gflops():
    a = torch.full((1024, 1024), 0.5)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.matmul(a, a)
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best / 1e9


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape, batch, seq = CONFIGS[name]
    batch = int(os.environ.get("BENCH_BATCH", batch))
    seq = int(os.environ.get("BENCH_SEQ", seq))
    device = os.environ.get("BENCH_DEVICE", "cpu")
    tf32 = os.environ.get("BONSAI_CUDA_TF32") == "1"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    config = LlamaConfig(**shape, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         hidden_act="silu")
    model = LlamaForCausalLM(config).float().to(device)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, shape["vocab_size"], (batch, seq)).to(device)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    cpu0 = time.process_time()
    for _ in range(steps):
        loss = step()
    secs = time.perf_counter() - t
    cpu = time.process_time() - cpu0
    print(json.dumps({
        "impl": "pytorch+peft", "config": name, "device": device, "batch": batch, "seq": seq, "tf32": tf32,
        "threads": torch.get_num_threads(),
        "tokens_per_s": round(batch * seq * steps / secs, 1), "step_s": round(secs / steps, 4),
        "tokens_per_cpu_s": round(batch * seq * steps / cpu, 1),
        "loss": round(loss, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else 0,
        "gemm_gflops": round(gemm_gflops(), 1) if device == "cpu" else 0,
    }))


if __name__ == "__main__":
    main()
