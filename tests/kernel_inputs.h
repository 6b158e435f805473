/* kernel_inputs.h: what the differential kernel tests share (tests/unit/test_kernels_cpu.c,
 * tests/gpu/test_cuda_ops.c): a seeded generator of inputs that are never zero, and the
 * elementwise relative error against a reference. */
#ifndef TWIN_KERNEL_INPUTS_H
#define TWIN_KERNEL_INPUTS_H

#include <math.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    uint64_t s;
} kin_rng;

static inline uint64_t kin_next(kin_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double kin_unit(kin_rng *r) { return (double)(kin_next(r) >> 11) * 0x1.0p-53; }

/* v: (n). Never zero: magnitude in [2^-3, 2^1) times `scale`, random sign. */
static inline void kin_fill(kin_rng *r, float *v, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float m = (float)ldexp(1.0 + kin_unit(r), (int)(kin_next(r) % 4) - 3) * scale;
        v[i] = kin_next(r) & 1 ? m : -m;
    }
}

/* A float array of n elements from tw_malloc (tw_free); aborts the test when out of memory. */
static inline float *kin_floats(int64_t n) {
    float *p = (float *)tw_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    TW_ASSERT(p);
    return p;
}

/* max_i |y_i - ref_i| / |ref_i| over (n); ref must hold no zeros. Infinity when y holds a
 * NaN, so a NaN never passes a bound. */
static inline double kin_max_rel_err(const float *y, const float *ref, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - (double)ref[i]) / fabs((double)ref[i]);
        if (isnan(y[i]) || isnan(e)) return INFINITY;
        if (e > m) m = e;
    }
    return m;
}

#endif
