/* attention.c: the optimized CPU kernels of TW_OP_KV_WRITE and TW_OP_ATTENTION (kernels.h).
 *
 * Attention: one task per (token, kv head), OpenMP over tasks. A task walks the token's
 * positions page by page and serves every query head of its group from each K/V row it loads
 * (grouped-query attention reads the cache once per group, not once per head). The softmax is
 * online, in fp32: a running maximum m, a running sum l and an unnormalized output o; a new
 * score s above m rescales l and o by exp(m - s). Precision: the scores are fp32 dot products
 * of head_dim terms; the exponentials are expf (portable) or tw_exp8 (AVX2, within 2 ulp);
 * o and l accumulate up to tok_pos + 1 terms. The test derives its bound from these. */
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

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

#define JB 32 /* positions per block of the AVX2 kernel */

/* As attend(), in blocks of JB positions: the scores of a block for every head of the group
 * (8-lane dot products: lanes of head_dim/8 terms, the tail in order, the fixed horizontal
 * sum), then one online-softmax step per block (the block maximum; o and l rescaled at most
 * once per block), then the weighted V rows added to o in registers, 64 columns at a time.
 * The K and V rows of a block are converted (f16) or pointed at (f32) once for the group. */
AVX2 static void attend_avx2(float *out, const float *q, const void *k_cache, const void *v_cache,
                             const int32_t *bt, int64_t len, int64_t t, int64_t kh, int64_t h0,
                             int64_t ng, const tw_attn_shape *s) {
    int64_t d = s->head_dim, d8 = d / 8 * 8;
    float o[MAX_GROUP][1024];
    float m[MAX_GROUP], l[MAX_GROUP], p[MAX_GROUP][JB];
    const float *vrows[JB];
    float *vbuf = NULL, kbuf[1024];
    for (int64_t g = 0; g < ng; g++) {
        m[g] = -INFINITY;
        l[g] = 0;
        memset(o[g], 0, (size_t)d * sizeof(float));
    }
    if (s->ct == TW_DTYPE_F16) {
        vbuf = tw_malloc((size_t)(JB * d) * sizeof(float)); /* (JB, head_dim) */
        TW_ASSERT(vbuf); /* JB * 1024 floats: 128 KiB */
    }
    for (int64_t j0 = 0; j0 < len; j0 += JB) {
        int nj = len - j0 < JB ? (int)(len - j0) : JB;
        for (int jj = 0; jj < nj; jj++) {
            int64_t j = j0 + jj;
            int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
            const float *kr = cache_row_avx2(k_cache, s->ct, slot, kh, s, kbuf); /* (head_dim) */
            vrows[jj] = cache_row_avx2(v_cache, s->ct, slot, kh, s, vbuf ? vbuf + jj * d : NULL);
            for (int64_t g = 0; g < ng; g++) {
                const float *qr = q + (t * s->n_head + h0 + g) * d; /* (head_dim) */
                __m256 a = _mm256_setzero_ps();
                int64_t i = 0;
                for (; i < d8; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qr + i), _mm256_loadu_ps(kr + i), a);
                float dot = hsum8(a);
                for (; i < d; i++) dot += qr[i] * kr[i];
                p[g][jj] = dot * s->scale;
            }
        }
        for (int64_t g = 0; g < ng; g++) {
            float bm = p[g][0];
            for (int jj = 1; jj < nj; jj++) bm = p[g][jj] > bm ? p[g][jj] : bm;
            if (bm > m[g]) {
                float r = expf(m[g] - bm); /* 0 for the first block (m = -inf) */
                l[g] *= r;
                __m256 r8 = _mm256_set1_ps(r);
                int64_t i = 0;
                for (; i < d8; i += 8) _mm256_storeu_ps(o[g] + i, _mm256_mul_ps(_mm256_loadu_ps(o[g] + i), r8));
                for (; i < d; i++) o[g][i] *= r;
                m[g] = bm;
            }
            for (int jj = nj; jj < JB; jj++) p[g][jj] = -INFINITY; /* past the end: e^-inf = 0 */
            __m256 mg = _mm256_set1_ps(m[g]);
            for (int jj = 0; jj < JB; jj += 8)
                _mm256_storeu_ps(p[g] + jj, tw_exp8(_mm256_sub_ps(_mm256_loadu_ps(p[g] + jj), mg)));
            for (int jj = 0; jj < nj; jj++) l[g] += p[g][jj];
            /* o += sum_jj p_jj v_jj, 64 columns (8 registers) at a time, positions in order. */
            int64_t i = 0;
            for (; i + 64 <= d8; i += 64) {
                __m256 acc[8];
                for (int c = 0; c < 8; c++) acc[c] = _mm256_loadu_ps(o[g] + i + 8 * c);
                for (int jj = 0; jj < nj; jj++) {
                    __m256 pj = _mm256_set1_ps(p[g][jj]);
                    for (int c = 0; c < 8; c++)
                        acc[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vrows[jj] + i + 8 * c), acc[c]);
                }
                for (int c = 0; c < 8; c++) _mm256_storeu_ps(o[g] + i + 8 * c, acc[c]);
            }
            for (; i < d8; i += 8) {
                __m256 acc = _mm256_loadu_ps(o[g] + i);
                for (int jj = 0; jj < nj; jj++)
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(p[g][jj]), _mm256_loadu_ps(vrows[jj] + i), acc);
                _mm256_storeu_ps(o[g] + i, acc);
            }
            for (; i < d; i++)
                for (int jj = 0; jj < nj; jj++) o[g][i] += p[g][jj] * vrows[jj][i];
        }
    }
    tw_free(vbuf);
    for (int64_t g = 0; g < ng; g++) {
        float *orow = out + (t * s->n_head + h0 + g) * d; /* (head_dim) */
        float inv = 1.0f / l[g];
        for (int64_t i = 0; i < d; i++) orow[i] = o[g][i] * inv;
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
#pragma omp parallel for schedule(dynamic, 1) num_threads(tw_threads_get()) if (n_tasks > 1)
    for (int64_t task = 0; task < n_tasks; task++) {
        int64_t t = task / s->n_kv_head, kh = task % s->n_kv_head;
        const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
        for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP) {
            int64_t ng = group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP;
            int64_t len = (int64_t)tok_pos[t] + 1;
#ifdef TW_X86
            if (avx2)
                attend_avx2(out, q, k_cache, v_cache, bt, len, t, kh, kh * group + g0, ng, s);
            else
#endif
                attend(out, q, k_cache, v_cache, bt, len, t, kh, kh * group + g0, ng, s);
        }
    }
}

void tw_cpu_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s) {
    tw_cpu_attention_variant(out, q, k_cache, v_cache, block_table, tok_seq, tok_pos, s, 0);
}
