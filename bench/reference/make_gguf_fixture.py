"""Makes ml/tests/fixtures/gguf/:
- types.gguf: one tensor of every ggml type the importer reads, and types.json: the f32 values gguf-py
  (llama.cpp's own Python package) dequantises them to;
- spm.gguf: a small SentencePiece (tokenizer.ggml.model = llama) vocabulary with scores and no merges, and
  spm.json: the token ids transformers' GGUF tokenizer loader gives for a few strings (needs transformers
  too; skipped without it).

Quantised blocks are random bytes with their f16 scale fields set to small finite values, so every bit of
the packed layouts is exercised, not only what a quantiser happens to emit.

Run once (needs the PyPI packages gguf and numpy):  python bench/reference/make_gguf_fixture.py
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.quants import dequantize, GGML_QUANT_SIZES

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "ml", "tests", "fixtures", "gguf")
ROWS, COLS = 2, 256
# Byte offsets of the f16 scale fields inside one block of each type.
SCALES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    w = GGUFWriter(os.path.join(OUT, "types.gguf"), "llama")
    expected = {}
    for ty in [T.F32, T.F16, T.BF16, *SCALES]:
        name = f"t_{ty.name}"
        if ty in SCALES:
            block, size = GGML_QUANT_SIZES[ty]
            raw = rng.integers(0, 256, size=(ROWS, COLS // block, size), dtype=np.uint8)
            for off in SCALES[ty]:
                scale = rng.uniform(-0.05, 0.05, size=raw.shape[:2]).astype(np.float16)
                raw[:, :, off:off + 2] = scale.view(np.uint8).reshape(*raw.shape[:2], 2)
            raw = raw.reshape(ROWS, -1)
            values = dequantize(raw, ty)
            w.add_tensor(name, raw, raw_dtype=ty)
        else:
            values = rng.standard_normal((ROWS, COLS)).astype(np.float32)
            if ty == T.F16:
                stored = values.astype(np.float16)
                values = stored.astype(np.float32)
                w.add_tensor(name, stored)
            elif ty == T.BF16:
                bits = (values.view(np.uint32) >> 16).astype(np.uint16)
                values = (bits.astype(np.uint32) << 16).view(np.float32)
                w.add_tensor(name, bits.view(np.uint8).reshape(ROWS, -1), raw_dtype=ty)
            else:
                w.add_tensor(name, values)
        expected[name] = [float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    w.add_string("test.string", "hello")
    w.add_array("test.array", [1, 2, 3])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "types.json"), "w") as f:
        json.dump({"shape": [ROWS, COLS], "values": expected}, f)
    spm()
    print("wrote", sorted(os.listdir(OUT)))


SPM_PIECES = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "H", ",", "!", "ll", "he", "\u2581h", "\u2581w",
              "or", "llo", "hello", "\u2581hello", "\u2581wor", "ld", "\u2581world", "\u2581he", "lo", "wor"]
SPM_TEXTS = ["hello world", "Hello, world!", "  hello", "w\u00f6rld \u2014 ok", "<s>hello</s>"]


def spm():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    types = [2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(SPM_PIECES))]
    path = os.path.join(OUT, "spm.gguf")
    w = GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    try:
        from transformers import AutoTokenizer
    except ImportError:
        print("transformers missing: spm.json not written")
        return
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file="spm.gguf")
    enc = {t: tok(t).input_ids for t in SPM_TEXTS}
    dec = {t: tok.decode(tok(t).input_ids, skip_special_tokens=True) for t in SPM_TEXTS}
    with open(os.path.join(OUT, "spm.json"), "w") as f:
        json.dump({"encodings": enc, "decoded": dec}, f, indent=1, ensure_ascii=False)
    print(json.dumps(enc, ensure_ascii=False))


if __name__ == "__main__":
    main()
