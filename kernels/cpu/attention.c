/* attention.c: the optimized CPU kernels of TW_OP_KV_WRITE and TW_OP_ATTENTION (kernels.h).
 *
 * Attention, AVX2: tokens whose sequence has >= 2 tokens in the call (a prompt chunk) go in
 * tiles of consecutive tokens of one sequence, one task per (tile, kv head): the tile's K and
 * V rows are converted once and all of its query rows (tokens x heads of the group) are
 * served by two register-blocked products (attend_tile_avx2). Other tokens (decode steps) go
 * to attend_avx2, which serves up to three query heads of a group from each K/V row it loads:
 * one task per token for all its kv heads when there are at least two such tokens per thread
 * (the token's K/V slots, every kv head's rows side by side, are then read in one pass, and
 * prefetched), else one per (token, kv head), or one per query head when even those are too
 * few for the threads. OpenMP over tasks; both compute llama.cpp's arithmetic (below),
 * so the tiles change no bit: a token's result does not depend on its tile, its batch or the
 * thread count.
 * Portable C: one task per (token, kv head), an online softmax in fp32 (a running maximum m, a
 * running sum l and an unnormalized output o; a new score above m rescales l and o by
 * expf(m - s)). Precision: fp32 dot products of head_dim terms, exponentials within 2 ulp,
 * sums of up to tok_pos + 1 terms, and with an f16 cache the f16 rounding of q and of the
 * weights (AVX2): the tests derive their bound from these. */
#include "cpu_kernels.h"
#include "simd_avx2.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
/* n floats to f16 with F16C: round to nearest even, NaN kept quiet with its top payload bits,
 * the bits of tw_f32_to_f16 (the tests compare the caches with memcmp). */
TW_AVX2 static void f32_to_f16_row_avx2(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = tw_f32_to_f16(src[i]);
}
#endif

void tw_cpu_kv_write(void *k_cache, void *v_cache, tw_dtype ct, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tok, int64_t n_kv_head, int64_t head_dim) {
    int64_t row = n_kv_head * head_dim;
    int par = n_tok > 1 && n_tok * row >= 65536, f16c = 0;
#if defined(__x86_64__) || defined(__i386__)
    f16c = tw_cpu_has_avx2_fma(); /* F16C: on every AVX2 CPU (as the attention kernels assume) */
#endif
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t t = 0; t < n_tok; t++) {
        int64_t dst = (int64_t)slots[t] * row;
        if (ct == TW_DTYPE_F16) {
            uint16_t *kc = (uint16_t *)k_cache + dst, *vc = (uint16_t *)v_cache + dst;
#if defined(__x86_64__) || defined(__i386__)
            if (f16c) {
                f32_to_f16_row_avx2(kc, k + t * row, row);
                f32_to_f16_row_avx2(vc, v + t * row, row);
                continue;
            }
#endif
            for (int64_t i = 0; i < row; i++) {
                kc[i] = tw_f32_to_f16(k[t * row + i]);
                vc[i] = tw_f32_to_f16(v[t * row + i]);
            }
        } else {
            memcpy((float *)k_cache + dst, k + t * row, (size_t)row * sizeof(float));
            memcpy((float *)v_cache + dst, v + t * row, (size_t)row * sizeof(float));
        }
    }
}

#define MAX_GROUP 16 /* query heads per kv head served together; larger groups are split */

/* One cache row (head_dim) of kv head kh at `slot` as fp32 into buf (f16 caches), or a
 * pointer into the cache (f32 caches). */
static const float *cache_row(const void *cache, tw_dtype ct, int64_t slot, int64_t kh,
                              const tw_attn_shape *s, float *buf) {
    int64_t at = (slot * s->n_kv_head + kh) * s->head_dim;
    if (ct == TW_DTYPE_F32) return (const float *)cache + at;
    const uint16_t *h = (const uint16_t *)cache + at;
    for (int64_t i = 0; i < s->head_dim; i++) buf[i] = tw_f16_to_f32(h[i]);
    return buf;
}

/* Heads h0 .. h0 + ng - 1 (all of kv head kh) of token t. */
static void attend(float *out, const float *q, const void *k_cache, const void *v_cache,
                   const int32_t *bt, int64_t len, int64_t t, int64_t kh, int64_t h0, int64_t ng,
                   const tw_attn_shape *s) {
    int64_t d = s->head_dim;
    float o[MAX_GROUP][1024], kbuf[1024], vbuf[1024];
    float m[MAX_GROUP], l[MAX_GROUP];
    for (int64_t g = 0; g < ng; g++) {
        m[g] = -INFINITY;
        l[g] = 0;
        memset(o[g], 0, (size_t)d * sizeof(float));
    }
    for (int64_t j = 0; j < len; j++) {
        int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
        const float *kr = cache_row(k_cache, s->ct, slot, kh, s, kbuf); /* (head_dim) */
        const float *vr = cache_row(v_cache, s->ct, slot, kh, s, vbuf); /* (head_dim) */
        for (int64_t g = 0; g < ng; g++) {
            const float *qr = q + (t * s->n_head + h0 + g) * d; /* (head_dim) */
            float dot = 0;
            for (int64_t i = 0; i < d; i++) dot += qr[i] * kr[i];
            float sc = dot * s->scale, p;
            if (sc > m[g]) {
                float r = expf(m[g] - sc); /* 0 for the first position (m = -inf) */
                l[g] *= r;
                for (int64_t i = 0; i < d; i++) o[g][i] *= r;
                m[g] = sc;
                p = 1.0f;
            } else {
                p = expf(sc - m[g]);
            }
            l[g] += p;
            for (int64_t i = 0; i < d; i++) o[g][i] += p * vr[i];
        }
    }
    for (int64_t g = 0; g < ng; g++) {
        float *orow = out + (t * s->n_head + h0 + g) * d; /* (head_dim) */
        float inv = 1.0f / l[g];
        for (int64_t i = 0; i < d; i++) orow[i] = o[g][i] * inv;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define AVX2 TW_AVX2


/* A cache row as fp32: a pointer into an f32 cache, or converted (F16C) into buf; the tail
 * past a multiple of 8 elements is converted one by one. */
AVX2 static const float *cache_row_avx2(const void *cache, tw_dtype ct, int64_t slot, int64_t kh,
                                        const tw_attn_shape *s, float *buf) {
    int64_t at = (slot * s->n_kv_head + kh) * s->head_dim, d = s->head_dim, i = 0;
    if (ct == TW_DTYPE_F32) return (const float *)cache + at;
    const uint16_t *h = (const uint16_t *)cache + at;
    for (; i + 8 <= d; i += 8)
        _mm256_storeu_ps(buf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < d; i++) buf[i] = _cvtsh_ss(h[i]);
    return buf;
}

/* ---- AVX2: llama.cpp's arithmetic ----------------------------------------------------------
 *
 * A 135M model turns a difference of one ulp in attention into different greedy tokens a few
 * dozen steps later, so the AVX2 kernel computes what llama.cpp's CPU backend computes (its
 * attention without flash attention, which is what the golden data of tests/data/llama/ were
 * made with), bit for bit:
 *   - with an f16 cache, q is rounded to f16 (the K.Q product runs in f16 x f16 there) and so
 *     are the normalized softmax weights (the V product likewise); an f32 cache rounds nothing;
 *   - scores: s_j = (q . k_j) * scale; m = max_j s_j; e_j = tw_exp8(s_j - m) (ggml's expf);
 *     sum = fp64 sum over groups of 8 positions of their fp32 8-lane sums; p_j = e_j * (float)
 *     (1 / sum) (a normalized softmax, not an online one);
 *   - both products (q . k_j over head_dim, sum_j p_j v_j over positions) are summed in one of
 *     the two orders of ggml's kernels: BATCH (tinyBLAS, which llama.cpp uses when the batch
 *     has >= 2 tokens): one chain per lane (term index % 8, fma in index order), then
 *     ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)); SINGLE (ggml_vec_dot, one token): one
 *     chain per index % 32, then with y_l = (c_l + c_16+l) + (c_8+l + c_24+l) and t_k = y_k +
 *     y_k+4: (t0 + t1) + (t2 + t3), plus the terms past a multiple of 32 in fp64.
 * A token uses BATCH when its sequence has two or more tokens in the call (a prompt chunk) and
 * SINGLE otherwise (a decode step): the choice depends on the token's own sequence only, so a
 * sequence gets the same bits alone and in any batch. (llama.cpp decides by the size of the
 * whole batch; the two agree for one sequence, which is what the golden data hold.) Positions
 * a query does not see contribute exact zeros in llama.cpp, so they are simply skipped here.
 * BATCH needs head_dim % 8 == 0 for q . k (as tinyBLAS does); otherwise q . k uses SINGLE. */

/* A query row as the products read it: d floats of src, rounded to f16 and back when f16
 * (the K.Q product of an f16 cache runs in f16 x f16 in llama.cpp), into dst. */
AVX2 static inline void q_row_avx2(float *dst, const float *src, int64_t d, int f16) {
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i);
        if (f16) x = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_ps(dst + i, x);
    }
    for (; i < d; i++) dst[i] = f16 ? _cvtsh_ss(_cvtss_sh(src[i], 0)) : src[i];
}

/* tinyBLAS's horizontal sum of one 8-lane chain vector. */
AVX2 static inline float hsum_batch(__m256 c) {
    __m128 t = _mm_add_ps(_mm256_extractf128_ps(c, 1), _mm256_castps256_ps128(c));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

/* ggml_vec_dot's reduction of its four 8-lane chain vectors. */
AVX2 static inline float hsum_single(__m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    x0 = _mm256_add_ps(x0, x2);
    x1 = _mm256_add_ps(x1, x3);
    x0 = _mm256_add_ps(x0, x1);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1));
    t = _mm_hadd_ps(t, t);
    return _mm_cvtss_f32(_mm_hadd_ps(t, t));
}

/* q . k over d terms in the given order (q already rounded as the cache type asks). */
AVX2 static inline float dot_ordered(const float *q, const float *k, int64_t d, int batch) {
    if (batch && d % 8 == 0) {
        __m256 c = _mm256_setzero_ps();
        for (int64_t i = 0; i < d; i += 8) c = _mm256_fmadd_ps(_mm256_loadu_ps(k + i), _mm256_loadu_ps(q + i), c);
        return hsum_batch(c);
    }
    __m256 x[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t np = d / 32 * 32, i = 0;
    for (; i < np; i += 32)
        for (int a = 0; a < 4; a++)
            x[a] = _mm256_fmadd_ps(_mm256_loadu_ps(k + i + 8 * a), _mm256_loadu_ps(q + i + 8 * a), x[a]);
    double s = hsum_single(x[0], x[1], x[2], x[3]);
    for (; i < d; i++) s += (double)(k[i] * q[i]);
    return (float)s;
}

/* BATCH-order dot products of q with 4 K rows at once (4 independent chains, each in the
 * order dot_ordered uses). d % 8 == 0. */
AVX2 static inline void dot4_batch(const float *q, const float *k0, const float *k1,
                                   const float *k2, const float *k3, int64_t d, float *out) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t i = 0; i < d; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(k0 + i), qv, c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(k1 + i), qv, c1);
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(k2 + i), qv, c2);
        c3 = _mm256_fmadd_ps(_mm256_loadu_ps(k3 + i), qv, c3);
    }
    out[0] = hsum_batch(c0), out[1] = hsum_batch(c1), out[2] = hsum_batch(c2), out[3] = hsum_batch(c3);
}

/* Scores to softmax weights in place, llama.cpp's way (above): sg: (len) scores in, weights
 * out (rounded to f16 when f16). */
AVX2 static void softmax_weights_avx2(float *sg, int64_t len, int f16) {
    /* m = the largest score, NaN skipped (max_ps(x, m) returns m when x is NaN; equal zeros
     * of either sign may give either zero, which changes no s - m and no e^(s - m)). */
    float m = -INFINITY;
    int64_t j = 0;
    if (len >= 8) {
        __m256 m8 = _mm256_set1_ps(-INFINITY);
        for (; j + 8 <= len; j += 8) m8 = _mm256_max_ps(_mm256_loadu_ps(sg + j), m8);
        float l8[8];
        _mm256_storeu_ps(l8, m8);
        for (int l = 0; l < 8; l++) m = l8[l] > m ? l8[l] : m;
    }
    for (; j < len; j++) m = sg[j] > m ? sg[j] : m;
    double sum = 0;
    __m256 vm = _mm256_set1_ps(m);
    for (j = 0; j + 8 <= len; j += 8) {
        __m256 e = tw_exp8(_mm256_sub_ps(_mm256_loadu_ps(sg + j), vm));
        _mm256_storeu_ps(sg + j, e);
        sum += (double)hsum_batch(e);
    }
    if (j < len) { /* the last group: the positions past len are masked (e = 0) */
        float tmp[8];
        for (int l = 0; l < 8; l++) tmp[l] = j + l < len ? sg[j + l] - m : -INFINITY;
        __m256 e = tw_exp8(_mm256_loadu_ps(tmp));
        _mm256_storeu_ps(tmp, e);
        for (int l = 0; j + l < len; l++) sg[j + l] = tmp[l];
        sum += (double)hsum_batch(e);
    }
    float inv = (float)(1.0 / sum);
    __m256 inv8 = _mm256_set1_ps(inv);
    for (j = 0; j + 8 <= len; j += 8) {
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(sg + j), inv8);
        if (f16) p = _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_ps(sg + j, p);
    }
    for (; j < len; j++) {
        float p = sg[j] * inv;
        sg[j] = f16 ? _cvtsh_ss(_cvtss_sh(p, 0)) : p; /* round to nearest even, as F16C does */
    }
}

/* The 8x8 transpose of r[0..7] in place (moves only). */
AVX2 static inline void transpose8x8_ps(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* 8 elements of a cache row from element i: f16 (converted, exact) or f32. */
#define LD8(row, i, F16)                                                                      \
    ((F16) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(row) + (i)))) \
           : _mm256_loadu_ps((const float *)(row) + (i)))

/* SINGLE-order q . k_j of NG <= 3 heads (qh[0..NG-1]) for 8 cache rows k[0..7] (f16 when
 * F16, else f32) at once, d % 32 == 0 (no fp64 tail): lane p of sc[g] is dot_ordered(qh[g],
 * k[p] as fp32, d, 0). Each K vector is loaded and converted once for the NG heads. Each row's
 * four chains and their first sums, s_p = (x0 + x2) + (x1 + x3), are hsum_single's; the rest
 * of hsum_single, t_k = s[k] + s[k + 4] then (t0 + t1) + (t2 + t3), runs on the transposed s
 * vectors (lane p: row p), so the additions and their operands are the same and so are the
 * bits; the transpose replaces eight hadd pairs. */
AVX2 static inline __attribute__((always_inline)) void dot8_single(const float (*qh)[1024],
                                                                 const void *const *k, int64_t d,
                                                                 __m256 *sc, const int NG,
                                                                 const int F16) {
    __m256 sv[3][8];
    for (int p = 0; p < 8; p++) {
        __m256 x[3][4];
        for (int g = 0; g < NG; g++)
            for (int a = 0; a < 4; a++) x[g][a] = _mm256_setzero_ps();
        const void *kr = k[p];
        for (int64_t i = 0; i < d; i += 32) {
            __m256 k4[4];
            for (int a = 0; a < 4; a++) k4[a] = LD8(kr, i + 8 * a, F16);
            for (int g = 0; g < NG; g++)
                for (int a = 0; a < 4; a++)
                    x[g][a] = _mm256_fmadd_ps(k4[a], _mm256_loadu_ps(qh[g] + i + 8 * a), x[g][a]);
        }
        for (int g = 0; g < NG; g++)
            sv[g][p] = _mm256_add_ps(_mm256_add_ps(x[g][0], x[g][2]), _mm256_add_ps(x[g][1], x[g][3]));
    }
    for (int g = 0; g < NG; g++) {
        transpose8x8_ps(sv[g]); /* sv[g][l] lane p: row p's s[l] */
        __m256 t0 = _mm256_add_ps(sv[g][0], sv[g][4]), t1 = _mm256_add_ps(sv[g][1], sv[g][5]);
        __m256 t2 = _mm256_add_ps(sv[g][2], sv[g][6]), t3 = _mm256_add_ps(sv[g][3], sv[g][7]);
        sc[g] = _mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3));
    }
}

/* SINGLE-order sum_j p_j v_j of NG <= 3 heads (weights sg[g], outputs o[g], d elements, a
 * multiple of 8), v_j cache rows (f16 when F16, else f32): chain l = j % 32 of each element
 * takes the positions j = l, l + 32, ... in order with one fma each, as the chains in memory of
 * attend_avx2's general path do. Here, for 8 elements at a time, the four chains l, l + 8,
 * l + 16, l + 24 of each head run in registers (each V vector loaded and converted once for
 * the NG heads) and are summed at once into ggml_vec_dot's y_l = (c_l + c_16+l) + (c_8+l +
 * c_24+l); the y_l then reduce as ggml_vec_dot reduces them, vectorized over the elements
 * (lane-wise, the same operations). */
AVX2 static inline __attribute__((always_inline)) void pv_single(float *const *o,
                                                               const float *const *sg,
                                                               const void *const *vrow,
                                                               int64_t len, int64_t d,
                                                               const int NG, const int F16) {
    for (int64_t i = 0; i < d; i += 8) {
        __m256 y[3][8];
        for (int l = 0; l < 8; l++) {
            __m256 c[3][4];
            for (int g = 0; g < NG; g++)
                for (int a = 0; a < 4; a++) c[g][a] = _mm256_setzero_ps();
            int64_t j = l;
            for (; j + 24 < len; j += 32)
                for (int a = 0; a < 4; a++) {
                    __m256 v = LD8(vrow[j + 8 * a], i, F16);
                    for (int g = 0; g < NG; g++)
                        c[g][a] = _mm256_fmadd_ps(v, _mm256_broadcast_ss(sg[g] + j + 8 * a), c[g][a]);
                }
            for (int a = 0; j + 8 * a < len && a < 4; a++) {
                __m256 v = LD8(vrow[j + 8 * a], i, F16);
                for (int g = 0; g < NG; g++)
                    c[g][a] = _mm256_fmadd_ps(v, _mm256_broadcast_ss(sg[g] + j + 8 * a), c[g][a]);
            }
            for (int g = 0; g < NG; g++)
                y[g][l] = _mm256_add_ps(_mm256_add_ps(c[g][0], c[g][2]), _mm256_add_ps(c[g][1], c[g][3]));
        }
        for (int g = 0; g < NG; g++) {
            __m256 u0 = _mm256_add_ps(y[g][0], y[g][4]), u1 = _mm256_add_ps(y[g][1], y[g][5]);
            __m256 u2 = _mm256_add_ps(y[g][2], y[g][6]), u3 = _mm256_add_ps(y[g][3], y[g][7]);
            _mm256_storeu_ps(o[g] + i, _mm256_add_ps(_mm256_add_ps(u0, u1), _mm256_add_ps(u2, u3)));
        }
    }
}

/* Prefetch n bytes from r (NULL: nothing) into L1. A decode step's K/V rows come from
 * memory (a layer's cache is read once per step, and all layers' exceed the CPU's caches),
 * and they lie in pages scattered over the cache, a stream a hardware prefetcher loses at
 * each page. (Not a plain static function: GCC then drops its calls as having no effect.) */
AVX2 static inline __attribute__((always_inline)) void prefetch_row(const void *r, size_t n) {
    if (!r) return;
    for (size_t b = 0; b < n; b += 64) _mm_prefetch((const char *)r + b, _MM_HINT_T0);
}

/* The heads g0 .. g0 + NG - 1 of attend_single: scores, softmax, V product. The first heads'
 * pass prefetches pf bytes from each row's start: K 8 positions ahead, V for the product. */
AVX2 static inline __attribute__((always_inline)) void
attend_single_heads(float *out, const float (*qh)[1024], const void *const *krow,
                    const void *const *vrow, float *sc, int64_t len, int64_t t, int64_t h0,
                    int64_t g0, const tw_attn_shape *s, size_t pf, const int NG, const int F16) {
    const int64_t d = s->head_dim;
    const __m256 scale = _mm256_set1_ps(s->scale);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 s8[3];
        if (g0 == 0) /* the first heads' pass brings the rows in: K ahead, V for the product */
            for (int64_t p = j; p < j + 8; p++) {
                prefetch_row(p + 8 < len ? krow[p + 8] : NULL, pf);
                prefetch_row(vrow[p], pf);
            }
        dot8_single(qh + g0, krow + j, d, s8, NG, F16);
        for (int g = 0; g < NG; g++) _mm256_storeu_ps(sc + (g0 + g) * len + j, _mm256_mul_ps(s8[g], scale));
    }
    for (; j < len; j++) { /* the last < 8 positions: dot_ordered on converted rows */
        float kf[1024];
        for (int64_t i = 0; i < d; i += 8) _mm256_storeu_ps(kf + i, LD8(krow[j], i, F16));
        for (int g = 0; g < NG; g++) sc[(g0 + g) * len + j] = dot_ordered(qh[g0 + g], kf, d, 0) * s->scale;
    }
    float *o[3];
    const float *sg[3];
    for (int g = 0; g < NG; g++) {
        float *sgw = sc + (g0 + g) * len;
        softmax_weights_avx2(sgw, len, F16);
        sg[g] = sgw;
        o[g] = out + (t * s->n_head + h0 + g0 + g) * d;
    }
    pv_single(o, sg, vrow, len, d, NG, F16);
}

/* A decode step's token (SINGLE order) with d % 32 == 0: the K and V rows are read from the
 * cache as they are (no fp32 copies: for a long context those overflowed L1 and their stores
 * were half of the kernel's time), each loaded and converted once for up to three heads of the
 * group (a group of 4: 2 + 2; the register file holds the chains of three). work as
 * attend_avx2's. The bits are attend_avx2's general path's (the f16 values convert exactly). */
AVX2 static inline __attribute__((always_inline)) void
attend_single(float *out, const float (*qh)[1024], const void *k_cache, const void *v_cache,
              const int32_t *bt, int64_t len, int64_t t, int64_t kh, int64_t h0, int64_t ng,
              const tw_attn_shape *s, void *work, size_t pf, const int F16) {
    const int64_t d = s->head_dim;
    const void **krow = (const void **)work; /* (len) */
    const void **vrow = krow + len;          /* (len) */
    float *sc = (float *)(vrow + len);       /* (ng, len) */
    const size_t esz = F16 ? 2 : 4, slot_bytes = (size_t)(s->n_kv_head * d) * esz;
    for (int64_t j0 = 0, b = 0; j0 < len; j0 += s->page_size, b++) { /* page by page */
        const size_t at0 = (size_t)((int64_t)bt[b] * s->page_size) * slot_bytes + (size_t)(kh * d) * esz;
        for (int64_t j = j0; j < len && j < j0 + s->page_size; j++) {
            krow[j] = (const char *)k_cache + at0 + (size_t)(j - j0) * slot_bytes;
            vrow[j] = (const char *)v_cache + at0 + (size_t)(j - j0) * slot_bytes;
        }
    }
    for (int64_t g0 = 0; g0 < ng;) {
        int64_t n = ng - g0 == 4 ? 2 : ng - g0 < 3 ? ng - g0 : 3;
        if (n == 3)
            attend_single_heads(out, qh, krow, vrow, sc, len, t, h0, g0, s, pf, 3, F16);
        else if (n == 2)
            attend_single_heads(out, qh, krow, vrow, sc, len, t, h0, g0, s, pf, 2, F16);
        else
            attend_single_heads(out, qh, krow, vrow, sc, len, t, h0, g0, s, pf, 1, F16);
        g0 += n;
    }
}

/* One token t, the ng query heads h0.. of kv head kh. work: (ng, len) scores then weights,
 * (32, head_dim) chain accumulators, (len, head_dim) K and V rows as fp32 (f16 caches). pf:
 * bytes of each K/V row the SINGLE path prefetches (a whole slot when this is the first kv
 * head of a token's task). */
AVX2 static void attend_avx2(float *out, const float *q, const void *k_cache, const void *v_cache,
                             const int32_t *bt, int64_t len, int64_t t, int64_t kh, int64_t h0,
                             int64_t ng, const tw_attn_shape *s, int batch, void *work,
                             size_t pf) {
    const int64_t d = s->head_dim, d8 = d / 8 * 8;
    const int f16 = s->ct == TW_DTYPE_F16;
    const float **krow = (const float **)work; /* (len): pointers first, for their alignment */
    const float **vrow = krow + len;           /* (len) */
    float *sc = (float *)(vrow + len);         /* (ng, len) */
    float *acc = sc + ng * len;                /* (32, d): chain accumulators of sum_j p_j v_j */
    float *kconv = acc + 32 * d;               /* (len, d): K rows as fp32 (f16 caches) */
    float *vconv = kconv + len * d;            /* (len, d): V rows as fp32 (f16 caches) */
    float qh[MAX_GROUP][1024];
    for (int64_t g = 0; g < ng; g++) q_row_avx2(qh[g], q + (t * s->n_head + h0 + g) * d, d, f16);
    if (!batch && d % 32 == 0) { /* F16 a constant in each instance */
        if (f16)
            attend_single(out, (const float(*)[1024])qh, k_cache, v_cache, bt, len, t, kh, h0, ng, s, work, pf, 1);
        else
            attend_single(out, (const float(*)[1024])qh, k_cache, v_cache, bt, len, t, kh, h0, ng, s, work, pf, 0);
        return;
    }
    for (int64_t j = 0; j < len; j++) {
        int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
        krow[j] = cache_row_avx2(k_cache, s->ct, slot, kh, s, kconv + j * d);
        vrow[j] = cache_row_avx2(v_cache, s->ct, slot, kh, s, vconv + j * d);
    }
    for (int64_t g = 0; g < ng; g++) {
        int64_t j = 0;
        if (batch && d % 8 == 0)
            for (; j + 4 <= len; j += 4) {
                float dots[4];
                dot4_batch(qh[g], krow[j], krow[j + 1], krow[j + 2], krow[j + 3], d, dots);
                for (int l = 0; l < 4; l++) sc[g * len + j + l] = dots[l] * s->scale;
            }
        for (; j < len; j++) sc[g * len + j] = dot_ordered(qh[g], krow[j], d, batch) * s->scale;
    }
    const int nch = batch ? 8 : 32; /* chains of the V product */
    for (int64_t g = 0; g < ng; g++) {
        float *sg = sc + g * len; /* (len): scores, then weights */
        softmax_weights_avx2(sg, len, f16);
        int64_t j;
        float *o = out + (t * s->n_head + h0 + g) * d; /* (head_dim) */
        if (batch) {
            /* BATCH: the 8 chains of 8 output elements in registers, positions in order. */
            int64_t i = 0;
            for (; i < d8; i += 8) {
                __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0,
                       c6 = c0, c7 = c0;
#define STEP(cl, jj) cl = _mm256_fmadd_ps(_mm256_loadu_ps(vrow[jj] + i), _mm256_set1_ps(sg[jj]), cl)
                for (j = 0; j + 8 <= len; j += 8) {
                    STEP(c0, j), STEP(c1, j + 1), STEP(c2, j + 2), STEP(c3, j + 3);
                    STEP(c4, j + 4), STEP(c5, j + 5), STEP(c6, j + 6), STEP(c7, j + 7);
                }
                /* the last < 8 positions go to chains 0.. in order */
                if (j < len) STEP(c0, j);
                if (j + 1 < len) STEP(c1, j + 1);
                if (j + 2 < len) STEP(c2, j + 2);
                if (j + 3 < len) STEP(c3, j + 3);
                if (j + 4 < len) STEP(c4, j + 4);
                if (j + 5 < len) STEP(c5, j + 5);
                if (j + 6 < len) STEP(c6, j + 6);
#undef STEP
                __m256 t0 = _mm256_add_ps(c4, c0), t1 = _mm256_add_ps(c5, c1);
                __m256 t2 = _mm256_add_ps(c6, c2), t3 = _mm256_add_ps(c7, c3);
                _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3)));
            }
            for (; i < d; i++) {
                float c[8] = {0};
                for (j = 0; j < len; j++) c[j % 8] = fmaf(vrow[j][i], sg[j], c[j % 8]);
                float t0 = c[4] + c[0], t1 = c[5] + c[1], t2 = c[6] + c[2], t3 = c[7] + c[3];
                o[i] = (t0 + t2) + (t1 + t3);
            }
            continue;
        }
        /* SINGLE (head_dim not a multiple of 32): sum_j p_j v_j, chain (j % 32) per output
         * element, vectorized over the elements, the chains in memory. */
        memset(acc, 0, (size_t)(nch * d) * sizeof(float));
        for (j = 0; j < len; j++) {
            const float *vr = vrow[j]; /* (head_dim) */
            float *c = acc + (j % nch) * d;
            __m256 p8 = _mm256_set1_ps(sg[j]);
            int64_t i = 0;
            for (; i < d8; i += 8)
                _mm256_storeu_ps(c + i, _mm256_fmadd_ps(_mm256_loadu_ps(vr + i), p8, _mm256_loadu_ps(c + i)));
            for (; i < d; i++) c[i] = fmaf(vr[i], sg[j], c[i]);
        }
        for (int64_t i = 0; i < d; i++) {
            const float *c = acc + i; /* chain l of element i at c[l * d] */
#define C(l) c[(l) * d]
            float y[8];
            for (int l = 0; l < 8; l++) y[l] = (C(l) + C(16 + l)) + (C(8 + l) + C(24 + l));
            float u0 = y[0] + y[4], u1 = y[1] + y[5], u2 = y[2] + y[6], u3 = y[3] + y[7];
            o[i] = (u0 + u1) + (u2 + u3);
#undef C
        }
    }
}
/* ---- AVX2, tiled: the BATCH order for a tile of query tokens ---------------------------------
 *
 * A prompt chunk asks, for every token t of a sequence and every head of a kv group, the same
 * BATCH-order sums as attend_avx2: s_j = (q . k_j) with one chain per lane (i % 8) over
 * head_dim, and o_i = sum_j p_j v_ji with one chain per lane (j % 8) over the positions. Both
 * are "8-lane dot products then tinyBLAS's horizontal sum", so a tile of query rows (tokens x
 * heads of the group) computes them as two small matrix products, Q K^T and P V, with a 2 x 4
 * register block: each K row, V column and query row is loaded once per block instead of once
 * per dot, the 8 horizontal sums of a block share one transposition, and the K and V rows of
 * the tile are converted from f16 (and V transposed to (head_dim, positions), so that the
 * position index runs along the lanes) once per tile instead of once per token. Each dot keeps
 * its own chain order, so the bits are attend_avx2's for any tiling (tests compare them with
 * memcmp): a token's result depends on its own q, position and the cache only, not on the
 * tile it landed in nor on the thread count. Positions past a row's own (causal) length are
 * computed for the block and then dropped: scores are never read there, and in P V the lanes
 * past the length keep the chain unchanged (a blend, so even a non-finite V there cannot leak
 * into an earlier token). The softmax between them is softmax_weights_avx2, row by row. */

/* Lane k of the result = hsum_batch(a[k]), bit for bit: the same tree ((c0 + c4) + (c2 + c6))
 * + ((c1 + c5) + (c3 + c7)) for the 8 vectors at once (additions commute exactly). */
AVX2 static inline __m256 hsum_batch8(const __m256 a[8]) {
    __m256 x01 = _mm256_add_ps(_mm256_permute2f128_ps(a[0], a[1], 0x20), _mm256_permute2f128_ps(a[0], a[1], 0x31));
    __m256 x23 = _mm256_add_ps(_mm256_permute2f128_ps(a[2], a[3], 0x20), _mm256_permute2f128_ps(a[2], a[3], 0x31));
    __m256 x45 = _mm256_add_ps(_mm256_permute2f128_ps(a[4], a[5], 0x20), _mm256_permute2f128_ps(a[4], a[5], 0x31));
    __m256 x67 = _mm256_add_ps(_mm256_permute2f128_ps(a[6], a[7], 0x20), _mm256_permute2f128_ps(a[6], a[7], 0x31));
    /* x01 = [a0: c_l + c_l+4, l = 0..3 | a1: the same] */
    __m256 y0 = _mm256_add_ps(_mm256_shuffle_ps(x01, x23, 0x44), _mm256_shuffle_ps(x01, x23, 0xEE));
    __m256 y1 = _mm256_add_ps(_mm256_shuffle_ps(x45, x67, 0x44), _mm256_shuffle_ps(x45, x67, 0xEE));
    /* y0 = [a0: t0 + t2, t1 + t3, a2: .., .. | a1: .., .., a3: .., ..] */
    __m256 z = _mm256_add_ps(_mm256_shuffle_ps(y0, y1, 0x88), _mm256_shuffle_ps(y0, y1, 0xDD));
    /* z = [a0, a2, a4, a6 | a1, a3, a5, a7] */
    return _mm256_permutevar8x32_ps(z, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* s0[c] = scale * (q0 . k[c]), s1[c] = scale * (q1 . k[c]) for c < 4, BATCH order.
 * q0, q1, k[c]: (d), d % 8 == 0. (Named accumulators: an array of them is kept in memory.) */
AVX2 static inline void qk_2x4(const float *q0, const float *q1, const float *const *k, int64_t d,
                               float scale, float *s0, float *s1) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    const float *k0 = k[0], *k1 = k[1], *k2 = k[2], *k3 = k[3];
    for (int64_t i = 0; i < d; i += 8) {
        __m256 a0 = _mm256_loadu_ps(q0 + i), a1 = _mm256_loadu_ps(q1 + i), b;
        b = _mm256_loadu_ps(k0 + i), c0 = _mm256_fmadd_ps(b, a0, c0), c4 = _mm256_fmadd_ps(b, a1, c4);
        b = _mm256_loadu_ps(k1 + i), c1 = _mm256_fmadd_ps(b, a0, c1), c5 = _mm256_fmadd_ps(b, a1, c5);
        b = _mm256_loadu_ps(k2 + i), c2 = _mm256_fmadd_ps(b, a0, c2), c6 = _mm256_fmadd_ps(b, a1, c6);
        b = _mm256_loadu_ps(k3 + i), c3 = _mm256_fmadd_ps(b, a0, c3), c7 = _mm256_fmadd_ps(b, a1, c7);
    }
    const __m256 c[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    __m256 r = _mm256_mul_ps(hsum_batch8(c), _mm256_set1_ps(scale));
    _mm_storeu_ps(s0, _mm256_castps256_ps128(r));
    _mm_storeu_ps(s1, _mm256_extractf128_ps(r, 1));
}

/* o0[c] = sum_j p0[j] vt[c * ldv + j], o1[c] likewise with p1, c < 4, BATCH order (chain
 * j % 8 = lane j % 8, positions in order). Groups of 8 below nfull take every lane; those in
 * [nfull, n) only the lanes j < len0 (row 0) and j < len1 (row 1). nfull, n: multiples of 8;
 * p0, p1 and the vt rows readable up to n. */
AVX2 static inline void pv_2x4(const float *p0, const float *p1, const float *vt, int64_t ldv,
                               int64_t nfull, int64_t n, int64_t len0, int64_t len1, float *o0,
                               float *o1) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    const float *v0 = vt, *v1 = vt + ldv, *v2 = vt + 2 * ldv, *v3 = vt + 3 * ldv;
    int64_t j = 0;
    for (; j < nfull; j += 8) {
        __m256 a0 = _mm256_loadu_ps(p0 + j), a1 = _mm256_loadu_ps(p1 + j), b;
        b = _mm256_loadu_ps(v0 + j), c0 = _mm256_fmadd_ps(b, a0, c0), c4 = _mm256_fmadd_ps(b, a1, c4);
        b = _mm256_loadu_ps(v1 + j), c1 = _mm256_fmadd_ps(b, a0, c1), c5 = _mm256_fmadd_ps(b, a1, c5);
        b = _mm256_loadu_ps(v2 + j), c2 = _mm256_fmadd_ps(b, a0, c2), c6 = _mm256_fmadd_ps(b, a1, c6);
        b = _mm256_loadu_ps(v3 + j), c3 = _mm256_fmadd_ps(b, a0, c3), c7 = _mm256_fmadd_ps(b, a1, c7);
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; j < n; j += 8) {
        __m256i jv = _mm256_add_epi32(lane, _mm256_set1_epi32((int)j));
        __m256 m0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)len0), jv));
        __m256 m1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)len1), jv));
        __m256 a0 = _mm256_loadu_ps(p0 + j), a1 = _mm256_loadu_ps(p1 + j), b;
#define STEP(cx, cy)                                                   \
    cx = _mm256_blendv_ps(cx, _mm256_fmadd_ps(b, a0, cx), m0), \
    cy = _mm256_blendv_ps(cy, _mm256_fmadd_ps(b, a1, cy), m1)
        b = _mm256_loadu_ps(v0 + j), STEP(c0, c4);
        b = _mm256_loadu_ps(v1 + j), STEP(c1, c5);
        b = _mm256_loadu_ps(v2 + j), STEP(c2, c6);
        b = _mm256_loadu_ps(v3 + j), STEP(c3, c7);
#undef STEP
    }
    const __m256 c[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    __m256 r = hsum_batch8(c);
    _mm_storeu_ps(o0, _mm256_castps256_ps128(r));
    _mm_storeu_ps(o1, _mm256_extractf128_ps(r, 1));
}

/* 8 cache rows (8 floats each, from column i0) as fp32, transposed into dst[c * ldd + r] for
 * r, c < 8. src[r]: the row's start in the cache (f16 or f32 elements), NULL for a zero row. */
AVX2 static inline void transpose8_avx2(const void *const *src, int f16, int64_t i0, float *dst,
                                        int64_t ldd) {
    __m256 r[8];
    for (int l = 0; l < 8; l++) {
        if (!src[l])
            r[l] = _mm256_setzero_ps();
        else if (f16)
            r[l] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)src[l] + i0)));
        else
            r[l] = _mm256_loadu_ps((const float *)src[l] + i0);
    }
    transpose8x8_ps(r);
    for (int l = 0; l < 8; l++) _mm256_storeu_ps(dst + l * ldd, r[l]);
}

/* Tokens tok[0 .. nt) (all of one sequence, block table bt), kv head kh, all group heads.
 * head_dim % 8 == 0. work: tile_work_floats(lp, nt * group, d) floats, lp >= 8-rounded
 * longest length of the tile. */
AVX2 static void attend_tile_avx2(float *out, const float *q, const void *k_cache,
                                  const void *v_cache, const int32_t *bt, const int32_t *tok,
                                  int64_t nt, const int32_t *tok_pos, int64_t kh,
                                  const tw_attn_shape *s, float *work) {
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head, rows = nt * group;
    const int f16 = s->ct == TW_DTYPE_F16;
    const size_t esz = f16 ? 2 : 4;
    int64_t len_max = 0;
    for (int64_t a = 0; a < nt; a++) len_max = tok_pos[tok[a]] + 1 > len_max ? tok_pos[tok[a]] + 1 : len_max;
    const int64_t lp = (len_max + 7) / 8 * 8;
    const float **krow = (const float **)work; /* (lp + 4): pointers first, for their alignment */
    float *kbuf = (float *)(krow + lp + 4);    /* (len_max, d): K rows as fp32 */
    float *vt = kbuf + lp * d;                 /* (d, lp): V transposed */
    float *qh = vt + d * lp;                   /* (rows, d) */
    float *sc = qh + rows * d;                 /* (rows, lp) */
    float *zero = sc + rows * lp;              /* (d) */
    memset(zero, 0, (size_t)d * sizeof(float));
    /* K rows (pointers into an f32 cache, else converted), V transposed. */
    for (int64_t j0 = 0; j0 < lp; j0 += 8) {
        const void *vsrc[8];
        for (int l = 0; l < 8; l++) {
            int64_t j = j0 + l;
            if (j >= len_max) {
                vsrc[l] = NULL;
                krow[j] = zero;
                continue;
            }
            int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
            int64_t at = (slot * s->n_kv_head + kh) * d;
            vsrc[l] = (const char *)v_cache + (size_t)at * esz;
            /* K rows are copied from an f32 cache too: contiguous rows read faster, and each
             * is read once per pair of query rows */
            if (f16) {
                const uint16_t *h = (const uint16_t *)k_cache + at;
                for (int64_t i = 0; i < d; i += 8)
                    _mm256_storeu_ps(kbuf + j * d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
            } else {
                memcpy(kbuf + j * d, (const float *)k_cache + at, (size_t)d * sizeof(float));
            }
            krow[j] = kbuf + j * d;
        }
        for (int64_t i0 = 0; i0 < d; i0 += 8) transpose8_avx2(vsrc, f16, i0, vt + i0 * lp + j0, lp);
    }
    for (int l = 0; l < 4; l++) krow[lp + l] = zero;
    /* Query rows r = a * group + g (token tok[a], head kh * group + g). */
    for (int64_t r = 0; r < rows; r++)
        q_row_avx2(qh + r * d, q + ((int64_t)tok[r / group] * s->n_head + kh * group + r % group) * d, d, f16);
    /* Q K^T, two rows at a time (the last row pairs with itself when rows is odd). */
    for (int64_t r = 0; r < rows; r += 2) {
        int64_t r1 = r + 1 < rows ? r + 1 : r;
        int64_t l0 = tok_pos[tok[r / group]] + 1, l1 = tok_pos[tok[r1 / group]] + 1;
        int64_t n = l0 > l1 ? l0 : l1;
        float tmp[4];
        for (int64_t j = 0; j < n; j += 4)
            qk_2x4(qh + r * d, qh + r1 * d, krow + j, d, s->scale, sc + r * lp + j,
                   r1 != r ? sc + r1 * lp + j : tmp);
    }
    /* Softmax per row, then P V two rows x four output elements at a time. */
    for (int64_t r = 0; r < rows; r++) {
        int64_t len = tok_pos[tok[r / group]] + 1;
        softmax_weights_avx2(sc + r * lp, len, f16);
    }
    for (int64_t r = 0; r < rows; r += 2) {
        int64_t r1 = r + 1 < rows ? r + 1 : r;
        int64_t l0 = tok_pos[tok[r / group]] + 1, l1 = tok_pos[tok[r1 / group]] + 1;
        int64_t nfull = (l0 < l1 ? l0 : l1) / 8 * 8, n = ((l0 > l1 ? l0 : l1) + 7) / 8 * 8;
        float *o0 = out + ((int64_t)tok[r / group] * s->n_head + kh * group + r % group) * d;
        float *o1 = out + ((int64_t)tok[r1 / group] * s->n_head + kh * group + r1 % group) * d;
        float tmp[4];
        for (int64_t i = 0; i < d; i += 4)
            pv_2x4(sc + r * lp, sc + r1 * lp, vt + i * lp, lp, nfull, n, l0, l1, o0 + i,
                   r1 != r ? o1 + i : tmp);
    }
}
#define TW_X86 1
#endif

#define PTR_FLOATS ((sizeof(void *) + sizeof(float) - 1) / sizeof(float)) /* a pointer's room */
/* Query rows (tokens x group heads) per tile. bench_attention, f16 prefill of 512 tokens at one
 * thread: 24 rows 7.2 ms, 48 6.9, 96 6.7, 192 6.6 (the K/V conversion amortized); 96 keeps
 * enough tasks (16 tiles x kv heads) for a few threads. */
#define TILE_ROWS 96

/* The floats a tile's work area needs: lp = its longest length rounded up to 8, rows = its
 * query rows (tokens x heads of a group). */
static size_t tile_work_floats(int64_t lp, int64_t rows, int64_t d) {
    return (size_t)(lp * d     /* K rows as fp32 */
                    + d * lp   /* V transposed */
                    + rows * d /* q rows (rounded to f16 for f16 caches) */
                    + rows * lp /* scores, then weights */
                    + d)       /* a zero row */
           + (size_t)(lp + 4) * PTR_FLOATS; /* K row pointers */
}

/* Per-token work of attend_avx2 for lengths up to l1, in floats. */
static size_t token_work_floats(int64_t l1, int64_t d) {
    return (size_t)(MAX_GROUP * l1 + 32 * d + 2 * l1 * d) +
           (size_t)(2 * l1) * PTR_FLOATS;
}

void tw_cpu_attention_variant(float *out, const float *q, const void *k_cache,
                              const void *v_cache, const int32_t *block_table,
                              const int32_t *tok_seq, const int32_t *tok_pos,
                              const tw_attn_shape *s, int variant) {
    const int64_t group = s->n_head / s->n_kv_head, d = s->head_dim;
    int avx2 = 0;
#ifdef TW_X86
    avx2 = variant != TW_ATTN_PORTABLE && tw_cpu_has_avx2_fma();
#endif
    /* The plan (AVX2): tokens of sequences with >= 2 tokens in the call (BATCH order) in
     * tiles of consecutive tokens of one sequence (in call order), the others (SINGLE order)
     * one by one; one task per (tile or token, kv head), the heaviest tiles (the last of a
     * prompt) first. Portable, or without memory for the plan: one task per (token, kv head). */
    int64_t n_seq = 0;
    for (int64_t t = 0; t < s->n_tok; t++) n_seq = tok_seq[t] + 1 > n_seq ? tok_seq[t] + 1 : n_seq;
    int64_t n_sg = n_seq > s->n_tok ? n_seq : s->n_tok;
    int32_t *plan = avx2 ? tw_malloc((size_t)(n_seq + 1 + 2 * s->n_tok + n_sg) * sizeof(int32_t)) : NULL;
    int64_t n_tiles = 0, n_single = 0, tile_q = 1, tile_lp = 0, single_len = 0;
    int32_t *start = plan, *order = NULL, *tile_at = NULL, *single = NULL;
    if (plan) {
        /* start[q]: first entry of sequence q in order[] (a stable counting sort by sequence) */
        memset(start, 0, (size_t)(n_seq + 1) * sizeof(int32_t));
        for (int64_t t = 0; t < s->n_tok; t++) start[tok_seq[t] + 1]++;
        for (int64_t q2 = 0; q2 < n_seq; q2++) start[q2 + 1] += start[q2];
        order = start + n_seq + 1;        /* (n_tok) */
        tile_at = order + s->n_tok;       /* (n_tok): a tile's first entry in order[] */
        single = tile_at + s->n_tok;      /* (max(n_tok, n_seq)): SINGLE tokens */
        int32_t *fill = single;           /* borrowed as the per-sequence cursor */
        memcpy(fill, start, (size_t)n_seq * sizeof(int32_t));
        for (int64_t t = 0; t < s->n_tok; t++) order[fill[tok_seq[t]]++] = (int32_t)t;
        int tiled = variant != TW_ATTN_PER_TOKEN && d % 8 == 0;
        tile_q = TILE_ROWS / group > 1 ? TILE_ROWS / group : 2;
        for (int64_t q2 = 0; q2 < n_seq; q2++) {
            int64_t a = start[q2], e = start[q2 + 1];
            if (e - a >= 2 && tiled) {
                for (; a < e; a += tile_q) {
                    int64_t b = a + tile_q < e ? a + tile_q : e, lmax = 0;
                    for (int64_t x = a; x < b; x++) lmax = tok_pos[order[x]] + 1 > lmax ? tok_pos[order[x]] + 1 : lmax;
                    tile_lp = (lmax + 7) / 8 * 8 > tile_lp ? (lmax + 7) / 8 * 8 : tile_lp;
                    tile_at[n_tiles++] = (int32_t)a;
                }
            } else {
                for (; a < e; a++) {
                    int64_t t = order[a];
                    single[n_single++] = (int32_t)t;
                    single_len = tok_pos[t] + 1 > single_len ? tok_pos[t] + 1 : single_len;
                }
            }
        }
    }
    int64_t n_tasks = plan ? (n_tiles + n_single) * s->n_kv_head : s->n_tok * s->n_kv_head;
    /* A decode step of few sequences has few (token, kv head) tasks (SmolLM2, one sequence:
     * 3, which two threads share 2 + 1); then each query head is a task of its own (9: 5 +
     * 4). A head's result does not depend on the heads computed with it, so the bits stay. */
    const int nt = tw_threads_get();
    const int per_head = plan && n_tiles == 0 && group > 1 && nt > 1 && n_tasks < 4 * nt;
    if (per_head) n_tasks = n_single * s->n_head;
    /* Enough decode tokens for the threads: one task per token for all its kv heads, which
     * then reads each K/V slot (the kv heads' rows side by side) in one pass. */
    const int whole = plan && !per_head && n_single >= 2 * nt;
    if (whole) n_tasks = n_tiles * s->n_kv_head + n_single;
    /* Bytes of a cache row; a whole token's first pass prefetches its slots' rows of every
     * kv head. */
    const size_t row_bytes = (size_t)d * tw_dtype_type_size(s->ct);
    size_t wfl = 0;
    if (plan) {
        size_t wt = n_tiles ? tile_work_floats(tile_lp, tile_q * group, d) : 0;
        size_t ws = n_single ? token_work_floats(single_len, d) : 0;
        wfl = wt > ws ? wt : ws;
    }
#pragma omp parallel num_threads(nt) if (n_tasks > 1)
    {
        float *work = plan ? tw_malloc(wfl * sizeof(float)) : NULL; /* this thread's */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; task++) {
#ifdef TW_X86
            if (per_head && work) {
                int64_t t = single[task / s->n_head], h = task % s->n_head;
                const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
                int64_t n_in_seq = start[tok_seq[t] + 1] - start[tok_seq[t]];
                attend_avx2(out, q, k_cache, v_cache, bt, tok_pos[t] + 1, t, h / group, h, 1, s,
                            n_in_seq >= 2, work, row_bytes);
                continue;
            }
            if (per_head) { /* no memory for this thread's work area: the portable kernel */
                int64_t t = single[task / s->n_head], h = task % s->n_head;
                attend(out, q, k_cache, v_cache, block_table + (int64_t)tok_seq[t] * s->max_blocks,
                       tok_pos[t] + 1, t, h / group, h, 1, s);
                continue;
            }
#endif
            int64_t kh = task % s->n_kv_head, unit = task / s->n_kv_head, kh1 = kh + 1;
            if (whole && task >= n_tiles * s->n_kv_head)
                unit = n_tiles + task - n_tiles * s->n_kv_head, kh = 0, kh1 = s->n_kv_head;
            if (!plan || (work == NULL && unit >= n_tiles)) { /* portable, or no memory */
                int64_t t = plan ? single[unit - n_tiles] : unit;
                const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
                for (; kh < kh1; kh++)
                    for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP)
                        attend(out, q, k_cache, v_cache, bt, tok_pos[t] + 1, t, kh, kh * group + g0,
                               group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP, s);
                continue;
            }
#ifdef TW_X86
            if (unit < n_tiles) {
                int64_t ti = n_tiles - 1 - unit; /* the last tiles (the longest rows) first */
                int64_t a = tile_at[ti];
                int32_t sq = tok_seq[order[a]];
                int64_t e = a + tile_q < start[sq + 1] ? a + tile_q : start[sq + 1];
                const int32_t *bt = block_table + (int64_t)sq * s->max_blocks;
                if (work) {
                    attend_tile_avx2(out, q, k_cache, v_cache, bt, order + a, e - a, tok_pos, kh, s, work);
                } else {
                    for (int64_t x = a; x < e; x++)
                        for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP)
                            attend(out, q, k_cache, v_cache, bt, tok_pos[order[x]] + 1, order[x], kh,
                                   kh * group + g0, group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP, s);
                }
                continue;
            }
            int64_t t = single[unit - n_tiles];
            const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
            int64_t n_in_seq = start[tok_seq[t] + 1] - start[tok_seq[t]];
            for (; kh < kh1; kh++)
                for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP)
                    attend_avx2(out, q, k_cache, v_cache, bt, tok_pos[t] + 1, t, kh, kh * group + g0,
                                group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP, s, n_in_seq >= 2, work,
                                whole && kh == 0 && g0 == 0 ? row_bytes * s->n_kv_head : row_bytes);
#endif
        }
        tw_free(work);
    }
    tw_free(plan);
}

void tw_cpu_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s) {
    tw_cpu_attention_variant(out, q, k_cache, v_cache, block_table, tok_seq, tok_pos, s,
                             TW_ATTN_DISPATCH);
}
