#!/usr/bin/env python3
"""Summarises bench/train/run.sh's JSON lines into the comparison table (see run.sh)."""
import json
import statistics
import sys

# (hidden, intermediate, layers, heads, kv_heads, vocab, batch, seq); LoRA r=8 on q and v.
SHAPES = {"tiny": (256, 688, 4, 4, 4, 2000, 8, 128), "smol": (576, 1536, 30, 9, 3, 49152, 4, 128)}


def flops_per_token(name):
    """Useful FLOPs per trained token, the same count for both implementations: the frozen linear layers and
    the LM head forward plus their input gradient (2x forward; no weight gradient), causal attention
    (forward + 2x backward), and the LoRA branches (forward + 3 backward products)."""
    h, inter, layers, heads, kv, vocab, _, seq = SHAPES[name]
    d = h // heads
    q, kvd = heads * d, kv * d
    linear = layers * (h * (q + 2 * kvd) + q * h + 3 * h * inter) + h * vocab
    attention = layers * heads * (seq / 2) * d * 2
    lora = layers * 8 * ((h + q) + (h + kvd))
    return 2 * (2 * linear + 3 * attention + 4 * lora)


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
    ceiling = max(r["gemm_gflops"] for r in rows)
    print(f"measured fp32 GEMM ceiling (best 1024^3 matmul seen, either library): {ceiling:.0f} GFLOP/s\n")
    print("| config | impl | tokens/s (median) | per-round | tokens per CPU-s | GFLOP/s | of ceiling | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SHAPES:
        mine = [r for r in rows if r["config"] == name]
        if not mine:
            continue
        fpt = flops_per_token(name)
        for impl in ("bonsai", "pytorch+peft"):
            runs = [r for r in mine if r["impl"] == impl]
            tps = statistics.median(r["tokens_per_s"] for r in runs)
            gf = tps * fpt / 1e9
            rss = max(r["peak_rss_mib"] for r in runs)
            per_round = ", ".join(f"{r['tokens_per_s']:.0f}" for r in runs)
            cpu = statistics.median(r.get("tokens_per_cpu_s", 0.0) for r in runs)
            print(f"| {name} | {impl} | {tps:.0f} | {per_round} | {cpu:.0f} | {gf:.1f} | {gf / ceiling:.0%} | {rss:.0f} |")
        ours = {r["round"]: r["tokens_per_s"] for r in mine if r["impl"] == "bonsai"}
        ref = {r["round"]: r["tokens_per_s"] for r in mine if r["impl"] == "pytorch+peft"}
        ratios = [ours[k] / ref[k] for k in sorted(ours) if k in ref]
        print(f"| {name} | ratio bonsai/pytorch | {statistics.median(ratios):.2f}x | "
              + ", ".join(f"{x:.2f}" for x in ratios) + " | | | | |")


if __name__ == "__main__":
    main()
