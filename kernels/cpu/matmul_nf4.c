/* matmul_nf4.c: TW_OP_MATMUL and TW_OP_MATMUL_DX for NF4 weights (kernels.h, TW_DTYPE_NF4),
 * the QLoRA base: the layout (tw_nf4_layout_get), the row dequantizer (portable and AVX2) and
 * the two products (nf4_kernels.h).
 *
 * Why the products dequantize chunks of W into fp32 and hand them to the F32 kernels
 * (matmul_f.c for the forward, the packed GEMM of train_gemm.c for dx) instead of a fused
 * kernel that multiplies with the 4-bit codes in registers: a training micro-batch has
 * hundreds of rows of x per weight, so dequantizing a chunk of W once per call costs about
 * 1/m of the multiply-adds (m = 512: 0.2 %), and the results then carry exactly the bits of the
 * F32 path on the dequantized matrix, which is what the tests and the QLoRA gradients are
 * checked against. A chunk is at most 256 rows of W in fp32 per call (1.5 MiB at k = 1536),
 * never the whole matrix. One-token products (inference on an NF4 base) pay the dequantization
 * per call; nothing serves NF4 inference today. */
#include "cpu_kernels.h"
#include "nf4_kernels.h"

#include <inttypes.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

/* absmax = map * absmax2 + offset is two fp32 roundings in bitsandbytes: never an fma. GCC in
 * ISO C mode does not contract; clang would. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* The 16 NF4 values, code i -> value i (bitsandbytes' table, as engine/nf4.c's
 * nf4_code_values; tests/unit/test_kernels_nf4.c checks the dequantized bits against
 * nf4_dequantize). */
static const float nf4_values[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

tw_status tw_nf4_layout_get(int64_t n_out, int64_t k, tw_nf4_layout *out) {
    memset(out, 0, sizeof *out);
    if (n_out < 1 || k < TW_NF4_BLOCK || k % TW_NF4_BLOCK)
        return tw_error(TW_ERR_ARG, "nf4: a (%" PRId64 ", %" PRId64 ") matrix: n_out must be >= 1 "
                        "and k a positive multiple of %d", n_out, k, TW_NF4_BLOCK);
    if ((uint64_t)k > ((uint64_t)1 << 40) / (uint64_t)n_out)
        return tw_error(TW_ERR_ARG, "nf4: a (%" PRId64 ", %" PRId64 ") matrix is too large",
                        n_out, k);
    uint64_t n = (uint64_t)n_out * (uint64_t)k, nb = n / TW_NF4_BLOCK;
    uint64_t nb2 = (nb + TW_NF4_BLOCK2 - 1) / TW_NF4_BLOCK2;
    out->n_blocks = (int64_t)nb;
    out->n_blocks2 = (int64_t)nb2;
    out->map = 0;
    out->offset = 256 * sizeof(float);
    out->absmax2 = out->offset + sizeof(float);
    out->qabsmax = out->absmax2 + (size_t)nb2 * sizeof(float);
    out->codes = out->qabsmax + (size_t)nb;
    out->bytes = out->codes + (size_t)(n / 2);
    return TW_OK;
}

/* ---- dequantization --------------------------------------------------------------------- */

typedef struct {
    const float *map, *absmax2;
    float offset;
    const uint8_t *qabsmax, *codes;
} nf4_view;

static nf4_view view_of(const void *w, int64_t k, int64_t n_out) {
    tw_nf4_layout L;
    TW_ASSERT(tw_nf4_layout_get(n_out, k, &L) == TW_OK);
    const uint8_t *b = w;
    nf4_view v;
    v.map = (const float *)(const void *)(b + L.map);
    memcpy(&v.offset, b + L.offset, sizeof v.offset);
    v.absmax2 = (const float *)(const void *)(b + L.absmax2);
    v.qabsmax = b + L.qabsmax;
    v.codes = b + L.codes;
    return v;
}

/* The fp32 absmax of global block b. */
static inline float block_absmax(const nf4_view *v, int64_t b) {
    float s = v->map[v->qabsmax[b]] * v->absmax2[b / TW_NF4_BLOCK2];
    return s + v->offset;
}

/* One block: 32 bytes of codes (element 2i in the high nibble) -> 64 values. */
static void block_portable(const uint8_t *q, float am, float *out) {
    for (int i = 0; i < TW_NF4_BLOCK / 2; i++) {
        out[2 * i] = nf4_values[q[i] >> 4] * am;
        out[2 * i + 1] = nf4_values[q[i] & 15] * am;
    }
}

#ifdef TW_X86
__attribute__((target("avx2,fma"))) static void block_avx2(const uint8_t *q, float am,
                                                           float *out) {
    const __m256 lo_t = _mm256_loadu_ps(nf4_values), hi_t = _mm256_loadu_ps(nf4_values + 8);
    const __m256 s = _mm256_set1_ps(am);
    const __m128i m4 = _mm_set1_epi8(15);
    const __m256i seven = _mm256_set1_epi32(7);
    for (int j = 0; j < TW_NF4_BLOCK; j += 16) {
        /* 8 bytes -> 16 codes in element order: the high nibble first */
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(q + j / 2));
        __m128i idx = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m4),
                                        _mm_and_si128(b, m4));
        __m256i i0 = _mm256_cvtepu8_epi32(idx), i1 = _mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8));
        __m256 v0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_t, i0),
                                     _mm256_permutevar8x32_ps(hi_t, i0),
                                     _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, seven)));
        __m256 v1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_t, i1),
                                     _mm256_permutevar8x32_ps(hi_t, i1),
                                     _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, seven)));
        _mm256_storeu_ps(out + j, _mm256_mul_ps(v0, s));
        _mm256_storeu_ps(out + j + 8, _mm256_mul_ps(v1, s));
    }
}
#endif

void tw_cpu_nf4_dequantize_rows(const void *w, int64_t k, int64_t n_out, int64_t r0, int64_t nr,
                                float *out, int force_portable) {
    nf4_view v = view_of(w, k, n_out);
    void (*blk)(const uint8_t *, float, float *) = block_portable;
#ifdef TW_X86
    if (!force_portable && tw_cpu_has_avx2_fma()) blk = block_avx2;
#else
    (void)force_portable;
#endif
    const int64_t bpr = k / TW_NF4_BLOCK; /* blocks per row */
    for (int64_t r = 0; r < nr; r++)
        for (int64_t j = 0; j < bpr; j++) {
            int64_t b = (r0 + r) * bpr + j;
            blk(v.codes + b * (TW_NF4_BLOCK / 2), block_absmax(&v, b),
                out + r * k + j * TW_NF4_BLOCK);
        }
}

/* Rows [r0, r0 + nr) into out (nr, k), the rows split over the OpenMP team when there are
 * enough of them (each row is written by one thread: the same bits for any count). */
static void dequantize_par(const void *w, int64_t k, int64_t n_out, int64_t r0, int64_t nr,
                           float *out, int force_portable) {
    const int64_t step = 16;
    int64_t n_tasks = (nr + step - 1) / step;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (n_tasks > 1 && nr * k >= 65536)
    for (int64_t t = 0; t < n_tasks; t++) {
        int64_t a = t * step, c = nr - a < step ? nr - a : step;
        tw_cpu_nf4_dequantize_rows(w, k, n_out, r0 + a, c, out + a * k, force_portable);
    }
}

/* ---- the products ------------------------------------------------------------------------ */

#define FWD_ROWS 192 /* W rows per forward chunk: 8 work items of matmul_f's 24 rows */
#define DX_ROWS 256  /* W rows per dx chunk: one KC step of train_gemm.c */

tw_status tw_cpu_matmul_nf4(float *y, const float *x, const void *w, const float *bias,
                            int64_t m, int64_t k, int64_t n_out, int force_portable) {
    int64_t ch = n_out < FWD_ROWS ? n_out : FWD_ROWS;
    float *wf = tw_malloc((size_t)(ch * k) * sizeof(float)); /* (ch, k) */
    float *yt = tw_malloc((size_t)(m * ch) * sizeof(float)); /* (m, ch) */
    if (!wf || !yt) {
        tw_free(wf), tw_free(yt);
        return tw_error_wrap("matmul (nf4): scratch for %" PRId64 " rows of %" PRId64, ch, k);
    }
    tw_status st = TW_OK;
    for (int64_t o0 = 0; o0 < n_out && st == TW_OK; o0 += ch) {
        int64_t nr = n_out - o0 < ch ? n_out - o0 : ch;
        dequantize_par(w, k, n_out, o0, nr, wf, force_portable);
        st = tw_cpu_matmul_f(yt, x, wf, TW_DTYPE_F32, bias ? bias + o0 : NULL, m, k, nr,
                             force_portable);
        for (int64_t i = 0; i < m && st == TW_OK; i++)
            memcpy(y + i * n_out + o0, yt + i * nr, (size_t)nr * sizeof(float));
    }
    tw_free(wf), tw_free(yt);
    return st;
}

tw_status tw_cpu_matmul_dx_nf4(float *dx, const float *dy, const void *w, int64_t m, int64_t k,
                               int64_t n_out, int accumulate, int force_portable) {
    int64_t ch = n_out < DX_ROWS ? n_out : DX_ROWS;
    float *wf = tw_malloc((size_t)(ch * k) * sizeof(float));  /* (ch, k) */
    float *dyt = tw_malloc((size_t)(m * ch) * sizeof(float)); /* (m, ch) */
    if (!wf || !dyt) {
        tw_free(wf), tw_free(dyt);
        return tw_error_wrap("matmul_dx (nf4): scratch for %" PRId64 " rows of %" PRId64, ch, k);
    }
    tw_status st = TW_OK;
    for (int64_t p0 = 0; p0 < n_out && st == TW_OK; p0 += ch) {
        int64_t nr = n_out - p0 < ch ? n_out - p0 : ch;
        dequantize_par(w, k, n_out, p0, nr, wf, force_portable);
        for (int64_t i = 0; i < m; i++)
            memcpy(dyt + i * nr, dy + i * n_out + p0, (size_t)nr * sizeof(float));
        st = tw_cpu_matmul_dx_variant(dx, dyt, wf, TW_DTYPE_F32, m, k, nr, accumulate || p0 > 0,
                                      force_portable);
    }
    tw_free(wf), tw_free(dyt);
    return st;
}
