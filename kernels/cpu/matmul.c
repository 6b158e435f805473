/* matmul.c: the optimized CPU kernel of TW_OP_MATMUL (kernels.h): the activation rows are
 * quantized once (act(), ref_matmul.c), then OpenMP threads take slices of output rows.
 *
 * This file holds the dispatcher and the generic path, which serves every weight type:
 * each weight row is dequantized (tw_dequantize_row) into a per-thread fp32 buffer and dotted
 * with the fp32 values of act(x) (d * q, exact in fp32), with the Q4_1/Q5_1 minimum term
 * corrected as the reference does. Type-specific kernels (matmul_q.c, matmul_f.c) replace it
 * where they exist. */
#include "cpu_kernels.h"

#include <omp.h>
#include <string.h>

/* act(x) of m rows as fp32 values xa (m, k), and for the types with a minimum the
 * per-block correction s - d * sum(q), corr (m, k/32). */
static void act_dequantized(const float *x, tw_act_kind act, int64_t m, int64_t k, float *xa,
                            float *corr, void *blocks) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * k;
        float *xo = xa + i * k;
        if (act == TW_ACT_Q8A) {
            tw_q8a_block *qa = blocks;
            tw_cpu_quantize_q8a(xr, qa, k);
            for (int64_t b = 0; b < k / TW_QK8; b++) {
                int sum = 0;
                for (int j = 0; j < TW_QK8; j++) {
                    xo[b * TW_QK8 + j] = qa[b].d * (float)qa[b].qs[j];
                    sum += qa[b].qs[j];
                }
                corr[i * (k / TW_QK8) + b] = qa[b].s - qa[b].d * (float)sum;
            }
        } else if (act == TW_ACT_Q8K) {
            tw_q8k_block *qk = blocks;
            tw_cpu_quantize_q8k(xr, qk, k);
            for (int64_t j = 0; j < k; j++) xo[j] = qk[j / TW_QKK].d * (float)qk[j / TW_QKK].qs[j % TW_QKK];
        } else {
            memcpy(xo, xr, (size_t)k * sizeof(float));
        }
    }
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (; i < n; i++) s[i % 8] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static tw_status matmul_generic(float *y, const float *x, const void *w, tw_dtype wt,
                                const float *bias, int64_t m, int64_t k, int64_t n_out) {
    tw_act_kind act = tw_cpu_act_kind(wt);
    int has_min = wt == TW_DTYPE_Q4_1 || wt == TW_DTYPE_Q5_1;
    int nt = tw_threads_get();
    size_t nblk = (size_t)(k / TW_QK8);
    float *xa = tw_malloc((size_t)(m * k) * sizeof(float));           /* (m, k) */
    float *corr = tw_malloc((size_t)m * nblk * sizeof(float) + 4);     /* (m, k/32) */
    void *blocks = tw_malloc(nblk * sizeof(tw_q8a_block) + sizeof(tw_q8k_block)); /* one row */
    float *wbuf = tw_malloc((size_t)nt * (size_t)k * sizeof(float));  /* (threads, k) */
    if (!xa || !corr || !blocks || !wbuf) {
        tw_free(xa), tw_free(corr), tw_free(blocks), tw_free(wbuf);
        return tw_error_wrap("matmul: scratch for %lld x %lld", (long long)m, (long long)k);
    }
    act_dequantized(x, act, m, k, xa, corr, blocks);
    size_t rb = tw_dtype_row_bytes(wt, k), bb = tw_dtype_type_size(wt);
#pragma omp parallel for schedule(static) num_threads(nt) if (n_out * k >= 16384)
    for (int64_t o = 0; o < n_out; o++) {
        float *wr = wbuf + (size_t)k * (size_t)omp_get_thread_num();
        const uint8_t *wq = (const uint8_t *)w + (size_t)o * rb;
        TW_ASSERT(tw_dequantize_row(wt, wq, wr, k) == TW_OK);
        for (int64_t i = 0; i < m; i++) {
            float acc = dot_f32(wr, xa + i * k, k);
            if (has_min)
                for (size_t b = 0; b < nblk; b++)
                    acc += tw_f16_to_f32((uint16_t)(wq[b * bb + 2] | wq[b * bb + 3] << 8)) *
                           corr[(size_t)i * nblk + b];
            y[i * n_out + o] = acc + (bias ? bias[o] : 0.0f);
        }
    }
    tw_free(xa), tw_free(corr), tw_free(blocks), tw_free(wbuf);
    return TW_OK;
}

tw_status tw_cpu_matmul_variant(float *y, const float *x, const void *w, tw_dtype wt,
                                const float *bias, int64_t m, int64_t k, int64_t n_out,
                                int force_portable) {
    switch (wt) {
    case TW_DTYPE_Q4_0:
    case TW_DTYPE_Q4_1:
    case TW_DTYPE_Q5_0:
    case TW_DTYPE_Q5_1:
    case TW_DTYPE_Q8_0: return tw_cpu_matmul_q(y, x, w, wt, bias, m, k, n_out, force_portable);
    case TW_DTYPE_F32:
    case TW_DTYPE_F16:
    case TW_DTYPE_BF16: return tw_cpu_matmul_f(y, x, w, wt, bias, m, k, n_out, force_portable);
    case TW_DTYPE_Q4_K:
    case TW_DTYPE_Q6_K:
        if (!force_portable && tw_cpu_matmul_k_supported(wt))
            return tw_cpu_matmul_k(y, x, w, wt, bias, m, k, n_out);
        return matmul_generic(y, x, w, wt, bias, m, k, n_out);
    default: return matmul_generic(y, x, w, wt, bias, m, k, n_out);
    }
}

tw_status tw_cpu_matmul(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                        int64_t m, int64_t k, int64_t n_out) {
    return tw_cpu_matmul_variant(y, x, w, wt, bias, m, k, n_out, 0);
}
