/* test_train_gemm.c: the packing and tiling choices of kernels/cpu/train_gemm.c that the
 * small shapes of test_kernels_train.c do not reach:
 *  - the AVX2 widening of Q4_0 / Q4_1 / Q8_0 blocks straight into the packed B panel must give
 *    the bits of tw_dequantize_row: dx through a quantized W equals, byte for byte, dx through
 *    the same W dequantized to F32 beforehand (the same micro-kernel and summation order run
 *    on both; only the packing differs). Blocks of random bytes, so every nibble, negative,
 *    subnormal and large fp16 scales occur;
 *  - wide column tiles, taken when A exceeds 8 MiB (xent's dh: 64 rows x a 49152 vocabulary):
 *    the same bits at 1, 2 and 3 threads (each picks another tile width), and the fp64
 *    reference within the rounding bound, for MATMUL_DX and MATMUL_DW;
 *  - MATMUL_DW with one sliver of columns (k <= 16: LoRA's dB, k = rank), where A (dy^T) is
 *    read in place instead of packed: against the fp64 reference, both variants, and the same
 *    bits at 1 and 3 threads. */
#include "core.h"
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

static kin_rng rng = {0x7470657266ull};

#define U 0x1.0p-24 /* fp32 unit roundoff */

/* n_rows rows of k elements of t (a 32-block type) of random bytes, with every fp16 scale and
 * min finite (exponent < 31): any sign, subnormals included, magnitudes up to 2^8. */
static uint8_t *random_q32(tw_dtype t, int64_t n_rows, int64_t k) {
    size_t rb = tw_dtype_row_bytes(t, k), bb = tw_dtype_type_size(t);
    uint8_t *w = tw_malloc(rb * (size_t)n_rows);
    TW_ASSERT(w);
    for (size_t i = 0; i < rb * (size_t)n_rows; i++) w[i] = (uint8_t)kin_next(&rng);
    int n_half = t == TW_DTYPE_Q4_1 ? 2 : 1; /* d, and Q4_1's m */
    for (size_t b = 0; b < rb * (size_t)n_rows / bb; b++)
        for (int f = 0; f < n_half; f++) {
            uint8_t *p = w + b * bb + 2 * f;
            uint16_t h = (uint16_t)kin_next(&rng);
            uint16_t e = (uint16_t)(kin_next(&rng) % 24); /* exponent 0 (subnormal) .. 23 */
            h = (uint16_t)((h & 0x83FFu) | (e << 10));
            p[0] = (uint8_t)h;
            p[1] = (uint8_t)(h >> 8);
        }
    return w;
}

static void test_q32_pack_bits(void) {
    const tw_dtype types[] = {TW_DTYPE_Q4_0, TW_DTYPE_Q4_1, TW_DTYPE_Q8_0};
    /* k: 5 blocks (an odd number of 32-column pairs of slivers); n_out past one KC panel */
    const int64_t m = 13, k = 160, n_out = 301;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        tw_dtype t = types[ti];
        uint8_t *w = random_q32(t, n_out, k);
        float *wf = kin_floats(n_out * k), *dy = kin_floats(m * n_out);
        float *old = kin_floats(m * k), *yq = kin_floats(m * k), *yf = kin_floats(m * k);
        for (int64_t o = 0; o < n_out; o++)
            TW_ASSERT(tw_dequantize_row(t, w + (size_t)o * tw_dtype_row_bytes(t, k), wf + o * k, k) == TW_OK);
        kin_fill(&rng, dy, m * n_out, 1.0f);
        kin_fill(&rng, old, m * k, 4.0f);
        for (int portable = 0; portable <= 1; portable++)
            for (int acc = 0; acc <= 1; acc++) {
                memcpy(yq, old, (size_t)(m * k) * 4);
                memcpy(yf, old, (size_t)(m * k) * 4);
                CHECK(tw_cpu_matmul_dx_variant(yq, dy, w, t, m, k, n_out, acc, portable) == TW_OK);
                CHECK(tw_cpu_matmul_dx_variant(yf, dy, wf, TW_DTYPE_F32, m, k, n_out, acc, portable) == TW_OK);
                int same = memcmp(yq, yf, (size_t)(m * k) * 4) == 0;
                if (!same)
                    fprintf(stderr, "matmul_dx %s portable %d acc %d: not the bits of the F32 path\n",
                            tw_dtype_name(t), portable, acc);
                CHECK(same);
            }
        tw_free(w), tw_free(wf), tw_free(dy), tw_free(old), tw_free(yq), tw_free(yf);
    }
}

/* max over the elements of |y - ref| / mag, mag = sum |products| (+ |old|). */
static double scaled_err(const float *y, const float *ref, const double *mag, int64_t n) {
    return kin_max_scaled_err(y, ref, mag, n);
}

/* dx (m, k) = dy (m, n_out) . W (Q8_0) with dy of 37 x 60000 floats (8.9 MB > 8 MiB): wide
 * tiles. Bound as in test_kernels_train.c: (2 n_out + 2) u of the magnitude. */
static void test_wide_dx(void) {
    const int64_t m = 37, k = 96, n_out = 60000;
    uint8_t *w = kin_quant_rows(&rng, TW_DTYPE_Q8_0, n_out, k, 1.0f);
    float *dy = kin_floats(m * n_out), *wf = kin_floats(n_out * k), *ref = kin_floats(m * k);
    float *y1 = kin_floats(m * k), *y = kin_floats(m * k);
    double *mag = tw_malloc((size_t)(m * k) * sizeof(double));
    TW_ASSERT(mag);
    kin_fill(&rng, dy, m * n_out, 1.0f);
    for (int64_t o = 0; o < n_out; o++)
        TW_ASSERT(tw_dequantize_row(TW_DTYPE_Q8_0, w + (size_t)o * tw_dtype_row_bytes(TW_DTYPE_Q8_0, k), wf + o * k, k) == TW_OK);
    for (int64_t i = 0; i < m * k; i++) mag[i] = 1e-30;
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double a = fabs((double)dy[i * n_out + o]);
            for (int64_t j = 0; j < k; j++) mag[i * k + j] += a * fabs((double)wf[o * k + j]);
        }
    CHECK(tw_ref_matmul_dx(ref, dy, w, TW_DTYPE_Q8_0, m, k, n_out, 0) == TW_OK);
    int saved = tw_threads_get();
    for (int nt = 1; nt <= 3; nt++) {
        tw_threads_set(nt);
        float *out = nt == 1 ? y1 : y;
        CHECK(tw_cpu_matmul_dx(out, dy, w, TW_DTYPE_Q8_0, m, k, n_out, 0) == TW_OK);
        double e = scaled_err(out, ref, mag, m * k), tol = (2.0 * n_out + 2) * U;
        if (!(e <= tol)) fprintf(stderr, "wide matmul_dx at %d threads: err %.3g > %.3g\n", nt, e, tol);
        CHECK(e <= tol);
        if (nt > 1) CHECK(memcmp(y, y1, (size_t)(m * k) * 4) == 0);
    }
    tw_threads_set(saved);
    tw_free(w), tw_free(dy), tw_free(wf), tw_free(ref), tw_free(y1), tw_free(y), tw_free(mag);
}

/* dw (n_out, k) += dy^T x with dy of 600 x 4000 floats (9.6 MB): wide tiles over k = 40 (not a
 * multiple of a sliver: padded columns). */
static void test_wide_dw(void) {
    const int64_t m = 600, k = 40, n_out = 4000;
    float *dy = kin_floats(m * n_out), *x = kin_floats(m * k), *old = kin_floats(n_out * k);
    float *ref = kin_floats(n_out * k), *y1 = kin_floats(n_out * k), *y = kin_floats(n_out * k);
    double *mag = tw_malloc((size_t)(n_out * k) * sizeof(double));
    TW_ASSERT(mag);
    kin_fill(&rng, dy, m * n_out, 1.0f);
    kin_fill(&rng, x, m * k, 1.0f);
    kin_fill(&rng, old, n_out * k, 8.0f);
    for (int64_t i = 0; i < n_out * k; i++) mag[i] = fabs((double)old[i]);
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double a = fabs((double)dy[i * n_out + o]);
            for (int64_t j = 0; j < k; j++) mag[o * k + j] += a * fabs((double)x[i * k + j]);
        }
    memcpy(ref, old, (size_t)(n_out * k) * 4);
    tw_ref_matmul_dw(ref, NULL, dy, x, m, k, n_out, 1);
    int saved = tw_threads_get();
    for (int nt = 1; nt <= 3; nt++) {
        tw_threads_set(nt);
        float *out = nt == 1 ? y1 : y;
        memcpy(out, old, (size_t)(n_out * k) * 4);
        CHECK(tw_cpu_matmul_dw(out, NULL, dy, x, m, k, n_out, 1) == TW_OK);
        double e = scaled_err(out, ref, mag, n_out * k), tol = (2.0 * m + 2) * U;
        if (!(e <= tol)) fprintf(stderr, "wide matmul_dw at %d threads: err %.3g > %.3g\n", nt, e, tol);
        CHECK(e <= tol);
        if (nt > 1) CHECK(memcmp(y, y1, (size_t)(n_out * k) * 4) == 0);
    }
    tw_threads_set(saved);
    tw_free(dy), tw_free(x), tw_free(old), tw_free(ref), tw_free(y1), tw_free(y), tw_free(mag);
}

static void test_dw_one_sliver(void) {
    const int64_t m = 300, n_out = 101, ks[] = {16, 10};
    for (int ki = 0; ki < 2; ki++) {
        const int64_t k = ks[ki];
        float *dy = kin_floats(m * n_out), *x = kin_floats(m * k), *old = kin_floats(n_out * k);
        float *ref = kin_floats(n_out * k), *y = kin_floats(n_out * k), *y3 = kin_floats(n_out * k);
        double *mag = tw_malloc((size_t)(n_out * k) * sizeof(double));
        TW_ASSERT(mag);
        kin_fill(&rng, dy, m * n_out, 1.0f);
        kin_fill(&rng, x, m * k, 1.0f);
        kin_fill(&rng, old, n_out * k, 8.0f);
        for (int64_t i = 0; i < n_out * k; i++) mag[i] = fabs((double)old[i]);
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < n_out; o++)
                for (int64_t j = 0; j < k; j++)
                    mag[o * k + j] += fabs((double)dy[i * n_out + o] * (double)x[i * k + j]);
        memcpy(ref, old, (size_t)(n_out * k) * 4);
        tw_ref_matmul_dw(ref, NULL, dy, x, m, k, n_out, 1);
        for (int portable = 0; portable <= 1; portable++) {
            memcpy(y, old, (size_t)(n_out * k) * 4);
            CHECK(tw_cpu_matmul_dw_variant(y, NULL, dy, x, m, k, n_out, 1, portable) == TW_OK);
            double e = scaled_err(y, ref, mag, n_out * k), tol = (2.0 * m + 2) * U;
            if (!(e <= tol))
                fprintf(stderr, "matmul_dw k %lld portable %d: err %.3g > %.3g\n", (long long)k,
                        portable, e, tol);
            CHECK(e <= tol);
        }
        int saved = tw_threads_get();
        tw_threads_set(1);
        memcpy(y, old, (size_t)(n_out * k) * 4);
        CHECK(tw_cpu_matmul_dw(y, NULL, dy, x, m, k, n_out, 1) == TW_OK);
        tw_threads_set(3);
        memcpy(y3, old, (size_t)(n_out * k) * 4);
        CHECK(tw_cpu_matmul_dw(y3, NULL, dy, x, m, k, n_out, 1) == TW_OK);
        tw_threads_set(saved);
        CHECK(memcmp(y, y3, (size_t)(n_out * k) * 4) == 0);
        tw_free(dy), tw_free(x), tw_free(old), tw_free(ref), tw_free(y), tw_free(y3), tw_free(mag);
    }
}

int main(void) {
    RUN(test_q32_pack_bits);
    RUN(test_wide_dx);
    RUN(test_wide_dw);
    RUN(test_dw_one_sliver);
    TEST_DONE();
}
