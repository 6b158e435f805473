/* train_gemm.c: the optimized CPU kernels of TW_OP_MATMUL_DX and TW_OP_MATMUL_DW (kernels.h,
 * "training ops"): fp32 GEMMs C (M, N) (+)= A (M, P) . B (P, N) in the layout of llm.c's and
 * BLIS's kernels:
 *
 *   MATMUL_DX  C = dx (m, k),     A = dy (m, n_out) read in place,  B = W (n_out, k) of any
 *              matmul type, dequantized panel by panel (KC rows x NC columns, whole blocks of
 *              the type), so a QLoRA base never exists in fp32 beyond one panel per thread;
 *   MATMUL_DW  C = dw (n_out, k), A = dy^T (packed: slivers of MR rows, unless B is a single
 *              sliver (k <= NR: LoRA's dB, k = rank), when each A value is read once anyway
 *              and packing it cost a third of the op), B = x (m, k).
 *
 * Loops: tasks are (MC rows x NC columns) tiles of C, spread over OpenMP threads; each task
 * walks the reduction in steps of KC, packs its B panel (KC x NC, in slivers of NR columns: the
 * stream of the micro-kernel) and, for each sliver of MR rows of A, runs the MR x NR micro-kernel
 * (AVX2: 12 accumulators of 8 lanes, one broadcast of A and two loads of B per step) over the
 * column slivers of the panel.
 *
 * Determinism: every C element is computed by one task as acc = (accumulate or p0 > 0 ? C : 0),
 * then acc = fma(a_p, b_p, acc) for p = 0, 1, ..., P-1 in order, the fp32 accumulator stored
 * and reloaded between steps of KC (exact). No element depends on the tiling, the task order or
 * the thread count, so the results are the same bits with any number of threads (the tile sizes
 * below adapt to the thread count for balance, which is why this matters). The portable variant
 * (plain C; the compiler contracts a * b + acc into an fma only under TWIN_NATIVE) may differ
 * from the AVX2 one in the last bits; both are within the bounds of the tests against the fp64
 * reference.
 *
 * Zero padding: B panels are padded with zero columns to a multiple of NR, and the packed A
 * slivers of DW with zero rows to MR; padded lanes are computed but never stored. */
#include "cpu_kernels.h"
#include "nf4_kernels.h"

#include <omp.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx2.h"
#define TW_X86 1
#endif

#define MR 6   /* rows of the micro-kernel */
#define NR 16  /* columns of the micro-kernel (two AVX2 vectors) */
#define KC 256 /* reduction steps per packed panel */
#define NC_MAX 384 /* a B panel of KC x NC_MAX floats is 384 KiB: within a 512 KiB L2 */
#define A_WIDE (8u << 20) /* bytes of A beyond which column tiles are made wide (pick_nc) */

typedef struct {
    float *c; /* (M, N), row stride ldc */
    int64_t ldc, M, N, P;
    int accumulate;
    /* A (M, P): A(i, p) = a[i * a_rs + p * a_ps]; pack_a: copy slivers of MR rows first (when
     * A's rows are not contiguous, as dy^T is) */
    const float *a;
    int64_t a_rs, a_ps;
    int pack_a;
    /* B (P, N): row p is b_rb bytes from row p-1, elements of type bt */
    const void *b;
    size_t b_rb;
    tw_dtype bt;
    int64_t mc, nc; /* tile of C per task; nc a multiple of NR and of bt's block size */
    int avx2;
} gemm_job;

/* ---- micro-kernels: rows [0, mr) x columns [0, nr) of C (ldc) from A (a, a_rs, a_ps) and a
 * packed B sliver bp (kc, NR); load: start from C, else from 0. ------------------------------ */

static void ukr_portable(int mr, int64_t kc, const float *a, int64_t a_rs, int64_t a_ps,
                         const float *bp, float *c, int64_t ldc, int nr, int load) {
    float acc[MR][NR];
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = load && j < nr ? c[r * ldc + j] : 0.0f;
    for (int64_t p = 0; p < kc; p++) {
        const float *b = bp + p * NR, *ap = a + p * a_ps;
        for (int r = 0; r < mr; r++) {
            float av = ap[r * a_rs];
            for (int j = 0; j < NR; j++) {
                acc[r][j] += av * b[j];
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[r * ldc + j] = acc[r][j];
}

#ifdef TW_X86
/* Lanes [0, n) of a vector (n may be <= 0 or >= 8). */
TW_AVX2 static inline __m256i lane_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

TW_AVX2 static inline __attribute__((always_inline)) void
ukr_avx2_t(const int mr, int64_t kc, const float *a, int64_t a_rs, int64_t a_ps, const float *bp,
           float *c, int64_t ldc, int nr, int load) {
    __m256 acc[MR][2];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        if (!load) {
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        } else if (nr == NR) {
            acc[r][0] = _mm256_loadu_ps(c + r * ldc);
            acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
            acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
        }
    }
    const float *ar[MR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) ar[r] = a + r * a_rs;
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(bp + p * NR), b1 = _mm256_load_ps(bp + p * NR + 8);
        int64_t off = p * a_ps;
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(ar[r] + off);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        if (nr == NR) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
        }
    }
}

/* One instance per row count, so that the accumulators stay in registers. */
TW_AVX2 static void ukr_avx2(int mr, int64_t kc, const float *a, int64_t a_rs, int64_t a_ps,
                             const float *bp, float *c, int64_t ldc, int nr, int load) {
    switch (mr) {
    case 6: ukr_avx2_t(6, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    case 5: ukr_avx2_t(5, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    case 4: ukr_avx2_t(4, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    case 3: ukr_avx2_t(3, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    case 2: ukr_avx2_t(2, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    default: ukr_avx2_t(1, kc, a, a_rs, a_ps, bp, c, ldc, nr, load); break;
    }
}
#endif

/* ---- packing ------------------------------------------------------------------------------ */

/* B rows [p0, p0+kc), columns [j0, j0+nc) -> bp (nc/NR rounded up, kc, NR), zero-padded.
 * row: scratch (NC_MAX) for one dequantized row. */
static void pack_b(const gemm_job *g, float *bp, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   float *row) {
    int64_t groups = (nc + NR - 1) / NR, bs = tw_dtype_block_size(g->bt);
    size_t ts = tw_dtype_type_size(g->bt);
    for (int64_t p = 0; p < kc; p++) {
        const uint8_t *src = (const uint8_t *)g->b + (size_t)(p0 + p) * g->b_rb;
        const float *r = row;
        if (g->bt == TW_DTYPE_F32)
            r = (const float *)src + j0;
        else if (g->bt == TW_DTYPE_NF4) /* one layout for the matrix, no row stride */
            tw_cpu_nf4_dequantize_cols(g->b, g->N, g->P, p0 + p, j0, nc, row, !g->avx2);
        else
            TW_ASSERT(tw_dequantize_row(g->bt, src + (size_t)(j0 / bs) * ts, row, nc) == TW_OK);
        for (int64_t q = 0; q < groups; q++) {
            float *dst = bp + (q * kc + p) * NR;
            int64_t n = nc - q * NR < NR ? nc - q * NR : NR;
            memcpy(dst, r + q * NR, (size_t)n * sizeof(float));
            for (int64_t j = n; j < NR; j++) dst[j] = 0.0f;
        }
    }
}

#ifdef TW_X86
/* pack_b for the 32-blocks of Q4_0, Q4_1 and Q8_0 in AVX2: each block of a row is widened
 * straight into its two slivers (elements 0..15 -> sliver 2b, 16..31 -> 2b+1), without the
 * row scratch, the per-block call and the copy of the portable path. The values are the bits
 * of tw_dequantize_row (engine/quant.c): the fp16 scales widen exactly (F16C), and each element
 * is d * q (Q4_0: q = nibble - 8; Q8_0: the int8) or d * q + m (Q4_1), a rounded product then
 * a rounded sum (no FMA), as the C dequantizer computes them under -std=c11 (no contraction).
 * nc: a multiple of 32 (whole blocks; the caller's tiles are). In xent's dh (a 64-row chunk
 * times the 49152 x 576 Q8_0 head) the portable path cost more than the GEMM itself. */
TW_AVX2 static void pack_b_q32_avx2(const gemm_job *g, float *bp, int64_t p0, int64_t kc,
                                    int64_t j0, int64_t nc) {
    const size_t ts = tw_dtype_type_size(g->bt);
    const int64_t nb = nc / 32;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t p = 0; p < kc; p++) {
        const uint8_t *blk = (const uint8_t *)g->b + (size_t)(p0 + p) * g->b_rb + (size_t)(j0 / 32) * ts;
        for (int64_t b = 0; b < nb; b++, blk += ts) {
            float *d0 = bp + ((2 * b) * kc + p) * NR, *d1 = d0 + kc * NR;
            uint16_t h;
            memcpy(&h, blk, 2);
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(h));
            __m128i q0, q1; /* elements 0..15 and 16..31 as 16 int8 each */
            if (g->bt == TW_DTYPE_Q8_0) {
                q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
                q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
            } else {
                const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + (g->bt == TW_DTYPE_Q4_1 ? 4 : 2)));
                q0 = _mm_and_si128(qs, lo4);
                q1 = _mm_and_si128(_mm_srli_epi16(qs, 4), lo4);
                if (g->bt == TW_DTYPE_Q4_0) {
                    q0 = _mm_sub_epi8(q0, _mm_set1_epi8(8));
                    q1 = _mm_sub_epi8(q1, _mm_set1_epi8(8));
                }
            }
            __m256 v[4] = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)),
                           _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))),
                           _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)),
                           _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)))};
            for (int i = 0; i < 4; i++) v[i] = _mm256_mul_ps(d, v[i]);
            if (g->bt == TW_DTYPE_Q4_1) {
                memcpy(&h, blk + 2, 2);
                const __m256 m = _mm256_set1_ps(_cvtsh_ss(h));
                for (int i = 0; i < 4; i++) v[i] = _mm256_add_ps(v[i], m);
            }
            _mm256_store_ps(d0, v[0]);
            _mm256_store_ps(d0 + 8, v[1]);
            _mm256_store_ps(d1, v[2]);
            _mm256_store_ps(d1 + 8, v[3]);
        }
    }
}
#endif

/* A rows [i0, i0+mr), reduction [p0, p0+kc) -> ap (kc, MR), rows from mr on zero. */
static void pack_a(const gemm_job *g, float *ap, int64_t i0, int mr, int64_t p0, int64_t kc) {
    if (g->a_rs == 1 && mr == MR) { /* dy^T: the MR values of a step are contiguous */
        const float *src = g->a + i0 + p0 * g->a_ps;
        for (int64_t p = 0; p < kc; p++) memcpy(ap + p * MR, src + p * g->a_ps, MR * sizeof(float));
        return;
    }
    for (int64_t p = 0; p < kc; p++)
        for (int r = 0; r < MR; r++)
            ap[p * MR + r] = r < mr ? g->a[(i0 + r) * g->a_rs + (p0 + p) * g->a_ps] : 0.0f;
}

/* ---- the driver --------------------------------------------------------------------------- */

static tw_status gemm_run(const gemm_job *g, const char *opname) {
    if (g->M == 0 || g->N == 0) return TW_OK;
    if (g->P == 0) { /* an empty sum: C = 0, or unchanged when accumulating */
        if (!g->accumulate)
            for (int64_t i = 0; i < g->M; i++) memset(g->c + i * g->ldc, 0, (size_t)g->N * sizeof(float));
        return TW_OK;
    }
    int64_t n_mt = (g->M + g->mc - 1) / g->mc, n_nt = (g->N + g->nc - 1) / g->nc;
    int64_t tasks = n_mt * n_nt;
    int nt = tw_threads_get();
    if (nt > tasks) nt = (int)tasks;
    /* per thread: the B panel (NC_MAX/NR, KC, NR), one packed A sliver (KC, MR), a row */
    size_t per = (size_t)KC * NC_MAX + (size_t)KC * MR + NC_MAX;
    float *scratch = tw_malloc((size_t)nt * per * sizeof(float) + 32);
    if (!scratch)
        return tw_error_wrap("%s: %d x %zu floats of scratch", opname, nt, per);
    float *base = (float *)(((uintptr_t)scratch + 31) & ~(uintptr_t)31); /* aligned loads of B */
    void (*ukr)(int, int64_t, const float *, int64_t, int64_t, const float *, float *, int64_t,
                int, int) = ukr_portable;
#ifdef TW_X86
    if (g->avx2) ukr = ukr_avx2;
#endif
    /* the AVX2 packing of 32-blocks (tiles are whole blocks: nc and N multiples of 32) */
    int q32 = g->avx2 && (g->bt == TW_DTYPE_Q4_0 || g->bt == TW_DTYPE_Q4_1 || g->bt == TW_DTYPE_Q8_0);
    (void)q32;
    int par = tasks > 1 && (double)g->M * (double)g->N * (double)g->P >= 65536.0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (par)
    for (int64_t t = 0; t < tasks; t++) {
        float *bp = base + (size_t)omp_get_thread_num() * per;
        float *ap = bp + (size_t)KC * NC_MAX, *row = ap + (size_t)KC * MR;
        int64_t i0 = (t / n_nt) * g->mc, j0 = (t % n_nt) * g->nc;
        int64_t mcw = g->M - i0 < g->mc ? g->M - i0 : g->mc;
        int64_t ncw = g->N - j0 < g->nc ? g->N - j0 : g->nc;
        int64_t groups = (ncw + NR - 1) / NR;
        for (int64_t p0 = 0; p0 < g->P; p0 += KC) {
            int64_t kc = g->P - p0 < KC ? g->P - p0 : KC;
            int load = g->accumulate || p0 > 0;
#ifdef TW_X86
            if (q32)
                pack_b_q32_avx2(g, bp, p0, kc, j0, ncw);
            else
#endif
                pack_b(g, bp, p0, kc, j0, ncw, row);
            for (int64_t i = i0; i < i0 + mcw; i += MR) {
                int mr = (int)(i0 + mcw - i < MR ? i0 + mcw - i : MR);
                const float *a = g->a + i * g->a_rs + p0 * g->a_ps;
                int64_t rs = g->a_rs, ps = g->a_ps;
                if (g->pack_a && groups > 1) { /* one sliver of B: A is read once anyway */
                    pack_a(g, ap, i, mr, p0, kc);
                    a = ap, rs = 1, ps = MR;
                }
                for (int64_t q = 0; q < groups; q++) {
                    int nr = (int)(ncw - q * NR < NR ? ncw - q * NR : NR);
                    ukr(mr, kc, a, rs, ps, bp + q * kc * NR, g->c + i * g->ldc + j0 + q * NR,
                        g->ldc, nr, load);
                }
            }
        }
    }
    tw_free(scratch);
    return TW_OK;
}

/* The column tile nc (a multiple of NR and of the block size bs, at most NC_MAX) for C (M, N)
 * in n_mt row tiles, when A takes a_bytes. Each column tile reads all of A once, and each row
 * tile packs (dequantizes) its B panels once, so:
 *  - A small (within a share of the L3 cache, A_WIDE): the widest tile that still gives every
 *    thread several tiles (n_mt row tiles times N / nc column tiles >= 8 per thread, for
 *    dynamic balance), but not narrower than 32 columns (or one block); re-reading A from the
 *    cache costs little;
 *  - A large (xent's dh: 64 rows x a 49152 vocabulary, 12 MiB): A comes from memory for every
 *    column tile, so as few tiles as still give each thread one: about N / threads, rounded up
 *    to whole slivers and blocks (576 columns at 2 threads: 288). Measured on xent's shape at
 *    one thread, 1.37x the 32-column tiles (53 -> 72 GFLOP/s). */
static int64_t pick_nc(int64_t N, int64_t n_mt, int64_t bs, double a_bytes) {
    int nt = tw_threads_get();
    int64_t unit = bs > NR ? bs : NR; /* bs is 1 or a power of two: a multiple of both */
    if (a_bytes > (double)A_WIDE) {
        for (int64_t t = n_mt >= nt ? 1 : (nt + n_mt - 1) / n_mt;; t++) {
            int64_t nc = ((N + t - 1) / t + unit - 1) / unit * unit;
            if (nc <= NC_MAX) return nc;
        }
    }
    int64_t lo = bs > 32 ? bs : 32, nc = bs > 128 ? bs : 128;
    while (nc / 2 >= lo && nc % 2 == 0 && (nc / 2) % bs == 0 && (nc / 2) % NR == 0 &&
           n_mt * ((N + nc - 1) / nc) < 8 * (int64_t)nt)
        nc /= 2;
    return nc;
}

/* ---- the ops ------------------------------------------------------------------------------ */

tw_status tw_cpu_matmul_dx_variant(float *dx, const float *dy, const void *w, tw_dtype wt,
                                   int64_t m, int64_t k, int64_t n_out, int accumulate,
                                   int force_portable) {
    /* A = dy in place; all of dx's rows in one tile (each W panel is dequantized once per
     * call), columns in tiles of whole weight blocks. */
    int64_t bs = wt == TW_DTYPE_NF4 ? TW_NF4_BLOCK : tw_dtype_block_size(wt);
    TW_ASSERT(bs >= 1 && bs <= NC_MAX && k % bs == 0);
    gemm_job g = {.c = dx, .ldc = k, .M = m, .N = k, .P = n_out, .accumulate = accumulate,
                  .a = dy, .a_rs = n_out, .a_ps = 1, .pack_a = 0,
                  .b = w, .b_rb = tw_dtype_row_bytes(wt, k), .bt = wt,
                  .mc = m > 0 ? m : 1, .avx2 = !force_portable && tw_cpu_has_avx2_fma()};
    g.nc = pick_nc(k, 1, bs, 4.0 * (double)m * (double)n_out);
    return gemm_run(&g, "matmul_dx");
}

tw_status tw_cpu_matmul_dx(float *dx, const float *dy, const void *w, tw_dtype wt, int64_t m,
                           int64_t k, int64_t n_out, int accumulate) {
    return tw_cpu_matmul_dx_variant(dx, dy, w, wt, m, k, n_out, accumulate, 0);
}

tw_status tw_cpu_matmul_dw_variant(float *dw, float *dbias, const float *dy, const float *x,
                                   int64_t m, int64_t k, int64_t n_out, int accumulate,
                                   int force_portable) {
    /* A = dy^T (packed), B = x; tiles of 96 rows of dw (16 slivers). */
    gemm_job g = {.c = dw, .ldc = k, .M = n_out, .N = k, .P = m, .accumulate = accumulate,
                  .a = dy, .a_rs = 1, .a_ps = n_out, .pack_a = 1,
                  .b = x, .b_rb = (size_t)k * sizeof(float), .bt = TW_DTYPE_F32,
                  .mc = 16 * MR, .avx2 = !force_portable && tw_cpu_has_avx2_fma()};
    g.nc = pick_nc(k, (n_out + g.mc - 1) / g.mc, 1, 4.0 * (double)m * (double)n_out);
    tw_status st = gemm_run(&g, "matmul_dw");
    if (st != TW_OK || !dbias) return st;
    /* dbias[o] (+)= sum_i dy[i,o], in order of i for each o: slices of 64 columns of dy. */
    int64_t n_sl = (n_out + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (m * n_out >= 65536)
    for (int64_t s = 0; s < n_sl; s++) {
        int64_t o0 = s * 64, o1 = o0 + 64 < n_out ? o0 + 64 : n_out;
        float acc[64];
        for (int64_t o = o0; o < o1; o++) acc[o - o0] = accumulate ? dbias[o] : 0.0f;
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = o0; o < o1; o++) acc[o - o0] += dy[i * n_out + o];
        for (int64_t o = o0; o < o1; o++) dbias[o] = acc[o - o0];
    }
    return TW_OK;
}

tw_status tw_cpu_matmul_dw(float *dw, float *dbias, const float *dy, const float *x, int64_t m,
                           int64_t k, int64_t n_out, int accumulate) {
    return tw_cpu_matmul_dw_variant(dw, dbias, dy, x, m, k, n_out, accumulate, 0);
}
