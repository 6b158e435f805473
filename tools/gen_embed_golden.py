#!/usr/bin/env python3
"""gen_embed_golden.py: golden sentence embeddings of all-MiniLM-L6-v2 for
tests/integration/test_encoder_golden.c, from an implementation independent of twin.

The reference: an ONNX graph of BERT + mean pooling + L2 normalisation, built here node by
node with the `onnx` package's helper API from the model.safetensors weights (read with numpy:
an 8-byte header length, a JSON header, raw little-endian tensors), run by onnxruntime with
its graph optimisations off (the plain ops as written: Gather, MatMul, Softmax, Erf, ...).
The graph follows the model card / BertModel: embeddings = LayerNorm(word + token_type +
position), then per layer: self-attention over the unpadded tokens (padding gets -10000
before the softmax), dense, residual + LayerNorm, intermediate dense, erf GELU, dense,
residual + LayerNorm; then the mean over real tokens and x / max(|x|, 1e-12). Token ids come
from HF `tokenizers` (tokenizer.json), truncated at max_seq_length (sentence_bert_config.json)
with [CLS] and [SEP] included, as sentence-transformers does. bench/bench_embed_ort.py runs
the same graph (build_graph) as the anchor of `twin bench embed`.

Writes (into --out, default tests/data/embed/):
  minilm-l6.golden.json  {"format": "twin-golden-embed-1", "generator", "model_sha256",
                          "max_seq_length", "dim", "bin", "cases": [{"name", "text",
                          "n_tokens" (before truncation, [CLS]/[SEP] included),
                          "truncated", "offset" (f32 index into bin)}]}
  minilm-l6.golden.bin   "TWGL", u32 version 1, u32 header size 16, u32 count of f32, then
                          the vectors (n_cases, dim) f32 little-endian (the TWGL layout of
                          tests/golden.h)

Usage: python3 tools/gen_embed_golden.py MODEL_DIR [--out DIR]
"""
import argparse
import hashlib
import json
import os
import random
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
        out[name] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
    return out


def build_graph(model_dir):
    """The ONNX model (bytes): inputs input_ids, attention_mask, token_type_ids (batch, seq)
    int64; output embeddings (batch, dim) f32, mean-pooled and L2-normalised."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    pre = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    E, H, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    hd = E // H
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    nodes, inits = [], []
    counter = [0]

    def name(base):
        counter[0] += 1
        return "%s_%d" % (base, counter[0])

    def const(arr, base="c"):
        n = name(base)
        inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(kind, inputs, **attrs):
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def weight(key, transpose=False):
        a = np.ascontiguousarray(w[pre + key].astype(np.float32))
        return const(a.T.copy() if transpose else a, key.replace(".", "_"))

    def linear(x, key):  # x (B, T, in) -> (B, T, out): x W^T + b
        return op("Add", [op("MatMul", [x, weight(key + ".weight", True)]), weight(key + ".bias")])

    def layernorm(x, key):
        return op("LayerNormalization", [x, weight(key + ".weight"), weight(key + ".bias")],
                  axis=-1, epsilon=eps)

    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    # positions 0 .. T-1: cumulative sum of ones along the sequence, minus one
    ones = op("ConstantOfShape", [op("Shape", [ids])],
              value=helper.make_tensor("one", TensorProto.INT64, [1], [1]))
    pos = op("Sub", [op("CumSum", [ones, const(np.array(1, np.int64))]), const(np.array(1, np.int64))])
    x = op("Add", [op("Gather", [weight("embeddings.word_embeddings.weight"), ids]),
                   op("Gather", [weight("embeddings.token_type_embeddings.weight"), types])])
    x = op("Add", [x, op("Gather", [weight("embeddings.position_embeddings.weight"), pos])])
    x = layernorm(x, "embeddings.LayerNorm")
    maskf = op("Cast", [mask], to=TensorProto.FLOAT)  # (B, T)
    # additive mask (B, 1, 1, T): 0 for tokens, -10000 for padding
    bias = op("Mul", [op("Sub", [const(np.array(1, np.float32)), maskf]), const(np.array(-10000.0, np.float32))])
    bias = op("Unsqueeze", [bias, const(np.array([1, 2], np.int64))])
    heads_shape = const(np.array([0, 0, H, hd], np.int64))
    flat_shape = const(np.array([0, 0, E], np.int64))
    for l in range(L):
        p = "encoder.layer.%d." % l

        def split(t):  # (B, T, E) -> (B, H, T, hd)
            return op("Transpose", [op("Reshape", [t, heads_shape])], perm=[0, 2, 1, 3])

        q = split(linear(x, p + "attention.self.query"))
        k = split(linear(x, p + "attention.self.key"))
        v = split(linear(x, p + "attention.self.value"))
        s = op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])])
        s = op("Add", [op("Mul", [s, const(np.array(1.0 / np.sqrt(hd), np.float32))]), bias])
        a = op("MatMul", [op("Softmax", [s], axis=-1), v])  # (B, H, T, hd)
        a = op("Reshape", [op("Transpose", [a], perm=[0, 2, 1, 3]), flat_shape])
        x = layernorm(op("Add", [linear(a, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        g = op("Mul", [op("Mul", [h, const(np.array(0.5, np.float32))]),
                       op("Add", [const(np.array(1, np.float32)),
                                  op("Erf", [op("Mul", [h, const(np.array(1 / np.sqrt(2), np.float32))])])])])
        x = layernorm(op("Add", [linear(g, p + "output.dense"), x]), p + "output.LayerNorm")
    m3 = op("Unsqueeze", [maskf, const(np.array([2], np.int64))])  # (B, T, 1)
    summed = op("ReduceSum", [op("Mul", [x, m3]), const(np.array([1], np.int64))], keepdims=0)
    count = op("Max", [op("ReduceSum", [m3, const(np.array([1], np.int64))], keepdims=0),
                       const(np.array(1e-9, np.float32))])
    mean = op("Div", [summed, count])
    norm = op("Max", [op("ReduceL2", [mean], axes=[1], keepdims=1),
                      const(np.array(1e-12, np.float32))])
    nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"]))
    graph = helper.make_graph(
        nodes, "minilm_mean_normalize",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in (ids, mask, types)],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", E])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def max_seq_length(model_dir):
    p = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(p):
        with open(p) as f:
            return int(json.load(f).get("max_seq_length", 512))
    return 512


def load_tokenizer(model_dir, max_len):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode_batch(tok, texts, max_len):
    """(ids, mask, types) int64 (B, T) padded to the longest, and each text's untruncated
    token count."""
    encs = tok.encode_batch(texts)
    full = [len(e.ids) for e in encs]
    rows = []
    for e in encs:
        ids = e.ids
        if len(ids) > max_len:  # keep [CLS] + the first max_len - 2 + [SEP]
            ids = ids[:max_len - 1] + [ids[-1]]
        rows.append(ids)
    T = max(len(r) for r in rows)
    ids = np.zeros((len(rows), T), np.int64)
    mask = np.zeros((len(rows), T), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask, np.zeros_like(ids), full


# ---- the texts -------------------------------------------------------------------------------

WORDS = ("time person year way day thing man world life hand part child eye woman place work "
         "week case point government company number group problem fact river garden letter "
         "engine window market evening coffee mountain language memory question answer story "
         "teacher kitchen silver winter harbour signal pattern circuit bridge forest").split()
VERBS = "builds finds keeps writes reads moves holds brings tells opens carries follows".split()
ADJ = "small quiet bright early heavy simple strange careful distant honest patient".split()


def sentence(rng):
    n = rng.randint(4, 14)
    ws = [rng.choice(ADJ) if rng.random() < 0.25 else rng.choice(WORDS) for _ in range(n)]
    ws.insert(rng.randint(1, len(ws) - 1), rng.choice(VERBS))
    s = " ".join(ws)
    return s[0].upper() + s[1:] + rng.choice([".", ".", "!", "?", ";", "..."])


FIXED = [
    ("empty", ""),
    ("whitespace", "   \n\t  "),
    ("one_word", "hello"),
    ("one_char", "a"),
    ("punct_only", "?!...,;:"),
    ("digits", "3.14159 2718 1e-9 -42 0x1F 1,000,000"),
    ("caps", "THIS IS A SENTENCE WRITTEN ENTIRELY IN CAPITAL LETTERS"),
    ("accents", "Café naïve résumé façade coöperate Ångström Zürich São Paulo"),
    ("french", "Le petit chat dort sur le canapé pendant que la pluie tombe doucement."),
    ("german", "Die Straßenbahn fährt über die alte Brücke, während die Möwen kreischen."),
    ("spanish", "¿Dónde está la biblioteca? Está al lado del mercado, cerca de la plaza."),
    ("italian", "Questa mattina ho comprato il pane fresco e un po' di formaggio."),
    ("portuguese", "A lua cheia iluminava o caminho estreito até a praia."),
    ("russian", "Сегодня утром я читал книгу о истории старого города."),
    ("greek", "Η θάλασσα ήταν ήρεμη και ο ουρανός καθαρός το απόγευμα."),
    ("chinese", "我今天早上在公园里散步，看到很多人在打太极拳。"),
    ("japanese", "東京の春は桜がとても美しく、多くの人が花見を楽しみます。"),
    ("korean", "오늘 날씨가 정말 좋아서 친구들과 산책을 했어요."),
    ("arabic", "ذهبت إلى السوق لشراء الخضار والفواكه الطازجة."),
    ("hindi", "आज सुबह मैंने बगीचे में नए फूल लगाए।"),
    ("thai", "วันนี้อากาศดีมาก เราไปเที่ยวทะเลกัน"),
    ("hebrew", "הספר שקראתי אתמול היה מעניין מאוד."),
    ("mixed_scripts", "Meeting at 10:30 — 会議室 B, bring the ноутбук and café ☕."),
    ("emoji", "🎉🎉 Party tonight!! 🍕🍺 Don't be late 😅👍"),
    ("emoji_only", "😀😃😄😁😆😅🤣😂🙂🙃"),
    ("flags_zwj", "👨‍👩‍👧‍👦 family 🇫🇷🇯🇵 flags 🏳️‍🌈"),
    ("url", "See https://example.com/path/to/page?query=1&lang=en#section for details."),
    ("email", "Write to someone.name+tag@example.org or call +1 (555) 010-9999."),
    ("c_code", "static int add(int a, int b) {\n    return a + b; /* sum */\n}\n"),
    ("python_code", "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"),
    ("json", '{"name": "twin", "version": [1, 2, 3], "nested": {"ok": true, "value": null}}'),
    ("sql", "SELECT id, title FROM documents WHERE author = 'ada' ORDER BY published_at DESC LIMIT 10;"),
    ("shell", "for f in *.txt; do grep -c 'error' \"$f\" | tee -a counts.log; done"),
    ("markdown", "# Title\n\n- item one\n- item **two**\n\n> quoted `code` and [a link](http://x.y)"),
    ("html", "<div class=\"note\"><p>Hello&nbsp;<b>world</b></p></div>"),
    ("control_chars", "tab\there\r\nnew line\x0bvertical\x0cform feed"),
    ("repeated_char", "a" * 300),
    ("repeated_word", "the " * 400),
    ("long_word", "pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious"),
    ("cjk_long", "人工智能正在改变我们的生活方式。" * 25),
]


def make_texts():
    rng = random.Random(20240501)
    cases = list(FIXED)
    for i in range(60):  # short: one or two sentences
        cases.append(("short_%02d" % i, " ".join(sentence(rng) for _ in range(rng.randint(1, 2)))))
    for i in range(50):  # medium: a paragraph
        cases.append(("medium_%02d" % i, " ".join(sentence(rng) for _ in range(rng.randint(4, 12)))))
    for i in range(30):  # long: beyond 256 tokens (truncated)
        paras = ["\n".join(sentence(rng) for _ in range(rng.randint(5, 9))) for _ in range(rng.randint(4, 8))]
        cases.append(("long_%02d" % i, "\n\n".join(paras)))
    for i in range(200 - len(cases)):  # mixed: sentences with numbers, code and other scripts
        parts = [sentence(rng)]
        extra = rng.choice([FIXED[j][1] for j in range(6, len(FIXED) - 4)])
        parts.insert(rng.randint(0, 1), extra)
        parts.append("%d items at $%d.%02d" % (rng.randint(1, 999), rng.randint(0, 99), rng.randint(0, 99)))
        cases.append(("mixed_%02d" % i, " ".join(parts)))
    assert len(cases) == 200, len(cases)
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "embed"))
    args = ap.parse_args()
    import onnxruntime as ort

    max_len = max_seq_length(args.model_dir)
    tok = load_tokenizer(args.model_dir, max_len)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(build_graph(args.model_dir), so, providers=["CPUExecutionProvider"])
    cases = make_texts()
    vecs = []
    meta = []
    for name, text in cases:  # one text per run: no padding anywhere
        ids, mask, types, full = encode_batch(tok, [text], max_len)
        (v,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        vecs.append(v[0].astype(np.float32))
        meta.append({"name": name, "text": text, "n_tokens": full[0], "truncated": full[0] > max_len})
    # batched (padded) runs must agree with the single ones: the padding mask is right
    ids, mask, types, _ = encode_batch(tok, [t for _, t in cases[:40]], max_len)
    (vb,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    worst = min(float(np.dot(vb[i], vecs[i])) for i in range(40))
    assert worst > 0.99999, worst
    dim = vecs[0].shape[0]
    data = np.stack(vecs).astype("<f4")
    for i, m in enumerate(meta):
        m["offset"] = i * dim
    with open(os.path.join(args.model_dir, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    os.makedirs(args.out, exist_ok=True)
    index = {
        "format": "twin-golden-embed-1",
        "generator": "tools/gen_embed_golden.py (onnx helper-built BERT + mean pooling + L2 "
                     "normalize graph from model.safetensors, run by onnxruntime %s without graph "
                     "optimisations; HF tokenizers %s)" % (ort.__version__, __import__("tokenizers").__version__),
        "model_sha256": sha,
        "max_seq_length": max_len,
        "dim": dim,
        "bin": "minilm-l6.golden.bin",
        "batch_vs_single_min_cosine": worst,
        "cases": meta,
    }
    with open(os.path.join(args.out, "minilm-l6.golden.bin"), "wb") as f:
        f.write(b"TWGL" + struct.pack("<III", 1, 16, data.size))
        f.write(data.tobytes())
    with open(os.path.join(args.out, "minilm-l6.golden.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_trunc = sum(m["truncated"] for m in meta)
    print("wrote %d vectors of %d (%d truncated), batch vs single min cosine %.7f" % (len(meta), dim, n_trunc, worst))


if __name__ == "__main__":
    sys.exit(main())
