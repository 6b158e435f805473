/* matmul_f.c: TW_OP_MATMUL for the float weight types (F32, F16, BF16): x stays fp32 (act(x)
 * = x), weights are widened to fp32 (F16C for F16, a shift for BF16) and multiplied with FMA.
 *
 * Tiles as in matmul_q.c: MR rows of x against NR rows of W, each weight chunk of 8 widened
 * once for the MR rows; every output (i, o) gets the same operations whatever the tile (one
 * 8-lane accumulator over the chunks of 8 in order, the last partial chunk zero-padded, the
 * fixed horizontal sum, then the bias), so rows are bit-identical alone or in a batch and
 * with any thread count. Portable C: 8 partial sums per output, joined as a tree.
 *
 * Why not OpenBLAS sgemm for large m: its kernels depend on m (a row of a batch would not
 * match the same row alone, and a sequence would decode differently alone and in a batch),
 * and no benchmarked model has F32 weight matrices. */
#include "cpu_kernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

#define INLINE static inline __attribute__((always_inline))
#ifndef PREFETCH_F
#define PREFETCH_F 4096 /* bytes ahead in the weight rows of a matvec (0: no software prefetch) */
#endif

/* Weight element j of row w (type t) as fp32. */
static inline float wf(tw_dtype t, const void *w, int64_t j) {
    switch (t) {
    case TW_DTYPE_F16: return tw_f16_to_f32(((const uint16_t *)w)[j]);
    case TW_DTYPE_BF16: return tw_bf16_to_f32(((const uint16_t *)w)[j]);
    default: return ((const float *)w)[j];
    }
}

static void row_portable(float *y, int64_t ldy, const float *x, int64_t m, const void *w,
                         tw_dtype t, int64_t k, const float *bias) {
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * k;
        float s[8] = {0};
        for (int64_t j = 0; j < k; j++) s[j % 8] += wf(t, w, j) * xr[j];
        float v = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        y[i * ldy] = v + (bias ? *bias : 0.0f);
    }
}

#ifdef TW_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* 8 weights from j on as fp32; n < 8 reads only n (the rest 0). */
AVX2 static __m256 wload(tw_dtype t, const void *w, int64_t j, int n) {
    if (t == TW_DTYPE_F32) {
        if (n == 8) return _mm256_loadu_ps((const float *)w + j);
        float tmp[8] = {0};
        memcpy(tmp, (const float *)w + j, (size_t)n * 4);
        return _mm256_loadu_ps(tmp);
    }
    __m128i h;
    if (n == 8) {
        h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + j));
    } else {
        uint16_t tmp[8] = {0};
        memcpy(tmp, (const uint16_t *)w + j, (size_t)n * 2);
        h = _mm_loadu_si128((const __m128i *)tmp);
    }
    if (t == TW_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* 8 weights from j on as fp32. */
AVX2 INLINE __m256 wload8(tw_dtype t, const void *w, int64_t j) {
    if (t == TW_DTYPE_F32) return _mm256_loadu_ps((const float *)w + j);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + j));
    if (t == TW_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* BF16 */
}

AVX2 static __m256 xload(const float *x, int n) {
    if (n == 8) return _mm256_loadu_ps(x);
    float tmp[8] = {0};
    memcpy(tmp, x, (size_t)n * 4);
    return _mm256_loadu_ps(tmp);
}

AVX2 INLINE float hsum8f(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 INLINE void ftile(tw_dtype t, const int MR, const int NR, float *y, int64_t ldy,
                       const float *x, const uint8_t *w, size_t rb, int64_t k,
                       const float *bias) {
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t j = 0;
    /* a matvec streams its weight rows from memory: prefetch each row PREFETCH_F bytes ahead,
     * once per 64-byte line (elements per line: 32 of F16/BF16, 16 of F32) */
    const int64_t line = t == TW_DTYPE_F32 ? 16 : 32;
    for (; j + 8 <= k; j += 8) {
        if (MR == 1 && PREFETCH_F != 0 && j % line == 0)
#pragma GCC unroll 4
            for (int c = 0; c < NR; c++)
                _mm_prefetch((const char *)(w + (size_t)c * rb) + j * (line == 16 ? 4 : 2) + PREFETCH_F,
                             _MM_HINT_T0);
        __m256 wv[4];
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) wv[c] = wload8(t, w + (size_t)c * rb, j);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256 xv = _mm256_loadu_ps(x + r * k + j);
#pragma GCC unroll 4
            for (int c = 0; c < NR; c++) acc[r][c] = _mm256_fmadd_ps(wv[c], xv, acc[r][c]);
        }
    }
    if (j < k) { /* the last partial chunk, zero-padded: one more fma of the same kind */
        int n = (int)(k - j);
        __m256 wv[4];
        for (int c = 0; c < NR; c++) wv[c] = wload(t, w + (size_t)c * rb, j, n);
        for (int r = 0; r < MR; r++) {
            __m256 xv = xload(x + r * k + j, n);
            for (int c = 0; c < NR; c++) acc[r][c] = _mm256_fmadd_ps(wv[c], xv, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NR; c++) y[r * ldy + c] = hsum8f(acc[r][c]) + (bias ? bias[c] : 0.0f);
}

#define FTILE_SHAPES(T)                                                                       \
    switch (mr * 8 + nr) {                                                                    \
    case 1 * 8 + 1: ftile(T, 1, 1, y, ldy, x, w, rb, k, bias); break;                         \
    case 1 * 8 + 2: ftile(T, 1, 2, y, ldy, x, w, rb, k, bias); break;                         \
    case 1 * 8 + 4: ftile(T, 1, 4, y, ldy, x, w, rb, k, bias); break;                         \
    case 2 * 8 + 1: ftile(T, 2, 1, y, ldy, x, w, rb, k, bias); break;                         \
    case 2 * 8 + 2: ftile(T, 2, 2, y, ldy, x, w, rb, k, bias); break;                         \
    case 3 * 8 + 1: ftile(T, 3, 1, y, ldy, x, w, rb, k, bias); break;                         \
    case 3 * 8 + 2: ftile(T, 3, 2, y, ldy, x, w, rb, k, bias); break;                         \
    case 4 * 8 + 1: ftile(T, 4, 1, y, ldy, x, w, rb, k, bias); break;                         \
    case 4 * 8 + 2: ftile(T, 4, 2, y, ldy, x, w, rb, k, bias); break;                         \
    case 4 * 8 + 3: ftile(T, 4, 3, y, ldy, x, w, rb, k, bias); break;                         \
    case 3 * 8 + 3: ftile(T, 3, 3, y, ldy, x, w, rb, k, bias); break;                         \
    case 2 * 8 + 3: ftile(T, 2, 3, y, ldy, x, w, rb, k, bias); break;                         \
    case 1 * 8 + 3: ftile(T, 1, 3, y, ldy, x, w, rb, k, bias); break;                         \
    default: TW_ASSERT(!"matmul_f: no such tile");                                            \
    }

#define FTILE_FN(name, T)                                                                     \
    AVX2 static void name(int mr, int nr, float *y, int64_t ldy, const float *x,              \
                          const uint8_t *w, size_t rb, int64_t k, const float *bias) {        \
        FTILE_SHAPES(T)                                                                       \
    }
FTILE_FN(ftiles_f32, TW_DTYPE_F32)
FTILE_FN(ftiles_f16, TW_DTYPE_F16)
FTILE_FN(ftiles_bf16, TW_DTYPE_BF16)
#endif

#define O_CHUNK 24 /* output rows per OpenMP work item: a multiple of 2, 3 and 4 */

tw_status tw_cpu_matmul_f(float *y, const float *x, const void *w, tw_dtype t, const float *bias,
                          int64_t m, int64_t k, int64_t n_out, int force_portable) {
    size_t rb = tw_dtype_row_bytes(t, k);
    int avx2 = 0;
#ifdef TW_X86
    avx2 = !force_portable && tw_cpu_has_avx2_fma();
    void (*tiles)(int, int, float *, int64_t, const float *, const uint8_t *, size_t, int64_t,
                  const float *) = t == TW_DTYPE_F16 ? ftiles_f16 : t == TW_DTYPE_BF16 ? ftiles_bf16 : ftiles_f32;
#endif
    /* A matvec walks its weight rows one at a time: one stream through memory (SmolLM2 F16
     * decode, tg128: +10% at 1 thread and +6% at 2 against 4 rows side by side). */
    const int MR = m == 1 ? 1 : 4, NR = m == 1 ? 1 : 3;
    int64_t nchunks = (n_out + O_CHUNK - 1) / O_CHUNK;
    const uint8_t *wb = w;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1 && m * n_out * k >= 65536)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t o0 = ch * O_CHUNK, o1 = o0 + O_CHUNK < n_out ? o0 + O_CHUNK : n_out;
        if (!avx2) {
            for (int64_t o = o0; o < o1; o++)
                row_portable(y + o, n_out, x, m, wb + (size_t)o * rb, t, k, bias ? bias + o : NULL);
            continue;
        }
#ifdef TW_X86
        for (int64_t i = 0; i < m; i += MR) {
            int mr = m - i < MR ? (int)(m - i) : MR;
            for (int64_t o = o0; o < o1;) {
                int nr = o1 - o >= NR ? NR : (int)(o1 - o);
                tiles(mr, nr, y + i * n_out + o, n_out, x + i * k, wb + (size_t)o * rb, rb, k,
                      bias ? bias + o : NULL);
                o += nr;
            }
        }
#endif
    }
    return TW_OK;
}
