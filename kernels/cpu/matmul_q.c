/* matmul_q.c: TW_OP_MATMUL for the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with
 * activations quantized to Q8_0/Q8_1 blocks (tw_q8a_block): the integer dot product of each
 * pair of blocks is exact, scaled by dw * dx in fp32 and accumulated in fp32.
 *
 * Tiles (AVX2). Decode (m = 1): a row tile computes the row of x against NR <= 4 weight rows,
 * NR accumulator chains in flight, the weight rows prefetched as they stream from memory.
 * Batches and prefill (m >= 2): a column tile computes up to 8 rows of x against one weight
 * row, decoding each weight block once for the 8 rows; its per-block cost is then little more
 * than the integer products (bench/bench_matmul, Q4_1 m = 8 and 512: ~20% less time than the
 * 4x2 tiles it replaced, which decoded a block per 4 rows and formed the min terms one scalar
 * chain at a time). Every output (i, o) is computed by the same sequence of operations
 * whatever the tile (one accumulator, blocks in order, one fixed horizontal sum, then the min
 * term and the bias), so a row of x gives bit-identical outputs alone or in a batch, and with
 * any thread count.
 *
 * AVX2: a weight block is decoded to 32 bytes (unsigned nibbles for Q4_1/Q5_1, signed values
 * for Q4_0/Q5_0/Q8_0); unsigned x signed byte products go through maddubs (pairs to int16:
 * at most 2 * 31 * 127, no saturation), signed ones through the sign trick (|w| times
 * x * sign(w); |w| <= 128, 2 * 128 * 127 < 2^15), then madd with ones (int32 lanes of 4
 * products), a conversion to fp32 (exact below 2^24) and one fma with dw * dx.
 * Portable C: the same per-block integer sums, accumulated in one fp32 scalar. */
#include "cpu_kernels.h"

#include <omp.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

#define INLINE static inline __attribute__((always_inline))
#define X_GROUP 8 /* rows of x per column tile (the lanes of its min-term vector) */
#ifndef PREFETCH
#define PREFETCH 4096 /* bytes ahead in the weight rows of a matvec: the rows stream from memory */
#endif

/* Block layouts (quant.h, ggml's): bytes per block, and where the quants start. */
static int q_has_min(tw_dtype t) { return t == TW_DTYPE_Q4_1 || t == TW_DTYPE_Q5_1; }

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return tw_f16_to_f32(h);
}

/* The 32 quants of a block as signed integers (Q4_1/Q5_1: 0..31 without the min). */
static void decode_portable(tw_dtype t, const uint8_t *b, int8_t *q) {
    uint32_t qh = 0;
    switch (t) {
    case TW_DTYPE_Q8_0: memcpy(q, b + 2, 32); return;
    case TW_DTYPE_Q4_0:
    case TW_DTYPE_Q4_1: {
        const uint8_t *qs = b + (t == TW_DTYPE_Q4_0 ? 2 : 4);
        int off = t == TW_DTYPE_Q4_0 ? 8 : 0;
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((qs[j] & 0xF) - off);
            q[j + 16] = (int8_t)((qs[j] >> 4) - off);
        }
        return;
    }
    case TW_DTYPE_Q5_0:
    case TW_DTYPE_Q5_1: {
        int o = t == TW_DTYPE_Q5_0 ? 2 : 4, off = t == TW_DTYPE_Q5_0 ? 16 : 0;
        memcpy(&qh, b + o, 4);
        const uint8_t *qs = b + o + 4;
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((qs[j] & 0xF) | (int)((qh >> j) & 1u) << 4) - off);
            q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4) - off);
        }
        return;
    }
    default: TW_ASSERT(!"matmul_q: not a 32-block type");
    }
}

/* Sum over blocks of min * s for output (x row xr, weight row wr): the Q8_1 min term. */
static inline float min_term(const uint8_t *wr, size_t bb, const tw_q8a_block *xr, int64_t nb) {
    float s = 0;
    for (int64_t b = 0; b < nb; b++) s += f16_at(wr + (size_t)b * bb + 2) * xr[b].s;
    return s;
}

/* One tile, portable: y[r * ldy + c] for r < mr, c < nr. xa: mr rows of nb blocks (stride
 * nb); w: nr rows of rb bytes. */
static void tile_portable(tw_dtype t, int mr, int nr, float *y, int64_t ldy,
                          const tw_q8a_block *xa, const uint8_t *w, size_t rb, size_t bb,
                          int64_t nb, const float *bias) {
    float acc[4][4] = {{0}};
    int8_t wq[4][32];
    for (int64_t b = 0; b < nb; b++) {
        float dw[4];
        for (int c = 0; c < nr; c++) {
            const uint8_t *blk = w + (size_t)c * rb + (size_t)b * bb;
            decode_portable(t, blk, wq[c]);
            dw[c] = f16_at(blk);
        }
        for (int r = 0; r < mr; r++) {
            const tw_q8a_block *xb = xa + r * nb + b;
            for (int c = 0; c < nr; c++) {
                int sumi = 0;
                for (int j = 0; j < 32; j++) sumi += wq[c][j] * xb->qs[j];
                acc[r][c] += dw[c] * xb->d * (float)sumi;
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++) {
            float v = acc[r][c];
            if (q_has_min(t)) v += min_term(w + (size_t)c * rb, bb, xa + r * nb, nb);
            y[r * ldy + c] = v + (bias ? bias[c] : 0.0f);
        }
}

#ifdef TW_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* 16 bytes of nibble pairs -> 32 bytes: the low nibbles, then the high ones (quant order). */
AVX2 INLINE __m256i nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, byte j = 0x10 when bit j is set: the fifth bit of Q5 quants. Each
 * byte first gets the byte of the word holding its bit (shuffle), then all other bits are
 * set (or) so that the byte is all ones exactly when its bit was. */
AVX2 INLINE __m256i fifth_bits(const uint8_t *p) {
    uint32_t h;
    memcpy(&h, p, 4);
    const __m256i pick = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                            0x0202020202020202LL, 0x0303030303030303LL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), pick);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFELL));
    v = _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1LL));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The 32 quants of a block: unsigned for Q4_1/Q5_1, signed for the others. */
AVX2 INLINE __m256i decode_avx2(tw_dtype t, const uint8_t *b) {
    switch (t) {
    case TW_DTYPE_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + 2));
    case TW_DTYPE_Q4_0: return _mm256_sub_epi8(nibbles(b + 2), _mm256_set1_epi8(8));
    case TW_DTYPE_Q4_1: return nibbles(b + 4);
    case TW_DTYPE_Q5_0:
        return _mm256_sub_epi8(_mm256_or_si256(nibbles(b + 6), fifth_bits(b + 2)),
                               _mm256_set1_epi8(16));
    default: /* TW_DTYPE_Q5_1 */ return _mm256_or_si256(nibbles(b + 8), fifth_bits(b + 4));
    }
}

/* The fixed horizontal sum of 8 lanes: (lo + hi), then pairs, then the last two. */
AVX2 INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The min term of an output, sum_b mw_b * s_b, is formed as ggml's AVX2 Q4_1/Q5_1 dot products
 * form it: a sequential fp32 sum over the blocks with one fma each, so that the output has
 * llama.cpp's bits (mw: the weight row's mins, s: the x row's Q8_1 sums). The kernels below
 * run several such chains side by side in the lanes of one vector (a lane-wise fma is the
 * scalar fma), which changes no bit.
 *
 * The scales: d * dx of a block is one fp32 product whatever the width it is formed in, and
 * the fp16 -> fp32 widening (F16C) is exact, so converting several scales with one vcvtph2ps
 * and multiplying them together gives each output the same value as one at a time. */

/* The fp16 words at the start of block b of NR weight rows: (d, m) of each row as 8 floats
 * d0 m0 d1 m1 ... (types without a min: the second word is the first quants, unused). */
AVX2 INLINE __m256 scales_avx2(const int NR, const uint8_t *w, size_t rb, size_t boff) {
    uint32_t u[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int c = 0; c < NR; c++) memcpy(&u[c], w + (size_t)c * rb + boff, 4);
    return _mm256_cvtph_ps(_mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]));
}

/* Row tile (decode, m = 1 rows at a time): one row of x against NR <= 4 weight rows, NR
 * accumulators in flight; the weight rows stream from memory, so they are prefetched. The NR
 * min chains run in the lanes of one 128-bit vector. xa: nb blocks of the row. */
AVX2 INLINE void rtile_avx2(tw_dtype t, const int NR, float *y, const tw_q8a_block *xa,
                            const uint8_t *w, size_t rb, size_t bb, int64_t nb,
                            const float *bias) {
    const int sgn = !q_has_min(t);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NR; c++) acc[c] = _mm256_setzero_ps();
    __m128 sm = _mm_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
    for (int64_t b = 0; b < nb; b++) {
        const size_t boff = (size_t)b * bb;
        const tw_q8a_block *xb = xa + b;
        __m256 dm = scales_avx2(NR, w, rb, boff);
        /* lane 2c: dw_c * dx, stored so that each is broadcast by a load, not a shuffle */
        float dd[8];
        _mm256_storeu_ps(dd, _mm256_mul_ps(dm, _mm256_broadcast_ss(&xb->d)));
        __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) {
            const uint8_t *blk = w + (size_t)c * rb + boff;
            _mm_prefetch((const char *)blk + PREFETCH, _MM_HINT_T0);
            __m256i wq = decode_avx2(t, blk);
            __m256i wa = sgn ? _mm256_sign_epi8(wq, wq) : wq;
            __m256i p16 = _mm256_maddubs_epi16(wa, sgn ? _mm256_sign_epi8(xq, wq) : xq);
            __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[c] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&dd[2 * c]), acc[c]);
        }
        if (!sgn) {
            __m128 mw = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, odd));
            sm = _mm_fmadd_ps(mw, _mm_broadcast_ss(&xb->s), sm);
        }
    }
    float s[4];
    _mm_storeu_ps(s, sm);
#pragma GCC unroll 4
    for (int c = 0; c < NR; c++) {
        float v = hsum8(acc[c]);
        if (!sgn) v += s[c];
        y[c] = v + (bias ? bias[c] : 0.0f);
    }
}

/* Column tile (batches and prefill): MR <= 8 rows of x against one weight row, each weight
 * block decoded once for the MR rows, MR accumulators in flight; the MR min chains run in the
 * lanes of one vector. xq: the rows' quants, (nb, MR, 32) (block b of the MR rows side by
 * side: one stream, 32-byte aligned loads; the 40-byte tw_q8a_block put half of them across
 * two cache lines); xst, xdt: the rows' Q8_1 sums and scales transposed, (nb, 8) each (lane r
 * of block b: row r's; 0 past the last row).
 *
 * The scale products dw * dx of a run of DD_RUN blocks are formed first, 8 rows in one vector
 * multiplication per block (lane r: the same fp32 product as a scalar dw * dx_r), and stored;
 * the block loop then broadcasts each back with a load (no ALU work). That leaves the products
 * loop 4 vector ALU operations per row and block for Q4_1 (maddubs, madd, convert, fma) and 5
 * for the signed types (the sign of x), instead of 5 and 6 with one multiplication per row:
 * the loop is bound by those operations (2 vector multipliers, 4 vector pipes). */
#define DD_RUN 16
AVX2 INLINE void ctile_avx2(tw_dtype t, const int MR, float *y, int64_t ldy,
                            const int8_t *xq, const float *xst, const float *xdt,
                            const uint8_t *w, size_t bb, int64_t nb, const float *bias) {
    const int sgn = !q_has_min(t);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r] = _mm256_setzero_ps();
    __m256 sm = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    float dd[DD_RUN * X_GROUP] __attribute__((aligned(32))); /* (DD_RUN, 8): dw_b * dx_{r,b} */
    for (int64_t b0 = 0; b0 < nb; b0 += DD_RUN) {
        const int64_t b1 = b0 + DD_RUN < nb ? b0 + DD_RUN : nb;
        for (int64_t b = b0; b < b1; b++) {
            uint32_t u;
            memcpy(&u, w + (size_t)b * bb, 4);
            __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)u)); /* d, m */
            _mm256_store_ps(dd + (b - b0) * X_GROUP,
                            _mm256_mul_ps(_mm256_broadcastss_ps(dm), _mm256_loadu_ps(xdt + b * X_GROUP)));
            if (!sgn) {
                __m256 mw = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
                sm = _mm256_fmadd_ps(mw, _mm256_loadu_ps(xst + b * X_GROUP), sm);
            }
        }
        for (int64_t b = b0; b < b1; b++) {
            const uint8_t *blk = w + (size_t)b * bb;
            const float *ddb = dd + (b - b0) * X_GROUP;
            _mm_prefetch((const char *)blk + PREFETCH, _MM_HINT_T0);
            __m256i wq = decode_avx2(t, blk);
            __m256i wa = sgn ? _mm256_sign_epi8(wq, wq) : wq;
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                __m256i xv = _mm256_load_si256((const __m256i *)(xq + (b * MR + r) * TW_QK8));
                __m256i p16 = _mm256_maddubs_epi16(wa, sgn ? _mm256_sign_epi8(xv, wq) : xv);
                __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[r] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(ddb + r), acc[r]);
            }
        }
    }
    float s[8];
    _mm256_storeu_ps(s, sm);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        float v = hsum8(acc[r]);
        if (!sgn) v += s[r];
        y[r * ldy] = v + (bias ? *bias : 0.0f);
    }
}

/* Instances: one function per type with a switch over the tile shape, so that each shape is
 * compiled with constant trip counts (the accumulators in registers). */
#define TILES_FN(name, T)                                                                     \
    AVX2 static void name##_r(int nr, float *y, const tw_q8a_block *xa, const uint8_t *w,     \
                              size_t rb, size_t bb, int64_t nb, const float *bias) {          \
        switch (nr) {                                                                         \
        case 1: rtile_avx2(T, 1, y, xa, w, rb, bb, nb, bias); break;                          \
        case 2: rtile_avx2(T, 2, y, xa, w, rb, bb, nb, bias); break;                          \
        case 3: rtile_avx2(T, 3, y, xa, w, rb, bb, nb, bias); break;                          \
        default: rtile_avx2(T, 4, y, xa, w, rb, bb, nb, bias); break;                         \
        }                                                                                     \
    }                                                                                         \
    AVX2 static void name##_c(int mr, float *y, int64_t ldy, const int8_t *xq,                \
                              const float *xst, const float *xdt, const uint8_t *w, size_t bb, \
                              int64_t nb, const float *bias) {                                \
        switch (mr) {                                                                         \
        case 1: ctile_avx2(T, 1, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 2: ctile_avx2(T, 2, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 3: ctile_avx2(T, 3, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 4: ctile_avx2(T, 4, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 5: ctile_avx2(T, 5, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 6: ctile_avx2(T, 6, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        case 7: ctile_avx2(T, 7, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                    \
        default: ctile_avx2(T, 8, y, ldy, xq, xst, xdt, w, bb, nb, bias); break;                   \
        }                                                                                     \
    }
TILES_FN(tiles_q4_0, TW_DTYPE_Q4_0)
TILES_FN(tiles_q4_1, TW_DTYPE_Q4_1)
TILES_FN(tiles_q5_0, TW_DTYPE_Q5_0)
TILES_FN(tiles_q5_1, TW_DTYPE_Q5_1)
TILES_FN(tiles_q8_0, TW_DTYPE_Q8_0)

typedef struct {
    void (*r)(int nr, float *y, const tw_q8a_block *xa, const uint8_t *w, size_t rb, size_t bb,
              int64_t nb, const float *bias);
    void (*c)(int mr, float *y, int64_t ldy, const int8_t *xq, const float *xst,
              const float *xdt, const uint8_t *w, size_t bb, int64_t nb, const float *bias);
} tiles_fns;

static tiles_fns tiles_for(tw_dtype t) {
    switch (t) {
    case TW_DTYPE_Q4_0: return (tiles_fns){tiles_q4_0_r, tiles_q4_0_c};
    case TW_DTYPE_Q4_1: return (tiles_fns){tiles_q4_1_r, tiles_q4_1_c};
    case TW_DTYPE_Q5_0: return (tiles_fns){tiles_q5_0_r, tiles_q5_0_c};
    case TW_DTYPE_Q5_1: return (tiles_fns){tiles_q5_1_r, tiles_q5_1_c};
    default: return (tiles_fns){tiles_q8_0_r, tiles_q8_0_c};
    }
}

/* Q8_0/Q8_1 activation blocks with AVX2, bit-identical to the portable quantizer: the same
 * amax, the same fp32 id = 127/amax, the same products and round-to-nearest-even, and an
 * exact integer sum. */
AVX2 void tw_cpu_quantize_q8a_avx2(const float *x, tw_q8a_block *y, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / TW_QK8; b++, x += TW_QK8) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++)
            q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], vid),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        int sum = _mm_cvtsi128_si32(s4);
        /* int32 -> int8 in element order: packs interleave the 128-bit halves, the permute
         * puts them back. */
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
        y[b].d = _cvtsh_ss(_cvtss_sh(d, 0));
        y[b].s = _cvtsh_ss(_cvtss_sh(d * (float)sum, 0));
    }
}
#else
void tw_cpu_quantize_q8a_avx2(const float *x, tw_q8a_block *y, int64_t k) {
    tw_cpu_quantize_q8a_portable(x, y, k);
}
#endif

void tw_cpu_quantize_q8a(const float *x, tw_q8a_block *y, int64_t k) {
#ifdef TW_X86
    if (tw_cpu_has_avx2_fma()) {
        tw_cpu_quantize_q8a_avx2(x, y, k);
        return;
    }
#endif
    tw_cpu_quantize_q8a_portable(x, y, k);
}

/* Output rows per OpenMP work item: a multiple of the row tile's 4, small enough to balance
 * two to sixteen threads on the smallest matrices (192 rows). */
#define O_CHUNK 16

tw_status tw_cpu_matmul_q(float *y, const float *x, const void *w, tw_dtype t, const float *bias,
                          int64_t m, int64_t k, int64_t n_out, int force_portable) {
    int64_t nb = k / TW_QK8, ng = (m + X_GROUP - 1) / X_GROUP;
    size_t rb = tw_dtype_row_bytes(t, k), bb = tw_dtype_type_size(t);
    int nt = tw_threads_get();
    /* Scratch, one allocation: the activation blocks xa (m, k/32); their Q8_1 sums and scales
     * transposed per group of X_GROUP rows, xst and xdt (ng, k/32, X_GROUP) each, zero past
     * row m; for the column tiles (m >= 2) the quants of each group, xq (ng, k/32, rows of the
     * group, 32), 32-byte aligned (group g at g * X_GROUP * k bytes). */
    const size_t ntr = (size_t)(ng * nb * X_GROUP);
    const size_t xa_bytes = (size_t)(m * nb) * sizeof(tw_q8a_block);
    const size_t xq_bytes = m >= 2 ? (size_t)(ng * X_GROUP * k) + 32 : 0;
    uint8_t *scratch = tw_malloc(xa_bytes + 2 * ntr * sizeof(float) + xq_bytes);
    if (!scratch)
        return tw_error_wrap("matmul: activation blocks for %lld x %lld", (long long)m,
                             (long long)k);
    tw_q8a_block *xa = (tw_q8a_block *)scratch;
    float *xst = (float *)(scratch + xa_bytes), *xdt = xst + ntr;
    int8_t *xq = (int8_t *)(((uintptr_t)(xdt + ntr) + 31) & ~(uintptr_t)31);
    int avx2 = 0;
#ifdef TW_X86
    avx2 = !force_portable && tw_cpu_has_avx2_fma();
    tiles_fns tiles = tiles_for(t);
#endif
    /* Quantize the rows of x (in parallel when there are many). */
#pragma omp parallel for schedule(static) num_threads(nt) if (m >= 16)
    for (int64_t i = 0; i < m; i++) {
        if (avx2)
            tw_cpu_quantize_q8a_avx2(x + i * k, xa + i * nb, k);
        else
            tw_cpu_quantize_q8a_portable(x + i * k, xa + i * nb, k);
        int64_t g = i / X_GROUP, r = i % X_GROUP;
        int64_t mr = m - g * X_GROUP < X_GROUP ? m - g * X_GROUP : X_GROUP;
        size_t at = (size_t)(g * nb * X_GROUP + r);
        for (int64_t b = 0; b < nb; b++) {
            xst[at + (size_t)b * X_GROUP] = xa[i * nb + b].s;
            xdt[at + (size_t)b * X_GROUP] = xa[i * nb + b].d;
            if (xq_bytes)
                memcpy(xq + g * X_GROUP * k + (b * mr + r) * TW_QK8, xa[i * nb + b].qs, TW_QK8);
        }
    }
    for (int64_t i = m; i < ng * X_GROUP; i++)
        for (int64_t b = 0; b < nb; b++) {
            size_t at = (size_t)(((i / X_GROUP) * nb + b) * X_GROUP + i % X_GROUP);
            xst[at] = 0, xdt[at] = 0;
        }
    int64_t nchunks = (n_out + O_CHUNK - 1) / O_CHUNK;
    const uint8_t *wb = w;
    /* Weight rows per row tile of a matvec. Q8_0: one, a single stream through memory; its
     * 34-byte blocks keep the row's one accumulator chain ahead of the memory (SmolLM2 Q8_0
     * decode, tg128: 64 -> 87 tok/s at 1 thread, 94 -> 130 at 2, with 4 rows). The 4-bit
     * types: four, whose four chains hide the latency the shorter blocks expose (Q4_1 at 1
     * thread: 97 tok/s with 4 rows, 70 with 1). */
    const int nr_dec = t == TW_DTYPE_Q8_0 ? 1 : 4;
#pragma omp parallel for schedule(static) num_threads(nt) if (nchunks > 1 && m * n_out * k >= 65536)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t o0 = ch * O_CHUNK, o1 = o0 + O_CHUNK < n_out ? o0 + O_CHUNK : n_out;
        if (!avx2) {
            const int MR = m == 1 ? 1 : 4, NR = m == 1 ? 4 : 2;
            for (int64_t i = 0; i < m; i += MR) {
                int mr = m - i < MR ? (int)(m - i) : MR;
                for (int64_t o = o0; o < o1;) {
                    int nr = o1 - o >= NR ? NR : o1 - o >= 2 ? 2 : 1;
                    tile_portable(t, mr, nr, y + i * n_out + o, n_out, xa + i * nb,
                                  wb + (size_t)o * rb, rb, bb, nb, bias ? bias + o : NULL);
                    o += nr;
                }
            }
            continue;
        }
#ifdef TW_X86
        if (m == 1) {
            for (int64_t o = o0; o < o1; o += nr_dec) {
                int nr = o1 - o >= nr_dec ? nr_dec : (int)(o1 - o);
                tiles.r(nr, y + o, xa, wb + (size_t)o * rb, rb, bb, nb, bias ? bias + o : NULL);
            }
            continue;
        }
        for (int64_t g = 0; g < ng; g++) {
            int mr = m - g * X_GROUP < X_GROUP ? (int)(m - g * X_GROUP) : X_GROUP;
            for (int64_t o = o0; o < o1; o++)
                tiles.c(mr, y + g * X_GROUP * n_out + o, n_out, xq + g * X_GROUP * k,
                        xst + g * nb * X_GROUP, xdt + g * nb * X_GROUP, wb + (size_t)o * rb, bb, nb,
                        bias ? bias + o : NULL);
        }
#endif
    }
    tw_free(scratch);
    return TW_OK;
}
