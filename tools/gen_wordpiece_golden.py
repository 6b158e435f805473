#!/usr/bin/env python3
"""gen_wordpiece_golden.py: HF tokenizers' ids for texts that stress BERT WordPiece's normaliser.

Not a dependency of twin: run it by hand when the texts or the reference change, with
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install tokenizers numpy gguf
    /tmp/venv/bin/python tools/gen_wordpiece_golden.py --minilm <models>/minilm-l6 \
        [--out tests/data/tokenizer]

tools/gen_tokenizer_golden.py covers hand-written texts for every model; this adds texts
drawn from a fixed seed out of the characters where BertNormalizer + BertPreTokenizer +
WordPiece are easy to get wrong: accents and combining marks (NFD, canonical order, Mn
removal), Hangul (NFD to jamo), CJK ideographs and compatibility ideographs, full-width
forms, controls, format characters and private use (removed), Unicode whitespace, Unicode
punctuation and characters that decompose to punctuation, the dotted capital I, emoji
sequences, real vocabulary words glued together (## continuations), words of 99-101
characters (max_input_chars_per_word) and runs of whitespace.

Output: minilm-l6.wordpiece.golden.jsonl, rows as gen_tokenizer_golden.py writes them
({"name", "text", "ids", "ids_special"}, plus "text_hex" when the text holds a NUL).
Only characters assigned since Unicode 6 are drawn, so the categories that HF's tables and
twin's utf8proc agree on do not depend on either's Unicode version.
"""
import argparse
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tokenizer_golden import model_rows, write_jsonl  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

N_TEXTS = 300
SEED = 20240612


def char_pool():
    ranges = [
        (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E),  # ASCII, weighted
        (0xA0, 0x24F),    # Latin-1 supplement, Latin extended A/B (accents, ǅ, ß)
        (0x300, 0x36F),   # combining diacritics (Mn, several classes)
        (0x370, 0x3FF),   # Greek (final sigma, tonos), U+037E ';'
        (0x400, 0x4FF),   # Cyrillic
        (0x591, 0x5C7),   # Hebrew points
        (0x610, 0x65F),   # Arabic marks
        (0x900, 0x97F),   # Devanagari (Mc and Mn marks)
        (0xE00, 0xE5B),   # Thai
        (0x1E00, 0x1EFF), # Latin extended additional (precomposed Vietnamese)
        (0x1F00, 0x1FFE), # Greek extended (U+1FEF decomposes to '`')
        (0x2000, 0x206F), # general punctuation: spaces, ZW*, bidi marks, dashes, quotes
        (0x2100, 0x218F), # letterlike (Ω, Å, K signs), number forms
        (0x3000, 0x30FF), # CJK punctuation, ideographic space, kana
        (0x3400, 0x3440), (0x4E00, 0x4F00), (0xF900, 0xF960),  # ideographs, compatibility
        (0xAC00, 0xAD00), (0x1100, 0x11FF),  # Hangul syllables and jamo
        (0xFF00, 0xFFEF), # full-width and half-width forms
        (0xE000, 0xE010), # private use
        (0x1F300, 0x1F64F), (0x1F680, 0x1F6C5),  # emoji
        (0x20000, 0x20010), (0x2F800, 0x2F810),  # supplementary ideographs
        (0x1D165, 0x1D169), (0x1D16D, 0x1D172),  # spacing combining marks with a class
    ]
    singles = [0x0, 0x1, 0x7, 0x9, 0xA, 0xB, 0xC, 0xD, 0x1B, 0x1F, 0x7F, 0x85, 0xAD, 0x130,
               0x1FEF, 0x200B, 0x200D, 0x2028, 0x2029, 0x3000, 0xFE0F, 0xFEFF, 0xFFFD,
               0x1F3FB, 0x1F3FD]
    pool = []
    for a, b in ranges:
        pool.extend(chr(c) for c in range(a, b + 1))
    pool.extend(chr(c) for c in singles)
    # only characters that Unicode 6.0 already assigned (unicodedata.ucd_3_2_0 is older
    # still; a character it knows with the same category is stable across versions)
    old = unicodedata.ucd_3_2_0
    stable = []
    for c in pool:
        cat = unicodedata.category(c)
        if cat == "Cn" or cat == "Cs":
            continue
        if old.category(c) != cat and ord(c) < 0x1F000 and cat not in ("Co",):
            continue
        stable.append(c)
    return stable


def texts(n, seed, vocab_words):
    rng = random.Random(seed)
    chars = char_pool()
    latin = [c for c in chars if 0xC0 <= ord(c) <= 0x24F or 0x1E00 <= ord(c) <= 0x1FFE]
    seps = [" ", "  ", "\t", "\n", "\r\n", "   \n\t ", "\u00a0", "\u3000", ""]
    out = []
    for k in range(n):
        kind = k % 6
        if kind == 0:  # random characters
            s = "".join(rng.choice(chars) for _ in range(rng.randint(1, 40)))
        elif kind == 1:  # vocabulary words glued together, with case and accents
            parts = []
            for _ in range(rng.randint(1, 8)):
                w = "".join(rng.choice(vocab_words) for _ in range(rng.randint(1, 3)))
                r = rng.random()
                if r < 0.2:
                    w = w.upper()
                elif r < 0.3:
                    w = unicodedata.normalize("NFC", w + "\u0301")
                parts.append(w)
                parts.append(rng.choice(seps))
            s = "".join(parts)
        elif kind == 2:  # words around the 100-character limit, some with accents
            length = rng.choice([98, 99, 100, 101, 102, 150])
            base = rng.choice(["a", "ab", "\u00e9", "x\u0301", "\u4e00", "z"])
            s = (base * length)[: length * len(base)]
            s = rng.choice(["", "hello "]) + s + rng.choice(["", " world", "!"])
        elif kind == 3:  # text mixed with random characters
            parts = []
            for _ in range(rng.randint(3, 15)):
                if rng.random() < 0.5:
                    parts.append(rng.choice(vocab_words))
                else:
                    parts.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 4))))
                parts.append(rng.choice(seps))
            s = "".join(parts)
        elif kind == 4:  # decomposable letters, in composed and decomposed forms
            w = "".join(rng.choice(latin) for _ in range(rng.randint(1, 12)))
            s = w + " " + unicodedata.normalize(rng.choice(["NFD", "NFC", "NFKC"]), w)
        else:  # numbers, punctuation and special-token look-alikes
            parts = []
            for _ in range(rng.randint(2, 12)):
                r = rng.random()
                if r < 0.3:
                    parts.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
                elif r < 0.6:
                    parts.append(rng.choice(".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`\u2014\u2026\u00bf\u00a1\u00ab\u00bb"))
                elif r < 0.7:
                    parts.append(rng.choice(["[CLS]", "[SEP]", "[UNK]", "[MASK]", "[PAD]", "[cls]"]))
                else:
                    parts.append(rng.choice(vocab_words))
                parts.append(rng.choice(seps))
            s = "".join(parts)
        out.append((f"wp_{k:03d}", s))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm", required=True, help="all-MiniLM-L6-v2 folder (tokenizer.json)")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "tokenizer"))
    a = ap.parse_args()
    tk = Tokenizer.from_file(os.path.join(a.minilm, "tokenizer.json"))
    tk.no_padding()
    tk.no_truncation()
    vocab = tk.get_vocab()
    words = sorted({w[2:] if w.startswith("##") else w for w in vocab})
    words = [w for w in words if w.isalpha() and len(w) > 1]
    rows = model_rows(tk, texts(N_TEXTS, SEED, words))
    write_jsonl(os.path.join(a.out, "minilm-l6.wordpiece.golden.jsonl"), rows)


if __name__ == "__main__":
    main()
