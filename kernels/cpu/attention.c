/* attention.c: the optimized CPU kernels of TW_OP_KV_WRITE and TW_OP_ATTENTION (kernels.h).
 *
 * Attention: one task per (token, kv head), OpenMP over tasks. A task walks the token's
 * positions page by page and serves every query head of its group from each K/V row it loads
 * (grouped-query attention reads the cache once per group, not once per head).
 * Portable C: an online softmax in fp32 (a running maximum m, a running sum l and an
 * unnormalized output o; a new score above m rescales l and o by expf(m - s)).
 * AVX2: llama.cpp's arithmetic, below. Precision: fp32 dot products of head_dim terms,
 * exponentials within 2 ulp, sums of up to tok_pos + 1 terms, and with an f16 cache the f16
 * rounding of q and of the weights (AVX2): the tests derive their bound from these. */
#include "cpu_kernels.h"
#include "simd_avx2.h"

#include <math.h>
#include <string.h>

void tw_cpu_kv_write(void *k_cache, void *v_cache, tw_dtype ct, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tok, int64_t n_kv_head, int64_t head_dim) {
    int64_t row = n_kv_head * head_dim;
    int par = n_tok > 1 && n_tok * row >= 65536;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t t = 0; t < n_tok; t++) {
        int64_t dst = (int64_t)slots[t] * row;
        if (ct == TW_DTYPE_F16) {
            uint16_t *kc = (uint16_t *)k_cache + dst, *vc = (uint16_t *)v_cache + dst;
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

/* One token t, the ng query heads h0.. of kv head kh. work: (ng, len) scores then weights,
 * (32, head_dim) chain accumulators, (len, head_dim) K and V rows as fp32 (f16 caches). */
AVX2 static void attend_avx2(float *out, const float *q, const void *k_cache, const void *v_cache,
                             const int32_t *bt, int64_t len, int64_t t, int64_t kh, int64_t h0,
                             int64_t ng, const tw_attn_shape *s, int batch, void *work) {
    const int64_t d = s->head_dim, d8 = d / 8 * 8;
    const int f16 = s->ct == TW_DTYPE_F16;
    const float **krow = (const float **)work; /* (len): pointers first, for their alignment */
    const float **vrow = krow + len;           /* (len) */
    float *sc = (float *)(vrow + len);         /* (ng, len) */
    float *acc = sc + ng * len;                /* (32, d): chain accumulators of sum_j p_j v_j */
    float *kconv = acc + 32 * d;               /* (len, d): K rows as fp32 (f16 caches) */
    float *vconv = kconv + len * d;            /* (len, d): V rows as fp32 (f16 caches) */
    float qh[MAX_GROUP][1024];
    for (int64_t g = 0; g < ng; g++) {
        const float *qr = q + (t * s->n_head + h0 + g) * d; /* (head_dim) */
        for (int64_t i = 0; i < d; i++) qh[g][i] = f16 ? _cvtsh_ss(_cvtss_sh(qr[i], 0)) : qr[i];
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
        float m = -INFINITY;
        for (int64_t j = 0; j < len; j++) m = sg[j] > m ? sg[j] : m;
        double sum = 0;
        __m256 vm = _mm256_set1_ps(m);
        int64_t j = 0;
        for (; j + 8 <= len; j += 8) {
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
        /* SINGLE: sum_j p_j v_j, chain (j % 32) per output element, vectorized over the
         * elements, the chains in memory. */
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
#define TW_X86 1
#endif

void tw_cpu_attention_variant(float *out, const float *q, const void *k_cache,
                              const void *v_cache, const int32_t *block_table,
                              const int32_t *tok_seq, const int32_t *tok_pos,
                              const tw_attn_shape *s, int force_portable) {
    int64_t group = s->n_head / s->n_kv_head;
    int64_t n_tasks = s->n_tok * s->n_kv_head;
    int avx2 = 0;
#ifdef TW_X86
    avx2 = !force_portable && tw_cpu_has_avx2_fma();
#endif
    /* BATCH or SINGLE order per token (see above): tokens per sequence in this call. */
    int64_t n_seq = 0;
    for (int64_t t = 0; t < s->n_tok; t++) n_seq = tok_seq[t] + 1 > n_seq ? tok_seq[t] + 1 : n_seq;
    int32_t *per_seq = avx2 ? tw_calloc((size_t)n_seq, sizeof(int32_t)) : NULL;
    if (avx2 && !per_seq) avx2 = 0; /* no memory: the portable kernel needs none */
    for (int64_t t = 0; avx2 && t < s->n_tok; t++) per_seq[tok_seq[t]]++;
    int64_t max_len = s->max_blocks * s->page_size;
#pragma omp parallel for schedule(dynamic, 1) num_threads(tw_threads_get()) if (n_tasks > 1)
    for (int64_t task = 0; task < n_tasks; task++) {
        int64_t t = task / s->n_kv_head, kh = task % s->n_kv_head;
        const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
        int64_t len = (int64_t)tok_pos[t] + 1;
        void *work = NULL;
#ifdef TW_X86
        if (avx2) {
            int64_t l1 = len < max_len ? len : max_len; /* scores, chains, K and V rows, pointers */
            work = tw_malloc((size_t)(MAX_GROUP * l1 + 32 * s->head_dim + 2 * l1 * s->head_dim) *
                                 sizeof(float) + (size_t)(2 * l1) * sizeof(float *));
        }
#endif
        for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP) {
            int64_t ng = group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP;
#ifdef TW_X86
            if (work)
                attend_avx2(out, q, k_cache, v_cache, bt, len, t, kh, kh * group + g0, ng, s,
                            per_seq[tok_seq[t]] >= 2, work);
            else
#endif
                attend(out, q, k_cache, v_cache, bt, len, t, kh, kh * group + g0, ng, s);
        }
        tw_free(work);
    }
    tw_free(per_seq);
}

void tw_cpu_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s) {
    tw_cpu_attention_variant(out, q, k_cache, v_cache, block_table, tok_seq, tok_pos, s, 0);
}
