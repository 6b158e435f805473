/* rmsnorm.c: the optimized CPU kernels of TW_OP_RMSNORM (kernels.h): a portable C variant, an
 * AVX2+FMA variant chosen at run time, and OpenMP over rows.
 *
 * Precision: the sum of squares accumulates in fp32 over several independent partial sums
 * (4 in portable C, 8 lanes x 2 registers with AVX2), which are then added together; the
 * scale and the products are fp32. Each partial sum adds about n/lanes terms, so the worst
 * relative error grows like (n/lanes) * 2^-24 (all terms are >= 0, so there is no
 * cancellation); the tests derive their bound from this. */
#include "cpu_kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

/* One row. y, x: (n), w: (n). */
static void row_portable(float *y, const float *x, const float *w, int64_t n, float eps) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * x[i];
        s1 += x[i + 1] * x[i + 1];
        s2 += x[i + 2] * x[i + 2];
        s3 += x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * x[i];
    float ss = (s0 + s1) + (s2 + s3);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void tw_cpu_rmsnorm_f32_portable(float *y, const float *x, const float *w, int64_t rows,
                                 int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) row_portable(y + r * n, x + r * n, w, n, eps);
}

#ifdef TW_X86
/* Mask for the last n % 8 elements of a row: mask_tab + 8 - rem has `rem` leading -1s. */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void row_avx2(float *y, const float *x,
                                                         const float *w, int64_t n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    int rem = (int)(n - i);
    __m256i m = _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - rem));
    if (rem) {
        __m256 v = _mm256_maskload_ps(x + i, m); /* masked lanes read nothing and give 0 */
        a1 = _mm256_fmadd_ps(v, v, a1);
    }
    float ss = hsum8(_mm256_add_ps(a0, a1));
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(w + i)));
    }
    if (rem) {
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m)));
    }
}

void tw_cpu_rmsnorm_f32_avx2(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                             float eps) {
    for (int64_t r = 0; r < rows; r++) row_avx2(y + r * n, x + r * n, w, n, eps);
}
#else
/* No AVX2 on this architecture: the tests never call this (tw_cpu_has_avx2_fma() is 0), but
 * the symbol stays so that callers need no #ifdef. */
void tw_cpu_rmsnorm_f32_avx2(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                             float eps) {
    tw_cpu_rmsnorm_f32_portable(y, x, w, rows, n, eps);
}
#endif

/* Below this many elements in total (~20 us at one core's memory bandwidth) the
 * rows run on the calling thread: waking an OpenMP team and joining it costs more. */
#define PAR_MIN_ELEMS 65536

void tw_cpu_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps) {
    void (*row)(float *, const float *, const float *, int64_t, float) = row_portable;
#ifdef TW_X86
    if (tw_cpu_has_avx2_fma()) row = row_avx2;
#endif
    int par = rows > 1 && rows * n >= PAR_MIN_ELEMS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t r = 0; r < rows; r++) row(y + r * n, x + r * n, w, n, eps);
}
