/* ref_activations.c: the references of TW_OP_SWIGLU, TW_OP_GELU and TW_OP_SOFTMAX
 * (kernels.h): each formula in fp64 with libm's exp, tanh and erf, one rounding to fp32. */
#include "cpu_kernels.h"

#include <math.h>

void tw_ref_swiglu_f32(float *y, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i];
        y[i] = (float)(g / (1.0 + exp(-g)) * (double)up[i]);
    }
}

void tw_ref_gelu_f32(float *y, const float *x, int64_t n, int mode) {
    const double c = sqrt(2.0 / M_PI);
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(mode == TW_GELU_ERF ? 0.5 * v * (1.0 + erf(v / sqrt(2.0)))
                                           : 0.5 * v * (1.0 + tanh(c * (v + 0.044715 * v * v * v))));
    }
}

void tw_ref_softmax_f32(float *y, const float *x, int64_t rows, int64_t n, float scale) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, (double)scale * xr[i]);
        for (int64_t i = 0; i < n; i++) sum += exp((double)scale * xr[i] - mx);
        for (int64_t i = 0; i < n; i++) yr[i] = (float)(exp((double)scale * xr[i] - mx) / sum);
    }
}
