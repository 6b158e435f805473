#!/usr/bin/env python3
"""Writes tests/data/quant/golden.bin: blocks of every type twin dequantizes, with the floats
an independent implementation (gguf-py's numpy quants, `pip install gguf numpy`) decodes them
to, and rows of floats with the bytes gguf-py's reference quantizers make of them. test_quant.c
checks tw_dequantize_row / tw_quantize_row against it bit for bit.

usage: python3 tools/gen_quant_golden.py [OUT]   (default tests/data/quant/golden.bin)

Format (little-endian): b"TWQG", u32 version (1), u32 record count; then per record
u32 kind (0: dequantize, 1: quantize), u32 ggml type id, u64 elements, u64 bytes, and the
payload: for kind 0 the quantized bytes then the f32 values, for kind 1 the f32 values then
the quantized bytes.
"""
import os
import struct
import sys

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

# where each type keeps its f16 scales (byte offsets in a block); the random bytes there are
# replaced by moderate halves so the decoded values are finite and not denormal noise
F16_SCALES = {
    "Q4_0": [0], "Q5_0": [0], "Q8_0": [0], "Q4_1": [0, 2], "Q5_1": [0, 2], "Q8_1": [0, 2],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q2_K": [80, 82], "Q3_K": [108], "Q6_K": [208],
}
DEQUANT_BLOCKS = {"Q4_0": 4, "Q4_1": 4, "Q5_0": 4, "Q5_1": 4, "Q8_0": 4,
                  "Q2_K": 1, "Q3_K": 1, "Q4_K": 1, "Q5_K": 1, "Q6_K": 1}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "quant", "golden.bin")
    rng = np.random.default_rng(20240607)
    records = []
    for name, nb in DEQUANT_BLOCKS.items():
        qt = Q[name]
        bs, ts = GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
        for off in F16_SCALES.get(name, []):
            h = rng.uniform(-2, 2, nb).astype(np.float16)
            raw[:, off:off + 2] = np.frombuffer(h.tobytes(), dtype=np.uint8).reshape(nb, 2)
        y = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        records.append((0, int(qt), y.size, raw.tobytes(), y.tobytes()))
    for name in ("F16", "BF16"):
        qt = Q[name]
        x = (rng.standard_normal(64) * 50).astype(np.float32)
        q = np.ascontiguousarray(quantize(x.reshape(1, -1), qt)).view(np.uint8).reshape(-1)
        y = dequantize(q, qt).astype(np.float32).reshape(-1)
        records.append((0, int(qt), y.size, q.tobytes(), y.tobytes()))
    for name in ("Q4_0", "Q4_1", "Q8_0", "F16", "BF16"):
        qt = Q[name]
        x = (rng.standard_normal(256) * rng.uniform(0.01, 10)).astype(np.float32)
        x[:32] = 0  # an all-zero block
        x[32:64] = 1.5  # a constant block
        x[64] = -7.0  # a negative extreme
        x[100] = 1e-8  # a subnormal half
        q = np.ascontiguousarray(quantize(x.reshape(-1, 32), qt)).view(np.uint8).reshape(-1)
        records.append((1, int(qt), x.size, x.tobytes(), q.tobytes()))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"TWQG" + struct.pack("<II", 1, len(records)))
        for kind, qt, n, first, second in records:
            nbytes = len(first) if kind == 0 else len(second)
            f.write(struct.pack("<IIQQ", kind, qt, n, nbytes))
            f.write(first)
            f.write(second)
    print(f"wrote {out}: {len(records)} records")


if __name__ == "__main__":
    main()
