/* ref_matmul.c: the reference of TW_OP_MATMUL (kernels.h) and the activation quantizers it
 * shares with the optimized kernels.
 *
 * The reference dequantizes each weight row with tw_dequantize_row (exact: bit-exact with
 * ggml), forms act(x) from the same activation blocks the optimized kernels use
 * (tw_cpu_quantize_q8a/q8k, themselves checked below against their definition), and sums the
 * products in fp64, rounding once. For the weight types with a per-block minimum (Q4_1, Q5_1)
 * ggml multiplies the minimum by the stored block sum s of the activations (fp16-rounded)
 * instead of by the exact d * sum(q); the reference does the same, so that it specifies what
 * llama.cpp computes:
 *   sum_j (dw qw_j + mw) (dx qx_j) = sum_j w_j (dx qx_j) + mw (s - dx sum_j qx_j). */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

tw_act_kind tw_cpu_act_kind(tw_dtype t) {
    switch (t) {
    case TW_DTYPE_Q4_0:
    case TW_DTYPE_Q4_1:
    case TW_DTYPE_Q5_0:
    case TW_DTYPE_Q5_1:
    case TW_DTYPE_Q8_0: return TW_ACT_Q8A;
    case TW_DTYPE_Q2_K:
    case TW_DTYPE_Q3_K:
    case TW_DTYPE_Q4_K:
    case TW_DTYPE_Q5_K:
    case TW_DTYPE_Q6_K: return TW_ACT_Q8K;
    default: return TW_ACT_F32;
    }
}

/* The value ggml keeps when it stores f as fp16. */
static float fp16_round(float f) { return tw_f16_to_f32(tw_f32_to_f16(f)); }

/* Q8_0/Q8_1 of 32 values, as ggml's AVX2 quantize_row_q8_0/q8_1: d = amax/127 (stored as
 * fp16), q = round-to-nearest-even(x * (127/amax)) (the current rounding mode, which is
 * nearest-even: twin never changes it), s = fp16(d * sum q) with d the fp32 value. */
void tw_cpu_quantize_q8a_portable(const float *x, tw_q8a_block *y, int64_t k) {
    for (int64_t b = 0; b < k / TW_QK8; b++, x += TW_QK8) {
        float amax = 0;
        for (int j = 0; j < TW_QK8; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < TW_QK8; j++) {
            int q = (int)nearbyintf(x[j] * id);
            y[b].qs[j] = (int8_t)q;
            sum += q;
        }
        y[b].d = fp16_round(d);
        y[b].s = fp16_round(d * (float)sum);
    }
}

/* Q8_K of 256 values, as ggml's quantize_row_q8_K_ref. */
void tw_cpu_quantize_q8k(const float *x, tw_q8k_block *y, int64_t k) {
    for (int64_t b = 0; b < k / TW_QKK; b++, x += TW_QKK) {
        float max = 0, amax = 0;
        for (int j = 0; j < TW_QKK; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < TW_QKK; j++) {
            int v = (int)nearbyintf(iscale * x[j]);
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < TW_QKK / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].qs[g * 16 + j];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* The per-block minimum of a Q4_1 or Q5_1 block (fp16 at byte 2), else 0. */
static double block_min(tw_dtype t, const uint8_t *blk) {
    if (t != TW_DTYPE_Q4_1 && t != TW_DTYPE_Q5_1) return 0;
    return tw_f16_to_f32((uint16_t)(blk[2] | blk[3] << 8));
}

static void matmul_ref(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                       int64_t m, int64_t k, int64_t n_out, int quantize_act) {
    size_t rb = tw_dtype_row_bytes(wt, k);
    size_t bb = tw_dtype_type_size(wt);
    int64_t bs = tw_dtype_block_size(wt);
    float *wrow = tw_malloc((size_t)k * sizeof(float));    /* (k) */
    double *xa = tw_malloc((size_t)k * sizeof(double));    /* act(x) row: (k) */
    double *corr = tw_malloc((size_t)(k / bs + 1) * sizeof(double)); /* s - d sum q per block */
    tw_q8a_block *qa = tw_malloc((size_t)(k / TW_QK8 + 1) * sizeof *qa);
    tw_q8k_block *qk = tw_malloc((size_t)(k / TW_QKK + 1) * sizeof *qk);
    TW_ASSERT(wrow && xa && corr && qa && qk); /* the reference runs in tests only */
    tw_act_kind act = quantize_act ? tw_cpu_act_kind(wt) : TW_ACT_F32;
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * k; /* (k) */
        for (int64_t b = 0; b < k / bs; b++) corr[b] = 0;
        if (act == TW_ACT_Q8A) {
            tw_cpu_quantize_q8a_portable(xr, qa, k);
            for (int64_t j = 0; j < k; j++) xa[j] = (double)qa[j / TW_QK8].d * qa[j / TW_QK8].qs[j % TW_QK8];
            for (int64_t b = 0; b < k / TW_QK8; b++) {
                int sum = 0;
                for (int j = 0; j < TW_QK8; j++) sum += qa[b].qs[j];
                corr[b] = (double)qa[b].s - (double)qa[b].d * sum;
            }
        } else if (act == TW_ACT_Q8K) {
            tw_cpu_quantize_q8k(xr, qk, k);
            for (int64_t j = 0; j < k; j++) xa[j] = (double)qk[j / TW_QKK].d * qk[j / TW_QKK].qs[j % TW_QKK];
        } else {
            for (int64_t j = 0; j < k; j++) xa[j] = xr[j];
        }
        for (int64_t o = 0; o < n_out; o++) {
            const uint8_t *wr = (const uint8_t *)w + (size_t)o * rb;
            TW_ASSERT(tw_dequantize_row(wt, wr, wrow, k) == TW_OK);
            double acc = bias ? (double)bias[o] : 0.0;
            for (int64_t j = 0; j < k; j++) acc += (double)wrow[j] * xa[j];
            if (act == TW_ACT_Q8A)
                for (int64_t b = 0; b < k / bs; b++) acc += block_min(wt, wr + b * bb) * corr[b];
            y[i * n_out + o] = (float)acc;
        }
    }
    tw_free(wrow);
    tw_free(xa);
    tw_free(corr);
    tw_free(qa);
    tw_free(qk);
}

void tw_ref_matmul(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                   int64_t m, int64_t k, int64_t n_out) {
    matmul_ref(y, x, w, wt, bias, m, k, n_out, 1);
}

void tw_ref_matmul_dense(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                         int64_t m, int64_t k, int64_t n_out) {
    matmul_ref(y, x, w, wt, bias, m, k, n_out, 0);
}
