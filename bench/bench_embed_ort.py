#!/usr/bin/env python3
"""bench_embed_ort.py: the anchor of `twin bench embed`: onnxruntime running the same ONNX
graph as tools/gen_embed_golden.py (BERT + mean pooling + L2 normalize built from the
model's safetensors with the onnx helper API), with ORT's graph optimisations on (its fused
attention, LayerNorm and GELU kernels), intra_op_num_threads = --threads, one inter-op thread.

Texts: one JSON string per line of --texts. As twin does, they are tokenized (HF tokenizers,
RAYON_NUM_THREADS = --threads) and sorted by token count, then run in batches of --batch
texts of similar length (padded to the longest of the batch, the usual way to feed ORT).
Tokenization is inside the timed span, as it is for twin. A warm-up batch runs first.

Prints "onnxruntime threads=T texts=N tokens=K seconds=S sentences/s=R cpu_seconds=C" and
writes the vectors (N, dim) f32 little-endian, in text order, to --out.

Usage: bench_embed_ort.py --model DIR --texts FILE --threads T --out FILE [--batch 32]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tools"))
    import numpy as np
    import onnxruntime as ort
    import gen_embed_golden as g

    with open(a.texts, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f if line.strip()]
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(g.build_graph(a.model), so, providers=["CPUExecutionProvider"])
    max_len = g.max_seq_length(a.model)
    tok = g.load_tokenizer(a.model, max_len)

    def run(rows):  # rows: token id lists, truncated
        T = max(len(r) for r in rows)
        ids = np.zeros((len(rows), T), np.int64)
        mask = np.zeros((len(rows), T), np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        (v,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        return v, int(mask.sum())

    def truncate(ids):  # [CLS] + the first max_len - 2 + [SEP], as sentence-transformers
        return ids if len(ids) <= max_len else ids[:max_len - 1] + [ids[-1]]

    run([truncate(e.ids) for e in tok.encode_batch(texts[:8])])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    rows = [truncate(e.ids) for e in tok.encode_batch(texts)]
    order = sorted(range(len(texts)), key=lambda i: (len(rows[i]), i))
    vecs, ntok = [None] * len(texts), 0
    for b in range(0, len(order), a.batch):
        idx = order[b:b + a.batch]
        v, k = run([rows[i] for i in idx])
        ntok += k
        for j, i in enumerate(idx):
            vecs[i] = v[j]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    out = np.stack(vecs).astype("<f4")
    with open(a.out, "wb") as f:
        f.write(out.tobytes())
    print("onnxruntime threads=%d texts=%d tokens=%d seconds=%.4f sentences/s=%.2f cpu_seconds=%.4f"
          % (a.threads, len(texts), ntok, dt, len(texts) / dt, dc))


if __name__ == "__main__":
    sys.exit(main())
