"""Makes ml/tests/fixtures/gguf/: a small GGUF file holding one tensor of every ggml type the importer
reads, and the f32 values gguf-py (llama.cpp's own Python package) dequantises them to.

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
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
