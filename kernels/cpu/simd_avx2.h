/* simd_avx2.h: private to kernels/cpu/: small AVX2 helpers shared by several kernels. Every
 * function is compiled for avx2+fma (callers must check tw_cpu_has_avx2_fma()). */
#ifndef TWIN_SIMD_AVX2_H
#define TWIN_SIMD_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TW_AVX2 __attribute__((target("avx2,fma,f16c")))

/* e^x for 8 floats: the same arithmetic as ggml's vectorized expf (llama.cpp's softmax and
 * silu), so that twin's attention and SwiGLU give llama.cpp's bits: within 2 ulp of e^x.
 * x = n ln2 + b: n = x/ln2 rounded to an integer by adding 1.5 * 2^23 (the integer lands in
 * the low mantissa bits of z), b formed with ln2 in two parts (two fnmadd); e^b - 1 ~ b (c1 +
 * c2 b + c3 b^2 + c4 b^3 + c5 b^4), a degree-5 fit evaluated as
 *   ((c5 b + c4) b^2 + (c3 b + c2)) b^2 + c1 b,
 * and e^x = k + k (e^b - 1) with k = 2^n from n's bits. Past |n| > 126 the power of two is
 * split in two factors (s1 s2 = 2^n) so that the result underflows or overflows gradually;
 * past |n| > 192 the result is 0 or +inf. NaN in, NaN out. */
TW_AVX2 static inline __m256 tw_exp8(__m256 x) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23); /* n in the exponent */
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
    const __m256 b2 = _mm256_mul_ps(b, b);
    const __m256 hi = _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f));
    const __m256 lo = _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f));
    const __m256 poly = _mm256_fmadd_ps(_mm256_fmadd_ps(hi, b2, lo), b2,
                                        _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n); /* |n| */
    const __m256 big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    if (!_mm256_movemask_ps(big)) return _mm256_fmadd_ps(poly, k, k);
    /* 2^n = s1 * s2: s1 = 2^127 (n > 0) or 2^-125 (n <= 0), s2 the rest. */
    const __m256i neg = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                         _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(neg, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, neg));
    const __m256 huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    const __m256 split = _mm256_mul_ps(_mm256_fmadd_ps(s2, poly, s2), s1);
    __m256 r = _mm256_blendv_ps(_mm256_fmadd_ps(k, poly, k), split, big);
    return _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
}
#endif

#endif
