#!/usr/bin/env python3
"""bench_tokenize_hf.py: the HF `tokenizers` anchor of `twin bench tokenize`.

    bench_tokenize_hf.py --gguf FILE | --hf DIR_OR_JSON  --text FILE [--repeat N]

Tokenizes the text file's documents (separated by the byte 0x1E, which is not tokenized) with
one encode_batch call on one thread (TOKENIZERS_PARALLELISM=false; no special tokens added or
parsed, as twin's bench does), best of N runs, and prints one line:

    hf-tokenizers MB/s=X seconds=S tokens=N ids_sha256=HEX

ids_sha256 is the SHA-256 of the ids as little-endian int32, so the caller can check that both
tokenizers gave the same ids. For a GGUF (SmolLM2 ships no tokenizer.json) the HF tokenizer is
built from the GGUF's vocabulary and merges with the family's real pre-tokenizer, the same
construction as tools/gen_tokenizer_golden.py (which this script imports).
Needs: tokenizers (and gguf for --gguf). Exits 3 with a reason on stderr when they are missing.
"""
import argparse
import hashlib
import os
import struct
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")

try:
    from tokenizers import Tokenizer
except ImportError as e:  # the caller prints why the anchor is missing
    print(f"python package 'tokenizers' is not installed ({e})", file=sys.stderr)
    sys.exit(3)


def load(args):
    if args.gguf:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "tools"))
        try:
            from gen_tokenizer_golden import bpe_from_gguf
            import gguf  # noqa: F401
        except ImportError as e:
            print(f"python package 'gguf' is not installed ({e})", file=sys.stderr)
            sys.exit(3)
        import gguf as gg
        r = gg.GGUFReader(args.gguf)
        f = r.fields.get("tokenizer.ggml.model")
        model = bytes(f.parts[f.data[0]]).decode() if f else ""
        if model != "gpt2":
            print(f"no HF reference for a '{model}' GGUF tokenizer (only byte-level BPE GGUFs "
                  f"are rebuilt; give the model's HF folder instead)", file=sys.stderr)
            sys.exit(3)
        return bpe_from_gguf(args.gguf)
    path = args.hf
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    tk = Tokenizer.from_file(path)
    tk.no_truncation()
    tk.no_padding()
    return tk


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--gguf")
    g.add_argument("--hf")
    ap.add_argument("--text", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tk = load(args)
    tk.encode_special_tokens = True  # special-token texts are plain text, as in twin's bench
    raw = open(args.text, "rb").read()
    docs = raw.decode("utf-8").split("\x1e")
    n_bytes = len(raw) - (len(docs) - 1)
    best = None
    encs = None
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        encs = tk.encode_batch(docs, add_special_tokens=False)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    ids = [i for e in encs for i in e.ids]
    h = hashlib.sha256(struct.pack(f"<{len(ids)}i", *ids)).hexdigest()
    print(f"hf-tokenizers MB/s={n_bytes / best / 1e6:.3f} seconds={best:.4f} tokens={len(ids)} "
          f"ids_sha256={h}")


if __name__ == "__main__":
    main()
