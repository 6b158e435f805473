/* ref_attention.c: the reference of TW_OP_ATTENTION (kernels.h): for each token and head, all
 * scores in fp64, a two-pass softmax (maximum, then exp and sum) in fp64, and the weighted sum
 * of V rows in fp64, rounded once. f16 cache entries are read exactly (tw_f16_to_f32). */
#include "cpu_kernels.h"

#include <math.h>

/* Element i of cache row `slot`, kv head kh. */
static double cache_at(const void *cache, tw_dtype ct, int64_t slot, int64_t kh, int64_t i,
                       const tw_attn_shape *s) {
    int64_t at = (slot * s->n_kv_head + kh) * s->head_dim + i;
    return ct == TW_DTYPE_F16 ? tw_f16_to_f32(((const uint16_t *)cache)[at])
                              : ((const float *)cache)[at];
}

void tw_ref_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s) {
    int64_t group = s->n_head / s->n_kv_head, d = s->head_dim;
    int64_t max_len = s->max_blocks * s->page_size;
    double *score = tw_malloc((size_t)max_len * sizeof(double)); /* (tok_pos + 1) */
    double *acc = tw_malloc((size_t)d * sizeof(double));         /* (head_dim) */
    TW_ASSERT(score && acc); /* the reference runs in tests only */
    for (int64_t t = 0; t < s->n_tok; t++) {
        const int32_t *bt = block_table + (int64_t)tok_seq[t] * s->max_blocks; /* (max_blocks) */
        int64_t len = (int64_t)tok_pos[t] + 1;
        for (int64_t h = 0; h < s->n_head; h++) {
            const float *qr = q + (t * s->n_head + h) * d; /* (head_dim) */
            int64_t kh = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < len; j++) {
                int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
                double dot = 0;
                for (int64_t i = 0; i < d; i++)
                    dot += (double)qr[i] * cache_at(k_cache, s->ct, slot, kh, i, s);
                score[j] = dot * s->scale;
                if (score[j] > mx) mx = score[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < len; j++) sum += score[j] = exp(score[j] - mx);
            for (int64_t i = 0; i < d; i++) acc[i] = 0;
            for (int64_t j = 0; j < len; j++) {
                int64_t slot = (int64_t)bt[j / s->page_size] * s->page_size + j % s->page_size;
                for (int64_t i = 0; i < d; i++)
                    acc[i] += score[j] * cache_at(v_cache, s->ct, slot, kh, i, s);
            }
            float *o = out + (t * s->n_head + h) * d; /* (head_dim) */
            for (int64_t i = 0; i < d; i++) o[i] = (float)(acc[i] / sum);
        }
    }
    tw_free(score);
    tw_free(acc);
}
