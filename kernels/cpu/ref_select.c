/* ref_select.c: the references of TW_OP_ARGMAX and TW_OP_TOPK (kernels.h): plain scans
 * (k passes for top-k, each taking the largest value not yet taken, the lowest index first on
 * ties). Exact: every kernel must agree on every index and value. */
#include "cpu_kernels.h"

#include <string.h>

void tw_ref_argmax_f32(int32_t *idx, const float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (xr[i] > xr[best]) best = i;
        idx[r] = (int32_t)best;
    }
}

void tw_ref_topk_f32(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t n,
                     int64_t k) {
    uint8_t *taken = tw_malloc((size_t)n); /* (n) */
    TW_ASSERT(taken); /* the reference runs in tests only */
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        memset(taken, 0, (size_t)n);
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t i = 0; i < n; i++)
                if (!taken[i] && (best < 0 || xr[i] > xr[best])) best = i;
            taken[best] = 1;
            vals[r * k + j] = xr[best];
            idx[r * k + j] = (int32_t)best;
        }
    }
    tw_free(taken);
}
