/* rmsnorm.c: the optimized CPU kernels of TW_OP_RMSNORM (kernels.h): a portable C variant, an
 * AVX2+FMA variant chosen at run time, and OpenMP over rows.
 *
 * Arithmetic (llama.cpp's, so that twin's activations are its bits): each square is an fp32
 * product, the squares are summed in fp64 (any order: an fp64 sum of a row's fp32 squares
 * carries far more bits than the fp32 mean keeps, so the order almost never shows), the mean
 * is rounded to fp32, scale = 1 / sqrtf(mean + eps) in fp32, and y = (x * scale) * w.
 * Precision: the squares' roundings (u each, all terms >= 0) and the fp32 mean, +eps, sqrt,
 * reciprocal and two products: within (n/4 + ...) u of the reference as the tests' bound
 * allows, in practice a few u. */
#include "cpu_kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

/* One row. y, x: (n), w: (n). */
static void row_portable(float *y, const float *x, const float *w, int64_t n, float eps) {
    double s0 = 0, s1 = 0;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += (double)(x[i] * x[i]);
        s1 += (double)(x[i + 1] * x[i + 1]);
    }
    for (; i < n; i++) s0 += (double)(x[i] * x[i]);
    float mean = (float)((s0 + s1) / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void tw_cpu_rmsnorm_f32_portable(float *y, const float *x, const float *w, int64_t rows,
                                 int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) row_portable(y + r * n, x + r * n, w, n, eps);
}

#ifdef TW_X86
/* Mask for the last n % 8 elements of a row: mask_tab + 8 - rem has `rem` leading -1s. */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

__attribute__((target("avx2,fma"))) static void row_avx2(float *y, const float *x,
                                                         const float *w, int64_t n, float eps) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 sq = _mm256_mul_ps(v, v); /* fp32 squares, as llama.cpp forms them */
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    int rem = (int)(n - i);
    for (int64_t j = i; j < n; j++) ss += (double)(x[j] * x[j]);
    float mean = (float)(ss / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    __m256 vs = _mm256_set1_ps(scale);
    __m256i m = _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - rem));
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
