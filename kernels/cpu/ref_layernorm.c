/* ref_layernorm.c: the reference of TW_OP_LAYERNORM (kernels.h): mean, variance (two-pass,
 * biased), scale and shift in fp64, one rounding to fp32 at the end. */
#include "cpu_kernels.h"

#include <math.h>

void tw_ref_layernorm_f32(float *y, const float *x, const float *w, const float *b, int64_t rows,
                          int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += xr[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        double inv = 1.0 / sqrt(var / (double)n + (double)eps);
        for (int64_t i = 0; i < n; i++) {
            double v = ((double)xr[i] - mean) * inv;
            if (w) v *= w[i];
            if (b) v += b[i];
            yr[i] = (float)v;
        }
    }
}
