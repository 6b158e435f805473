/* ref_nf4.c: the references of TW_OP_MATMUL and TW_OP_MATMUL_DX with NF4 weights
 * (nf4_kernels.h): the layout read field by field as kernels.h documents it (no shared code
 * with matmul_nf4.c's dequantizer), each element formed by the dequantization formula, then
 * the textbook sums in fp64 with one rounding per output. One thread. The 16 NF4 values are
 * the one table (tw_nf4_values_get), itself checked against the paper's construction. */
#include "cpu_kernels.h"
#include "nf4_kernels.h"

#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the formula's fp32 roundings, as bitsandbytes (no fma) */
#endif

/* Element (r, j) of the NF4 matrix w (n_out, k). */
static float ref_elem(const uint8_t *w, const tw_nf4_layout *L, int64_t k, int64_t r, int64_t j) {
    int64_t i = r * k + j, b = i / TW_NF4_BLOCK;
    float map, a2, off;
    memcpy(&map, w + L->map + (size_t)w[L->qabsmax + (size_t)b] * sizeof(float), sizeof map);
    memcpy(&a2, w + L->absmax2 + (size_t)(b / TW_NF4_BLOCK2) * sizeof(float), sizeof a2);
    memcpy(&off, w + L->offset, sizeof off);
    float t = map * a2;
    float absmax = t + off;
    uint8_t byte = w[L->codes + (size_t)(i / 2)];
    int code = i % 2 ? byte & 15 : byte >> 4;
    return tw_nf4_values_get()[code] * absmax; /* kernels.h: bitsandbytes' table */
}

/* Row r of w into row (k). */
static void ref_row(const void *w, const tw_nf4_layout *L, int64_t k, int64_t r, float *row) {
    for (int64_t j = 0; j < k; j++) row[j] = ref_elem(w, L, k, r, j);
}

tw_status tw_ref_matmul_nf4(float *y, const float *x, const void *w, const float *bias,
                            int64_t m, int64_t k, int64_t n_out) {
    tw_nf4_layout L;
    TW_ASSERT(tw_nf4_layout_get(n_out, k, &L) == TW_OK);
    float *row = tw_malloc((size_t)k * sizeof(float)); /* (k) W[o, :] */
    if (!row) return tw_error_wrap("matmul reference (nf4): a row of %lld", (long long)k);
    for (int64_t o = 0; o < n_out; o++) {
        ref_row(w, &L, k, o, row);
        for (int64_t i = 0; i < m; i++) {
            double s = bias ? (double)bias[o] : 0.0;
            for (int64_t j = 0; j < k; j++) s += (double)x[i * k + j] * (double)row[j];
            y[i * n_out + o] = (float)s;
        }
    }
    tw_free(row);
    return TW_OK;
}

tw_status tw_ref_matmul_dx_nf4(float *dx, const float *dy, const void *w, int64_t m, int64_t k,
                               int64_t n_out, int accumulate) {
    tw_nf4_layout L;
    TW_ASSERT(tw_nf4_layout_get(n_out, k, &L) == TW_OK);
    double *acc = tw_malloc((size_t)(m * k) * sizeof(double)); /* (m, k) */
    float *row = tw_malloc((size_t)k * sizeof(float));          /* (k) W[o, :] */
    if (!acc || !row) {
        tw_free(acc), tw_free(row);
        return tw_error_wrap("matmul_dx reference (nf4): %lld x %lld", (long long)m, (long long)k);
    }
    memset(acc, 0, (size_t)(m * k) * sizeof(double));
    for (int64_t o = 0; o < n_out; o++) {
        ref_row(w, &L, k, o, row);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) acc[i * k + j] += (double)dy[i * n_out + o] * row[j];
    }
    for (int64_t i = 0; i < m * k; i++) dx[i] = (float)(accumulate ? dx[i] + acc[i] : acc[i]);
    tw_free(acc), tw_free(row);
    return TW_OK;
}
