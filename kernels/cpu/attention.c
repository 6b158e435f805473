/* attention.c: the optimized CPU kernels of TW_OP_KV_WRITE and TW_OP_ATTENTION (kernels.h).
 *
 * Attention: one task per (token, kv head), OpenMP over tasks. A task walks the token's
 * positions page by page and serves every query head of its group from each K/V row it loads
 * (grouped-query attention reads the cache once per group, not once per head). The softmax is
 * online, in fp32: a running maximum m, a running sum l and an unnormalized output o; a new
 * score s above m rescales l and o by exp(m - s). Precision: the scores are fp32 dot products
 * of head_dim terms; the exponentials are expf; o and l accumulate up to tok_pos + 1 terms.
 * The test derives its bound from these. */
#include "cpu_kernels.h"

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

void tw_cpu_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s) {
    int64_t group = s->n_head / s->n_kv_head;
    int64_t n_tasks = s->n_tok * s->n_kv_head;
#pragma omp parallel for schedule(dynamic, 1) num_threads(tw_threads_get()) if (n_tasks > 1)
    for (int64_t task = 0; task < n_tasks; task++) {
        int64_t t = task / s->n_kv_head, kh = task % s->n_kv_head;
        const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks;
        for (int64_t g0 = 0; g0 < group; g0 += MAX_GROUP) {
            int64_t ng = group - g0 < MAX_GROUP ? group - g0 : MAX_GROUP;
            attend(out, q, k_cache, v_cache, bt, (int64_t)tok_pos[t] + 1, t, kh, kh * group + g0,
                   ng, s);
        }
    }
}
