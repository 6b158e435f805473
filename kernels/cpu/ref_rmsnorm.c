/* ref_rmsnorm.c: the reference of TW_OP_RMSNORM (kernels.h), the specification the other
 * rmsnorm kernels are tested against: the sum of squares, the scale and the product are all
 * formed in fp64 and rounded once to fp32 at the end, so the reference itself is within about one
 * fp32 rounding (2^-24 relative) of the exact value for any n below 2^29. */
#include "cpu_kernels.h"

#include <math.h>

void tw_ref_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * (double)xr[i];
        double scale = 1.0 / sqrt(ss / (double)n + (double)eps);
        for (int64_t i = 0; i < n; i++) yr[i] = (float)((double)xr[i] * scale * (double)w[i]);
    }
}
