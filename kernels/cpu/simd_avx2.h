/* simd_avx2.h: private to kernels/cpu/: small AVX2 helpers shared by several kernels. Every
 * function is compiled for avx2+fma (callers must check tw_cpu_has_avx2_fma()). */
#ifndef TWIN_SIMD_AVX2_H
#define TWIN_SIMD_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TW_AVX2 __attribute__((target("avx2,fma,f16c")))

/* e^x for 8 floats, within 2 ulp of the exact value for x in [-87.3, 88.3]; 0 below -87.3
 * (where e^x is about FLT_MIN: the kernels use it for weights that vanish there), +inf above
 * 88.3 (2^127), NaN for NaN.
 * x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2, r formed with ln2 in two parts (one
 * fma each: r exact to ~2^-35); e^r by its Taylor polynomial of degree 7 in Horner form
 * (truncation below 2^-27 relatively, each step within half an ulp); 2^n (n in [-126, 127])
 * built in the exponent bits, one exact product. */
TW_AVX2 static inline __m256 tw_exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3f), lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc); /* ln2, high 9 bits */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);       /* ln2 - high part */
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN stays NaN */
}
#endif

#endif
