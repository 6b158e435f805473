#!/usr/bin/env python3
"""Golden data for twin's training step (engine/train.c): a tiny random llama with LoRA on all
seven projections, one packed batch of two examples, and the loss and every LoRA gradient from
an independent numpy forward + backward in float64, written from the equations (not from
twin's code).

usage: python3 tools/gen_train_golden.py [OUTDIR]     (default tests/data/train)

The model (GGUF llama conventions, which the C test reproduces when it writes the GGUF):
  n_vocab 288 (the tiny GPT-2 tokenizer of tests/data/gpt2, whose metadata the test copies),
  n_embd 32, 2 layers, 4 heads of 8, 2 KV heads (grouped-query), n_ff 48, rope theta 10000
  with pairs (2i, 2i+1) rotated (llama.cpp's NORM mode: GGUF llama Q/K rows are permuted),
  RMSNorm eps 1e-5, tied output head (no output.weight: the token embedding is the head).
  Weights are float32 (the GGUF stores them as F32); the reference computes in float64 from
  those float32 values.
LoRA: rank 4, alpha 8 (scale 2), A and B both random (B nonzero so that A's gradient is
  not zero), float32.
Batch: two examples packed in one row (segment ids 0 and 1, positions restarting at 0),
  targets -1 where no loss is taken. The loss is the mean over loss tokens (xent's
  grad_scale = 1 / n_loss_tokens).

The backward is checked here against central finite differences of the float64 loss on
random coordinates of every adapter (relative error < 1e-6) before anything is written.

Output: OUTDIR/tiny-llama.json (config, batch, tensor index, loss, per-token losses) and
OUTDIR/tiny-llama.bin (float32 little-endian tensors at the offsets the index gives: the
weights, the LoRA parameters, and the expected gradients "grad.<layer>.<module>.A|B").

The same for a tiny random GPT-2 (OUTDIR/tiny-gpt2.json, .bin; weights under llama.cpp's
GGUF gpt2 names): n_vocab 288, n_embd 32, 2 layers, 4 heads of 8 (MHA), n_ff 64, 16 learned
positions added to the token embeddings, pre-LayerNorm with weights and biases (eps 1e-5),
fused attn_qkv with bias (q, k, v are its row ranges [0,32) [32,64) [64,96)), attn_output,
ffn_up and ffn_down with biases, GELU with the tanh approximation (GPT-2's), tied head. LoRA
rank 4, alpha 8 on q, k, v (each on its row range of the fused weight), o, up, down (GPT-2
has no gate). Same batch layout; the same finite-difference check.
"""
import json
import os
import sys

import numpy as np

V, D, L, NH, NKV, HD, FF = 288, 32, 2, 4, 2, 8, 48
THETA, EPS = 10000.0, 1e-5
R, ALPHA = 4, 8.0
SCALE = ALPHA / R
MODULES = ["q", "k", "v", "o", "gate", "up", "down"]
GGUF = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
        "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}
DIMS = {"q": (NH * HD, D), "k": (NKV * HD, D), "v": (NKV * HD, D), "o": (D, NH * HD),
        "gate": (FF, D), "up": (FF, D), "down": (D, FF)}


def make(seed=1234):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    w = {"token_embd.weight": (rng.standard_normal((V, D)) * 0.5).astype(f32),
         "output_norm.weight": (1.0 + 0.1 * rng.standard_normal(D)).astype(f32)}
    lora = {}
    for l in range(L):
        w[f"blk.{l}.attn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(D)).astype(f32)
        w[f"blk.{l}.ffn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(D)).astype(f32)
        for m in MODULES:
            o, i = DIMS[m]
            w[f"blk.{l}.{GGUF[m]}.weight"] = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(f32)
            lora[(l, m)] = ((rng.standard_normal((R, i)) / np.sqrt(i)).astype(f32),
                            (rng.standard_normal((o, R)) * 0.2).astype(f32))
    # two examples packed: lengths 7 and 5
    lens = [7, 5]
    tokens = rng.integers(0, V, size=sum(lens)).astype(np.int32)
    pos = np.concatenate([np.arange(n) for n in lens]).astype(np.int32)
    seg = np.concatenate([np.full(n, k) for k, n in enumerate(lens)]).astype(np.int32)
    targets = np.full(sum(lens), -1, np.int32)
    start = 0
    for n in lens:  # loss on the last tokens of each example (an "assistant" part)
        for t in range(start + 2, start + n - 1):
            targets[t] = tokens[t + 1]
        start += n
    return w, lora, tokens, targets, pos, seg, lens


def rmsnorm(x, w):
    rinv = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    return x * rinv * w, rinv


def rmsnorm_bwd(dy, x, w, rinv):
    g = dy * w
    return rinv * g - x * rinv ** 3 * (g * x).sum(-1, keepdims=True) / x.shape[-1]


def rope_angles(pos):
    i = np.arange(HD // 2)
    return pos[:, None] * THETA ** (-2.0 * i / HD)  # (n, HD/2)


def rope(x, ang, sign=1.0):  # x (n, heads, HD): pairs (2i, 2i+1)
    c, s = np.cos(ang)[:, None, :], sign * np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = a * c - b * s
    y[..., 1::2] = a * s + b * c
    return y


def mask_of(seg):
    n = len(seg)
    t, u = np.arange(n)[:, None], np.arange(n)[None, :]
    return (seg[:, None] == seg[None, :]) & (u <= t)


def loss_and_grads(w, lora, tokens, targets, pos, seg, want_grads=True):
    W = {k: v.astype(np.float64) for k, v in w.items()}
    LO = {k: (a.astype(np.float64), b.astype(np.float64)) for k, (a, b) in lora.items()}
    n = len(tokens)
    ang = rope_angles(pos.astype(np.float64))
    msk = mask_of(seg)
    sc = 1.0 / np.sqrt(HD)
    grp = NH // NKV

    def proj(l, m, x):
        A, B = LO[(l, m)]
        la = SCALE * (x @ A.T)
        return x @ W[f"blk.{l}.{GGUF[m]}.weight"].T + la @ B.T, la

    x = W["token_embd.weight"][tokens]
    caches = []
    for l in range(L):
        c = {"x": x}
        h1, c["r1"] = rmsnorm(x, W[f"blk.{l}.attn_norm.weight"])
        c["h1"] = h1
        q, c["la_q"] = proj(l, "q", h1)
        k, c["la_k"] = proj(l, "k", h1)
        v, c["la_v"] = proj(l, "v", h1)
        q = rope(q.reshape(n, NH, HD), ang)
        k = rope(k.reshape(n, NKV, HD), ang)
        v = v.reshape(n, NKV, HD)
        att = np.zeros((n, NH, HD))
        P = np.zeros((NH, n, n))
        for h in range(NH):
            s = q[:, h, :] @ k[:, h // grp, :].T * sc
            s = np.where(msk, s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(-1, keepdims=True)
            P[h] = p
            att[:, h, :] = p @ v[:, h // grp, :]
        c.update(q=q, k=k, v=v, P=P, att=att.reshape(n, NH * HD))
        o, c["la_o"] = proj(l, "o", c["att"])
        xm = x + o
        c["xm"] = xm
        h2, c["r2"] = rmsnorm(xm, W[f"blk.{l}.ffn_norm.weight"])
        c["h2"] = h2
        g, c["la_gate"] = proj(l, "gate", h2)
        u, c["la_up"] = proj(l, "up", h2)
        sig = 1.0 / (1.0 + np.exp(-g))
        sw = g * sig * u
        c.update(g=g, u=u, sig=sig, sw=sw)
        dn, c["la_down"] = proj(l, "down", sw)
        x = xm + dn
        caches.append(c)
    hf, rf = rmsnorm(x, W["output_norm.weight"])
    E = W["token_embd.weight"]
    logits = hf @ E.T
    mx = logits.max(-1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(-1))
    tok_loss = np.zeros(n)
    sel = targets >= 0
    tok_loss[sel] = lse[sel] - logits[np.arange(n)[sel], targets[sel]]
    n_loss = int(sel.sum())
    loss = tok_loss.sum() / n_loss
    if not want_grads:
        return loss, tok_loss, None
    grads = {}
    p = np.exp(logits - lse[:, None])
    p[np.arange(n)[sel], targets[sel]] -= 1.0
    p[~sel] = 0.0
    dlogits = p / n_loss
    dhf = dlogits @ E
    dx = rmsnorm_bwd(dhf, x, W["output_norm.weight"], rf)

    def proj_bwd(l, m, dy, xin, la):
        A, B = LO[(l, m)]
        dB = dy.T @ la
        dla = SCALE * (dy @ B)
        dA = dla.T @ xin
        grads[(l, m)] = (dA, dB)
        return dy @ W[f"blk.{l}.{GGUF[m]}.weight"] + dla @ A

    for l in reversed(range(L)):
        c = caches[l]
        dsw = proj_bwd(l, "down", dx, c["sw"], c["la_down"])
        g, u, sig = c["g"], c["u"], c["sig"]
        dg = dsw * u * sig * (1.0 + g * (1.0 - sig))
        du = dsw * g * sig
        dh2 = proj_bwd(l, "gate", dg, c["h2"], c["la_gate"]) + proj_bwd(l, "up", du, c["h2"], c["la_up"])
        dxm = dx + rmsnorm_bwd(dh2, c["xm"], W[f"blk.{l}.ffn_norm.weight"], c["r2"])
        datt = proj_bwd(l, "o", dxm, c["att"], c["la_o"]).reshape(n, NH, HD)
        q, k, v, P = c["q"], c["k"], c["v"], c["P"]
        dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
        for h in range(NH):
            kh = h // grp
            p = P[h]
            dP = datt[:, h, :] @ v[:, kh, :].T
            dv[:, kh, :] += p.T @ datt[:, h, :]
            dS = p * (dP - (dP * p).sum(-1, keepdims=True))
            dq[:, h, :] = dS @ k[:, kh, :] * sc
            dk[:, kh, :] += dS.T @ q[:, h, :] * sc
        dq = rope(dq, ang, -1.0).reshape(n, NH * HD)
        dk = rope(dk, ang, -1.0).reshape(n, NKV * HD)
        dv = dv.reshape(n, NKV * HD)
        dh1 = (proj_bwd(l, "q", dq, c["h1"], c["la_q"]) + proj_bwd(l, "k", dk, c["h1"], c["la_k"]) +
               proj_bwd(l, "v", dv, c["h1"], c["la_v"]))
        dx = dxm + rmsnorm_bwd(dh1, c["x"], W[f"blk.{l}.attn_norm.weight"], c["r1"])
    return loss, tok_loss, grads


def fd_check(w, lora, batch, grads, rng, fn=None):
    fn = fn or loss_and_grads
    worst = 0.0
    for key in lora:
        for which in (0, 1):
            for _ in range(3):
                t = lora[key][which]
                idx = tuple(rng.integers(0, s) for s in t.shape)
                h = 1e-4
                vals = []
                for sgn in (1, -1):
                    l2 = {k: (a.astype(np.float64).copy(), b.astype(np.float64).copy()) for k, (a, b) in lora.items()}
                    l2[key][which][idx] += sgn * h
                    vals.append(fn(w, l2, *batch, want_grads=False)[0])
                fd = (vals[0] - vals[1]) / (2 * h)
                an = grads[key][which][idx]
                err = abs(fd - an) / max(1e-6, abs(fd) + abs(an))
                worst = max(worst, err)
    return worst


# ---- GPT-2 ----------------------------------------------------------------------------------

G_FF, G_CTX = 64, 16
G_MODULES = ["q", "k", "v", "o", "up", "down"]
G_DIMS = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "up": (G_FF, D), "down": (D, G_FF)}
G_W = {"o": "attn_output", "up": "ffn_up", "down": "ffn_down"}


def make_gpt2(seed=4321):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    w = {"token_embd.weight": (rng.standard_normal((V, D)) * 0.5).astype(f32),
         "position_embd.weight": (rng.standard_normal((G_CTX, D)) * 0.3).astype(f32),
         "output_norm.weight": (1.0 + 0.1 * rng.standard_normal(D)).astype(f32),
         "output_norm.bias": (0.1 * rng.standard_normal(D)).astype(f32)}
    lora = {}
    for l in range(L):
        for nm in ("attn_norm", "ffn_norm"):
            w[f"blk.{l}.{nm}.weight"] = (1.0 + 0.1 * rng.standard_normal(D)).astype(f32)
            w[f"blk.{l}.{nm}.bias"] = (0.1 * rng.standard_normal(D)).astype(f32)
        w[f"blk.{l}.attn_qkv.weight"] = (rng.standard_normal((3 * D, D)) / np.sqrt(D)).astype(f32)
        w[f"blk.{l}.attn_qkv.bias"] = (0.1 * rng.standard_normal(3 * D)).astype(f32)
        for m in ("o", "up", "down"):
            o, i = G_DIMS[m]
            w[f"blk.{l}.{G_W[m]}.weight"] = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(f32)
            w[f"blk.{l}.{G_W[m]}.bias"] = (0.1 * rng.standard_normal(o)).astype(f32)
        for m in G_MODULES:
            o, i = G_DIMS[m]
            lora[(l, m)] = ((rng.standard_normal((R, i)) / np.sqrt(i)).astype(f32),
                            (rng.standard_normal((o, R)) * 0.2).astype(f32))
    lens = [7, 5]
    tokens = rng.integers(0, V, size=sum(lens)).astype(np.int32)
    pos = np.concatenate([np.arange(n) for n in lens]).astype(np.int32)
    seg = np.concatenate([np.full(n, k) for k, n in enumerate(lens)]).astype(np.int32)
    targets = np.full(sum(lens), -1, np.int32)
    start = 0
    for n in lens:
        for t in range(start + 2, start + n - 1):
            targets[t] = tokens[t + 1]
        start += n
    return w, lora, tokens, targets, pos, seg, lens


def layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + EPS)
    xh = (x - mu) * rstd
    return xh * w + b, (xh, rstd)


def layernorm_bwd(dy, w, cache):
    xh, rstd = cache
    g = dy * w
    return rstd * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))


GC = np.sqrt(2.0 / np.pi)


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(GC * (x + 0.044715 * x ** 3)))


def gelu_grad(x):
    th = np.tanh(GC * (x + 0.044715 * x ** 3))
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GC * (1.0 + 3 * 0.044715 * x * x)


def loss_and_grads_gpt2(w, lora, tokens, targets, pos, seg, want_grads=True):
    W = {k: v.astype(np.float64) for k, v in w.items()}
    LO = {k: (a.astype(np.float64), b.astype(np.float64)) for k, (a, b) in lora.items()}
    n = len(tokens)
    msk = mask_of(seg)
    sc = 1.0 / np.sqrt(HD)

    def weight(l, m):
        if m in ("q", "k", "v"):
            j = "qkv".index(m)
            return (W[f"blk.{l}.attn_qkv.weight"][j * D:(j + 1) * D],
                    W[f"blk.{l}.attn_qkv.bias"][j * D:(j + 1) * D])
        return W[f"blk.{l}.{G_W[m]}.weight"], W[f"blk.{l}.{G_W[m]}.bias"]

    def proj(l, m, x):
        A, B = LO[(l, m)]
        la = SCALE * (x @ A.T)
        wt, bias = weight(l, m)
        return x @ wt.T + bias + la @ B.T, la

    x = W["token_embd.weight"][tokens] + W["position_embd.weight"][pos]
    caches = []
    for l in range(L):
        c = {"x": x}
        h1, c["n1"] = layernorm(x, W[f"blk.{l}.attn_norm.weight"], W[f"blk.{l}.attn_norm.bias"])
        c["h1"] = h1
        q, c["la_q"] = proj(l, "q", h1)
        k, c["la_k"] = proj(l, "k", h1)
        v, c["la_v"] = proj(l, "v", h1)
        q, k, v = (a.reshape(n, NH, HD) for a in (q, k, v))
        att = np.zeros((n, NH, HD))
        P = np.zeros((NH, n, n))
        for h in range(NH):
            s = q[:, h, :] @ k[:, h, :].T * sc
            s = np.where(msk, s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(-1, keepdims=True)
            P[h] = p
            att[:, h, :] = p @ v[:, h, :]
        c.update(q=q, k=k, v=v, P=P, att=att.reshape(n, D))
        o, c["la_o"] = proj(l, "o", c["att"])
        xm = x + o
        h2, c["n2"] = layernorm(xm, W[f"blk.{l}.ffn_norm.weight"], W[f"blk.{l}.ffn_norm.bias"])
        c["h2"] = h2
        g, c["la_up"] = proj(l, "up", h2)
        u = gelu(g)
        c.update(g=g, u=u)
        dn, c["la_down"] = proj(l, "down", u)
        x = xm + dn
        caches.append(c)
    hf, nf = layernorm(x, W["output_norm.weight"], W["output_norm.bias"])
    E = W["token_embd.weight"]
    logits = hf @ E.T
    mx = logits.max(-1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(-1))
    tok_loss = np.zeros(n)
    sel = targets >= 0
    tok_loss[sel] = lse[sel] - logits[np.arange(n)[sel], targets[sel]]
    n_loss = int(sel.sum())
    loss = tok_loss.sum() / n_loss
    if not want_grads:
        return loss, tok_loss, None
    grads = {}
    p = np.exp(logits - lse[:, None])
    p[np.arange(n)[sel], targets[sel]] -= 1.0
    p[~sel] = 0.0
    dhf = (p / n_loss) @ E
    dx = layernorm_bwd(dhf, W["output_norm.weight"], nf)

    def proj_bwd(l, m, dy, xin, la):
        A, B = LO[(l, m)]
        dla = SCALE * (dy @ B)
        grads[(l, m)] = (dla.T @ xin, dy.T @ la)
        return dy @ weight(l, m)[0] + dla @ A

    for l in reversed(range(L)):
        c = caches[l]
        du = proj_bwd(l, "down", dx, c["u"], c["la_down"])
        dg = du * gelu_grad(c["g"])
        dh2 = proj_bwd(l, "up", dg, c["h2"], c["la_up"])
        dxm = dx + layernorm_bwd(dh2, W[f"blk.{l}.ffn_norm.weight"], c["n2"])
        datt = proj_bwd(l, "o", dxm, c["att"], c["la_o"]).reshape(n, NH, HD)
        q, k, v, P = c["q"], c["k"], c["v"], c["P"]
        dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
        for h in range(NH):
            p = P[h]
            dP = datt[:, h, :] @ v[:, h, :].T
            dv[:, h, :] = p.T @ datt[:, h, :]
            dS = p * (dP - (dP * p).sum(-1, keepdims=True))
            dq[:, h, :] = dS @ k[:, h, :] * sc
            dk[:, h, :] = dS.T @ q[:, h, :] * sc
        dh1 = (proj_bwd(l, "q", dq.reshape(n, D), c["h1"], c["la_q"]) +
               proj_bwd(l, "k", dk.reshape(n, D), c["h1"], c["la_k"]) +
               proj_bwd(l, "v", dv.reshape(n, D), c["h1"], c["la_v"]))
        dx = dxm + layernorm_bwd(dh1, W[f"blk.{l}.attn_norm.weight"], c["n1"])
    return loss, tok_loss, grads


def write_case(out, stem, w, lora, grads, config, batch, lens, loss, tok_loss, worst):
    tokens, targets, pos, seg = batch
    blobs, index, off = [], {}, 0

    def add(name, arr):
        nonlocal off
        a = np.ascontiguousarray(arr, dtype="<f4")
        index[name] = {"offset": off, "shape": list(a.shape)}
        blobs.append(a.tobytes())
        off += a.nbytes

    for k in sorted(w):
        add(k, w[k])
    for (l, m), (a, b) in sorted(lora.items()):
        add(f"lora.{l}.{m}.A", a)
        add(f"lora.{l}.{m}.B", b)
    for (l, m), (a, b) in sorted(grads.items()):
        add(f"grad.{l}.{m}.A", a)
        add(f"grad.{l}.{m}.B", b)
    doc = {"format": "twin-train-golden-1", "generator": "tools/gen_train_golden.py",
           "config": config,
           "batch": {"tokens": tokens.tolist(), "targets": targets.tolist(),
                     "pos": pos.tolist(), "seg": seg.tolist(), "lens": lens},
           "loss": loss, "tok_loss": tok_loss.tolist(), "fd_worst_rel": worst,
           "bin": f"{stem}.bin", "tensors": index}
    with open(os.path.join(out, f"{stem}.bin"), "wb") as f:
        for b in blobs:
            f.write(b)
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main_gpt2(out):
    w, lora, tokens, targets, pos, seg, lens = make_gpt2()
    batch = (tokens, targets, pos, seg)
    loss, tok_loss, grads = loss_and_grads_gpt2(w, lora, *batch)
    worst = fd_check(w, lora, batch, grads, np.random.default_rng(8), loss_and_grads_gpt2)
    print(f"gpt2: loss {loss:.9f}; finite differences vs backward: worst relative error {worst:.2e}")
    if worst > 1e-6:
        sys.exit("the numpy gpt2 backward disagrees with finite differences: not writing")
    config = {"arch": "gpt2", "n_vocab": V, "n_embd": D, "n_layer": L, "n_head": NH,
              "n_kv_head": NH, "head_dim": HD, "n_ff": G_FF, "n_ctx": G_CTX, "norm_eps": EPS,
              "rank": R, "alpha": ALPHA, "modules": G_MODULES}
    write_case(out, "tiny-gpt2", w, lora, grads, config, batch, lens, loss, tok_loss, worst)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/train"
    os.makedirs(out, exist_ok=True)
    main_gpt2(out)
    w, lora, tokens, targets, pos, seg, lens = make()
    batch = (tokens, targets, pos, seg)
    loss, tok_loss, grads = loss_and_grads(w, lora, *batch)
    worst = fd_check(w, lora, batch, grads, np.random.default_rng(7))
    print(f"loss {loss:.9f}; finite differences vs backward: worst relative error {worst:.2e}")
    if worst > 1e-6:
        sys.exit("the numpy backward disagrees with finite differences: not writing")
    blobs, index, off = [], {}, 0

    def add(name, arr):
        nonlocal off
        a = np.ascontiguousarray(arr, dtype="<f4")
        index[name] = {"offset": off, "shape": list(a.shape)}
        blobs.append(a.tobytes())
        off += a.nbytes

    for k in sorted(w):
        add(k, w[k])
    for (l, m), (a, b) in sorted(lora.items()):
        add(f"lora.{l}.{m}.A", a)
        add(f"lora.{l}.{m}.B", b)
    for (l, m), (a, b) in sorted(grads.items()):
        add(f"grad.{l}.{m}.A", a)
        add(f"grad.{l}.{m}.B", b)
    doc = {"format": "twin-train-golden-1", "generator": "tools/gen_train_golden.py",
           "config": {"n_vocab": V, "n_embd": D, "n_layer": L, "n_head": NH, "n_kv_head": NKV,
                      "head_dim": HD, "n_ff": FF, "rope_theta": THETA, "norm_eps": EPS,
                      "rank": R, "alpha": ALPHA, "modules": MODULES},
           "batch": {"tokens": tokens.tolist(), "targets": targets.tolist(),
                     "pos": pos.tolist(), "seg": seg.tolist(), "lens": lens},
           "loss": loss, "tok_loss": tok_loss.tolist(), "fd_worst_rel": worst,
           "bin": "tiny-llama.bin", "tensors": index}
    with open(os.path.join(out, "tiny-llama.bin"), "wb") as f:
        for b in blobs:
            f.write(b)
    with open(os.path.join(out, "tiny-llama.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
