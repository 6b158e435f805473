/* elementwise.c: the optimized CPU kernels of TW_OP_MUL, TW_OP_SCALE, TW_OP_SWIGLU and
 * TW_OP_GELU (kernels.h): plain loops the compiler vectorizes, OpenMP over large chunks.
 * mul and scale round each product once, so they are bit-exact with the reference; swiglu
 * uses tw_exp8 (AVX2, 2 ulp) or expf, gelu fp32 libm (tanhf, erff; each within a few ulp)
 * except the erf form on AVX2 (tw_cpu_gelu_erf_f32_avx2: a rational fit of erf, below). */
#include "cpu_kernels.h"
#include "simd_avx2.h"

#include <math.h>
#include <string.h>

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

void tw_cpu_swiglu_f32_portable(float *y, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

#ifdef TW_AVX2
TW_AVX2 void tw_cpu_exp_f32_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, tw_exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(t, tw_exp8(_mm256_loadu_ps(t)));
        memcpy(y + i, t, (size_t)(n - i) * sizeof(float));
    }
}

/* silu(g) * u = g / (1 + e^-g) * u with tw_exp8 (2 ulp) and an IEEE division. */
TW_AVX2 void tw_cpu_swiglu_f32_avx2(float *y, const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = tw_exp8(_mm256_xor_ps(g, neg));
        __m256 v = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(y + i, v);
    }
    tw_cpu_swiglu_f32_portable(y + i, gate + i, up + i, n - i);
}
#else
void tw_cpu_exp_f32_avx2(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}
void tw_cpu_swiglu_f32_avx2(float *y, const float *gate, const float *up, int64_t n) {
    tw_cpu_swiglu_f32_portable(y, gate, up, n);
}
#endif

void tw_cpu_swiglu_f32(float *y, const float *gate, const float *up, int64_t n) {
    void (*fn)(float *, const float *, const float *, int64_t) =
        tw_cpu_has_avx2_fma() ? tw_cpu_swiglu_f32_avx2 : tw_cpu_swiglu_f32_portable;
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        fn(y + i0, gate + i0, up + i0, len);
    }
}

void tw_cpu_gelu_erf_f32_portable(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

#ifdef TW_AVX2
/* erf GELU (BERT) for 8 floats at a time: erf(z) = sign(z) (1 - t P(t) e^(-z^2)) with
 * t = 1 / (1 + p |z|), Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 absolute), in fp32 with
 * tw_exp8. gelu = 0.5 x (1 + erf(x / sqrt 2)) is then within 0.5 |x| (1.5e-7 + a few fp32
 * roundings of values <= 1) of the exact one, below the test's bound of 8 |x| u (kernels.h:
 * libm's erff is within a few ulp; this is the same order at a fraction of its cost). */
TW_AVX2 void tw_cpu_gelu_erf_f32_avx2(float *y, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 rs2 = _mm256_set1_ps(0.70710678118654752f), p = _mm256_set1_ps(0.3275911f);
    const __m256 a1 = _mm256_set1_ps(0.254829592f), a2 = _mm256_set1_ps(-0.284496736f);
    const __m256 a3 = _mm256_set1_ps(1.421413741f), a4 = _mm256_set1_ps(-1.453152027f);
    const __m256 a5 = _mm256_set1_ps(1.061405429f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(v, rs2);
        __m256 az = _mm256_andnot_ps(sign, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(p, az, one));
        __m256 poly = _mm256_fmadd_ps(a5, t, a4);
        poly = _mm256_fmadd_ps(poly, t, a3);
        poly = _mm256_fmadd_ps(poly, t, a2);
        poly = _mm256_fmadd_ps(poly, t, a1);
        poly = _mm256_mul_ps(poly, t);
        __m256 e = tw_exp8(_mm256_xor_ps(_mm256_mul_ps(az, az), sign)); /* e^(-z^2) */
        __m256 erf_abs = _mm256_fnmadd_ps(poly, e, one);
        __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, z)); /* sign of z */
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf)));
    }
    tw_cpu_gelu_erf_f32_portable(y + i, x + i, n - i);
}
#else
void tw_cpu_gelu_erf_f32_avx2(float *y, const float *x, int64_t n) {
    tw_cpu_gelu_erf_f32_portable(y, x, n);
}
#endif

void tw_cpu_gelu_f32(float *y, const float *x, int64_t n, int mode) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    if (mode == TW_GELU_ERF) {
        void (*fn)(float *, const float *, int64_t) =
            tw_cpu_has_avx2_fma() ? tw_cpu_gelu_erf_f32_avx2 : tw_cpu_gelu_erf_f32_portable;
        int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
        for (int64_t ch = 0; ch < nchunks; ch++) {
            int64_t i0 = ch * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
            fn(y + i0, x + i0, len);
        }
    } else
        CHUNKED_LOOP(n, y[i] = 0.5f * x[i] * (1.0f + tanhf(c * (x[i] + 0.044715f * x[i] * x[i] * x[i]))));
}
