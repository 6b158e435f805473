#!/usr/bin/env python3
"""Golden logits of the tiny GPT-2 (tests/data/gpt2/tiny-gpt2-{f32,f16,q8_0}.gguf) from an
independent numpy forward pass.

The GGUFs are made by twin's own GGUF writer (tests/unit/test_tiny_gpt2_fixture.c --write DIR,
random weights from a fixed seed; that test checks the committed files are what it makes).
This script reads them with the `gguf` Python package (gguf-py, llama.cpp's reader), decodes
every tensor with gguf-py's numpy dequantizers, and runs GPT-2 as the paper / HF's
modeling_gpt2.py define it, in float64:

    x = wte[tok] + wpe[pos]
    per layer: h = LayerNorm(x); q,k,v = split(h @ Wqkv^T + bqkv) (q rows first, then k, v);
               per head: softmax(q k^T / sqrt(head_dim) + causal mask) v;
               x += attn @ Wo^T + bo;
               x += gelu_tanh(LayerNorm(x) @ Wup^T + bup) @ Wdown^T + bdown
    logits = LayerNorm_f(x) @ wte^T            (tied head: the file has no output.weight)
    LayerNorm(x) = (x - mean) / sqrt(var + eps) * g + b   (biased variance, eps from the file)
    gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

Activations are never quantized here. A q8_0 engine that quantizes activations to q8_0 before
its integer dot products (as ggml does) therefore differs from these logits by the activation
rounding (about 1/254 of each 32-block's largest |x|, relative), f16 weights differ from f32
ones by their own rounding only (the golden of each file uses that file's weights).

Cross-check with llama.cpp (--check-llama; llama-cpp-python 0.3.36, its gpt2 architecture on
the same three files, which it loads as they are): argmax of every case's last row identical,
max |llama.cpp - numpy| 0.012 (f32), 0.017 (f16), 0.24 (q8_0) on logits spanning -6..6. Why
not closer: llama.cpp keeps K/V in f16 and rounds q and the softmax weights to f16 in its
attention matmuls, computes GELU from an f16 table, and for q8_0 weights quantizes the
activations to q8_0; emulating only that last rounding in numpy makes the one-token q8_0 case
agree exactly (0.0). The random weights make attention sharp, so such roundings grow with the
sequence length (0.045 at 1 token, 0.24 at 40).

usage: python3 tools/gen_gpt2_golden.py [DIR]     (default tests/data/gpt2)
       python3 tools/gen_gpt2_golden.py DIR --check-llama
           also runs each file through llama.cpp (llama-cpp-python, gpt2 architecture) and
           prints the largest logit difference from the numpy reference (not stored).

Writes DIR/tiny-gpt2.golden.json and DIR/tiny-gpt2.golden.bin.

Format of the .bin ("twin golden logits", shared with tools/gen_llama_golden.py): little-endian,
  bytes 0-3   magic b"TWGL"
  bytes 4-7   u32 version (1)
  bytes 8-11  u32 header size in bytes (16): the f32 data starts there
  bytes 12-15 u32 number of f32 values that follow
  then f32 values; the JSON says where each block of logits starts (byte offset from the start
  of the file) and its shape (rows, cols), row-major.

Format of the .json:
  {"format": "twin-golden-logits-1", "generator": ..., "bin": "tiny-gpt2.golden.bin",
   "n_vocab": 288, "n_ctx": 64,
   "models": [{"file": "tiny-gpt2-f32.gguf", "sha256": hex of the file,
               "cases": [{"name": str, "tokens": [ids],
                          "logits": {"offset": bytes, "rows": len(tokens), "cols": n_vocab},
                              -- the logits of EVERY position of the sequence, row t = after
                                 tokens[0..t] (so a prefill with all logits wanted, or the
                                 last row only, can be checked)
                          "greedy": [16 ids] -- greedy continuation (argmax, recomputed over
                                 the whole sequence each step), present when it fits in n_ctx
                          "greedy_min_margin": smallest top-1 minus top-2 logit gap over the
                                 greedy steps (how safe the argmax is against small errors)
                          "last_top10": top-10 ids of the last row, best first}]}]}
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

VARIANTS = ("f32", "f16", "q8_0")
N_GREEDY = 16


def field_scalar(r, key):
    f = r.fields[key]
    return f.parts[f.data[0]][0]


def load(path):
    r = GGUFReader(path)
    hp = {
        "n_ctx": int(field_scalar(r, "gpt2.context_length")),
        "n_embd": int(field_scalar(r, "gpt2.embedding_length")),
        "n_ff": int(field_scalar(r, "gpt2.feed_forward_length")),
        "n_layer": int(field_scalar(r, "gpt2.block_count")),
        "n_head": int(field_scalar(r, "gpt2.attention.head_count")),
        "eps": float(field_scalar(r, "gpt2.attention.layer_norm_epsilon")),
    }
    w = {}
    for t in r.tensors:
        ne = [int(x) for x in t.shape]  # ne[0] innermost
        a = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64)
        w[t.name] = a.reshape(list(reversed(ne)))  # numpy (ne1, ne0)
    return hp, w


def layernorm(x, g, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(hp, w, tokens):
    """Logits (T, n_vocab) float64 of every position."""
    T, C, H = len(tokens), hp["n_embd"], hp["n_head"]
    D = C // H
    x = w["token_embd.weight"][tokens] + w["position_embd.weight"][np.arange(T)]
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(hp["n_layer"]):
        p = f"blk.{l}."
        h = layernorm(x, w[p + "attn_norm.weight"], w[p + "attn_norm.bias"], hp["eps"])
        qkv = h @ w[p + "attn_qkv.weight"].T + w[p + "attn_qkv.bias"]
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        q = q.reshape(T, H, D).transpose(1, 0, 2)
        k = k.reshape(T, H, D).transpose(1, 0, 2)
        v = v.reshape(T, H, D).transpose(1, 0, 2)
        att = q @ k.transpose(0, 2, 1) / np.sqrt(D) + mask
        att = np.exp(att - att.max(axis=-1, keepdims=True))
        att /= att.sum(axis=-1, keepdims=True)
        o = (att @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + o @ w[p + "attn_output.weight"].T + w[p + "attn_output.bias"]
        h = layernorm(x, w[p + "ffn_norm.weight"], w[p + "ffn_norm.bias"], hp["eps"])
        u = gelu_tanh(h @ w[p + "ffn_up.weight"].T + w[p + "ffn_up.bias"])
        x = x + u @ w[p + "ffn_down.weight"].T + w[p + "ffn_down.bias"]
    x = layernorm(x, w["output_norm.weight"], w["output_norm.bias"], hp["eps"])
    head = w["output.weight"] if "output.weight" in w else w["token_embd.weight"]
    return x @ head.T


def greedy(hp, w, tokens, n):
    seq, margins = list(tokens), []
    for _ in range(n):
        last = forward(hp, w, seq)[-1]
        top2 = np.sort(last)[-2:]
        margins.append(float(top2[1] - top2[0]))
        seq.append(int(np.argmax(last)))
    return seq[len(tokens):], min(margins)


def cases(n_vocab, n_ctx):
    rng = np.random.default_rng(6021)
    out = [("one_token", [17])]
    for name, n in (("len5", 5), ("len17", 17), ("len40", 40)):
        out.append((name, [int(t) for t in rng.integers(0, n_vocab, n)]))
    out.append(("full_ctx", [int(t) for t in rng.integers(0, n_vocab, n_ctx)]))
    # a text-like sequence: byte ids of ASCII with a few merge tokens (256..286)
    out.append(("text_bytes", [ord(c) for c in "Hello, world"] + [256, 262, 286, 10]))
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def check_llama(path, hp, w, case_list):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=hp["n_ctx"], n_threads=1, logits_all=True, verbose=False)
    worst = 0.0
    for name, toks in case_list:
        llm.reset()
        llm.eval(toks)
        got = np.array(llm.scores[:len(toks)], dtype=np.float64)
        ref = forward(hp, w, toks)
        d = float(np.abs(got - ref).max())
        same = int(np.argmax(got[-1])) == int(np.argmax(ref[-1]))
        print(f"  llama.cpp {os.path.basename(path)} {name}: max|diff|={d:.3g} "
              f"(logit range {ref.min():.2f}..{ref.max():.2f}) argmax_same={same}")
        worst = max(worst, d)
    return worst


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    check = "--check-llama" in sys.argv[1:]
    d = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "gpt2")
    blobs, offset = [], 16
    doc = {"format": "twin-golden-logits-1",
           "generator": "tools/gen_gpt2_golden.py (numpy float64 GPT-2 forward over gguf-py's "
                        "dequantized weights)",
           "bin": "tiny-gpt2.golden.bin", "models": []}
    for var in VARIANTS:
        path = os.path.join(d, f"tiny-gpt2-{var}.gguf")
        hp, w = load(path)
        n_vocab = w["token_embd.weight"].shape[0]
        doc["n_vocab"], doc["n_ctx"] = n_vocab, hp["n_ctx"]
        model = {"file": os.path.basename(path), "sha256": sha256(path), "cases": []}
        case_list = cases(n_vocab, hp["n_ctx"])
        for name, toks in case_list:
            logits = forward(hp, w, toks)
            blob = logits.astype("<f4").tobytes()
            c = {"name": name, "tokens": toks,
                 "logits": {"offset": offset, "rows": len(toks), "cols": n_vocab},
                 "last_top10": [int(i) for i in np.argsort(-logits[-1], kind="stable")[:10]]}
            blobs.append(blob)
            offset += len(blob)
            if len(toks) + N_GREEDY <= hp["n_ctx"]:
                g, margin = greedy(hp, w, toks, N_GREEDY)
                c["greedy"], c["greedy_min_margin"] = g, round(margin, 6)
            model["cases"].append(c)
            print(f"{var} {name}: {len(toks)} tokens, logits {logits.min():.2f}..{logits.max():.2f}")
        doc["models"].append(model)
        if check:
            check_llama(path, hp, w, case_list)
    n_floats = (offset - 16) // 4
    with open(os.path.join(d, "tiny-gpt2.golden.bin.tmp"), "wb") as f:
        f.write(b"TWGL" + struct.pack("<III", 1, 16, n_floats))
        for b in blobs:
            f.write(b)
    os.replace(os.path.join(d, "tiny-gpt2.golden.bin.tmp"), os.path.join(d, "tiny-gpt2.golden.bin"))
    with open(os.path.join(d, "tiny-gpt2.golden.json.tmp"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(d, "tiny-gpt2.golden.json.tmp"), os.path.join(d, "tiny-gpt2.golden.json"))
    print(f"wrote {d}/tiny-gpt2.golden.json and .bin ({offset} bytes)")


if __name__ == "__main__":
    main()
