#!/usr/bin/env python3
"""peft_inspect.py: reads a PEFT LoRA adapter folder the way PEFT / safetensors would, with only
the standard library (json + struct), and prints what it holds as one JSON object:

    {"config": {...adapter_config.json...},
     "metadata": {...safetensors __metadata__...},
     "tensors": [{"name": ..., "dtype": "F32", "shape": [r, in], "sum": S, "sumsq": Q}, ...]}

tensors sorted by name. test_lora runs it on an adapter twin wrote and checks the names, shapes
and sums against its own expectations: an independent reader of our files (the safetensors
layout: 8-byte little-endian header length, a JSON header, data_offsets into the data section).

usage: peft_inspect.py ADAPTER_DIR
"""
import json
import os
import struct
import sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    d = sys.argv[1]
    with open(os.path.join(d, "adapter_config.json"), "r", encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(d, "adapter_model.safetensors"), "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    out = []
    for name in sorted(header):
        t = header[name]
        begin, end = t["data_offsets"]
        count = 1
        for s in t["shape"]:
            count *= s
        if end - begin != count * SIZES[t["dtype"]]:
            raise SystemExit(f"{name}: {end - begin} bytes for shape {t['shape']}")
        if t["dtype"] != "F32":
            raise SystemExit(f"{name}: dtype {t['dtype']} (twin writes F32)")
        vals = struct.unpack(f"<{count}f", data[begin:end])
        out.append({"name": name, "dtype": t["dtype"], "shape": t["shape"],
                    "sum": sum(vals), "sumsq": sum(v * v for v in vals)})
    json.dump({"config": config, "metadata": meta, "tensors": out}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
