/* elementwise.c: the optimized CPU kernels of TW_OP_MUL, TW_OP_SCALE, TW_OP_SWIGLU and
 * TW_OP_GELU (kernels.h): plain loops the compiler vectorizes, OpenMP over large chunks.
 * mul and scale round each product once, so they are bit-exact with the reference; swiglu
 * and gelu use fp32 libm (expf, tanhf, erff; each within a few ulp). */
#include "cpu_kernels.h"

#include <math.h>

/* Elements per OpenMP chunk: large enough that a chunk costs more than handing it out. */
#define CHUNK 65536

#define CHUNKED_LOOP(n, body)                                                                 \
    do {                                                                                      \
        int64_t nchunks_ = ((n) + CHUNK - 1) / CHUNK;                                         \
        _Pragma("omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks_ > 1)") \
        for (int64_t c_ = 0; c_ < nchunks_; c_++) {                                           \
            int64_t i0 = c_ * CHUNK, i1 = (n) - i0 < CHUNK ? (n) : i0 + CHUNK;                \
            for (int64_t i = i0; i < i1; i++) body;                                           \
        }                                                                                     \
    } while (0)

void tw_cpu_mul_f32(float *y, const float *a, const float *b, int64_t n) {
    CHUNKED_LOOP(n, y[i] = a[i] * b[i]);
}

void tw_cpu_scale_f32(float *y, const float *x, float s, int64_t n) {
    CHUNKED_LOOP(n, y[i] = x[i] * s);
}

void tw_cpu_swiglu_f32(float *y, const float *gate, const float *up, int64_t n) {
    CHUNKED_LOOP(n, y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i]);
}

void tw_cpu_gelu_f32(float *y, const float *x, int64_t n, int mode) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    if (mode == TW_GELU_ERF)
        CHUNKED_LOOP(n, y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f)));
    else
        CHUNKED_LOOP(n, y[i] = 0.5f * x[i] * (1.0f + tanhf(c * (x[i] + 0.044715f * x[i] * x[i] * x[i]))));
}
