/* layernorm.c: the optimized CPU kernel of TW_OP_LAYERNORM (kernels.h): two passes in fp32
 * (the mean over 8 partial sums, then the centred squares over 8 partial sums; the centred
 * second pass avoids the cancellation of E[x^2] - E[x]^2), OpenMP over rows. */
#include "cpu_kernels.h"

#include <math.h>

/* Sum of v over (n) in 8 independent partial sums, joined as a tree. */
static float sum8(const float *v, int64_t n, float sub, int square) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            float d = v[i + l] - sub;
            s[l] += square ? d * d : d;
        }
    for (; i < n; i++) {
        float d = v[i] - sub;
        s[i % 8] += square ? d * d : d;
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

#define PAR_MIN_ELEMS 65536

void tw_cpu_layernorm_f32(float *y, const float *x, const float *w, const float *b, int64_t rows,
                          int64_t n, float eps) {
    int par = rows > 1 && rows * n >= PAR_MIN_ELEMS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        float mean = sum8(xr, n, 0.0f, 0) / (float)n;
        float var = sum8(xr, n, mean, 1) / (float)n;
        float inv = 1.0f / sqrtf(var + eps);
        for (int64_t i = 0; i < n; i++) {
            float v = (xr[i] - mean) * inv;
            if (w) v *= w[i];
            if (b) v += b[i];
            yr[i] = v;
        }
    }
}
