#!/usr/bin/env python3
"""gen_spm_golden.py: reference ids for a SentencePiece-BPE GGUF vocabulary from HF tokenizers.

Not a dependency of twin: run it by hand when the texts or the reference change, with
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install tokenizers numpy gguf
    /tmp/venv/bin/python tools/gen_spm_golden.py \
        --gguf ../shared/testdata/tokenizer/ggml-vocab-baichuan.gguf --name baichuan \
        [--out tests/data/tokenizer]

llama.cpp's test vectors have no expected ids for baichuan, so this builds the reference the
way HF transformers converts a SentencePiece BPE model into a tokenizer.json (its
SpmConverter): a BPE model over the GGUF vocabulary whose merges are every split of a normal
token into two tokens, ranked by the merged token's score; byte fallback; the normaliser
prepends "▁" and turns spaces into "▁". With --check it first reproduces llama.cpp's vectors
for the llama-spm and phi-3 vocabularies beside the given file, so the reference is known to
agree with llama.cpp where both exist.

Texts: the inputs of llama.cpp's vectors (ggml-vocab-llama-spm.gguf.inp beside the GGUF),
tests/data/tokenizer/texts.jsonl, and N_RANDOM seeded texts of mixed scripts.
Output: NAME.spm.golden.jsonl, rows {"name", "text", "ids"} (+ "text_hex" when the text holds
a NUL), ids being the raw tokenization: no BOS/EOS, special-token texts left as text
(twin: flags 0).
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tokenizer_golden import write_jsonl  # noqa: E402
from tokenizers import Tokenizer, models, normalizers  # noqa: E402

N_RANDOM = 40
SEED = 20240613
NORMAL = 1  # GGUF token type


def read_spm_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = r.fields["tokenizer.ggml.scores"]
    scores = [float(f.parts[i][0]) for i in f.data]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    return toks, scores, types


def hf_spm(path):
    """HF tokenizer equivalent to the SentencePiece BPE model in a GGUF (SpmConverter)."""
    toks, scores, types = read_spm_gguf(path)
    vocab = {t: i for i, t in enumerate(toks)}
    merges = []
    for piece, i in vocab.items():
        if types[i] != NORMAL:
            continue
        local = [(piece[:k], piece[k:], scores[i]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for a, b, _ in merges],
                              unk_token=toks[0], byte_fallback=True, fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                          normalizers.Replace(" ", "\u2581")])
    return tk


def encode(tk, text):
    return tk.encode(text, add_special_tokens=False).ids if text else []


def vector_cases(gguf_path):
    inp = gguf_path + ".inp"
    if not os.path.exists(inp):
        return []
    with open(inp, encoding="utf-8") as f:
        return f.read().split("\n__ggml_vocab_test__\n")[:-1]


def check(folder):
    bad = 0
    for name in ("llama-spm", "phi-3"):
        g = os.path.join(folder, f"ggml-vocab-{name}.gguf")
        tk = hf_spm(g)
        cases = vector_cases(g)
        with open(g + ".out") as f:
            outs = f.read().split("\n")
        ok = sum(encode(tk, c) == [int(x) for x in o.split()] for c, o in zip(cases, outs))
        print(f"{name}: {ok}/{len(cases)} of llama.cpp's vectors")
        bad += ok != len(cases)
    return bad


def random_texts(n, seed):
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0x20, 0x7E), (0xA0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F),
              (0x4E00, 0x4FFF), (0x3040, 0x30FF), (0xAC00, 0xAD00), (0x3000, 0x3011),
              (0xFF01, 0xFF5E), (0x1F600, 0x1F64F), (0x2000, 0x2027)]
    chars = [chr(c) for a, b in ranges for c in range(a, b + 1)]
    words = ["the", "of", "我们", "中国", "数据", "模型", "hello", "world", "▁", "  ", "\n", "\t",
             "<s>", "</s>", "<unk>", "1234", "3.14", "Straße", "naïve"]
    out = []
    for k in range(n):
        parts = []
        for _ in range(rng.randint(3, 30)):
            if rng.random() < 0.4:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 5))))
            parts.append(rng.choice([" ", "", " ", "  "]))
        out.append((f"random_{k:02d}", "".join(parts)))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="the SentencePiece vocabulary (GGUF)")
    ap.add_argument("--name", required=True, help="output name: NAME.spm.golden.jsonl")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "tokenizer"))
    ap.add_argument("--check", action="store_true",
                    help="first reproduce llama.cpp's llama-spm and phi-3 vectors")
    a = ap.parse_args()
    folder = os.path.dirname(os.path.abspath(a.gguf))
    if a.check and check(folder):
        sys.exit("the reference does not reproduce llama.cpp's vectors")
    texts = [(f"llama_vector_{i:02d}", c)
             for i, c in enumerate(vector_cases(os.path.join(folder, "ggml-vocab-llama-spm.gguf")))]
    with open(os.path.join(a.out, "texts.jsonl"), encoding="utf-8") as f:
        texts += [(d["name"], d["text"]) for d in (json.loads(x) for x in f if x.strip())]
    texts += random_texts(N_RANDOM, SEED)
    tk = hf_spm(a.gguf)
    rows = [{"name": n, "text": t, "ids": encode(tk, t)} for n, t in texts]
    write_jsonl(os.path.join(a.out, f"{a.name}.spm.golden.jsonl"), rows)


if __name__ == "__main__":
    main()
