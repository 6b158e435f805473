/* ref_rope.c: the reference of TW_OP_ROPE (kernels.h): the angle and the rotation in fp64
 * (pow, sin and cos of libm), one rounding to fp32 at the end. */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

void tw_ref_rope_f32(float *y, const float *x, const int32_t *pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, int mode, float theta_base,
                     float freq_scale, const float *ff) {
    int64_t half = rope_dim / 2;
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t h = 0; h < n_head; h++) {
            const float *xr = x + (t * n_head + h) * head_dim; /* (head_dim) */
            float *yr = y + (t * n_head + h) * head_dim;       /* (head_dim) */
            for (int64_t i = 0; i < half; i++) {
                double theta = (double)pos[t] * freq_scale *
                               pow((double)theta_base, -2.0 * (double)i / (double)rope_dim);
                if (ff) theta /= ff[i];
                int64_t ia = mode == TW_ROPE_NEOX ? i : 2 * i;
                int64_t ib = mode == TW_ROPE_NEOX ? i + half : 2 * i + 1;
                double a = xr[ia], b = xr[ib], c = cos(theta), s = sin(theta);
                yr[ia] = (float)(a * c - b * s);
                yr[ib] = (float)(a * s + b * c);
            }
            if (yr != xr)
                memcpy(yr + rope_dim, xr + rope_dim, (size_t)(head_dim - rope_dim) * sizeof(float));
        }
    }
}
