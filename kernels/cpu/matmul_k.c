/* matmul_k.c: TW_OP_MATMUL for Q4_K and Q6_K weights (the two types of a Q4_K_M file) with
 * activations quantized to Q8_K, AVX2, with ggml's arithmetic so that outputs have llama.cpp's
 * bits (as matmul_q.c does for the 32-element types).
 *
 * Per 256-element super-block, the integer products are summed exactly into 8 int32 lanes, lane
 * l holding the bytes 4l..4l+3 of every 32-element chunk, weighted by the chunk's scale (Q4_K: one
 * 6-bit scale per 32 elements; Q6_K: one signed 8-bit scale per 16, so lanes 0-3 and 4-7 of a
 * chunk have their own); Q6_K's -32 offset is taken out per lane l as 32 (bsum_2l sc_2l + bsum_2l+1
 * sc_2l+1). Each lane is converted to fp32 and accumulated with one fma by d = dx * dw; the
 * output is the fixed horizontal sum of the 8 lanes. Q4_K's minimum term runs in 4 lanes,
 * lane k = m_2k s_2k + m_2k+1 s_2k+1 (s the 32-element sums of the activations) accumulated
 * with fma by -dx * dmin, and is added last as (a0 + a2) + (a1 + a3).
 * Other K types, and machines without AVX2, take the generic path of matmul.c. Each output is
 * computed on its own (one weight row against one activation row), so results do not depend on
 * the batch or the thread count. */
#include "cpu_kernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

static inline float f16_le(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return tw_f16_to_f32(h);
}

/* The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block's 12 scale bytes. */
static inline void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q4_K block: d, dmin (fp16), scales[12], qs[128]; 144 bytes. w: nb blocks, x: nb blocks. */
AVX2 static float dot_q4_k(const uint8_t *w, const tw_q8k_block *x, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += 144) {
        const tw_q8k_block *xb = x + b;
        const float d = xb->d * f16_le(w), dmin = -xb->d * f16_le(w + 2);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) k4_scale_min(w + 4, j, &sc[j], &mn[j]);
        const uint8_t *qs = w + 16;
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i xl = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * j));
            __m256i xh = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * j + 32));
            __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_set1_epi16((short)sc[2 * j]));
            __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), _mm256_set1_epi16((short)sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        int32_t prod[4];
        for (int k = 0; k < 4; k++) {
            int s0 = xb->bsums[4 * k] + xb->bsums[4 * k + 1], s1 = xb->bsums[4 * k + 2] + xb->bsums[4 * k + 3];
            prod[k] = mn[2 * k] * s0 + mn[2 * k + 1] * s1;
        }
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)prod)), acc_m);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    return hsum8(acc) + _mm_cvtss_f32(acc_m);
}

/* Q6_K block: ql[128], qh[64], scales[16] (int8), d (fp16); 210 bytes. */
AVX2 static float dot_q6_k(const uint8_t *w, const tw_q8k_block *x, int64_t nb) {
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += 210) {
        const tw_q8k_block *xb = x + b;
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        const float d = xb->d * f16_le(w + 208);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 2; j++) {
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * j));
            __m256i l2 = _mm256_loadu_si256((const __m256i *)(ql + 64 * j + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)(qh + 32 * j));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l1, m15), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l2, m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l2, 4), m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                int c = 4 * j + k; /* the 32-element chunk: scales 2c (bytes 0-15), 2c+1 */
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * c));
                __m256i s16 = _mm256_set_m128i(_mm_set1_epi16(sc[2 * c + 1]), _mm_set1_epi16(sc[2 * c]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), s16));
            }
        }
        __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums),
                                        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)));
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8(acc);
}

int tw_cpu_matmul_k_supported(tw_dtype t) {
    return (t == TW_DTYPE_Q4_K || t == TW_DTYPE_Q6_K) && tw_cpu_has_avx2_fma();
}

#define O_CHUNK 16 /* output rows per OpenMP work item */

tw_status tw_cpu_matmul_k(float *y, const float *x, const void *w, tw_dtype t, const float *bias,
                          int64_t m, int64_t k, int64_t n_out) {
    int64_t nb = k / TW_QKK;
    size_t rb = tw_dtype_row_bytes(t, k);
    tw_q8k_block *xa = tw_malloc((size_t)(m * nb) * sizeof *xa); /* (m, k/256) */
    if (!xa) return tw_error_wrap("matmul: activation blocks for %lld x %lld", (long long)m,
                                  (long long)k);
    int nt = tw_threads_get();
#pragma omp parallel for schedule(static) num_threads(nt) if (m >= 16)
    for (int64_t i = 0; i < m; i++) tw_cpu_quantize_q8k(x + i * k, xa + i * nb, k);
    float (*dot)(const uint8_t *, const tw_q8k_block *, int64_t) = t == TW_DTYPE_Q4_K ? dot_q4_k : dot_q6_k;
    int64_t nchunks = (n_out + O_CHUNK - 1) / O_CHUNK;
#pragma omp parallel for schedule(static) num_threads(nt) if (nchunks > 1 && m * n_out * k >= 65536)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t o0 = ch * O_CHUNK, o1 = o0 + O_CHUNK < n_out ? o0 + O_CHUNK : n_out;
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = o0; o < o1; o++) {
                float v = dot((const uint8_t *)w + (size_t)o * rb, xa + i * nb, nb);
                y[i * n_out + o] = bias ? v + bias[o] : v;
            }
    }
    tw_free(xa);
    return TW_OK;
}
#else
int tw_cpu_matmul_k_supported(tw_dtype t) { return 0; }
tw_status tw_cpu_matmul_k(float *y, const float *x, const void *w, tw_dtype t, const float *bias,
                          int64_t m, int64_t k, int64_t n_out) {
    return tw_error(TW_ERR_UNSUPPORTED, "matmul_k: no AVX2 on this architecture");
}
#endif
