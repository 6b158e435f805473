/* attn_seg.c: the optimized CPU kernels of TW_OP_ATTN_SEG and TW_OP_ATTN_SEG_BWD (kernels.h):
 * dense attention inside segments of a packed batch, FlashAttention's way: scores are formed
 * tile by tile and never stored whole; the backward recomputes them from q, k and the saved
 * log-sum-exp.
 *
 * Forward: one task per (segment, query chunk of QC rows, head). A task walks the keys its
 * chunk may see in tiles of BK: S = scale Q K^T (QC, BK), an online softmax per row (running
 * maximum m and sum l; a larger maximum rescales l and the output by e^(m_old - m_new)), then
 * O += P V. K is transposed once per call (segs_transpose: (n_kv_head, head_dim, columns),
 * each segment padded with zero columns to a multiple of 8) so that the S tile is a
 * register-blocked product (4 rows x 16 keys per step, AVX2+FMA) reading its keys' columns in
 * place, and O += P V broadcasts P (4 rows x 16 dims). The backward transposes Q, dO, K and V
 * once the same way (transposing them per tile, again for every chunk and head that read
 * them, was 12% of the backward).
 *
 * Backward (with D = rowsum(dO * O), computed first):
 *   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
 * Two passes, so that every output row has exactly one writer (no atomics, no reduction
 * across threads): pass 1, one task per (segment, key chunk of KC rows, kv head), walks every
 * query that sees its keys, over all the heads of the group (grouped-query heads sum here),
 * and owns dK, dV of its rows; it works in the transposed orientation (S^T = K Q^T) so that
 * P^T and dS^T come out row by row, and keeps dS^T (per head, a block of len x len per
 * segment) while that fits DS_KEEP_MAX. Pass 2, one task per (segment, query chunk, head), owns
 * dQ of its rows: dQ = scale dS K from the kept dS^T, or, for long segments, recomputing P and
 * dS for them (two more products and the exponentials: 1.45x the backward's time at 512
 * tokens). Both give the same bits: every S, P, dP and dS element is the same chain of fp32
 * operations in either orientation (fma(a, b, c) = fma(b, a, c)), and dQ sums them in the same
 * order (tests/unit/test_attn_seg_keep.c).
 *
 * Determinism: the tasks, and the order of every sum inside a task, do not depend on the
 * thread count or on which thread runs a task, so results have the same bits for any number of
 * threads (OpenMP dynamic scheduling only moves whole tasks). The portable C variant runs the
 * same tiles with plain loops and libm's expf.
 *
 * Precision (fp32 throughout): dot products of head_dim terms, exponentials within 2 ulp
 * (tw_exp8) or libm's, softmax sums of up to a segment's length of terms, in tiles; the tests
 * bound the error against the fp64 reference from these. */
#include "cpu_kernels.h"
#include "simd_avx2.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define TW_X86 1
#endif

enum {
    QC = 64,  /* query rows per forward / dQ task */
    BK = 128, /* keys per tile */
    KC = 64,  /* key rows per dK/dV task (= QC: with dS kept, the dQ task of query chunk r0
               * reads keys from chunks that start at or before r0, whose pass-1 tasks wrote
               * every query from their own start on) */
    BQ = 128, /* queries per tile of the dK/dV pass */
};
#define DS_KEEP_MAX (64.0 * 1048576.0) /* bytes of dS^T the backward keeps (512 tokens, 9 heads:
                                         * 9.7 MB; one 2048-token segment: 152 MB, recomputed) */

/* The four primitives the tiles are made of; one set per variant. */
typedef struct {
    /* c[r,j] = alpha * sum_d a[r,d] bt[d,j]   c: (R, nc) ld ldc; a: (R, D) ld lda;
     * bt: (D, nc) ld ldb; nc a multiple of 8. */
    void (*abt)(float *c, int64_t ldc, const float *a, int64_t lda, const float *bt, int64_t ldb,
                int64_t R, int64_t nc, int64_t D, float alpha);
    /* c[r,:] += sum_{j<J} w[r ldw + j wj] m[j,:]   c: (R, D) ld ldc; w: (R, J) with row stride
     * ldw and column stride wj (1, or the row stride of a transposed w); m: (J, D) ld ldm. */
    void (*acc)(float *c, int64_t ldc, const float *w, int64_t ldw, int64_t wj, const float *m,
                int64_t ldm, int64_t R, int64_t J, int64_t D);
    /* max of x[lo, hi), hi > lo. */
    float (*rmax)(const float *x, int64_t lo, int64_t hi);
    /* y[i] = e^(x[i] - (subv ? subv[i] : subs)) for lo <= i < hi, 0 for the other i < n (n a
     * multiple of 8); returns the sum of y. y may alias x. */
    float (*expsub)(float *y, const float *x, const float *subv, float subs, int64_t lo,
                    int64_t hi, int64_t n);
    /* dS: y[i] = p[i] * (dp[i] - (subv ? subv[i] : subs)) * scale for i < n (a multiple of 8),
     * rounded after each operation in that order (no fma) in every variant. y may alias p or
     * dp. */
    void (*dsoft)(float *y, const float *p, const float *dp, const float *subv, float subs,
                  float scale, int64_t n);
} seg_prims;

/* ---- portable primitives ------------------------------------------------------------------ */

static void abt_portable(float *c, int64_t ldc, const float *a, int64_t lda, const float *bt,
                         int64_t ldb, int64_t R, int64_t nc, int64_t D, float alpha) {
    for (int64_t r = 0; r < R; r++) {
        float *cr = c + r * ldc;
        for (int64_t j = 0; j < nc; j++) cr[j] = 0;
        for (int64_t d = 0; d < D; d++) {
            float av = a[r * lda + d];
            const float *b = bt + d * ldb;
            for (int64_t j = 0; j < nc; j++) cr[j] += av * b[j];
        }
        for (int64_t j = 0; j < nc; j++) cr[j] *= alpha;
    }
}

static void acc_portable(float *c, int64_t ldc, const float *w, int64_t ldw, int64_t wj,
                         const float *m, int64_t ldm, int64_t R, int64_t J, int64_t D) {
    for (int64_t r = 0; r < R; r++) {
        float *cr = c + r * ldc;
        for (int64_t j = 0; j < J; j++) {
            float wv = w[r * ldw + j * wj];
            const float *mr = m + j * ldm;
            for (int64_t d = 0; d < D; d++) cr[d] += wv * mr[d];
        }
    }
}

static float rmax_portable(const float *x, int64_t lo, int64_t hi) {
    float mx = x[lo];
    for (int64_t i = lo + 1; i < hi; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static float expsub_portable(float *y, const float *x, const float *subv, float subs, int64_t lo,
                             int64_t hi, int64_t n) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) {
        float e = i >= lo && i < hi ? expf(x[i] - (subv ? subv[i] : subs)) : 0.0f;
        y[i] = e;
        sum += e;
    }
    return sum;
}

static void dsoft_portable(float *y, const float *p, const float *dp, const float *subv,
                           float subs, float scale, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = p[i] * (dp[i] - (subv ? subv[i] : subs)) * scale;
}

static const seg_prims prims_portable = {abt_portable, acc_portable, rmax_portable,
                                         expsub_portable, dsoft_portable};

/* ---- AVX2 + FMA primitives ---------------------------------------------------------------- */

#ifdef TW_X86
/* nr (6 or 4) rows x 16 columns of abt: 2 nr accumulators (12 cover the FMA latency times the
 * two FMA ports of current cores; 8 did not quite). Each element is one fma chain over d in
 * order, then the product by alpha, whatever the blocking. */
TW_AVX2 static inline __attribute__((always_inline)) void
abt_block_t(const int nr, float *c, int64_t ldc, const float *a, int64_t lda, const float *b,
            int64_t ldb, int64_t D, __m256 va) {
    __m256 s[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < nr; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d++, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < nr; r++) {
            __m256 x = _mm256_broadcast_ss(a + r * lda + d);
            s[r][0] = _mm256_fmadd_ps(x, b0, s[r][0]);
            s[r][1] = _mm256_fmadd_ps(x, b1, s[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < nr; r++) {
        _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(s[r][0], va));
        _mm256_storeu_ps(c + r * ldc + 8, _mm256_mul_ps(s[r][1], va));
    }
}

TW_AVX2 static void abt_avx2(float *c, int64_t ldc, const float *a, int64_t lda, const float *bt,
                             int64_t ldb, int64_t R, int64_t nc, int64_t D, float alpha) {
    const __m256 va = _mm256_set1_ps(alpha);
    /* rows in blocks of 6, then at most one of 4 (r_done rows); column blocks outside, so
     * that one block of bt (D x 16) stays in L1 while every row block reads it */
    const int64_t r6 = R / 6 * 6, r_done = r6 + (R - r6 >= 4 ? 4 : 0);
    for (int64_t j = 0; j + 16 <= nc; j += 16) {
        for (int64_t q = 0; q < r6; q += 6)
            abt_block_t(6, c + q * ldc + j, ldc, a + q * lda, lda, bt + j, ldb, D, va);
        if (r_done > r6)
            abt_block_t(4, c + r6 * ldc + j, ldc, a + r6 * lda, lda, bt + j, ldb, D, va);
    }
    /* the last 8 columns (nc = 8 mod 16) of the rows so far, then the rows left */
    int64_t r = r_done;
    const int64_t j8 = nc & ~(int64_t)15;
    for (int64_t q = 0; q < r_done && j8 < nc; q++) {
        __m256 s0 = _mm256_setzero_ps();
        const float *b = bt + j8, *a0 = a + q * lda;
        for (int64_t d = 0; d < D; d++, b += ldb)
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + d), _mm256_loadu_ps(b), s0);
        _mm256_storeu_ps(c + q * ldc + j8, _mm256_mul_ps(s0, va));
    }
    for (; r < R; r++) {
        const float *a0 = a + r * lda;
        float *c0 = c + r * ldc;
        for (int64_t j = 0; j < nc; j += 8) {
            __m256 s0 = _mm256_setzero_ps();
            const float *b = bt + j;
            for (int64_t d = 0; d < D; d++, b += ldb)
                s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + d), _mm256_loadu_ps(b), s0);
            _mm256_storeu_ps(c0 + j, _mm256_mul_ps(s0, va));
        }
    }
}

/* One row of acc: c0 += sum_j w0[j wj] m[j,:]. */
TW_AVX2 static void acc_rows1(float *c0, const float *w0, int64_t wj, const float *m, int64_t ldm,
                              int64_t J, int64_t D) {
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
        __m256 a0 = _mm256_loadu_ps(c0 + d), b0 = _mm256_loadu_ps(c0 + d + 8);
        const float *mr = m + d;
        for (int64_t j = 0; j < J; j++, mr += ldm) {
            __m256 x = _mm256_broadcast_ss(w0 + j * wj);
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(mr), a0);
            b0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(mr + 8), b0);
        }
        _mm256_storeu_ps(c0 + d, a0);
        _mm256_storeu_ps(c0 + d + 8, b0);
    }
    for (; d + 8 <= D; d += 8) {
        __m256 a0 = _mm256_loadu_ps(c0 + d);
        const float *mr = m + d;
        for (int64_t j = 0; j < J; j++, mr += ldm)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w0 + j * wj), _mm256_loadu_ps(mr), a0);
        _mm256_storeu_ps(c0 + d, a0);
    }
    for (; d < D; d++) {
        float s = c0[d];
        for (int64_t j = 0; j < J; j++) s = fmaf(w0[j * wj], m[j * ldm + d], s);
        c0[d] = s;
    }
}

/* nr (6 or 4) rows x 16 columns of acc, 2 nr accumulators (as abt_block_t); each element one
 * fma chain over j in order, as acc_rows1 computes it. */
TW_AVX2 static inline __attribute__((always_inline)) void
acc_block_t(const int nr, float *c, int64_t ldc, const float *w, int64_t ldw, int64_t wj,
            const float *m, int64_t ldm, int64_t J) {
    __m256 s[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < nr; r++) {
        s[r][0] = _mm256_loadu_ps(c + r * ldc);
        s[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
    }
    for (int64_t j = 0; j < J; j++, m += ldm, w += wj) {
        __m256 m0 = _mm256_loadu_ps(m), m1 = _mm256_loadu_ps(m + 8);
#pragma GCC unroll 6
        for (int r = 0; r < nr; r++) {
            __m256 x = _mm256_broadcast_ss(w + r * ldw);
            s[r][0] = _mm256_fmadd_ps(x, m0, s[r][0]);
            s[r][1] = _mm256_fmadd_ps(x, m1, s[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < nr; r++) {
        _mm256_storeu_ps(c + r * ldc, s[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, s[r][1]);
    }
}

TW_AVX2 static void acc_avx2(float *c, int64_t ldc, const float *w, int64_t ldw, int64_t wj,
                             const float *m, int64_t ldm, int64_t R, int64_t J, int64_t D) {
    const int64_t d16 = D & ~(int64_t)15;
    int64_t r = 0;
    for (int nr; R - r >= 4; r += nr) { /* blocks of 6 rows, then one of 4 */
        nr = R - r >= 6 ? 6 : 4;
        for (int64_t d = 0; d < d16; d += 16) {
            if (nr == 6)
                acc_block_t(6, c + r * ldc + d, ldc, w + r * ldw, ldw, wj, m + d, ldm, J);
            else
                acc_block_t(4, c + r * ldc + d, ldc, w + r * ldw, ldw, wj, m + d, ldm, J);
        }
        if (d16 < D) /* their columns past d16, row by row */
            for (int64_t q = r; q < r + nr; q++)
                acc_rows1(c + q * ldc + d16, w + q * ldw, wj, m + d16, ldm, J, D - d16);
    }
    for (; r < R; r++) acc_rows1(c + r * ldc, w + r * ldw, wj, m, ldm, J, D);
}

TW_AVX2 static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TW_AVX2 static float rmax_avx2(const float *x, int64_t lo, int64_t hi) {
    float mx = x[lo];
    int64_t i = lo;
    if (hi - lo >= 8) {
        __m256 v = _mm256_loadu_ps(x + lo);
        for (i = lo + 8; i + 8 <= hi; i += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + i));
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        s = _mm_max_ss(s, _mm_movehdup_ps(s));
        mx = _mm_cvtss_f32(s);
    }
    for (; i < hi; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

TW_AVX2 static float expsub_avx2(float *y, const float *x, const float *subv, float subs,
                                 int64_t lo, int64_t hi, int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i vlo = _mm256_set1_epi32((int)lo - 1), vhi = _mm256_set1_epi32((int)hi);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 sub = subv ? _mm256_loadu_ps(subv + i) : _mm256_set1_ps(subs);
        __m256 e = tw_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sub));
        __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32((int)i));
        __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(idx, vlo), _mm256_cmpgt_epi32(vhi, idx));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(in)); /* outside [lo, hi): 0, whatever e was */
        _mm256_storeu_ps(y + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum8(sum);
}

TW_AVX2 static void dsoft_avx2(float *y, const float *p, const float *dp, const float *subv,
                               float subs, float scale, int64_t n) {
    const __m256 vs = _mm256_set1_ps(scale), vsub = _mm256_set1_ps(subs);
    for (int64_t i = 0; i < n; i += 8) {
        __m256 sub = subv ? _mm256_loadu_ps(subv + i) : vsub;
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(p + i), _mm256_sub_ps(_mm256_loadu_ps(dp + i), sub));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(t, vs));
    }
}

static const seg_prims prims_avx2 = {abt_avx2, acc_avx2, rmax_avx2, expsub_avx2, dsoft_avx2};
#endif

static const seg_prims *prims_pick(int force_portable) {
#ifdef TW_X86
    if (!force_portable && tw_cpu_has_avx2_fma()) return &prims_avx2;
#endif
    (void)force_portable;
    return &prims_portable;
}

/* ---- shared pieces -------------------------------------------------------------------------*/

static int64_t round8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* dst (D, ncp) ld ldd = the first n rows of src (n, D) ld ld, transposed; columns n .. ncp
 * are 0. A copy: the same values in both variants. */
static void transpose_pad_portable(float *dst, int64_t ldd, const float *src, int64_t ld,
                                   int64_t n, int64_t D, int64_t ncp) {
    for (int64_t d = 0; d < D; d++) {
        float *o = dst + d * ldd;
        for (int64_t j = 0; j < n; j++) o[j] = src[j * ld + d];
        for (int64_t j = n; j < ncp; j++) o[j] = 0;
    }
}

#ifdef TW_X86
/* The same in 8 x 8 blocks (eight row loads, the unpack / shuffle / lane-permute transpose,
 * eight stores); the edges as the portable one. */
TW_AVX2 static void transpose_pad_avx2(float *dst, int64_t ldd, const float *src, int64_t ld,
                                       int64_t n, int64_t D, int64_t ncp) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        int64_t d = 0;
        for (; d + 8 <= D; d += 8) {
            const float *s0 = src + j * ld + d;
            __m256 r0 = _mm256_loadu_ps(s0), r1 = _mm256_loadu_ps(s0 + ld);
            __m256 r2 = _mm256_loadu_ps(s0 + 2 * ld), r3 = _mm256_loadu_ps(s0 + 3 * ld);
            __m256 r4 = _mm256_loadu_ps(s0 + 4 * ld), r5 = _mm256_loadu_ps(s0 + 5 * ld);
            __m256 r6 = _mm256_loadu_ps(s0 + 6 * ld), r7 = _mm256_loadu_ps(s0 + 7 * ld);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = dst + d * ldd + j;
            _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(o + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(o + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(o + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(o + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(o + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(o + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(o + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; d < D; d++)
            for (int64_t i = 0; i < 8; i++) dst[d * ldd + j + i] = src[(j + i) * ld + d];
    }
    for (int64_t d = 0; d < D; d++) {
        float *o = dst + d * ldd;
        for (int64_t i = j; i < n; i++) o[i] = src[i * ld + d];
        for (int64_t i = n; i < ncp; i++) o[i] = 0;
    }
}
#endif

/* A task's rows: [r0, r1) of the segment [s0, s1). */
typedef struct {
    int32_t s0, s1, r0, r1;
    int64_t c0;   /* the segment's first column in the transposed layouts (segs_transpose) */
    int64_t ds0;  /* the offset of the segment's block in a head's kept dS^T (backward) */
    int64_t dsld; /* that block's row stride: (s1 - s0) rows (keys) x dsld columns (queries) */
} seg_chunk;

static int64_t t_stride(int64_t cols);

/* The chunks of `rows` rows of every segment into *out (tw_free it); *n their count; *width
 * the columns of the transposed layouts: each segment's length rounded up to 8, summed;
 * *ds_floats the floats of one head's kept dS^T (a block of len x t_stride(len) per segment).
 * seg non-decreasing (checked by the backend). */
static tw_status chunks_make(const int32_t *seg, int64_t n_tok, int64_t rows, seg_chunk **out,
                             int64_t *n, int64_t *width, int64_t *ds_floats) {
    int64_t cap = 0;
    for (int64_t s0 = 0, s1; s0 < n_tok; s0 = s1) {
        for (s1 = s0 + 1; s1 < n_tok && seg[s1] == seg[s0];) s1++;
        cap += (s1 - s0 + rows - 1) / rows;
    }
    seg_chunk *c = tw_malloc((size_t)cap * sizeof *c);
    if (!c) return tw_error_wrap("attn_seg: task list of %lld chunks", (long long)cap);
    int64_t k = 0, col = 0, ds = 0;
    for (int64_t s0 = 0, s1; s0 < n_tok; s0 = s1) {
        for (s1 = s0 + 1; s1 < n_tok && seg[s1] == seg[s0];) s1++;
        const int64_t ld = t_stride(s1 - s0);
        for (int64_t r = s0; r < s1; r += rows) {
            c[k].s0 = (int32_t)s0;
            c[k].s1 = (int32_t)s1;
            c[k].r0 = (int32_t)r;
            c[k].r1 = (int32_t)(r + rows < s1 ? r + rows : s1);
            c[k].c0 = col;
            c[k].ds0 = ds;
            c[k].dsld = ld;
            k++;
        }
        col += round8(s1 - s0);
        ds += (s1 - s0) * ld;
    }
    *out = c;
    *n = k;
    *width = col;
    if (ds_floats) *ds_floats = ds;
    return TW_OK;
}

/* The row stride of the transposed layouts for `cols` columns: a multiple of 16 floats (64-byte
 * rows) that is an odd number of cache lines, so that the head_dim rows a tile reads do not
 * all fall into the same few cache sets (at 512 columns, a 2 KiB stride, they did: the S tiles
 * ran 1.3x slower than from a compact copy). */
static int64_t t_stride(int64_t cols) {
    int64_t ld = (cols + 15) & ~(int64_t)15;
    return (ld / 16) % 2 ? ld : ld + 16;
}

/* dst (heads, head_dim, width): every head of src (n_tok, heads, head_dim) transposed once per
 * call, segment by segment, each segment's columns zero-padded to a multiple of 8:
 *   dst[h][j][c0 + t - s0] = src[t][h][j]  for t in [s0, s1).
 * The tiles of S = Q K^T and of its backward read their columns from here (ld width) instead
 * of transposing the same rows again for every query chunk and head that sees them; a tile of
 * columns [t - s0, t - s0 + round8(n)) with t - s0 a multiple of 8 and t + n <= s1 stays
 * within its own segment, whose padding is 0, so a segment computes the same values alone or
 * packed with others. One task per (chunk, head). */
static void segs_transpose(float *dst, const float *src, int64_t heads, int64_t hd,
                           const seg_chunk *ch, int64_t n_ch, int64_t width, int avx2) {
    const int64_t ld = heads * hd, n_tasks = n_ch * heads;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (n_tasks > 1 && n_ch * 64 * ld >= 65536)
    for (int64_t t = 0; t < n_tasks; t++) {
        const seg_chunk *c = &ch[t / heads];
        const int64_t h = t % heads, n = c->r1 - c->r0, off = c->r0 - c->s0;
        const int64_t ncp = c->r1 == c->s1 ? round8(c->s1 - c->s0) - off : n; /* pad: last chunk */
        float *o = dst + h * hd * width + c->c0 + off;
        const float *s = src + (int64_t)c->r0 * ld + h * hd;
#ifdef TW_X86
        if (avx2) {
            transpose_pad_avx2(o, width, s, ld, n, hd, ncp);
            continue;
        }
#endif
        (void)avx2;
        transpose_pad_portable(o, width, s, ld, n, hd, ncp);
    }
}

/* ---- forward -------------------------------------------------------------------------------*/

/* Scratch floats of one forward task. */
static int64_t fwd_scratch(int64_t d) { return QC * BK + QC * d + 2 * QC; }

/* One forward task: rows [c->r0, c->r1) of head h. Kt: K transposed (segs_transpose), ld
 * width. */
static void fwd_task(const seg_prims *P, float *out, float *lse, const float *q, const float *Kt,
                     int64_t width, const float *v, const seg_chunk *c, int64_t h,
                     const tw_attn_seg_shape *s, float *work) {
    const int64_t d = s->head_dim, kh = h / (s->n_head / s->n_kv_head);
    const int64_t ldq = s->n_head * d, ldk = s->n_kv_head * d;
    const int64_t r0 = c->r0, nr = c->r1 - c->r0;
    float *S = work, *O = S + QC * BK, *m = O + QC * d, *l = m + QC;
    for (int64_t i = 0; i < nr; i++) {
        m[i] = -INFINITY;
        l[i] = 0;
    }
    memset(O, 0, (size_t)(nr * d) * sizeof(float));
    const float *qr = q + r0 * ldq + h * d; /* (nr, head_dim) ld ldq */
    const int64_t kend = s->causal ? c->r1 : c->s1;
    for (int64_t kb = c->s0; kb < kend; kb += BK) {
        const int64_t nk = kend - kb < BK ? kend - kb : BK, nkp = round8(nk);
        const float *vr = v + kb * ldk + kh * d; /* (nk, d) ld ldk */
        const float *kt = Kt + kh * d * width + c->c0 + (kb - c->s0); /* (d, nkp) ld width */
        P->abt(S, BK, qr, ldq, kt, width, nr, nkp, d, s->scale); /* (nr, nkp) */
        for (int64_t i = 0; i < nr; i++) {
            float *row = S + i * BK;
            int64_t hi = s->causal ? r0 + i - kb + 1 : nk; /* keys [0, hi) of the tile */
            if (hi > nk) hi = nk;
            if (hi <= 0) { /* every key of the tile comes after this query */
                memset(row, 0, (size_t)nkp * sizeof(float));
                continue;
            }
            float mt = P->rmax(row, 0, hi), mn = mt > m[i] ? mt : m[i];
            float corr = expf(m[i] - mn); /* 0 on the first tile (m = -inf) */
            l[i] = l[i] * corr + P->expsub(row, row, NULL, mn, 0, hi, nkp);
            m[i] = mn;
            if (corr != 1.0f)
                for (int64_t j = 0; j < d; j++) O[i * d + j] *= corr;
        }
        P->acc(O, d, S, BK, 1, vr, ldk, nr, nk, d);
    }
    for (int64_t i = 0; i < nr; i++) {
        float *o = out + (r0 + i) * ldq + h * d; /* (head_dim) */
        for (int64_t j = 0; j < d; j++) o[j] = O[i * d + j] / l[i];
        if (lse) lse[(r0 + i) * s->n_head + h] = m[i] + logf(l[i]);
    }
}

tw_status tw_cpu_attn_seg_f32_variant(float *out, float *lse, const float *q, const float *k,
                                      const float *v, const int32_t *seg,
                                      const tw_attn_seg_shape *s, int force_portable) {
    if (s->n_tok == 0) return TW_OK;
    const seg_prims *P = prims_pick(force_portable);
    seg_chunk *ch = NULL;
    int64_t n_ch = 0, width = 0;
    tw_status st = chunks_make(seg, s->n_tok, QC, &ch, &n_ch, &width, NULL);
    if (st != TW_OK) return st;
    width = t_stride(width);
    const int nt = tw_threads_get();
    const int64_t per = fwd_scratch(s->head_dim), n_tasks = n_ch * s->n_head;
    /* per thread: a task's scratch; then K transposed (n_kv_head, head_dim, width) */
    float *work = tw_malloc((size_t)(per * nt + s->n_kv_head * s->head_dim * width) * sizeof(float));
    if (!work) {
        tw_free(ch);
        return tw_error_wrap("attn_seg: scratch for %d threads", nt);
    }
    float *Kt = work + per * nt;
    segs_transpose(Kt, k, s->n_kv_head, s->head_dim, ch, n_ch, width, P != &prims_portable);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n_tasks > 1)
    for (int64_t t = 0; t < n_tasks; t++)
        fwd_task(P, out, lse, q, Kt, width, v, &ch[t / s->n_head], t % s->n_head, s,
                 work + per * omp_get_thread_num());
    tw_free(work);
    tw_free(ch);
    return TW_OK;
}

tw_status tw_cpu_attn_seg_f32(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg, const tw_attn_seg_shape *s) {
    return tw_cpu_attn_seg_f32_variant(out, lse, q, k, v, seg, s, 0);
}

/* ---- backward ------------------------------------------------------------------------------*/

/* Scratch floats of one backward task (the larger of the two passes). */
static int64_t bwd_scratch(int64_t d) {
    int64_t p1 = 2 * KC * BQ + 2 * KC * d + 2 * BQ;
    int64_t p2 = 2 * QC * BK + QC * d;
    return p1 > p2 ? p1 : p2;
}

/* The transposed operands of the backward (segs_transpose), each (heads, head_dim, width),
 * and the kept dS^T. */
typedef struct {
    const float *q, *dout; /* n_head heads */
    const float *k, *v;    /* n_kv_head heads; NULL when dS is kept */
    int64_t width;
    float *ds;        /* NULL, or per head ds_floats: each segment's dS^T (keys x queries) */
    int64_t ds_floats;
} seg_t;

/* Pass 1: dK, dV of key rows [c->r0, c->r1), kv head kh, summed over the group's heads and over
 * every query that sees those keys. D: (n_tok, n_head). */
static void bwd_kv_task(const seg_prims *P, float *dk, float *dv, const float *dout,
                        const float *lse, const float *D, const float *q, const float *k,
                        const float *v, const seg_t *tr, const seg_chunk *c, int64_t kh,
                        const tw_attn_seg_shape *s, float *work) {
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head, W = tr->width;
    const int64_t ldq = s->n_head * d, ldk = s->n_kv_head * d;
    const int64_t k0 = c->r0, nkr = c->r1 - c->r0;
    float *St = work, *dPt_scratch = St + KC * BQ;
    float *dK = dPt_scratch + KC * BQ, *dV = dK + KC * d, *lt = dV + KC * d, *Dt = lt + BQ;
    memset(dK, 0, (size_t)(2 * KC * d) * sizeof(float)); /* dK and dV */
    const float *kr = k + k0 * ldk + kh * d, *vr = v + k0 * ldk + kh * d; /* (nkr, d) ld ldk */
    const int64_t t0 = s->causal ? k0 : c->s0;
    for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
        for (int64_t qb = t0; qb < c->s1; qb += BQ) {
            const int64_t nq = c->s1 - qb < BQ ? c->s1 - qb : BQ, nqp = round8(nq);
            const float *qr = q + qb * ldq + h * d, *dor = dout + qb * ldq + h * d; /* (nq, d) */
            const int64_t col = h * d * W + c->c0 + (qb - c->s0);
            const float *qt = tr->q + col, *dot = tr->dout + col; /* (d, nqp) ld W */
            /* dP^T, then dS^T in place: (nkr, nqp) ld ldp, in the kept dS^T when there is one */
            float *dPt = dPt_scratch;
            int64_t ldp = BQ;
            if (tr->ds) {
                dPt = tr->ds + h * tr->ds_floats + c->ds0 + (k0 - c->s0) * c->dsld + (qb - c->s0);
                ldp = c->dsld;
            }
            for (int64_t i = 0; i < nqp; i++) {
                lt[i] = i < nq ? lse[(qb + i) * s->n_head + h] : 0;
                Dt[i] = i < nq ? D[(qb + i) * s->n_head + h] : 0;
            }
            P->abt(St, BQ, kr, ldk, qt, W, nkr, nqp, d, s->scale); /* S^T (nkr, nqp) */
            P->abt(dPt, ldp, vr, ldk, dot, W, nkr, nqp, d, 1.0f);   /* dP^T */
            for (int64_t j = 0; j < nkr; j++) {
                float *pr = St + j * BQ, *dr = dPt + j * ldp;
                int64_t lo = s->causal ? k0 + j - qb : 0; /* queries [lo, nq) see key k0 + j */
                if (lo < 0) lo = 0;
                if (lo >= nq) {
                    memset(pr, 0, (size_t)nqp * sizeof(float));
                    memset(dr, 0, (size_t)nqp * sizeof(float));
                    continue;
                }
                P->expsub(pr, pr, lt, 0, lo, nq, nqp); /* P^T row */
                P->dsoft(dr, pr, dr, Dt, 0, s->scale, nqp); /* dS^T row */
            }
            P->acc(dV, d, St, BQ, 1, dor, ldq, nkr, nq, d);  /* dV += P^T dO */
            P->acc(dK, d, dPt, ldp, 1, qr, ldq, nkr, nq, d);  /* dK += scale dS^T Q */
        }
    }
    for (int64_t j = 0; j < nkr; j++) {
        memcpy(dk + (k0 + j) * ldk + kh * d, dK + j * d, (size_t)d * sizeof(float));
        memcpy(dv + (k0 + j) * ldk + kh * d, dV + j * d, (size_t)d * sizeof(float));
    }
}

/* Pass 2: dQ of query rows [c->r0, c->r1), head h. */
static void bwd_q_task(const seg_prims *P, float *dq, const float *dout, const float *lse,
                       const float *D, const float *q, const float *k, const seg_t *tr,
                       const seg_chunk *c, int64_t h, const tw_attn_seg_shape *s, float *work) {
    const int64_t d = s->head_dim, kh = h / (s->n_head / s->n_kv_head), W = tr->width;
    const int64_t ldq = s->n_head * d, ldk = s->n_kv_head * d;
    const int64_t r0 = c->r0, nr = c->r1 - c->r0;
    float *S = work, *dP = S + QC * BK, *dQ = dP + QC * BK;
    memset(dQ, 0, (size_t)(nr * d) * sizeof(float));
    const float *qr = q + r0 * ldq + h * d, *dor = dout + r0 * ldq + h * d; /* (nr, d) ld ldq */
    const int64_t kend = s->causal ? c->r1 : c->s1;
    for (int64_t kb = c->s0; kb < kend; kb += BK) {
        const int64_t nk = kend - kb < BK ? kend - kb : BK, nkp = round8(nk);
        const float *kr = k + kb * ldk + kh * d; /* (nk, d) */
        if (tr->ds) { /* dS[i, j] = dS^T[j, i]: rows i (stride 1), keys j (stride dsld) */
            const float *w = tr->ds + h * tr->ds_floats + c->ds0 + (kb - c->s0) * c->dsld + (r0 - c->s0);
            P->acc(dQ, d, w, 1, c->dsld, kr, ldk, nr, nk, d); /* dQ += scale dS K */
            continue;
        }
        const int64_t col = kh * d * W + c->c0 + (kb - c->s0);
        const float *kt = tr->k + col, *vt = tr->v + col; /* (d, nkp) ld W */
        P->abt(S, BK, qr, ldq, kt, W, nr, nkp, d, s->scale); /* (nr, nkp) */
        P->abt(dP, BK, dor, ldq, vt, W, nr, nkp, d, 1.0f);
        for (int64_t i = 0; i < nr; i++) {
            float *pr = S + i * BK, *dr = dP + i * BK;
            int64_t hi = s->causal ? r0 + i - kb + 1 : nk;
            if (hi > nk) hi = nk;
            if (hi <= 0) {
                memset(pr, 0, (size_t)nkp * sizeof(float));
                continue;
            }
            const float di = D[(r0 + i) * s->n_head + h];
            P->expsub(pr, pr, NULL, lse[(r0 + i) * s->n_head + h], 0, hi, nkp);
            P->dsoft(pr, pr, dr, NULL, di, s->scale, nkp); /* dS */
        }
        P->acc(dQ, d, S, BK, 1, kr, ldk, nr, nk, d); /* dQ += scale dS K */
    }
    for (int64_t i = 0; i < nr; i++)
        memcpy(dq + (r0 + i) * ldq + h * d, dQ + i * d, (size_t)d * sizeof(float));
}

tw_status tw_cpu_attn_seg_bwd_f32_variant(float *dq, float *dk, float *dv, const float *dout,
                                          const float *out, const float *lse, const float *q,
                                          const float *k, const float *v, const int32_t *seg,
                                          const tw_attn_seg_shape *s, int force_portable) {
    if (s->n_tok == 0) return TW_OK;
    const seg_prims *P = prims_pick(force_portable & 1);
    const int64_t d = s->head_dim, nl = s->n_tok * s->n_head;
    seg_chunk *cq = NULL, *ck = NULL;
    int64_t n_cq = 0, n_ck = 0, width = 0, ds_floats = 0;
    tw_status st = chunks_make(seg, s->n_tok, QC, &cq, &n_cq, &width, &ds_floats);
    if (st == TW_OK) st = chunks_make(seg, s->n_tok, KC, &ck, &n_ck, &width, NULL);
    width = t_stride(width);
    const int nt = tw_threads_get();
    const int64_t per = bwd_scratch(d), qdw = s->n_head * d * width, kdw = s->n_kv_head * d * width;
    /* dS kept from pass 1 for pass 2 while it fits DS_KEEP_MAX (each segment's len^2 per head);
     * else pass 2 recomputes it from K^T and V^T. The same bits either way. */
    const int keep = !(force_portable & 2) && (double)s->n_head * (double)ds_floats * 4.0 <= DS_KEEP_MAX;
    const int64_t tail = keep ? s->n_head * ds_floats : 2 * kdw;
    /* per thread: a task's scratch; then D, q and dout transposed, then the kept dS^T or k and v
     * transposed */
    float *work = st == TW_OK ? tw_malloc((size_t)(per * nt + nl + 2 * qdw + tail) * sizeof(float))
                              : NULL;
    if (st == TW_OK && !work) st = tw_error_wrap("attn_seg_bwd: scratch for %d threads", nt);
    if (st != TW_OK) {
        tw_free(cq);
        tw_free(ck);
        return st;
    }
    float *D = work + per * nt; /* (n_tok, n_head): rowsum(dout * out) */
    float *Qt = D + nl, *dOt = Qt + qdw, *rest = dOt + qdw;
    const int avx2 = P != &prims_portable;
    segs_transpose(Qt, q, s->n_head, d, cq, n_cq, width, avx2);
    segs_transpose(dOt, dout, s->n_head, d, cq, n_cq, width, avx2);
    seg_t tr = {Qt, dOt, NULL, NULL, width, NULL, ds_floats};
    if (keep) {
        tr.ds = rest;
    } else {
        segs_transpose(rest, k, s->n_kv_head, d, cq, n_cq, width, avx2);
        segs_transpose(rest + kdw, v, s->n_kv_head, d, cq, n_cq, width, avx2);
        tr.k = rest, tr.v = rest + kdw;
    }
#pragma omp parallel num_threads(nt) if (nl * d >= 65536)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < nl; r++) {
            const float *a = dout + r * d, *b = out + r * d;
            float acc = 0;
            for (int64_t j = 0; j < d; j++) acc += a[j] * b[j];
            D[r] = acc;
        }
    }
    const int64_t n_kv_tasks = n_ck * s->n_kv_head, n_q_tasks = n_cq * s->n_head;
#pragma omp parallel num_threads(nt) if (n_kv_tasks + n_q_tasks > 1)
    {
        float *w = work + per * omp_get_thread_num();
        /* nowait only when pass 2 recomputes dS; it reads the kept dS^T of every key chunk */
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t t = 0; t < n_kv_tasks; t++)
            bwd_kv_task(P, dk, dv, dout, lse, D, q, k, v, &tr, &ck[t / s->n_kv_head],
                        t % s->n_kv_head, s, w);
        if (keep) {
#pragma omp barrier
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_q_tasks; t++)
            bwd_q_task(P, dq, dout, lse, D, q, k, &tr, &cq[t / s->n_head], t % s->n_head, s, w);
    }
    tw_free(work);
    tw_free(cq);
    tw_free(ck);
    return TW_OK;
}

tw_status tw_cpu_attn_seg_bwd_f32(float *dq, float *dk, float *dv, const float *dout,
                                  const float *out, const float *lse, const float *q,
                                  const float *k, const float *v, const int32_t *seg,
                                  const tw_attn_seg_shape *s) {
    return tw_cpu_attn_seg_bwd_f32_variant(dq, dk, dv, dout, out, lse, q, k, v, seg, s, 0);
}
