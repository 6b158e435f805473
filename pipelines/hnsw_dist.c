/* hnsw_dist.c: the distance kernels of the HNSW index (hnsw_impl.h): squared L2 and negated
 * dot product on f32, and the int8 x int8 dot product of the quantised search. Each has a
 * scalar version (the reference, and what runs without AVX2/FMA or with TWIN_CPU_PORTABLE=1)
 * and an AVX2/FMA one chosen at run time, as kernels/cpu does. The SIMD versions sum in a
 * different order than the scalar ones, so f32 results differ in the last bits; the int8 dot
 * is exact integer arithmetic and equal on both. */
#include "hnsw_impl.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HNSW_HAVE_X86 1
#endif

/* ---- scalar ------------------------------------------------------------------------------ */

/* a, b: (n). Four partial sums so the compiler can pipeline without -ffast-math. */
static float l2_scalar(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
    }
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

static float negdot_scalar(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i], s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2], s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return -((s0 + s1) + (s2 + s3));
}

/* a, b: (n) int8 in [-127, 127]. */
static int32_t dots8_scalar(const int8_t *a, const int8_t *b, size_t n) {
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* ---- AVX2 / FMA -------------------------------------------------------------------------- */

#ifdef HNSW_HAVE_X86
#define HNSW_AVX2 __attribute__((target("avx2,fma")))

HNSW_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

/* Four independent FMA chains of 8 lanes (32 floats per step) hide the FMA latency. */
HNSW_AVX2 static float l2_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

HNSW_AVX2 static float negdot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return -s;
}

/* int8 x int8 with maddubs, which takes one unsigned operand: |a| * sign(b, a) has the
 * product's sign, and with both in [-127, 127] a pair sum is at most 2 * 127 * 127 = 32258,
 * inside int16, so maddubs never saturates. Then madd with ones widens pairs to int32. */
HNSW_AVX2 static int32_t dots8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)(a + i));
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)(b + i));
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(a + i + 32));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + i + 32));
        __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(b0, a0));
        __m256i p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(a1, a1), _mm256_sign_epi8(b1, a1));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, ones));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)(a + i));
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)(b + i));
        __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(b0, a0));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
    }
    __m256i acc = _mm256_add_epi32(acc0, acc1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    int32_t r = _mm_cvtsi128_si32(s);
    for (; i < n; i++) r += (int32_t)a[i] * (int32_t)b[i];
    return r;
}
#endif

/* ---- selection --------------------------------------------------------------------------- */

hnsw_kernels hnsw_kernels_scalar(void) {
    hnsw_kernels k = {l2_scalar, negdot_scalar, dots8_scalar, 0};
    return k;
}

hnsw_kernels hnsw_kernels_select(void) {
    hnsw_kernels k = hnsw_kernels_scalar();
#ifdef HNSW_HAVE_X86
    /* TWIN_CPU_PORTABLE (read here, per index, not cached in a global) switches SIMD off like
     * it does for the op table. */
    const char *e = getenv("TWIN_CPU_PORTABLE");
    int portable = e && *e && strcmp(e, "0") != 0;
    tw_cpu_features f = tw_cpu_features_get();
    if (f.avx2 && f.fma && !portable) {
        k.l2 = l2_avx2;
        k.negdot = negdot_avx2;
        k.dots8 = dots8_avx2;
        k.simd = 1;
    }
#endif
    return k;
}
