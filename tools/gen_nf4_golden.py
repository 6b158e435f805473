#!/usr/bin/env python3
"""gen_nf4_golden.py: golden data for engine/nf4.c from an independent numpy implementation of
NF4 with double quantization, written from the QLoRA paper (Dettmers et al. 2023, section 3)
and the behaviour of bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64,
compress_statistics=True) as its source defines it (functional.py, csrc/kernels.cu).

bitsandbytes itself is not used: it needs torch, which is not installed here (and its CUDA
wheel is gigabytes); everything below is numpy + the Python standard library:
  - the 16 NF4 values from the paper's construction with statistics.NormalDist().inv_cdf (not
    the C code's inverse CDF), checked against bitsandbytes' published table;
  - 4-bit codes as "number of midpoints strictly below x/absmax" (the same decision the
    kernel's comparison tree makes, computed another way);
  - the signed 8-bit dynamic map (create_dynamic_map) in float32, with torch.linspace's float32
    rule; the absmax codes by bitsandbytes' binary search (dQuantize<0>), checked against the
    plain nearest value (they agree except at exact ties).

Usage: python3 tools/gen_nf4_golden.py tests/data/nf4
Output: nf4.golden.bin (little-endian), layout:
  "NF4G" u32 version=1 u32 n_cases
  f32[16] nf4 values (from the construction)  f32[256] dynamic map
  per case: u32 n, u32 double_quant, u32 stored (1: the input and the dequantized values are
            in the file; 0: the input is synth_input(n) and only the codes and statistics are),
            [f32[n] input], u8[ceil(n/2)] packed codes,
            then with double quant: f32 offset, u32 n_blocks2, f32[n_blocks2] absmax2,
                                    u8[n_blocks] qabsmax
            without:                f32[n_blocks] absmax
            f32[n_blocks] dequantized absmax, [f32[n] dequantized values]
"""
import os
import statistics
import struct
import sys

import numpy as np

F = np.float32

PUBLISHED_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]

# The midpoints bitsandbytes' dQuantizeNF4 compares with (strict '>').
MIDPOINTS = np.array([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=F)


def linspace_f32(start, end, steps):
    """torch.linspace in float32 on the CPU: first half up from start, second half down from end."""
    start, end = F(start), F(end)
    step = F((end - start) / F(steps - 1))
    half = steps // 2
    out = np.empty(steps, dtype=F)
    for i in range(steps):
        out[i] = F(start + F(step * F(i))) if i < half else F(end - F(step * F(steps - 1 - i)))
    return out


def nf4_values():
    nd = statistics.NormalDist()
    offset = 0.9677083
    v1 = [nd.inv_cdf(float(p)) for p in linspace_f32(offset, 0.5, 9)[:-1]]
    v3 = [-nd.inv_cdf(float(p)) for p in linspace_f32(offset, 0.5, 8)[:-1]]
    v = np.sort(np.array(v1 + [0.0] + v3, dtype=np.float64).astype(F))
    v = (v / v.max()).astype(F)
    pub = np.array(PUBLISHED_NF4, dtype=F)
    assert np.max(np.abs(v - pub)) <= 2e-7, (v, pub)
    return v


def dynamic_map():
    data = []
    for i in range(7):
        bnd = linspace_f32(0.1, 1.0, 2 ** i + 1)
        means = ((bnd[:-1] + bnd[1:]) / F(2.0)).astype(F)
        scale = F(10.0 ** (i - 6))
        data += list((scale * means).astype(F))
        data += list((-scale * means).astype(F))
    data += [F(0.0), F(1.0)]
    assert len(data) == 256
    return np.sort(np.array(data, dtype=F))


def map_quantize(code, x):
    """bitsandbytes' dQuantize<0> (binary search, then the nearest of the last candidates)."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = F(-1.0), F(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower, pivot = pivot, val, pivot + i
        else:
            upper_pivot, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > F((upper + val) * F(0.5)) else pivot
    return lower_pivot if x < F((lower + val) * F(0.5)) else pivot


def quantize(x, double_quant, nf4, dmap):
    n = len(x)
    nb = (n + 63) // 64
    absmax = np.zeros(nb, dtype=F)
    codes = np.zeros(n, dtype=np.uint8)
    for b in range(nb):
        blk = x[b * 64:(b + 1) * 64]
        am = F(np.max(np.abs(blk)))
        absmax[b] = am
        if am == 0:
            codes[b * 64:b * 64 + len(blk)] = 7  # the exact 0 (nf4.h: differs from bnb's NaN path)
            continue
        with np.errstate(over="ignore"):
            inv = F(F(1.0) / am)
            y = (blk * inv).astype(F)
        codes[b * 64:b * 64 + len(blk)] = np.sum(y[:, None] > MIDPOINTS[None, :], axis=1)
    padded = np.zeros(nb * 64 + 1, dtype=np.uint8)
    padded[:n] = codes
    packed = ((padded[0:(n + 1) // 2 * 2:2] << 4) | padded[1:(n + 1) // 2 * 2:2]).astype(np.uint8)
    res = {"packed": packed, "codes": codes}
    if double_quant:
        offset = F(np.mean(absmax.astype(np.float64)))
        centered = (absmax - offset).astype(F)
        nb2 = (nb + 255) // 256
        absmax2 = np.zeros(nb2, dtype=F)
        q = np.zeros(nb, dtype=np.uint8)
        zero = int(np.where(dmap == 0)[0][0])
        agree = 0
        for b2 in range(nb2):
            blk = centered[b2 * 256:(b2 + 1) * 256]
            am2 = F(np.max(np.abs(blk)))
            absmax2[b2] = am2
            for j, v in enumerate(blk):
                if am2 == 0:
                    q[b2 * 256 + j] = zero
                    continue
                y = F(v * F(F(1.0) / am2))
                c = map_quantize(dmap, y)
                q[b2 * 256 + j] = c
                agree += int(c == int(np.argmin(np.abs(dmap.astype(np.float64) - float(y)))))
        assert agree >= nb - 2, (agree, nb)  # the search is the nearest value but for ties
        deq_absmax = np.array([F(F(dmap[q[b]] * absmax2[b // 256]) + offset) for b in range(nb)],
                              dtype=F)
        res.update(offset=offset, absmax2=absmax2, qabsmax=q)
    else:
        deq_absmax = absmax
        res.update(absmax=absmax)
    res["deq_absmax"] = deq_absmax
    res["deq"] = np.array([F(nf4[codes[i]] * deq_absmax[i // 64]) for i in range(n)], dtype=F)
    return res


def hash32(i):
    """lowbias32: the integer hash synth_input is built from (the C test has the same)."""
    x = i & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def synth_input(n):
    """A large input the test recomputes instead of reading: uniform in [-1, 1) on a 2^-23 grid,
    times a power of two that changes per 64-block (2^-4 .. 2^4), every step exact in float32."""
    out = np.empty(n, dtype=F)
    for i in range(n):
        u = F((hash32(i) >> 8) - (1 << 23)) * F(2.0 ** -23)
        out[i] = F(u * F(2.0 ** ((i // 64) % 9 - 4)))
    return out


def cases(rng):
    out = []
    out.append(("one element", F([0.37]), 1))
    out.append(("63 (one short block)", rng.standard_normal(63).astype(F), 1))
    out.append(("64 exactly", rng.standard_normal(64).astype(F), 0))
    out.append(("65 (1-element tail block)", rng.standard_normal(65).astype(F), 1))
    x = rng.standard_normal(257).astype(F) * F(0.02)  # odd count, weight-like scale
    x[64:128] = 0  # an all-zero block
    x[128:192] = 0
    x[150] = F(-3.5)  # a block with a single non-zero value
    x[200] = F(1e30)  # a huge value beside small ones
    x[201] = F(1e-40)  # a subnormal
    out.append(("257 odd with zero, single-value, huge and subnormal", x, 1))
    out.append(("257 without double quantization", x, 0))
    # more than 256 blocks: two double-quantization blocks, the second short
    out.append(("19207: 301 blocks, two absmax2 blocks", synth_input(64 * 300 + 7), 1))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_nf4_golden.py OUT_DIR")
    nf4 = nf4_values()
    dmap = dynamic_map()
    rng = np.random.default_rng(20230523)
    cs = cases(rng)
    buf = bytearray(b"NF4G" + struct.pack("<II", 1, len(cs)))
    buf += nf4.astype("<f4").tobytes() + dmap.astype("<f4").tobytes()
    for name, x, dq in cs:
        r = quantize(x, dq, nf4, dmap)
        stored = 1 if len(x) <= 1000 else 0
        buf += struct.pack("<III", len(x), dq, stored)
        if stored:
            buf += x.astype("<f4").tobytes()
        buf += r["packed"].tobytes()
        if dq:
            buf += struct.pack("<fI", float(r["offset"]), len(r["absmax2"]))
            buf += r["absmax2"].astype("<f4").tobytes() + r["qabsmax"].tobytes()
        else:
            buf += r["absmax"].astype("<f4").tobytes()
        buf += r["deq_absmax"].astype("<f4").tobytes()
        if stored:
            buf += r["deq"].astype("<f4").tobytes()
        print(f"{name}: n={len(x)} dq={dq}", file=sys.stderr)
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(os.path.join(sys.argv[1], "nf4.golden.bin"), "wb") as f:
        f.write(bytes(buf))


if __name__ == "__main__":
    main()
