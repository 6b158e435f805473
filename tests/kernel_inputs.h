/* kernel_inputs.h: what the differential kernel tests share (tests/unit/test_kernels_cpu.c,
 * tests/gpu/test_cuda_ops.c): a seeded generator of inputs that are never zero, and the
 * elementwise relative error against a reference. */
#ifndef TWIN_KERNEL_INPUTS_H
#define TWIN_KERNEL_INPUTS_H

#include <math.h>
#include <stdint.h>

#include "core.h"
#include "quant.h"

#include <string.h>

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

/* max_i |y_i - ref_i| / mag_i over (n): the error against a per-element magnitude that the
 * caller derives (for outputs that may cancel to near zero, where a relative error means
 * nothing). mag_i > 0. Infinity when y holds a NaN. */
static inline double kin_max_scaled_err(const float *y, const float *ref, const double *mag,
                                        int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - (double)ref[i]) / mag[i];
        if (isnan(y[i]) || isnan(e)) return INFINITY;
        if (e > m) m = e;
    }
    return m;
}

/* A random fp16 of magnitude in [lo, 2 lo), sign positive, written little-endian at p. */
static inline void kin_put_f16(kin_rng *r, uint8_t *p, float lo) {
    uint16_t h = tw_f32_to_f16((float)((1.0 + kin_unit(r)) * lo));
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* `rows` rows of n elements of type t (tw_dtype_row_bytes(t, n) bytes each; tw_free): for the
 * types twin can quantize (F32, F16, BF16, Q8_0, Q4_0, Q4_1), random values (kin_fill, scale
 * `scale`) quantized by tw_quantize_row, as a converter would make them; for the others,
 * random bytes with every scale field set to a finite positive value of a size that keeps
 * the dequantized elements near `scale`. Either way every bit pattern of the quants occurs. */
static inline uint8_t *kin_quant_rows(kin_rng *r, tw_dtype t, int64_t rows, int64_t n,
                                      float scale) {
    size_t rb = tw_dtype_row_bytes(t, n), bb = tw_dtype_type_size(t);
    TW_ASSERT(rb > 0);
    uint8_t *q = (uint8_t *)tw_malloc(rb * (size_t)rows);
    TW_ASSERT(q);
    float *tmp = (float *)tw_malloc((size_t)n * sizeof(float));
    TW_ASSERT(tmp);
    for (int64_t row = 0; row < rows; row++) {
        uint8_t *qr = q + (size_t)row * rb;
        kin_fill(r, tmp, n, scale);
        if (tw_quantize_row(t, tmp, qr, n) == TW_OK) continue;
        for (size_t i = 0; i < rb; i++) qr[i] = (uint8_t)kin_next(r);
        for (size_t b = 0; b < rb / bb; b++) {
            uint8_t *blk = qr + b * bb;
            switch (t) {
            case TW_DTYPE_Q5_0: kin_put_f16(r, blk, scale / 16); break;           /* q - 16 */
            case TW_DTYPE_Q5_1: kin_put_f16(r, blk, scale / 32); kin_put_f16(r, blk + 2, scale / 2); break;
            case TW_DTYPE_Q8_1: kin_put_f16(r, blk, scale / 128); kin_put_f16(r, blk + 2, scale); break;
            case TW_DTYPE_Q2_K: kin_put_f16(r, blk + 80, scale / 64); kin_put_f16(r, blk + 82, scale / 64); break;
            case TW_DTYPE_Q3_K: kin_put_f16(r, blk + 108, scale / 128); break;
            case TW_DTYPE_Q4_K:
            case TW_DTYPE_Q5_K: kin_put_f16(r, blk, scale / 512); kin_put_f16(r, blk + 2, scale / 256); break;
            case TW_DTYPE_Q6_K: kin_put_f16(r, blk + 208, scale / 1024); break;
            case TW_DTYPE_Q8_K: {
                float d = (float)((1.0 + kin_unit(r)) * scale / 128);
                memcpy(blk, &d, 4);
                break;
            }
            default: TW_ASSERT(!"kin_quant_rows: no layout for this type");
            }
        }
    }
    tw_free(tmp);
    return q;
}

#endif
