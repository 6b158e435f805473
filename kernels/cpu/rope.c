/* rope.c: the optimized CPU kernel of TW_OP_ROPE (kernels.h). The angles depend on the token
 * and the pair, not on the head: cos and sin are computed once per (token, pair) in fp64
 * (exactly as the reference, then rounded to fp32) and applied to every head in fp32. The
 * only differences from the reference are the fp32 rounding of cos, sin and the two
 * products and the sum: a few ulp of the pair's magnitude. */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>


void tw_cpu_rope_f32(float *y, const float *x, const int32_t *pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, int mode, float theta_base,
                     float freq_scale, const float *ff) {
    int64_t half = rope_dim / 2;
    int par = n_tok > 1 && n_tok * n_head * head_dim >= 16384;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t t = 0; t < n_tok; t++) {
        float cs[2 * 256];
        for (int64_t i0 = 0; i0 < half; i0 += 256) {
            int64_t i1 = half - i0 < 256 ? half : i0 + 256;
            for (int64_t i = i0; i < i1; i++) {
                double theta = (double)pos[t] * freq_scale *
                               pow((double)theta_base, -2.0 * (double)i / (double)rope_dim);
                if (ff) theta /= ff[i];
                cs[2 * (i - i0)] = (float)cos(theta);
                cs[2 * (i - i0) + 1] = (float)sin(theta);
            }
            for (int64_t h = 0; h < n_head; h++) {
                const float *xr = x + (t * n_head + h) * head_dim; /* (head_dim) */
                float *yr = y + (t * n_head + h) * head_dim;       /* (head_dim) */
                for (int64_t i = i0; i < i1; i++) {
                    int64_t ia = mode == TW_ROPE_NEOX ? i : 2 * i;
                    int64_t ib = mode == TW_ROPE_NEOX ? i + half : 2 * i + 1;
                    float a = xr[ia], b = xr[ib], c = cs[2 * (i - i0)], s = cs[2 * (i - i0) + 1];
                    yr[ia] = a * c - b * s;
                    yr[ib] = a * s + b * c;
                }
            }
        }
        if (y != x)
            for (int64_t h = 0; h < n_head; h++)
                memcpy(y + (t * n_head + h) * head_dim + rope_dim,
                       x + (t * n_head + h) * head_dim + rope_dim,
                       (size_t)(head_dim - rope_dim) * sizeof(float));
    }
}
