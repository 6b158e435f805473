/* test_kernels_nf4.c: NF4 weights in the op table (kernels.h, TW_DTYPE_NF4):
 *   - the layout's sizes and refusals; nf4_tensor_pack's refusals; nf4_quantize gives the same
 *     bytes with 1 and 3 threads;
 *   - the dequantizer (portable and AVX2, row ranges, a column range) has the bits of
 *     nf4_dequantize (engine/nf4.c, itself checked against bitsandbytes' numbers), and so has
 *     the reference's own reading of the layout (one-hot rows of x pick single weights);
 *   - TW_OP_MATMUL and TW_OP_MATMUL_DX kernels against their fp64 references, odd sizes, a
 *     W of more than 256 absmax values (the double quantization's second level) and more than
 *     one chunk of rows, both variants, bias and accumulate; and bit for bit the F32 kernels on
 *     the dequantized matrix (the property QLoRA's gradient checks rest on); small and
 *     one-row shapes, the reference bit for bit an fp64 product with nf4_dequantize's matrix;
 *   - the dx reference against central finite differences of an fp64 forward;
 *   - the ops through a CPU backend handle (the kernels' bits, the same with 1 and 3 threads)
 *     and their argument errors; ops that do not take NF4 refuse it; GGUF writing refuses it.
 */
#include "cpu/cpu_kernels.h"
#include "cpu/nf4_kernels.h"
#include "gguf.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "nf4.h"
#include "test.h"

#define U 0x1.0p-24

static kin_rng rng = {0x6e6634};

/* A random W (n_out, k) with rows of different scales (so the absmax values spread over the
 * double quantization's range), as NF4 in the op table's layout: *wq (tw_free), *wf its
 * dequantized values (n_out, k) from nf4_dequantize (tw_free). */
static void make_w(int64_t n_out, int64_t k, uint8_t **wq, float **wf, size_t *bytes) {
    float *x = kin_floats(n_out * k);
    kin_fill(&rng, x, n_out * k, 1.0f);
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t j = 0; j < k; j++) x[o * k + j] *= 0.05f + (float)(o % 7) * 0.3f;
    nf4_tensor t;
    TW_ASSERT(nf4_quantize(x, (uint64_t)(n_out * k), 1, &t) == TW_OK);
    tw_nf4_layout L;
    TW_ASSERT(tw_nf4_layout_get(n_out, k, &L) == TW_OK);
    *wq = tw_malloc(L.bytes);
    *wf = kin_floats(n_out * k);
    TW_ASSERT(*wq && nf4_tensor_pack(&t, n_out, k, *wq, L.bytes) == TW_OK);
    TW_ASSERT(nf4_dequantize(&t, *wf) == TW_OK);
    *bytes = L.bytes;
    nf4_tensor_free(&t);
    tw_free(x);
}

static void test_layout(void) {
    tw_nf4_layout L;
    CHECK(tw_nf4_layout_get(3, 128, &L) == TW_OK);
    /* 384 elements: 6 blocks, 1 second-level block: map 1024 + offset 4 + absmax2 4 +
     * qabsmax 6 + codes 192 */
    CHECK_EQ_INT(L.n_blocks, 6);
    CHECK_EQ_INT(L.n_blocks2, 1);
    CHECK_EQ_INT(L.offset, 1024);
    CHECK_EQ_INT(L.absmax2, 1028);
    CHECK_EQ_INT(L.qabsmax, 1032);
    CHECK_EQ_INT(L.codes, 1038);
    CHECK_EQ_INT(L.bytes, 1038 + 192);
    CHECK(tw_nf4_layout_get(301, 192, &L) == TW_OK);
    CHECK_EQ_INT(L.n_blocks2, (301 * 3 + 255) / 256);
    CHECK(tw_nf4_layout_get(3, 96, &L) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "multiple of 64") != NULL);
    CHECK(tw_nf4_layout_get(0, 64, &L) == TW_ERR_ARG);
    CHECK(tw_nf4_layout_get(3, 0, &L) == TW_ERR_ARG);
    CHECK(tw_nf4_layout_get(INT64_C(1) << 40, 64, &L) == TW_ERR_ARG);

    /* pack refusals */
    float x[256];
    kin_fill(&rng, x, 256, 1.0f);
    nf4_tensor t, t1;
    CHECK(nf4_quantize(x, 256, 1, &t) == TW_OK);
    CHECK(nf4_quantize(x, 256, 0, &t1) == TW_OK);
    uint8_t buf[2048];
    CHECK(tw_nf4_layout_get(2, 128, &L) == TW_OK);
    CHECK(nf4_tensor_pack(&t, 2, 128, buf, L.bytes) == TW_OK);
    CHECK(nf4_tensor_pack(&t1, 2, 128, buf, L.bytes) == TW_ERR_ARG); /* no double quant */
    CHECK(nf4_tensor_pack(&t, 4, 64, buf, L.bytes) == TW_OK);         /* same n: fine */
    CHECK(nf4_tensor_pack(&t, 3, 64, buf, L.bytes) == TW_ERR_ARG);    /* 192 != 256 */
    CHECK(nf4_tensor_pack(&t, 2, 128, buf, L.bytes - 1) == TW_ERR_ARG);
    nf4_tensor_free(&t);
    nf4_tensor_free(&t1);
}

/* nf4_quantize splits large tensors over threads: the same bytes with 1 and 3 threads. */
static void test_quantize_threads(void) {
    const uint64_t n = 1500 * 64 + 40; /* 1501 blocks: the threaded path, a short last block */
    float *x = kin_floats((int64_t)n);
    kin_fill(&rng, x, (int64_t)n, 3.0f);
    nf4_tensor a, b;
    int saved = tw_threads_get();
    tw_threads_set(1);
    CHECK(nf4_quantize(x, n, 1, &a) == TW_OK);
    tw_threads_set(3);
    CHECK(nf4_quantize(x, n, 1, &b) == TW_OK);
    tw_threads_set(saved);
    CHECK(memcmp(a.q, b.q, (size_t)(n + 1) / 2) == 0);
    CHECK(memcmp(a.qabsmax, b.qabsmax, (size_t)a.n_blocks) == 0);
    CHECK(memcmp(a.absmax2, b.absmax2, (size_t)a.n_blocks2 * 4) == 0);
    CHECK(memcmp(&a.offset, &b.offset, 4) == 0);
    nf4_tensor_free(&a), nf4_tensor_free(&b);
    tw_free(x);
}

static void test_dequantize_bits(void) {
    const int64_t n_out = 301, k = 192; /* 903 blocks: 4 second-level blocks, one mid-row */
    uint8_t *wq;
    float *wf;
    size_t bytes;
    make_w(n_out, k, &wq, &wf, &bytes);
    float *out = kin_floats(n_out * k);
    for (int portable = 0; portable <= 1; portable++) {
        memset(out, 0xff, (size_t)(n_out * k) * 4);
        tw_cpu_nf4_dequantize_rows(wq, k, n_out, 0, n_out, out, portable);
        CHECK(memcmp(out, wf, (size_t)(n_out * k) * 4) == 0);
        tw_cpu_nf4_dequantize_rows(wq, k, n_out, 85, 3, out, portable); /* rows 85..87 */
        CHECK(memcmp(out, wf + 85 * k, (size_t)(3 * k) * 4) == 0);
        tw_cpu_nf4_dequantize_cols(wq, k, n_out, 86, 64, 128, out, portable); /* row 86, 64.. */
        CHECK(memcmp(out, wf + 86 * k + 64, 128 * 4) == 0);
    }
    /* the reference reads the layout on its own: a one-hot x row picks W[o, j] exactly */
    const int64_t m = 5;
    float *x = kin_floats(m * k), *y = kin_floats(m * n_out);
    int64_t cols[5] = {0, 1, 63, 64, 191};
    memset(x, 0, (size_t)(m * k) * 4);
    for (int64_t i = 0; i < m; i++) x[i * k + cols[i]] = 1.0f;
    CHECK(tw_ref_matmul_nf4(y, x, wq, NULL, m, k, n_out) == TW_OK);
    int bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) bad += y[i * n_out + o] != wf[o * k + cols[i]];
    CHECK_EQ_INT(bad, 0);
    tw_free(x), tw_free(y), tw_free(out), tw_free(wq), tw_free(wf);
}

static void test_matmul(void) {
    const int64_t k = 192, n_out = 397; /* 397: three forward chunks, the last partial */
    uint8_t *wq;
    float *wf;
    size_t bytes;
    make_w(n_out, k, &wq, &wf, &bytes);
    const int64_t ms[3] = {1, 5, 37};
    float *bias = kin_floats(n_out);
    kin_fill(&rng, bias, n_out, 1.0f);
    for (int mi = 0; mi < 3; mi++) {
        int64_t m = ms[mi];
        float *x = kin_floats(m * k), *y = kin_floats(m * n_out), *ref = kin_floats(m * n_out);
        float *yf = kin_floats(m * n_out);
        double *mag = tw_calloc((size_t)(m * n_out), sizeof(double));
        kin_fill(&rng, x, m * k, 2.0f);
        for (int b = 0; b <= 1; b++) {
            const float *bi = b ? bias : NULL;
            for (int64_t i = 0; i < m; i++)
                for (int64_t o = 0; o < n_out; o++) {
                    double s = bi ? fabs(bi[o]) : 0;
                    for (int64_t j = 0; j < k; j++) s += fabs((double)x[i * k + j] * wf[o * k + j]);
                    mag[i * n_out + o] = s + 1e-30;
                }
            CHECK(tw_ref_matmul_nf4(ref, x, wq, bi, m, k, n_out) == TW_OK);
            for (int portable = 0; portable <= 1; portable++) {
                CHECK(tw_cpu_matmul_nf4(y, x, wq, bi, m, k, n_out, portable) == TW_OK);
                /* 8 fp32 partial sums of k/8 products each, a 3-level tree and the bias:
                 * (k/8 + 5) u of sum |x w| (the weights are the reference's exactly) */
                double e = kin_max_scaled_err(y, ref, mag, m * n_out), tol = (k / 8.0 + 5) * U;
                if (!(e <= tol))
                    fprintf(stderr, "matmul nf4 m %lld bias %d portable %d: err %.3g > %.3g\n",
                            (long long)m, b, portable, e, tol);
                CHECK(e <= tol);
                CHECK(tw_cpu_matmul_variant(yf, x, wf, TW_DTYPE_F32, bi, m, k, n_out, portable) ==
                      TW_OK);
                CHECK(memcmp(y, yf, (size_t)(m * n_out) * 4) == 0);
            }
        }
        tw_free(x), tw_free(y), tw_free(ref), tw_free(yf), tw_free(mag);
    }
    tw_free(bias), tw_free(wq), tw_free(wf);
}

/* Small and one-row shapes (moved here with engine/nf4.c's own matmul, which the op replaced):
 * the reference is bit for bit x . Wd^T in fp64 rounded once, Wd = nf4_dequantize's matrix;
 * the kernels (both variants) are within their bound of it and have the F32 kernel's bits. */
static void test_matmul_shapes(void) {
    const int64_t shapes[5][3] = {{1, 5, 192}, {5, 9, 64}, {1, 1, 64}, {4, 3, 1024}, {2, 30, 128}};
    for (int s = 0; s < 5; s++) {
        const int64_t m = shapes[s][0], n_out = shapes[s][1], k = shapes[s][2];
        uint8_t *wq;
        float *wf;
        size_t bytes;
        make_w(n_out, k, &wq, &wf, &bytes);
        float *x = kin_floats(m * k), *ref = kin_floats(m * n_out), *y = kin_floats(m * n_out);
        float *yf = kin_floats(m * n_out);
        double *mag = tw_calloc((size_t)(m * n_out), sizeof(double));
        TW_ASSERT(mag);
        kin_fill(&rng, x, m * k, 1.0f);
        CHECK(tw_ref_matmul_nf4(ref, x, wq, NULL, m, k, n_out) == TW_OK);
        int bad = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < n_out; o++) {
                double acc = 0, a = 0;
                for (int64_t j = 0; j < k; j++) {
                    acc += (double)x[i * k + j] * (double)wf[o * k + j];
                    a += fabs((double)x[i * k + j] * (double)wf[o * k + j]);
                }
                float r = (float)acc;
                bad += memcmp(&r, &ref[i * n_out + o], 4) != 0;
                mag[i * n_out + o] = a + 1e-30;
            }
        CHECK_EQ_INT(bad, 0);
        for (int portable = 0; portable <= 1; portable++) {
            CHECK(tw_cpu_matmul_nf4(y, x, wq, NULL, m, k, n_out, portable) == TW_OK);
            CHECK(kin_max_scaled_err(y, ref, mag, m * n_out) <= (k / 8.0 + 5) * U);
            CHECK(tw_cpu_matmul_variant(yf, x, wf, TW_DTYPE_F32, NULL, m, k, n_out, portable) ==
                  TW_OK);
            CHECK(memcmp(y, yf, (size_t)(m * n_out) * 4) == 0);
        }
        tw_free(x), tw_free(ref), tw_free(y), tw_free(yf), tw_free(mag), tw_free(wq), tw_free(wf);
    }
}

static void test_matmul_dx(void) {
    const int64_t k = 128, n_out = 601, m = 13; /* 601: three dx chunks of 256 rows */
    uint8_t *wq;
    float *wf;
    size_t bytes;
    make_w(n_out, k, &wq, &wf, &bytes);
    float *dy = kin_floats(m * n_out), *old = kin_floats(m * k), *ref = kin_floats(m * k);
    float *y = kin_floats(m * k), *yf = kin_floats(m * k);
    double *mag = tw_calloc((size_t)(m * k), sizeof(double));
    kin_fill(&rng, dy, m * n_out, 1.0f);
    kin_fill(&rng, old, m * k, 4.0f);
    for (int acc = 0; acc <= 1; acc++) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++) {
                double s = acc ? fabs(old[i * k + j]) : 0;
                for (int64_t o = 0; o < n_out; o++) s += fabs((double)dy[i * n_out + o] * wf[o * k + j]);
                mag[i * k + j] = s + 1e-30;
            }
        memcpy(ref, old, (size_t)(m * k) * 4);
        CHECK(tw_ref_matmul_dx_nf4(ref, dy, wq, m, k, n_out, acc) == TW_OK);
        for (int portable = 0; portable <= 1; portable++) {
            memcpy(y, old, (size_t)(m * k) * 4);
            CHECK(tw_cpu_matmul_dx_nf4(y, dy, wq, m, k, n_out, acc, portable) == TW_OK);
            /* one fp32 chain of n_out fused multiply-adds (unfused in portable C: 2 roundings
             * each) after the old value: (2 n_out + 2) u of the magnitude, as train_gemm's */
            double e = kin_max_scaled_err(y, ref, mag, m * k), tol = (2.0 * n_out + 2) * U;
            if (!(e <= tol))
                fprintf(stderr, "matmul_dx nf4 acc %d portable %d: err %.3g > %.3g\n", acc,
                        portable, e, tol);
            CHECK(e <= tol);
            memcpy(yf, old, (size_t)(m * k) * 4);
            CHECK(tw_cpu_matmul_dx_variant(yf, dy, wf, TW_DTYPE_F32, m, k, n_out, acc, portable) ==
                  TW_OK);
            CHECK(memcmp(y, yf, (size_t)(m * k) * 4) == 0);
        }
    }
    tw_free(dy), tw_free(old), tw_free(ref), tw_free(y), tw_free(yf), tw_free(mag);
    tw_free(wq), tw_free(wf);
}

/* L(x) = <G, x W^T> in fp64 with W the NF4 matrix's values: dL/dx = G W = matmul_dx(G). */
typedef struct {
    int64_t m, k, n_out;
    const double *G, *W;
} fctx;

static double l_matmul_x(const double *x, const fctx *c) {
    double L = 0;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t o = 0; o < c->n_out; o++) {
            double y = 0;
            for (int64_t j = 0; j < c->k; j++) y += x[i * c->k + j] * c->W[o * c->k + j];
            L += c->G[i * c->n_out + o] * y;
        }
    return L;
}

static void test_fd_dx(void) {
    const int64_t m = 3, k = 64, n_out = 5;
    uint8_t *wq;
    float *wf;
    size_t bytes;
    make_w(n_out, k, &wq, &wf, &bytes);
    float g[15], dx[192], x[192];
    double gd[15], xd[192], wd[320];
    kin_fill(&rng, g, 15, 1.0f);
    kin_fill(&rng, x, 192, 1.0f);
    for (int i = 0; i < 15; i++) gd[i] = g[i];
    for (int i = 0; i < 192; i++) xd[i] = x[i];
    for (int i = 0; i < 320; i++) wd[i] = wf[i];
    CHECK(tw_ref_matmul_dx_nf4(dx, g, wq, m, k, n_out, 0) == TW_OK);
    fctx c = {m, k, n_out, gd, wd};
    int bad = 0;
    const double h = 1e-3;
    for (int64_t i = 0; i < m * k; i++) {
        double x0 = xd[i];
        xd[i] = x0 + h;
        double lp = l_matmul_x(xd, &c);
        xd[i] = x0 - h;
        double lm = l_matmul_x(xd, &c);
        xd[i] = x0;
        double d = (lp - lm) / (2 * h);
        /* L is linear in x: the central difference is exact up to fp64 rounding (~1e-13);
         * the reference rounds once to fp32 (2^-24 relative) */
        if (!(fabs(d - dx[i]) <= 1e-6 * (fabs(d) + 1e-3))) {
            if (bad++ < 3)
                fprintf(stderr, "matmul_dx nf4: d/dx[%lld] analytic %.9g, differences %.9g\n",
                        (long long)i, (double)dx[i], d);
        }
    }
    CHECK_EQ_INT(bad, 0);
    tw_free(wq), tw_free(wf);
}

static void test_ops(void) {
    const int64_t k = 128, n_out = 67, m = 9;
    uint8_t *wq;
    float *wf;
    size_t wbytes;
    make_w(n_out, k, &wq, &wf, &wbytes);
    tw_backend *be = NULL;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    if (!be) return;
    /* one buffer: w at 0, x, y, dy, dx after it */
    size_t ox = (wbytes + 63) & ~(size_t)63, oy = ox + (size_t)(m * k) * 4;
    size_t ody = oy + (size_t)(m * n_out) * 4, odx = ody + (size_t)(m * n_out) * 4;
    size_t total = odx + (size_t)(m * k) * 4;
    tw_buffer *buf = NULL;
    CHECK(tw_buffer_alloc(be, total, &buf) == TW_OK);
    float *x = kin_floats(m * k), *dy = kin_floats(m * n_out), *y = kin_floats(m * n_out);
    float *y2 = kin_floats(m * n_out), *dx = kin_floats(m * k), *dx2 = kin_floats(m * k);
    kin_fill(&rng, x, m * k, 1.0f);
    kin_fill(&rng, dy, m * n_out, 1.0f);
    CHECK(tw_buffer_upload(buf, 0, wq, wbytes) == TW_OK);
    CHECK(tw_buffer_upload(buf, ox, x, (size_t)(m * k) * 4) == TW_OK);
    CHECK(tw_buffer_upload(buf, ody, dy, (size_t)(m * n_out) * 4) == TW_OK);
    tw_ref W = tw_ref_at(buf, 0), X = tw_ref_at(buf, ox), Y = tw_ref_at(buf, oy);
    tw_ref DY = tw_ref_at(buf, ody), DX = tw_ref_at(buf, odx);
    CHECK(tw_cpu_matmul_nf4(y2, x, wq, NULL, m, k, n_out, 0) == TW_OK);
    CHECK(tw_cpu_matmul_dx_nf4(dx2, dy, wq, m, k, n_out, 0, 0) == TW_OK);
    int saved = tw_threads_get();
    for (int th = 1; th <= 3; th += 2) {
        tw_threads_set(th);
        CHECK(tw_op_matmul(be, Y, X, W, TW_DTYPE_NF4, tw_ref_none(), m, k, n_out) == TW_OK);
        CHECK(tw_buffer_download(buf, oy, y, (size_t)(m * n_out) * 4) == TW_OK);
        CHECK(memcmp(y, y2, (size_t)(m * n_out) * 4) == 0);
        CHECK(tw_op_matmul_dx(be, DX, DY, W, TW_DTYPE_NF4, m, k, n_out, 0) == TW_OK);
        CHECK(tw_buffer_download(buf, odx, dx, (size_t)(m * k) * 4) == TW_OK);
        CHECK(memcmp(dx, dx2, (size_t)(m * k) * 4) == 0);
    }
    tw_threads_set(saved);

    /* argument errors: k not a multiple of 64, W past the buffer, a misaligned W, y over W */
    CHECK(tw_op_matmul(be, Y, X, W, TW_DTYPE_NF4, tw_ref_none(), m, 96, n_out) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "matmul") && strstr(tw_errmsg(), "64"));
    CHECK(tw_op_matmul_dx(be, DX, DY, W, TW_DTYPE_NF4, m, 96, n_out, 0) == TW_ERR_ARG);
    CHECK(tw_op_matmul(be, Y, X, tw_ref_at(buf, total - 64), TW_DTYPE_NF4, tw_ref_none(), m, k,
                       n_out) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "w:") != NULL);
    CHECK(tw_op_matmul(be, Y, X, tw_ref_at(buf, 2), TW_DTYPE_NF4, tw_ref_none(), m, k, n_out) ==
          TW_ERR_ARG);
    CHECK(tw_op_matmul(be, tw_ref_at(buf, 64), X, W, TW_DTYPE_NF4, tw_ref_none(), m, k, n_out) ==
          TW_ERR_ARG);
    CHECK(tw_op_matmul_dx(be, tw_ref_at(buf, 64), DY, W, TW_DTYPE_NF4, m, k, n_out, 0) ==
          TW_ERR_ARG);
    /* ops that do not take NF4 */
    CHECK(tw_op_xent(be, Y, tw_ref_none(), tw_ref_none(), X, W, TW_DTYPE_NF4, DY, 1, k, n_out,
                     1.0f) != TW_OK);
    CHECK(tw_op_get_rows(be, Y, W, TW_DTYPE_NF4, n_out, DY, 1, k) != TW_OK);
    tw_buffer_free(buf);
    tw_backend_free(be);
    tw_free(x), tw_free(dy), tw_free(y), tw_free(y2), tw_free(dx), tw_free(dx2);
    tw_free(wq), tw_free(wf);
}

/* NF4 is twin's own: never a GGUF tensor type (the reader refuses ids >= TW_DTYPE_COUNT,
 * gguf.c; the writer refuses it here). */
static void test_gguf_refuses(void) {
    CHECK((int)TW_DTYPE_NF4 >= (int)TW_DTYPE_COUNT);
    CHECK(tw_dtype_name(TW_DTYPE_NF4) == NULL);
    gguf_writer *w = gguf_writer_new(3, 0);
    uint8_t data[2048] = {0};
    int64_t ne[2] = {64, 2};
    CHECK(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", TW_DTYPE_NF4, 2, ne, data) ==
          TW_ERR_ARG);
    gguf_writer_free(w);
}

int main(void) {
    RUN(test_layout);
    RUN(test_quantize_threads);
    RUN(test_dequantize_bits);
    RUN(test_matmul);
    RUN(test_matmul_shapes);
    RUN(test_matmul_dx);
    RUN(test_fd_dx);
    RUN(test_ops);
    RUN(test_gguf_refuses);
    TEST_DONE();
}
