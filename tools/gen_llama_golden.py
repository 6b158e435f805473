#!/usr/bin/env python3
"""Golden data for twin's llama-family forward pass, from llama.cpp (llama-cpp-python, the same
llama.cpp that bench/llama_anchor.sh builds), on SmolLM2-135M-Instruct.Q4_1.gguf.

For each prompt of PROMPTS it records llama.cpp's tokenization, the logits of the last prompt
token, and the 32-token greedy continuation:

usage: python3 tools/gen_llama_golden.py [MODEL.gguf] [OUTDIR]
           MODEL default: $TWIN_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
           OUTDIR default: tests/data/llama
       python3 tools/gen_llama_golden.py --compare A.gguf B.gguf
           runs the same prompts through llama.cpp on two files of one model (e.g. a Q4_1 file
           and `twin quantize`'s Q8_0 or F16 conversion of it) and prints, per prompt, the
           largest logit difference, the top-10 overlap and whether the greedy continuations
           agree; exits 1 if llama.cpp cannot load B or if a top-1 differs.

Settings (recorded in the JSON): n_threads = n_threads_batch = 1 (determinism: llama.cpp splits
matmul rows over threads, which does not change sums, but 1 thread removes all doubt),
n_batch 512 (every prompt is one batch), n_ctx 1024, flash attention off, f16 K/V cache
(llama.cpp's default), logits of the last token only. The script evaluates every prompt twice
and refuses to write if the two runs differ in any bit.

Tokenization: llama.cpp's llama_tokenize with add_special=True (SmolLM2's GGUF has
tokenizer.ggml.add_bos_token = false, so no BOS is added; the script checks this), and
parse_special as each case says (True only for the ChatML case, whose <|im_start|> and
<|im_end|> must become the control tokens 1 and 2). twin's tokenizer must give the same ids.

Greedy: after the prompt, repeat 32 times: take the argmax of the last logits (lowest id on a
tie, as numpy's argmax), evaluate that token. No stop at end-of-sequence: the continuation is
32 tokens whatever they are ("eos_at" gives the index of the first EOS/EOT (2), or -1), so a
test compares up to and including the first EOS. "greedy_min_margin" is the smallest gap
between the top-1 and top-2 logits over the 32 steps: a small one means that an engine whose
logits differ by about that much may legitimately pick the other token there.

Output: OUTDIR/smollm2-135m.golden.json and OUTDIR/smollm2-135m.golden.bin.

.bin ("twin golden logits", the same as tools/gen_gpt2_golden.py writes): little-endian,
  bytes 0-3 magic b"TWGL", 4-7 u32 version (1), 8-11 u32 header size (16), 12-15 u32 number of
  f32 values that follow; then the f32 values. Each case's logits block is at
  "logits": {"offset": byte offset from the start of the file, "rows": 1, "cols": n_vocab}.

.json:
  {"format": "twin-golden-logits-1", "generator": ..., "llama_cpp_python": version,
   "model": {"file": name, "sha256": hex, "n_vocab": 49152, "bos": 1, "eos": 2,
             "add_bos": false},
   "settings": {...as above...}, "bin": "smollm2-135m.golden.bin",
   "cases": [{"name": str, "prompt": str, "parse_special": bool, "tokens": [ids],
              "logits": {"offset", "rows": 1, "cols"}, "top10": [ids, best first],
              "top10_logits": [floats], "greedy": [32 ids], "greedy_text": str,
              "eos_at": int, "greedy_min_margin": float}]}
"""
import ctypes
import hashlib
import json
import os
import struct
import sys

import numpy as np

N_GREEDY = 32
N_CTX = 1024
N_BATCH = 512

LONG_PROMPT = (
    "The lighthouse keeper had kept the same routine for thirty-one years. Every evening, an "
    "hour before sunset, he climbed the one hundred and twelve steps of the spiral staircase, "
    "cleaned the great lens with a soft cloth, trimmed the wick, and checked the oil. He wrote "
    "the weather in a leather notebook: the direction of the wind, the height of the waves, the "
    "colour of the sky over the western cliffs. Ships no longer needed him. Satellites guided "
    "them now, and the harbour office had sent three letters explaining, very politely, that "
    "the light would be switched to an automatic system in the spring. He had read each letter "
    "twice and put it in the drawer with the others. On the last night of winter a storm came "
    "in from the north, stronger than any he remembered, and at midnight the power failed "
    "along the whole coast. He lit the old lamp by hand, and through the rain he saw"
)

PROMPTS = [
    ("capital", "The capital of France is", False),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    ("chatml",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
     "Face<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n"
     "<|im_start|>assistant\n", True),
    ("story", "Once upon a time, in a small village by the sea, there lived", False),
    ("numbers", "Translate to French: I have 3 apples and 12 oranges.\nFrench:", False),
    ("hello", "Hello", False),
    ("long", LONG_PROMPT, False),
]


def default_model():
    models = os.environ.get("TWIN_MODELS")
    if not models:
        home = os.environ.get("TWIN_HOME", "./twin-data")
        models = os.path.join(home, "models")
    return os.path.join(models, "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")


def open_model(path):
    from llama_cpp import Llama
    return Llama(model_path=path, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=1,
                 n_threads_batch=1, logits_all=False, flash_attn=False, verbose=False)


def last_logits(llm):
    import llama_cpp
    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctypes.c_float)),
                                 shape=(llm.n_vocab(),)).copy()


def run_case(llm, tokens):
    """(last prompt logits f32, greedy ids, min margin) with a fresh context state."""
    llm.reset()  # n_tokens = 0: eval() then drops every cached position before decoding
    llm.eval(tokens)
    first = last_logits(llm)
    logits, out, margins = first, [], []
    for _ in range(N_GREEDY):
        s = np.sort(logits)
        margins.append(float(s[-1] - s[-2]))
        t = int(np.argmax(logits))
        out.append(t)
        llm.eval([t])
        logits = last_logits(llm)
    return first, out, min(margins)


def tokenize(llm, text, special):
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def generate(model_path, outdir):
    import llama_cpp
    llm = open_model(model_path)
    bos, eos = llm.token_bos(), llm.token_eos()
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))
    if add_bos:
        sys.exit("the vocabulary adds BOS; this script and its golden data assume it does not")
    n_vocab = llm.n_vocab()
    doc = {"format": "twin-golden-logits-1",
           "generator": "tools/gen_llama_golden.py (llama.cpp through llama-cpp-python)",
           "llama_cpp_python": llama_cpp.__version__,
           "model": {"file": os.path.basename(model_path), "sha256": sha256(model_path),
                     "n_vocab": n_vocab, "bos": bos, "eos": eos, "add_bos": add_bos},
           "settings": {"n_threads": 1, "n_batch": N_BATCH, "n_ctx": N_CTX, "kv_type": "f16",
                        "flash_attn": False, "logits": "last token only"},
           "bin": "smollm2-135m.golden.bin", "cases": []}
    blobs, offset = [], 16
    for name, text, special in PROMPTS:
        toks = tokenize(llm, text, special)
        if toks and toks[0] == bos and not text.startswith("<|im_start|>"):
            sys.exit(f"{name}: llama.cpp added BOS")
        logits, greedy, margin = run_case(llm, toks)
        logits2, greedy2, _ = run_case(llm, toks)
        if not np.array_equal(logits, logits2) or greedy != greedy2:
            sys.exit(f"{name}: two runs of llama.cpp differ; not writing golden data")
        top = np.argsort(-logits, kind="stable")[:10]
        eos_at = next((i for i, t in enumerate(greedy) if t == eos), -1)
        blob = logits.astype("<f4").tobytes()
        doc["cases"].append({
            "name": name, "prompt": text, "parse_special": special, "tokens": [int(t) for t in toks],
            "logits": {"offset": offset, "rows": 1, "cols": n_vocab},
            "top10": [int(t) for t in top], "top10_logits": [round(float(logits[t]), 5) for t in top],
            "greedy": greedy,
            "greedy_text": llm.detokenize(greedy, special=True).decode("utf-8", "replace"),
            "eos_at": eos_at, "greedy_min_margin": round(margin, 6)})
        blobs.append(blob)
        offset += len(blob)
        print(f"{name}: {len(toks)} tokens, top1 {int(top[0])} ({logits[top[0]]:.3f}), greedy "
              f"{llm.detokenize(greedy, special=True)[:60]!r} margin {margin:.3f}")
    os.makedirs(outdir, exist_ok=True)
    base = os.path.join(outdir, "smollm2-135m.golden")
    with open(base + ".bin.tmp", "wb") as f:
        f.write(b"TWGL" + struct.pack("<III", 1, 16, (offset - 16) // 4))
        for b in blobs:
            f.write(b)
    os.replace(base + ".bin.tmp", base + ".bin")
    with open(base + ".json.tmp", "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(base + ".json.tmp", base + ".json")
    print(f"wrote {base}.json and .bin ({offset} bytes)")


def compare(path_a, path_b):
    a, b = open_model(path_a), open_model(path_b)
    bad = 0
    print(f"A = {path_a}\nB = {path_b}")
    for name, text, special in PROMPTS:
        toks = tokenize(a, text, special)
        la, ga, _ = run_case(a, toks)
        lb, gb, _ = run_case(b, toks)
        ta, tb = np.argsort(-la)[:10], np.argsort(-lb)[:10]
        overlap = len(set(ta.tolist()) & set(tb.tolist()))
        same = next((i for i in range(N_GREEDY) if ga[i] != gb[i]), N_GREEDY)
        d = float(np.abs(la - lb).max())
        rms = float(np.sqrt(np.mean((la - lb) ** 2)))
        print(f"{name:8s} max|dA-B|={d:.4f} rms={rms:.4f} (logit range {la.min():.1f}..{la.max():.1f}) "
              f"top1 {'same' if ta[0] == tb[0] else 'DIFFERENT'} top10 overlap {overlap}/10 "
              f"greedy agrees for {same}/{N_GREEDY} tokens")
        bad += ta[0] != tb[0]
    return 1 if bad else 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "--compare":
        if len(args) != 3:
            sys.exit("usage: gen_llama_golden.py --compare A.gguf B.gguf")
        sys.exit(compare(args[1], args[2]))
    model = args[0] if args else default_model()
    outdir = args[1] if len(args) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                        "data", "llama")
    generate(model, outdir)


if __name__ == "__main__":
    main()
