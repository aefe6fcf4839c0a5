"""Makes the forward-pass fixtures of ml/tests/model_forward.rs with PyTorch + transformers.

Two small random models, each saved as a Hugging Face folder with the logits transformers computes for a
fixed prompt:
- llama-tiny: Llama, grouped-query attention (4 heads / 2 kv heads), tied embeddings, f32 weights saved in
  shards with an index file;
- qwen2-tiny: Qwen2 (q/k/v biases), untied LM head, weights rounded to and stored as bf16 (computed in f32);
- mistral-tiny: Mistral with a sliding window (5) shorter than the prompt, weights stored as f16.
Every parameter, norms and biases included, is random so that none of them can be silently ignored.

Run once (needs torch, transformers, safetensors):  python bench/reference/make_fixture.py
"""
import json
import os
import sys

import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "ml", "tests", "fixtures")
PROMPT = [1, 17, 42, 99, 3, 64, 5, 120, 77, 8, 31, 2, 56, 90]


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def save(model, name, dtype, shard):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0]
    kwargs = {"max_shard_size": "60KB"} if shard else {}
    model.to(dtype).save_pretrained(folder, safe_serialization=True, **kwargs)
    with open(os.path.join(folder, "logits.json"), "w") as f:
        json.dump({"prompt": PROMPT, "logits": logits.tolist()}, f)
    print(name, "logits", tuple(logits.shape), "files", sorted(os.listdir(folder)))


def main():
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, attn_implementation="eager"))
    randomise(llama, 1)
    save(llama.float(), "llama-tiny", torch.float32, shard=True)

    qwen = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, attn_implementation="eager"))
    randomise(qwen, 2)
    # Round the parameters (not the rotary inv_freq buffer, which transformers recomputes on load) to bf16
    # first, so the f32 logits are those of exactly the weights stored.
    with torch.no_grad():
        for p in qwen.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    save(qwen, "qwen2-tiny", torch.bfloat16, shard=False)
    mistral = MistralForCausalLM(MistralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, sliding_window=5,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, attn_implementation="eager"))
    randomise(mistral, 3)
    with torch.no_grad():
        for p in mistral.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    save(mistral, "mistral-tiny", torch.float16, shard=False)
    print("torch", torch.__version__, file=sys.stderr)


if __name__ == "__main__":
    main()
