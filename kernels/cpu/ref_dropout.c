/* ref_dropout.c: the reference of TW_OP_DROPOUT (kernels.h), its specification written out
 * without sharing code with dropout.c: the element's 64 mask bits are splitmix64's finalizer
 * applied to (key xor t * golden), then to that plus j * a second odd constant; the element is
 * kept when the top 24 bits are >= round(p 2^24), and scaled by the fp32 value of 1/(1-p)
 * (the fp64 product of two floats rounds once, so it equals the fp32 product). */
#include "dropout.h"

#include <math.h>

static uint64_t ref_fmix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z;
}

void tw_ref_dropout_f32(float *y, const float *x, int64_t rows, int64_t n, float p, uint64_t key,
                        int64_t row0) {
    double thr = nearbyint((double)p * 16777216.0);
    float s = (float)(1.0 / (1.0 - (double)p));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            uint64_t t = (uint64_t)(row0 + r);
            uint64_t bits = ref_fmix(ref_fmix(key ^ (t * 0x9E3779B97F4A7C15ull)) +
                                     (uint64_t)j * 0xD1B54A32D192ED03ull);
            double u = (double)(bits >> 40);
            y[r * n + j] = u >= thr ? (float)((double)x[r * n + j] * (double)s) : 0.0f;
        }
}
