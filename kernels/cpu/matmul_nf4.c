/* matmul_nf4.c: TW_OP_MATMUL and TW_OP_MATMUL_DX for NF4 weights (kernels.h, TW_DTYPE_NF4),
 * the QLoRA base: the layout (tw_nf4_layout_get), the row dequantizer (portable and AVX2) and
 * the two products (nf4_kernels.h).
 *
 * Why the products dequantize chunks of W into fp32 and hand them to the F32 kernels
 * (matmul_f.c for the forward, the packed GEMM of train_gemm.c for dx) instead of a fused
 * kernel that multiplies with the 4-bit codes in registers: a training micro-batch has
 * hundreds of rows of x per weight, so dequantizing W once per call is a few percent of the
 * products (m = 512, one thread: 0.3-2 ns per weight against about 14 ns of multiply-adds per
 * weight at 75 GFLOP/s; measured within noise of the F32 op), and the results carry exactly
 * the bits of the F32 path on the dequantized matrix, which is what the tests and the QLoRA
 * gradients are checked against. The forward dequantizes 24 rows of W per work item into the
 * thread's scratch; dx dequantizes the packed GEMM's panels (KC rows x NC columns) as it packs
 * them: never the whole matrix. One-token products (inference on an NF4 base) pay the
 * dequantization per call; nothing serves NF4 inference today. */
#include "cpu_kernels.h"
#include "nf4_kernels.h"

#include <inttypes.h>
#include <omp.h>
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

/* The 16 NF4 values, code i -> value i (kernels.h, tw_nf4_values_get: bitsandbytes' table;
 * tests/unit/test_kernels_nf4.c checks the dequantized bits against nf4_dequantize). */
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

const float *tw_nf4_values_get(void) { return nf4_values; }

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

typedef void (*block_fn)(const uint8_t *q, float am, float *out);

/* The block dequantizer to use: AVX2 where the CPU has it, unless force_portable. */
static block_fn block_pick(int force_portable) {
#ifdef TW_X86
    if (!force_portable && tw_cpu_has_avx2_fma()) return block_avx2;
#else
    (void)force_portable;
#endif
    return block_portable;
}

void tw_cpu_nf4_dequantize_rows(const void *w, int64_t k, int64_t n_out, int64_t r0, int64_t nr,
                                float *out, int force_portable) {
    nf4_view v = view_of(w, k, n_out);
    block_fn blk = block_pick(force_portable);
    const int64_t bpr = k / TW_NF4_BLOCK; /* blocks per row */
    for (int64_t r = 0; r < nr; r++)
        for (int64_t j = 0; j < bpr; j++) {
            int64_t b = (r0 + r) * bpr + j;
            blk(v.codes + b * (TW_NF4_BLOCK / 2), block_absmax(&v, b),
                out + r * k + j * TW_NF4_BLOCK);
        }
}

void tw_cpu_nf4_dequantize_cols(const void *w, int64_t k, int64_t n_out, int64_t r, int64_t j0,
                                int64_t nc, float *out, int force_portable) {
    nf4_view v = view_of(w, k, n_out);
    block_fn blk = block_pick(force_portable);
    TW_ASSERT(j0 % TW_NF4_BLOCK == 0 && nc % TW_NF4_BLOCK == 0 && j0 + nc <= k);
    const int64_t b0 = (r * k + j0) / TW_NF4_BLOCK;
    for (int64_t j = 0; j < nc / TW_NF4_BLOCK; j++)
        blk(v.codes + (b0 + j) * (TW_NF4_BLOCK / 2), block_absmax(&v, b0 + j),
            out + j * TW_NF4_BLOCK);
}

/* ---- the products ------------------------------------------------------------------------ */

/* W rows per forward work item: matmul_f.c's own chunk (O_CHUNK), so that the F32 kernel runs
 * each item on the calling thread without a team of its own. Why one OpenMP region per call
 * with the dequantization inside it: GNU OpenMP's idle workers spin between regions, and a
 * region per chunk (plus serial dequantization between them) cost twice the CPU time of the
 * F32 op with 2 threads on a busy machine. */
#define FWD_ROWS 24

tw_status tw_cpu_matmul_nf4(float *y, const float *x, const void *w, const float *bias,
                            int64_t m, int64_t k, int64_t n_out, int force_portable) {
    const int64_t tasks = (n_out + FWD_ROWS - 1) / FWD_ROWS;
    int nt = tw_threads_get();
    if (nt > tasks) nt = (int)tasks;
    const size_t per = (size_t)(FWD_ROWS * k + m * FWD_ROWS); /* wf (24, k), yt (m, 24) */
    float *scratch = tw_malloc((size_t)nt * per * sizeof(float));
    if (!scratch)
        return tw_error_wrap("matmul (nf4): scratch for %d x %" PRId64 " rows of %" PRId64, nt,
                             (int64_t)FWD_ROWS, k);
    const int par = nt > 1 && (double)m * (double)n_out * (double)k >= 65536.0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (par)
    for (int64_t t = 0; t < tasks; t++) {
        float *wf = scratch + (size_t)omp_get_thread_num() * per, *yt = wf + FWD_ROWS * k;
        int64_t o0 = t * FWD_ROWS, nr = n_out - o0 < FWD_ROWS ? n_out - o0 : FWD_ROWS;
        tw_cpu_nf4_dequantize_rows(w, k, n_out, o0, nr, wf, force_portable);
        /* one chunk of matmul_f: no scratch, cannot fail */
        TW_ASSERT(tw_cpu_matmul_f(yt, x, wf, TW_DTYPE_F32, bias ? bias + o0 : NULL, m, k, nr,
                                  force_portable) == TW_OK);
        for (int64_t i = 0; i < m; i++)
            memcpy(y + i * n_out + o0, yt + i * nr, (size_t)nr * sizeof(float));
    }
    tw_free(scratch);
    return TW_OK;
}

tw_status tw_cpu_matmul_dx_nf4(float *dx, const float *dy, const void *w, int64_t m, int64_t k,
                               int64_t n_out, int accumulate, int force_portable) {
    /* the packed GEMM dequantizes its panels of W with tw_cpu_nf4_dequantize_cols */
    return tw_cpu_matmul_dx_variant(dx, dy, w, TW_DTYPE_NF4, m, k, n_out, accumulate,
                                    force_portable);
}
