/* test_kernels_cpu.c: the op table and the CPU backend.
 *
 *   - the references against values worked out by hand (they are the specification);
 *   - every optimized CPU variant (portable C, AVX2+FMA when this CPU has it, the dispatched
 *     OpenMP kernel, and the op through a backend handle) against the reference, on seeded
 *     random inputs that are never zero, with odd sizes, under a relative-error bound derived
 *     below; every op of the table must have a case here;
 *   - results do not depend on the thread count (bit-identical);
 *   - tw_backend_open("auto") falls back to the CPU with exactly one log line per process;
 *   - buffers: accounting, the fault hook, range checks; op argument checks (bounds, alignment,
 *     overlaps, buffers of another backend, bad sizes) answer TW_ERR_ARG naming the argument.
 */
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

#include <float.h>
#include <unistd.h>

/* ---- inputs ------------------------------------------------------------------------------ */

static kin_rng rng;

static void fill(float *v, int64_t n, float scale) { kin_fill(&rng, v, n, scale); }

/* ---- error bounds -------------------------------------------------------------------------
 *
 * add: one fp32 rounding of the exact sum in every variant, and the reference rounds the fp64
 * sum once, which is the correctly rounded fp32 sum (ref_add.c): the bound is 0.
 *
 * rmsnorm (u = 2^-24, first order): the kernels split the sum of squares S over L >= 4
 * independent fp32 partial sums, so any term passes through at most k = ceil(n/4) + 3 (the
 * tail of the portable loop) + 4 (the tree that joins at most 16 partial sums) + 1 (the
 * square) roundings; all terms are >= 0, so the computed sum is within gamma_k ~ k*u of S,
 * relatively. Dividing by n and adding eps >= 0 add one rounding each (no cancellation);
 * sqrt halves the relative error and adds one; the reciprocal and the two products add one
 * each: |y - y_exact| / |y_exact| <= (k + 2)/2 * u + 4u. The reference is within about 0.5u
 * of exact. The bound is a worst case (random data lands near sqrt(k)*u) but a wrong index,
 * a lost tail, a wrong eps or a wrong mean is off by far more. */
static double rmsnorm_tol(int64_t n) {
    double k = (double)((n + 3) / 4 + 8);
    return ((k + 2) / 2 + 4.5) * 0x1.0p-24;
}

/* ---- references against hand-worked values ----------------------------------------------- */

static void test_reference_values(void) {
    /* rows 2, n 2: row 0 = (3, 4): mean square 12.5, eps 0 -> scale 1/sqrt(12.5);
     * row 1 = (1, -1): mean square 1 + eps 3 = 4 -> scale 1/2. w = (1, -2). */
    float x[4] = {3, 4, 1, -1}, w[2] = {1, -2}, y[4];
    tw_ref_rmsnorm_f32(y, x, w, 1, 2, 0.0f);
    CHECK_NEAR(y[0], 3 / sqrt(12.5), 1e-6);
    CHECK_NEAR(y[1], -8 / sqrt(12.5), 1e-6);
    tw_ref_rmsnorm_f32(y + 2, x + 2, w, 1, 2, 3.0f);
    CHECK_NEAR(y[2], 0.5, 1e-7);
    CHECK_NEAR(y[3], 1.0, 1e-7);

    /* add: 1 + 2^-24 is a tie in fp32 and rounds to even (1.0); 1 + 3*2^-25 rounds up. */
    float a[3] = {1.0f, 1.0f, -2.5f}, b[3] = {0x1.0p-24f, 0x1.8p-24f, 0.25f}, s[3];
    tw_ref_add_f32(s, a, b, 3);
    CHECK(s[0] == 1.0f);
    CHECK(s[1] == 1.0f + 0x1.0p-23f);
    CHECK(s[2] == -2.25f);
}

/* The references of the inference ops against values worked out by hand. */
static void test_reference_values_infer(void) {
    /* Q8 activation blocks: amax 127 gives d = 1 and q = round-half-even(x); s = sum(q). */
    float xb[32];
    for (int j = 0; j < 32; j++) xb[j] = (float)(j - 16) + (j == 3 ? 0.5f : 0.0f);
    xb[31] = 127.0f;
    tw_q8a_block qa;
    tw_cpu_quantize_q8a_portable(xb, &qa, 32);
    CHECK(qa.d == 1.0f);
    CHECK_EQ_INT(qa.qs[3], -12); /* -12.5 -> -12 (even) */
    CHECK_EQ_INT(qa.qs[0], -16);
    CHECK_EQ_INT(qa.qs[31], 127);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += qa.qs[j];
    CHECK(qa.s == (float)sum);
    /* amax 1: d = 1/127 rounded to fp16 (0x2008 = 0.0078773...), q = rne(x * 127). */
    for (int j = 0; j < 32; j++) xb[j] = j % 2 ? 0.5f : -1.0f;
    tw_cpu_quantize_q8a_portable(xb, &qa, 32);
    CHECK(qa.d == tw_f16_to_f32(tw_f32_to_f16(1.0f / 127.0f)));
    CHECK_EQ_INT(qa.qs[0], -127);
    CHECK_EQ_INT(qa.qs[1], 64); /* 63.5 -> 64 (even) */
    /* Q8_K: iscale = -127 / (the signed value of largest magnitude, here -2) = 63.5, so that
     * value maps to -127 and d = 1/63.5 (d carries the sign for a positive maximum). */
    float xk[256];
    for (int j = 0; j < 256; j++) xk[j] = j == 7 ? -2.0f : 1.0f / 64.0f;
    tw_q8k_block qk;
    tw_cpu_quantize_q8k(xk, &qk, 256);
    CHECK(qk.d == 1.0f / 63.5f);
    CHECK_EQ_INT(qk.qs[7], -127);
    CHECK_EQ_INT(qk.qs[0], 1); /* 63.5/64 = 0.992 -> 1 */
    CHECK_EQ_INT(qk.bsums[0], -127 + 15);

    /* matmul: F32 weights ((1,2),(3,4)) . x (1, -1) + bias (0.5, 0) = (-0.5, -1). */
    float w[4] = {1, 2, 3, 4}, x[2] = {1, -1}, bias[2] = {0.5f, 0}, y[2];
    tw_ref_matmul(y, x, w, TW_DTYPE_F32, bias, 1, 2, 2);
    CHECK(y[0] == -0.5f && y[1] == -1.0f);
    /* Q8_0 weights of one block: d = 1 (fp16 0x3c00), q_j = j - 16; x = 127 at j = 0, else 0:
     * act(x) is exact (d = 1), y = 127 * (0 - 16). */
    uint8_t q8[34] = {0x00, 0x3c};
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    float x32[32] = {127};
    tw_ref_matmul(y, x32, q8, TW_DTYPE_Q8_0, NULL, 1, 32, 1);
    CHECK(y[0] == -2032.0f);
    /* Q4_1 with d = 1, m = 0.5 (0x3800), all nibbles 3: w_j = 3.5; x = 127, 1, 1, ...:
     * q = x, s = 127 + 31 = 158, y = 3 * 158 + 0.5 * 158 = 553. */
    uint8_t q41[20] = {0x00, 0x3c, 0x00, 0x38};
    for (int j = 0; j < 16; j++) q41[4 + j] = 0x33;
    for (int j = 0; j < 32; j++) x32[j] = j ? 1.0f : 127.0f;
    tw_ref_matmul(y, x32, q41, TW_DTYPE_Q4_1, NULL, 1, 32, 1);
    CHECK(y[0] == 553.0f);

    /* layernorm of (1, 3): mean 2, var 1, eps 0 -> (-1, 1) * w (2, 2) + b (0, 1). */
    float ln_x[2] = {1, 3}, ln_w[2] = {2, 2}, ln_b[2] = {0, 1}, ln_y[2];
    tw_ref_layernorm_f32(ln_y, ln_x, ln_w, ln_b, 1, 2, 0.0f);
    CHECK(ln_y[0] == -2.0f && ln_y[1] == 3.0f);

    /* rope, head_dim 4, rope_dim 4, theta_base 1 (every angle = pos): pos 1 rotates by 1 rad.
     * NORM pairs (0,1), (2,3); NEOX pairs (0,2), (1,3). */
    float rx[4] = {1, 0, 0, 1}, ry[4];
    int32_t rp = 1;
    tw_ref_rope_f32(ry, rx, &rp, 1, 1, 4, 4, TW_ROPE_NORM, 1.0f, 1.0f, NULL);
    CHECK_NEAR(ry[0], cos(1.0), 1e-7);
    CHECK_NEAR(ry[1], sin(1.0), 1e-7);
    CHECK_NEAR(ry[2], -sin(1.0), 1e-7);
    CHECK_NEAR(ry[3], cos(1.0), 1e-7);
    tw_ref_rope_f32(ry, rx, &rp, 1, 1, 4, 4, TW_ROPE_NEOX, 1.0f, 1.0f, NULL);
    CHECK_NEAR(ry[0], cos(1.0), 1e-7);
    CHECK_NEAR(ry[2], sin(1.0), 1e-7);
    CHECK_NEAR(ry[1], -sin(1.0), 1e-7);
    CHECK_NEAR(ry[3], cos(1.0), 1e-7);
    /* theta_base 10000, rope_dim 4: pair 1 turns by pos * 10000^(-1/2) = pos / 100; with
     * freq_scale 0.5 and freq_factors (1, 2): pos 200 -> 200 * 0.5 / 100 / 2 = 0.5 rad. */
    float ff[2] = {1, 2};
    rp = 200;
    tw_ref_rope_f32(ry, rx, &rp, 1, 1, 4, 4, TW_ROPE_NORM, 10000.0f, 0.5f, ff);
    CHECK_NEAR(ry[2], -sin(0.5), 1e-7);
    CHECK_NEAR(ry[3], cos(0.5), 1e-7);

    /* attention: one head, two positions in a page of 2 (page id 1 of 2), q . k = (0, ln 3)
     * with scale 1: weights (1/4, 3/4) over v = (4, 8) -> 7. The token at position 0 sees
     * only the first: 4. */
    float kc[4] = {0, 0, 0, (float)log(3.0)}, vc[4] = {0, 0, 4, 8}, out[2];
    float qq[2] = {1.0f, 1.0f};
    int32_t btab[1] = {1}, tseq[2] = {0, 0}, tpos[2] = {1, 0};
    tw_attn_shape sh = {1, 2, 2, 1, 1, 1, 1.0f, TW_DTYPE_F32};
    tw_ref_attention(out, qq, kc, vc, btab, tseq, tpos, &sh);
    CHECK_NEAR(out[0], 7.0, 1e-6);
    CHECK_NEAR(out[1], 4.0, 1e-7);

    /* swiglu(0 gate) = 0; silu(1) * 2 = 2 / (1 + e^-1); gelu_tanh(1) = 0.8411920; gelu_erf(1) =
     * 0.8413447. softmax (0, ln 3) = (1/4, 3/4). */
    float g[2] = {0, 1}, u[2] = {5, 2}, s[2];
    tw_ref_swiglu_f32(s, g, u, 2);
    CHECK(s[0] == 0.0f);
    CHECK_NEAR(s[1], 2 / (1 + exp(-1.0)), 1e-7);
    float one = 1.0f, gy;
    tw_ref_gelu_f32(&gy, &one, 1, TW_GELU_TANH);
    CHECK_NEAR(gy, 0.8411920, 1e-6);
    tw_ref_gelu_f32(&gy, &one, 1, TW_GELU_ERF);
    CHECK_NEAR(gy, 0.8413447, 1e-6);
    float sx[2] = {0, (float)log(3.0)};
    tw_ref_softmax_f32(s, sx, 1, 2, 1.0f);
    CHECK_NEAR(s[0], 0.25, 1e-7);
    CHECK_NEAR(s[1], 0.75, 1e-7);

    /* argmax / topk ties: the lower index first. */
    float tx[5] = {1, 3, 2, 3, -1}, tv[3];
    int32_t am, ti[3];
    tw_ref_argmax_f32(&am, tx, 1, 5);
    CHECK_EQ_INT(am, 1);
    tw_ref_topk_f32(tv, ti, tx, 1, 5, 3);
    CHECK(tv[0] == 3 && tv[1] == 3 && tv[2] == 2);
    CHECK(ti[0] == 1 && ti[1] == 3 && ti[2] == 2);
}

/* ---- differential: every variant against the reference ----------------------------------- */

typedef struct {
    int64_t rows, n;
} shape;

static const shape shapes[] = {{1, 1},  {3, 1},   {1, 7},    {7, 7},  {2, 8},  {5, 15},
                               {3, 16}, {3, 17},  {7, 33},   {1, 64}, {2, 65}, {33, 257},
                               {3, 576}, {2, 4097}, {1, 8193}, {4, 100003}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* Runs the op through a CPU backend handle: upload, op, download. y is (rows*n) for rmsnorm
 * and (n) for add. in_place: y overwrites x (rmsnorm) or a (add). */
static void run_backend(tw_backend *be, tw_op op, float *y, const float *x, const float *w,
                        int64_t rows, int64_t n, float eps, int in_place) {
    size_t nx = (size_t)(rows * n), nw = (size_t)n;
    tw_buffer *bx = NULL, *bw = NULL, *by = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, nx * sizeof(float), &bx), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(be, nw * sizeof(float), &bw), TW_OK);
    if (!in_place) CHECK_EQ_INT(tw_buffer_alloc(be, nx * sizeof(float), &by), TW_OK);
    tw_buffer *dst = in_place ? bx : by;
    CHECK_EQ_INT(tw_buffer_upload(bx, 0, x, nx * sizeof(float)), TW_OK);
    CHECK_EQ_INT(tw_buffer_upload(bw, 0, w, nw * sizeof(float)), TW_OK);
    tw_status st = op == TW_OP_RMSNORM ? tw_op_rmsnorm(be, tw_ref_at(dst, 0), tw_ref_at(bx, 0),
                                                       tw_ref_at(bw, 0), rows, n, eps)
                                       : tw_op_add(be, tw_ref_at(dst, 0), tw_ref_at(bx, 0),
                                                   tw_ref_at(bw, 0), n);
    if (st != TW_OK) fprintf(stderr, "  %s: %s\n", tw_op_name(op), tw_errmsg());
    CHECK_EQ_INT(st, TW_OK);
    CHECK_EQ_INT(tw_backend_sync(be), TW_OK);
    CHECK_EQ_INT(tw_buffer_download(dst, 0, y, nx * sizeof(float)), TW_OK);
    tw_buffer_free(bx);
    tw_buffer_free(bw);
    tw_buffer_free(by);
}

/* The largest error seen, as a fraction of its bound (printed: how tight the bound is). */
static double worst_ratio;

static void note(double e, double tol) {
    if (e / tol > worst_ratio) worst_ratio = e / tol;
}

static void diff_rmsnorm(tw_backend *be, int avx2) {
    worst_ratio = 0;
    static const float eps_list[] = {1e-5f, 1e-6f, 0.25f};
    for (size_t si = 0; si < N_SHAPES; si++) {
        int64_t rows = shapes[si].rows, n = shapes[si].n;
        float eps = eps_list[si % 3];
        /* Rows scaled by powers of two from 2^-6 to 2^6: the op must be scale-aware, and eps
         * matters for the small rows. */
        float *x = kin_floats(rows * n), *w = kin_floats(n), *ref = kin_floats(rows * n),
              *y = kin_floats(rows * n);
        for (int64_t r = 0; r < rows; r++) fill(x + r * n, n, ldexpf(1.0f, (int)(r % 13) - 6));
        fill(w, n, 1.0f);
        tw_ref_rmsnorm_f32(ref, x, w, rows, n, eps);
        double tol = rmsnorm_tol(n), e;

        tw_cpu_rmsnorm_f32_portable(y, x, w, rows, n, eps);
        e = kin_max_rel_err(y, ref, rows * n);
        note(e, tol);
        if (!(e <= tol)) fprintf(stderr, "  portable (%lld, %lld): %g > %g\n", (long long)rows, (long long)n, e, tol);
        CHECK(e <= tol);

        if (avx2) {
            tw_cpu_rmsnorm_f32_avx2(y, x, w, rows, n, eps);
            e = kin_max_rel_err(y, ref, rows * n);
            note(e, tol);
            if (!(e <= tol)) fprintf(stderr, "  avx2 (%lld, %lld): %g > %g\n", (long long)rows, (long long)n, e, tol);
            CHECK(e <= tol);
        }

        tw_cpu_rmsnorm_f32(y, x, w, rows, n, eps);
        e = kin_max_rel_err(y, ref, rows * n);
        CHECK(e <= tol);

        memset(y, 0, (size_t)(rows * n) * sizeof(float));
        run_backend(be, TW_OP_RMSNORM, y, x, w, rows, n, eps, 0);
        CHECK(kin_max_rel_err(y, ref, rows * n) <= tol);
        run_backend(be, TW_OP_RMSNORM, y, x, w, rows, n, eps, 1);
        CHECK(kin_max_rel_err(y, ref, rows * n) <= tol);

        tw_free(x);
        tw_free(w);
        tw_free(ref);
        tw_free(y);
    }
    fprintf(stderr, "  rmsnorm: largest error is %.3f of its bound\n", worst_ratio);
}

static void diff_add(tw_backend *be, int avx2) {
    static const int64_t sizes[] = {1, 7, 8, 9, 33, 4097, 65537, 200003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *a = kin_floats(n), *b = kin_floats(n), *ref = kin_floats(n), *y = kin_floats(n);
        fill(a, n, 1.0f);
        fill(b, n, 0.01f); /* different scales, so the sums round */
        tw_ref_add_f32(ref, a, b, n);
        /* Bound 0 (see above): compare bits. */
        tw_cpu_add_f32_portable(y, a, b, n);
        CHECK(memcmp(y, ref, (size_t)n * sizeof(float)) == 0);
        if (avx2) {
            tw_cpu_add_f32_avx2(y, a, b, n);
            CHECK(memcmp(y, ref, (size_t)n * sizeof(float)) == 0);
        }
        tw_cpu_add_f32(y, a, b, n);
        CHECK(memcmp(y, ref, (size_t)n * sizeof(float)) == 0);
        memset(y, 0, (size_t)n * sizeof(float));
        run_backend(be, TW_OP_ADD, y, a, b, 1, n, 0, 0);
        CHECK(memcmp(y, ref, (size_t)n * sizeof(float)) == 0);
        run_backend(be, TW_OP_ADD, y, a, b, 1, n, 0, 1);
        CHECK(memcmp(y, ref, (size_t)n * sizeof(float)) == 0);
        tw_free(a);
        tw_free(b);
        tw_free(ref);
        tw_free(y);
    }
}


/* ---- the inference ops ---------------------------------------------------------------------
 *
 * Each case builds seeded random inputs (never zero), runs the reference, the dispatched
 * kernel (and each of its variants where there are several) and the op through a backend
 * handle, and compares under the bound written beside it (u = 2^-24). */

#define U 0x1.0p-24

/* Backend buffers of one case, freed together. */
typedef struct {
    tw_backend *be;
    tw_buffer *bufs[16];
    int n;
} devs;

static tw_ref dev_new(devs *d, size_t bytes) {
    TW_ASSERT(d->n < 16);
    tw_buffer *b = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(d->be, bytes ? bytes : 4, &b), TW_OK);
    d->bufs[d->n++] = b;
    return tw_ref_at(b, 0);
}

static tw_ref dev_up(devs *d, const void *p, size_t bytes) {
    tw_ref r = dev_new(d, bytes);
    if (r.buf && bytes) CHECK_EQ_INT(tw_buffer_upload(r.buf, 0, p, bytes), TW_OK);
    return r;
}

static void dev_down(tw_ref r, void *p, size_t bytes) {
    if (r.buf) CHECK_EQ_INT(tw_buffer_download(r.buf, r.offset, p, bytes), TW_OK);
}

static void dev_free(devs *d) {
    for (int i = 0; i < d->n; i++) tw_buffer_free(d->bufs[i]);
    d->n = 0;
}

static void op_ok(tw_status st, const char *what) {
    if (st != TW_OK) fprintf(stderr, "  %s: %s\n", what, tw_errmsg());
    CHECK_EQ_INT(st, TW_OK);
}

/* Reports and checks one comparison. */
static void cmp_report(const char *op, const char *variant, const char *shape, double e,
                       double tol) {
    note(e, tol);
    if (!(e <= tol)) fprintf(stderr, "  %s %s %s: error %g > bound %g\n", op, variant, shape, e, tol);
    CHECK(e <= tol);
}

/* mul, scale: one fp32 rounding of an exact product in every variant: bit-exact. copy too. */
static void diff_mul_scale_copy(tw_backend *be) {
    static const int64_t sizes[] = {1, 7, 33, 65537, 200003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        size_t nb = (size_t)n * sizeof(float);
        float *a = kin_floats(n), *b = kin_floats(n), *ref = kin_floats(n), *y = kin_floats(n);
        fill(a, n, 1.0f);
        fill(b, n, 3.0f);
        float s = -1.7f;
        devs d = {be, {0}, 0};
        tw_ref ra = dev_up(&d, a, nb), rb = dev_up(&d, b, nb), ry = dev_new(&d, nb);

        tw_ref_mul_f32(ref, a, b, n);
        tw_cpu_mul_f32(y, a, b, n);
        CHECK(memcmp(y, ref, nb) == 0);
        op_ok(tw_op_mul(be, ry, ra, rb, n), "mul");
        dev_down(ry, y, nb);
        CHECK(memcmp(y, ref, nb) == 0);

        tw_ref_scale_f32(ref, a, s, n);
        tw_cpu_scale_f32(y, a, s, n);
        CHECK(memcmp(y, ref, nb) == 0);
        op_ok(tw_op_scale(be, ry, ra, s, n), "scale");
        dev_down(ry, y, nb);
        CHECK(memcmp(y, ref, nb) == 0);

        op_ok(tw_op_copy(be, ry, rb, n), "copy");
        dev_down(ry, y, nb);
        CHECK(memcmp(y, b, nb) == 0);

        /* In place: a <- a * b, then a <- a * s. */
        op_ok(tw_op_mul(be, ra, ra, rb, n), "mul in place");
        op_ok(tw_op_scale(be, ra, ra, s, n), "scale in place");
        tw_ref_mul_f32(ref, a, b, n);
        tw_ref_scale_f32(ref, ref, s, n);
        dev_down(ra, y, nb);
        CHECK(memcmp(y, ref, nb) == 0);
        dev_free(&d);
        tw_free(a), tw_free(b), tw_free(ref), tw_free(y);
    }
}

/* Every type get_rows takes, and the types matmul takes. */
static const tw_dtype table_types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                       TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                       TW_DTYPE_Q8_1, TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K,
                                       TW_DTYPE_Q5_K, TW_DTYPE_Q6_K, TW_DTYPE_Q8_K};
#define N_TABLE_TYPES (sizeof table_types / sizeof table_types[0])

/* get_rows: the same dequantizer in every path: bit-exact. */
static void diff_get_rows(tw_backend *be) {
    for (size_t ti = 0; ti < N_TABLE_TYPES; ti++) {
        tw_dtype t = table_types[ti];
        int64_t n = tw_dtype_block_size(t) == 256 ? 512 : 96, n_rows = 37, n_ids = 11;
        uint8_t *table = kin_quant_rows(&rng, t, n_rows, n, 1.0f);
        int32_t ids[11];
        for (int i = 0; i < n_ids; i++) ids[i] = (int32_t)(kin_next(&rng) % (uint64_t)n_rows);
        ids[0] = 0, ids[1] = (int32_t)n_rows - 1, ids[2] = ids[3]; /* both ends, a repeat */
        size_t ny = (size_t)(n_ids * n) * sizeof(float), tb = tw_dtype_row_bytes(t, n) * (size_t)n_rows;
        float *ref = kin_floats(n_ids * n), *y = kin_floats(n_ids * n);
        tw_ref_get_rows(ref, table, t, ids, n_ids, n);
        tw_cpu_get_rows(y, table, t, ids, n_ids, n);
        CHECK(memcmp(y, ref, ny) == 0);
        devs d = {be, {0}, 0};
        tw_ref rt = dev_up(&d, table, tb), ri = dev_up(&d, ids, sizeof ids), ry = dev_new(&d, ny);
        op_ok(tw_op_get_rows(be, ry, rt, t, n_rows, ri, n_ids, n), tw_dtype_name(t));
        memset(y, 0, ny);
        dev_down(ry, y, ny);
        CHECK(memcmp(y, ref, ny) == 0);
        /* An id out of range is refused before anything is written. */
        int32_t bad[2] = {3, (int32_t)n_rows};
        tw_ref rbad = dev_up(&d, bad, sizeof bad);
        CHECK_EQ_INT(tw_op_get_rows(be, ry, rt, t, n_rows, rbad, 2, n), TW_ERR_ARG);
        CHECK(strstr(tw_errmsg(), "get_rows: ids[1] = 37 is outside [0, 37)") != NULL);
        dev_free(&d);
        tw_free(table), tw_free(ref), tw_free(y);
    }
}

/* ---- matmul ----
 *
 * Against tw_ref_matmul (the same act() values, fp64 sums): the kernels form each block's
 * integer dot product exactly, scale it in fp32 (two roundings with the scales' product),
 * and accumulate blocks (or, for the float types and the generic path, products) in fp32 over
 * lanes of at most k/8 + k/32 terms joined by a tree of <= 4 levels, then add the min term and
 * the bias. Every term's relative error is therefore at most (k/8 + k/32 + 12) u, and the
 * output's error at most that times M = sum over terms of their magnitudes:
 *   M = sum_j (|w_j| + |min_b|) |act(x)_j| + sum_b |min_b s_b| + |bias|,
 * computed here in fp64 from the same act() blocks. A worst case: random data lands near
 * sqrt(k) u M; a wrong block, scale, nibble order or min term is off by ~M / k or more.
 *
 * Against the dense product x . W^T (x not quantized), loosely: act() moves each x_j by at
 * most 0.57 d (d = amax/127 of its block, fp16-rounded) and the Q8_1 sum s by 2^-11 of
 * |d sum q| <= 4064 d 2^-11 < 2 d; with these inputs that stays below 2% of M. It catches a
 * product with the wrong weights and nothing subtler; the exact check is the one above. */

/* The magnitudes M (m, n_out) of the bound above. */
static void matmul_mag(double *mag, const float *x, const uint8_t *w, tw_dtype t,
                       const float *bias, int64_t m, int64_t k, int64_t n_out) {
    size_t rb = tw_dtype_row_bytes(t, k), bb = tw_dtype_type_size(t);
    int64_t nb = k / tw_dtype_block_size(t);
    int has_min = t == TW_DTYPE_Q4_1 || t == TW_DTYPE_Q5_1;
    float *wrow = kin_floats(k), *xa = kin_floats(k);
    tw_q8a_block *qa = tw_malloc((size_t)(k / TW_QK8 + 1) * sizeof *qa);
    tw_q8k_block *qk = tw_malloc((size_t)(k / TW_QKK + 1) * sizeof *qk);
    TW_ASSERT(qa && qk);
    tw_act_kind act = tw_cpu_act_kind(t);
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * k;
        if (act == TW_ACT_Q8A) {
            tw_cpu_quantize_q8a_portable(xr, qa, k);
            for (int64_t j = 0; j < k; j++) xa[j] = qa[j / 32].d * qa[j / 32].qs[j % 32];
        } else if (act == TW_ACT_Q8K) {
            tw_cpu_quantize_q8k(xr, qk, k);
            for (int64_t j = 0; j < k; j++) xa[j] = qk[j / 256].d * qk[j / 256].qs[j % 256];
        } else {
            memcpy(xa, xr, (size_t)k * sizeof(float));
        }
        for (int64_t o = 0; o < n_out; o++) {
            const uint8_t *wr = w + (size_t)o * rb;
            CHECK_EQ_INT(tw_dequantize_row(t, wr, wrow, k), TW_OK);
            double s = bias ? fabs(bias[o]) : 0;
            for (int64_t j = 0; j < k; j++) {
                double mn = has_min ? fabs(tw_f16_to_f32((uint16_t)(wr[(j / 32) * bb + 2] |
                                                                     wr[(j / 32) * bb + 3] << 8)))
                                    : 0;
                s += (fabs(wrow[j]) + mn) * fabs(xa[j]);
            }
            if (has_min)
                for (int64_t b = 0; b < nb; b++)
                    s += fabs(tw_f16_to_f32((uint16_t)(wr[b * bb + 2] | wr[b * bb + 3] << 8))) *
                         fabs(qa[b].s);
            mag[i * n_out + o] = s;
        }
    }
    tw_free(wrow), tw_free(xa), tw_free(qa), tw_free(qk);
}

static const tw_dtype matmul_types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                        TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                        TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K, TW_DTYPE_Q5_K,
                                        TW_DTYPE_Q6_K};
#define N_MATMUL_TYPES (sizeof matmul_types / sizeof matmul_types[0])

static void diff_matmul_case(tw_backend *be, tw_dtype t, int64_t m, int64_t k, int64_t n_out,
                             int with_bias, int avx2) {
    char shape[96];
    snprintf(shape, sizeof shape, "%s (%lld, %lld) x (%lld, %lld)%s", tw_dtype_name(t),
             (long long)m, (long long)k, (long long)n_out, (long long)k, with_bias ? " + bias" : "");
    float *x = kin_floats(m * k), *bias = with_bias ? kin_floats(n_out) : NULL;
    /* Rows of x at different scales (2^-4 .. 2^4): the activation scales must follow. */
    for (int64_t i = 0; i < m; i++) fill(x + i * k, k, ldexpf(1.0f, (int)(i % 9) - 4));
    if (bias) fill(bias, n_out, 1.0f);
    uint8_t *w = kin_quant_rows(&rng, t, n_out, k, 1.0f);
    size_t ny = (size_t)(m * n_out);
    float *ref = kin_floats((int64_t)ny), *dense = kin_floats((int64_t)ny), *y = kin_floats((int64_t)ny);
    double *mag = tw_malloc(ny * sizeof(double));
    TW_ASSERT(mag);
    tw_ref_matmul(ref, x, w, t, bias, m, k, n_out);
    tw_ref_matmul_dense(dense, x, w, t, bias, m, k, n_out);
    matmul_mag(mag, x, w, t, bias, m, k, n_out);
    double tol = ((double)k / 8 + (double)k / 32 + 12) * U;

    CHECK_EQ_INT(tw_cpu_matmul_variant(y, x, w, t, bias, m, k, n_out, 1), TW_OK);
    cmp_report("matmul", "portable", shape, kin_max_scaled_err(y, ref, mag, (int64_t)ny), tol);
    if (avx2) {
        CHECK_EQ_INT(tw_cpu_matmul_variant(y, x, w, t, bias, m, k, n_out, 0), TW_OK);
        cmp_report("matmul", "avx2", shape, kin_max_scaled_err(y, ref, mag, (int64_t)ny), tol);
    }
    CHECK_EQ_INT(tw_cpu_matmul(y, x, w, t, bias, m, k, n_out), TW_OK);
    cmp_report("matmul", "dispatched", shape, kin_max_scaled_err(y, ref, mag, (int64_t)ny), tol);
    double loose = kin_max_scaled_err(y, dense, mag, (int64_t)ny);
    if (!(loose <= 0.02)) fprintf(stderr, "  matmul vs dense %s: %g of M\n", shape, loose);
    CHECK(loose <= 0.02);

    /* Row i of a product of m rows is bit-identical to the product of row i alone (so that
     * a sequence decodes the same alone or in a batch). */
    float *y1 = kin_floats(n_out);
    for (int64_t i = 0; i < m; i += m > 3 ? m / 3 : 1) {
        CHECK_EQ_INT(tw_cpu_matmul(y1, x + i * k, w, t, bias, 1, k, n_out), TW_OK);
        if (memcmp(y1, y + i * n_out, (size_t)n_out * sizeof(float)) != 0)
            fprintf(stderr, "  matmul %s: row %lld differs alone\n", shape, (long long)i);
        CHECK(memcmp(y1, y + i * n_out, (size_t)n_out * sizeof(float)) == 0);
    }
    tw_free(y1);

    devs d = {be, {0}, 0};
    size_t wb = tw_dtype_row_bytes(t, k) * (size_t)n_out;
    tw_ref rx = dev_up(&d, x, (size_t)(m * k) * sizeof(float)), rw = dev_up(&d, w, wb),
           rb = bias ? dev_up(&d, bias, (size_t)n_out * sizeof(float)) : tw_ref_none(),
           ry = dev_new(&d, ny * sizeof(float));
    op_ok(tw_op_matmul(be, ry, rx, rw, t, rb, m, k, n_out), shape);
    memset(y, 0, ny * sizeof(float));
    dev_down(ry, y, ny * sizeof(float));
    cmp_report("matmul", "backend", shape, kin_max_scaled_err(y, ref, mag, (int64_t)ny), tol);
    dev_free(&d);
    tw_free(x), tw_free(bias), tw_free(w), tw_free(ref), tw_free(dense), tw_free(y), tw_free(mag);
}

/* The Q8_0/Q8_1 activation quantizer: the AVX2 variant is bit-identical to the portable one
 * (which test_reference_values_infer checks by hand), on random rows and on rows full of
 * exact ties (x * 127/amax = n + 0.5), where round-half-even matters. */
static void diff_quantize_q8a(int avx2) {
    if (!avx2) return;
    int64_t k = 32 * 37;
    float *x = kin_floats(k);
    tw_q8a_block *a = tw_malloc((size_t)(k / 32) * sizeof *a), *b = tw_malloc((size_t)(k / 32) * sizeof *b);
    TW_ASSERT(a && b);
    for (int rep = 0; rep < 2; rep++) {
        if (rep == 0)
            fill(x, k, 1.0f);
        else
            for (int64_t j = 0; j < k; j++) x[j] = j % 32 == 0 ? 127.0f : (float)((int64_t)(kin_next(&rng) % 200) - 100) + 0.5f;
        memset(a, 0, (size_t)(k / 32) * sizeof *a);
        memset(b, 0, (size_t)(k / 32) * sizeof *b);
        tw_cpu_quantize_q8a_portable(x, a, k);
        tw_cpu_quantize_q8a_avx2(x, b, k);
        CHECK(memcmp(a, b, (size_t)(k / 32) * sizeof *a) == 0);
    }
    tw_free(x), tw_free(a), tw_free(b);
}

static void diff_matmul(tw_backend *be, int avx2) {
    worst_ratio = 0;
    diff_quantize_q8a(avx2);
    /* Odd m and n_out (tails of every tile), k of 1, 3, 17, 18 and 48 blocks of 32 (matmul_q's
     * column tiles take the blocks in runs of 16: 17 and 18 leave a tail run; m = 9 leaves a
     * group of one row); K-quants: 1 and 3 blocks of 256. The float types also take a k that
     * is no multiple of 8. */
    static const int64_t shapes32[][3] = {{1, 32, 1},  {3, 96, 7},    {5, 576, 19}, {8, 64, 33},
                                          {13, 1536, 5}, {2, 32, 67}, {9, 544, 11}};
    static const int64_t shapes256[][3] = {{1, 256, 3}, {5, 768, 9}, {9, 256, 17}};
    for (size_t ti = 0; ti < N_MATMUL_TYPES; ti++) {
        tw_dtype t = matmul_types[ti];
        int kq = tw_dtype_block_size(t) == 256;
        size_t ns = kq ? sizeof shapes256 / sizeof shapes256[0] : sizeof shapes32 / sizeof shapes32[0];
        for (size_t si = 0; si < ns; si++) {
            const int64_t *s = kq ? shapes256[si] : shapes32[si];
            diff_matmul_case(be, t, s[0], s[1], s[2], (int)(si % 2), avx2);
        }
        if (tw_dtype_block_size(t) == 1) diff_matmul_case(be, t, 3, 37, 11, 1, avx2);
    }
    fprintf(stderr, "  matmul: largest error is %.3f of its bound\n", worst_ratio);
}

/* layernorm (n terms per sum, 8 fp32 lanes of ceil(n/8) terms, a tree of 3 levels): the mean
 * is within dm = (n/8 + 4) u max|x| of exact; the centred sum of squares within
 * (n/8 + 6) u relatively (the mean's error only enters at second order), so 1/sqrt(var + eps)
 * within (n/8 + 6)/2 u + 2u; the centring, scaling, weighting and shift add 4u. With
 *   mag_i = |w_i| (|x_i - mean| + max|x|) inv + |b_i|,
 * the error is at most (1.5 (n/8) + 14) u mag_i. */
static void diff_layernorm(tw_backend *be) {
    worst_ratio = 0;
    for (size_t si = 0; si < N_SHAPES; si++) {
        int64_t rows = shapes[si].rows, n = shapes[si].n;
        float eps = si % 2 ? 1e-5f : 0.125f;
        size_t nx = (size_t)(rows * n);
        float *x = kin_floats(rows * n), *w = kin_floats(n), *b = kin_floats(n),
              *ref = kin_floats(rows * n), *y = kin_floats(rows * n);
        /* An offset per row, so the mean matters and the centring is tested. */
        for (int64_t r = 0; r < rows; r++) {
            fill(x + r * n, n, ldexpf(1.0f, (int)(r % 7) - 3));
            float off = (float)(r % 5) - 2.0f;
            for (int64_t i = 0; i < n; i++) x[r * n + i] += off * ldexpf(1.0f, (int)(r % 7) - 3);
        }
        fill(w, n, 1.0f);
        fill(b, n, 0.5f);
        const float *wv = si % 3 == 2 ? NULL : w, *bv = si % 3 == 1 ? NULL : b;
        double *mag = tw_malloc(nx * sizeof(double));
        TW_ASSERT(mag);
        for (int64_t r = 0; r < rows; r++) {
            double mean = 0, var = 0, mx = 0;
            for (int64_t i = 0; i < n; i++) mean += x[r * n + i], mx = fmax(mx, fabs(x[r * n + i]));
            mean /= (double)n;
            for (int64_t i = 0; i < n; i++) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
            double inv = 1 / sqrt(var / (double)n + eps);
            for (int64_t i = 0; i < n; i++)
                mag[r * n + i] = (wv ? fabs(wv[i]) : 1) * (fabs(x[r * n + i] - mean) + mx) * inv +
                                 (bv ? fabs(bv[i]) : 0);
        }
        double tol = (1.5 * (double)n / 8 + 14) * U;
        char shape[64];
        snprintf(shape, sizeof shape, "(%lld, %lld)", (long long)rows, (long long)n);
        tw_ref_layernorm_f32(ref, x, wv, bv, rows, n, eps);
        tw_cpu_layernorm_f32(y, x, wv, bv, rows, n, eps);
        cmp_report("layernorm", "dispatched", shape, kin_max_scaled_err(y, ref, mag, (int64_t)nx), tol);
        devs d = {be, {0}, 0};
        tw_ref rx = dev_up(&d, x, nx * 4), rw = wv ? dev_up(&d, w, (size_t)n * 4) : tw_ref_none(),
               rb = bv ? dev_up(&d, b, (size_t)n * 4) : tw_ref_none();
        op_ok(tw_op_layernorm(be, rx, rx, rw, rb, rows, n, eps), "layernorm in place");
        dev_down(rx, y, nx * 4);
        cmp_report("layernorm", "backend", shape, kin_max_scaled_err(y, ref, mag, (int64_t)nx), tol);
        dev_free(&d);
        tw_free(x), tw_free(w), tw_free(b), tw_free(ref), tw_free(y), tw_free(mag);
    }
    fprintf(stderr, "  layernorm: largest error is %.3f of its bound\n", worst_ratio);
}

/* rope: the kernel computes the angles as llama.cpp does (kernels/cpu/rope.c): theta_i by
 * iterated fp32 products from powf(base, -2/rope_dim), so theta_i is within (2.5 i + 2) u
 * relatively (i products of ~1u each, the scale's own error i times over, the freq_factors
 * division and the freq_scale product); sincosf adds 1 ulp, the fused rotation 2u: each output
 * is within ((2.5 i + 2) u theta_i + 4u) (|a| + |b|) of the reference, which is exact to
 * one rounding. (An angle error of theta_i u is what any fp32 angle must have.) */
static void diff_rope(tw_backend *be) {
    worst_ratio = 0;
    static const int64_t cases[][4] = {/* n_tok, n_head, head_dim, rope_dim */
                                       {1, 1, 2, 2},   {3, 9, 64, 64}, {5, 3, 64, 32},
                                       {7, 2, 80, 64}, {2, 5, 18, 6},  {33, 4, 128, 128}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t n_tok = cases[ci][0], n_head = cases[ci][1], hd = cases[ci][2], rd = cases[ci][3];
        int64_t nx = n_tok * n_head * hd;
        for (int mode = 0; mode <= 2; mode += 2) {
            for (int with_ff = 0; with_ff < 2; with_ff++) {
                float *x = kin_floats(nx), *ref = kin_floats(nx), *y = kin_floats(nx),
                      *ff = kin_floats(rd / 2);
                double *mag = tw_malloc((size_t)nx * sizeof(double));
                TW_ASSERT(mag);
                int32_t *pos = tw_malloc((size_t)n_tok * sizeof(int32_t));
                TW_ASSERT(pos);
                fill(x, nx, 1.0f);
                for (int64_t i = 0; i < rd / 2; i++) ff[i] = 1.0f + (float)(kin_next(&rng) % 32);
                for (int64_t t = 0; t < n_tok; t++)
                    pos[t] = (int32_t)(t == 0 ? 0 : kin_next(&rng) % 9000); /* pos 0 included */
                float base = ci % 2 ? 10000.0f : 500000.0f, fs = ci % 3 ? 1.0f : 0.25f;
                const float *ffv = with_ff ? ff : NULL;
                int64_t half = rd / 2;
                for (int64_t r = 0; r < n_tok * n_head; r++)
                    for (int64_t i = 0; i < hd; i++) {
                        int64_t partner = i >= rd ? i : mode == TW_ROPE_NEOX ? (i < half ? i + half : i - half) : (i ^ 1);
                        int64_t pi = i >= rd ? 0 : mode == TW_ROPE_NEOX ? (i < half ? i : i - half) : i / 2;
                        double th = (double)pos[r / n_head] * fs * pow(base, -2.0 * (double)pi / (double)rd) / (ffv ? ffv[pi] : 1.0);
                        double ang = (2.5 * (double)pi + 2) * U * th;
                        /* in units of the 4u the comparison uses below */
                        mag[r * hd + i] = (fabs(x[r * hd + i]) + (partner != i ? fabs(x[r * hd + partner]) : 0)) *
                                          (1 + ang / (4 * U));
                    }
                char shape[96];
                snprintf(shape, sizeof shape, "(%lld, %lld, %lld) rope_dim %lld %s%s",
                         (long long)n_tok, (long long)n_head, (long long)hd, (long long)rd,
                         mode ? "neox" : "norm", with_ff ? " freq_factors" : "");
                tw_ref_rope_f32(ref, x, pos, n_tok, n_head, hd, rd, mode, base, fs, ffv);
                tw_cpu_rope_f32(y, x, pos, n_tok, n_head, hd, rd, mode, base, fs, ffv);
                double tol = 4 * U;
                cmp_report("rope", "dispatched", shape, kin_max_scaled_err(y, ref, mag, nx), tol);
                /* Position 0 is the identity, and dims past rope_dim are copied. */
                CHECK(memcmp(y, x, (size_t)(n_head * hd) * sizeof(float)) == 0);
                devs d = {be, {0}, 0};
                tw_ref rx = dev_up(&d, x, (size_t)nx * 4), rp = dev_up(&d, pos, (size_t)n_tok * 4),
                       rf = with_ff ? dev_up(&d, ff, (size_t)half * 4) : tw_ref_none();
                op_ok(tw_op_rope(be, rx, rx, rp, n_tok, n_head, hd, rd, (tw_rope_mode)mode, base,
                                 fs, rf), "rope in place");
                dev_down(rx, y, (size_t)nx * 4);
                cmp_report("rope", "backend", shape, kin_max_scaled_err(y, ref, mag, nx), tol);
                dev_free(&d);
                tw_free(x), tw_free(ref), tw_free(y), tw_free(ff), tw_free(mag), tw_free(pos);
            }
        }
    }
    fprintf(stderr, "  rope: largest error is %.3f of its bound\n", worst_ratio);
}

/* ---- kv_write + attention ----
 *
 * A paged cache of n_pages pages; a few sequences with their own shuffled block tables; tokens
 * of several sequences in one batch at positions that end at each sequence's length (a
 * prefill chunk and decode steps mixed). kv_write is bit-exact (copy or RNE to fp16).
 *
 * attention bound, per output element (t, h, i), with S = scale * max_j sum_i |q_i k_ji| and
 * V_i = max_j |v_ji| over the positions j the token reads: each fp32 score is within
 * e_s = (head_dim + 2) u S of the fp64 one (plus 2^-11 S with an f16 cache, where the AVX2
 * kernel rounds q to f16 as llama.cpp does); the exponentials (2 ulp = 4u) and the running
 * rescales (at most one per position, each an exponential and a product) put each weight p_j
 * within e_p = e_s + 5 (len + 4) u relatively (plus 2^-11 with an f16 cache: the weights are
 * rounded to f16 too); the output is a
 * convex combination of the v_j, so its error is at most (2 e_p + (len + 4) u) V_i
 * (weights and normalizer both perturbed, plus the fp32 sums). */
typedef struct {
    int64_t n_pages, page_size, n_seq, max_blocks, n_tok, n_head, n_kv_head, head_dim;
    int64_t shared; /* leading pages every sequence shares with sequence 0 (a common prefix) */
} attn_case;

static void diff_attention_case(tw_backend *be, const attn_case *ac, tw_dtype ct) {
    int64_t n_slots = ac->n_pages * ac->page_size, row = ac->n_kv_head * ac->head_dim;
    int64_t nq = ac->n_tok * ac->n_head * ac->head_dim, d = ac->head_dim;
    size_t esz = ct == TW_DTYPE_F16 ? 2 : 4, cbytes = (size_t)(n_slots * row) * esz;
    /* Block tables: a random permutation of the pages dealt out to the sequences. */
    int32_t *perm = tw_malloc((size_t)ac->n_pages * 4), *bt = tw_malloc((size_t)(ac->n_seq * ac->max_blocks) * 4);
    int32_t *seq = tw_malloc((size_t)ac->n_tok * 4), *pos = tw_malloc((size_t)ac->n_tok * 4),
            *slots = tw_malloc((size_t)ac->n_tok * 4);
    TW_ASSERT(perm && bt && seq && pos && slots);
    for (int64_t i = 0; i < ac->n_pages; i++) perm[i] = (int32_t)i;
    for (int64_t i = ac->n_pages - 1; i > 0; i--) {
        int64_t j = (int64_t)(kin_next(&rng) % (uint64_t)(i + 1));
        int32_t tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    TW_ASSERT(ac->n_seq * ac->max_blocks <= ac->n_pages);
    for (int64_t i = 0; i < ac->n_seq * ac->max_blocks; i++)
        bt[i] = i % ac->max_blocks < ac->shared ? perm[i % ac->max_blocks] : perm[i];
    /* Each sequence has a length; its last tokens are in the batch, earlier ones are in the
     * cache already (written by the same kv_write, in an earlier "step"). */
    int64_t cap = ac->max_blocks * ac->page_size, len[8];
    TW_ASSERT(ac->n_seq <= 8);
    for (int64_t s = 0; s < ac->n_seq; s++) len[s] = 1 + (int64_t)(kin_next(&rng) % (uint64_t)cap);
    int64_t per = ac->n_tok / ac->n_seq;
    for (int64_t t = 0; t < ac->n_tok; t++) {
        int64_t s = t / per < ac->n_seq ? t / per : ac->n_seq - 1;
        int64_t k_in = t - s * per; /* index among the batch tokens of s */
        int64_t n_in = s == ac->n_seq - 1 ? ac->n_tok - s * per : per;
        seq[t] = (int32_t)s;
        int64_t p = len[s] - n_in + k_in;
        pos[t] = (int32_t)(p < 0 ? k_in : p); /* short sequences: positions 0.. */
    }
    float *q = kin_floats(nq), *kall = kin_floats(n_slots * row), *vall = kin_floats(n_slots * row);
    fill(q, nq, 1.0f);
    fill(kall, n_slots * row, 1.0f);
    fill(vall, n_slots * row, 1.0f);
    /* The whole cache is "history": every slot written once, through kv_write: slot s holds
     * row n_slots - 1 - s of kall and vall (a reversed order, so that slot != row). */
    void *kc_ref = tw_malloc(cbytes), *vc_ref = tw_malloc(cbytes), *kc = tw_malloc(cbytes),
         *vc = tw_malloc(cbytes);
    TW_ASSERT(kc_ref && vc_ref && kc && vc);
    int32_t *all = tw_malloc((size_t)n_slots * 4);
    TW_ASSERT(all);
    for (int64_t i = 0; i < n_slots; i++) all[i] = (int32_t)(n_slots - 1 - i);
    tw_ref_kv_write(kc_ref, vc_ref, ct, kall, vall, all, n_slots, ac->n_kv_head, d);
    tw_cpu_kv_write(kc, vc, ct, kall, vall, all, n_slots, ac->n_kv_head, d);
    CHECK(memcmp(kc, kc_ref, cbytes) == 0 && memcmp(vc, vc_ref, cbytes) == 0);

    tw_attn_shape sh = {ac->max_blocks, ac->page_size, ac->n_tok, ac->n_head, ac->n_kv_head, d,
                        (float)(1.0 / sqrt((double)d)), ct};
    float *ref = kin_floats(nq), *y = kin_floats(nq);
    double *mag = tw_malloc((size_t)nq * sizeof(double));
    TW_ASSERT(mag);
    tw_ref_attention(ref, q, kc_ref, vc_ref, bt, seq, pos, &sh);
    int64_t group = ac->n_head / ac->n_kv_head;
    for (int64_t t = 0; t < ac->n_tok; t++)
        for (int64_t h = 0; h < ac->n_head; h++) {
            double S = 0;
            int64_t L = pos[t] + 1;
            for (int64_t j = 0; j < L; j++) {
                int64_t slot = (int64_t)bt[seq[t] * ac->max_blocks + j / ac->page_size] * ac->page_size + j % ac->page_size;
                const float *kr = kall + (n_slots - 1 - slot) * row + (h / group) * d; /* see `all` */
                double s = 0;
                for (int64_t i = 0; i < d; i++) s += fabs(q[(t * ac->n_head + h) * d + i] * kr[i]);
                S = fmax(S, s * sh.scale);
            }
            double h16 = ct == TW_DTYPE_F16 ? 0x1.0p-11 : 0;
            double ep = (double)(d + 2) * U * S + h16 * S + 5.0 * (double)(L + 4) * U + h16;
            for (int64_t i = 0; i < d; i++) {
                double V = 0;
                for (int64_t j = 0; j < L; j++) {
                    int64_t slot = (int64_t)bt[seq[t] * ac->max_blocks + j / ac->page_size] * ac->page_size + j % ac->page_size;
                    V = fmax(V, fabs(vall[(n_slots - 1 - slot) * row + (h / group) * d + i]) * 1.001);
                }
                mag[(t * ac->n_head + h) * d + i] = (2 * ep + (double)(L + 4) * U) * V;
            }
        }
    char shape[128];
    snprintf(shape, sizeof shape, "%s pages %lldx%lld, %lld seqs, %lld tokens, heads %lld/%lld x %lld",
             tw_dtype_name(ct), (long long)ac->n_pages, (long long)ac->page_size, (long long)ac->n_seq,
             (long long)ac->n_tok, (long long)ac->n_head, (long long)ac->n_kv_head, (long long)d);
    /* mag already holds the bound itself: the scaled error must be <= 1. */
    tw_cpu_attention_variant(y, q, kc, vc, bt, seq, pos, &sh, 1);
    cmp_report("attention", "portable", shape, kin_max_scaled_err(y, ref, mag, nq), 1.0);
    tw_cpu_attention(y, q, kc, vc, bt, seq, pos, &sh);
    cmp_report("attention", "dispatched", shape, kin_max_scaled_err(y, ref, mag, nq), 1.0);
    /* The tiled kernel (prompt chunks) has the bits of the per-token one (kernels/cpu/
     * attention.c: each dot keeps its chain order), for any thread count. */
    {
        float *y2 = kin_floats(nq);
        int th = tw_threads_get();
        tw_cpu_attention_variant(y2, q, kc, vc, bt, seq, pos, &sh, TW_ATTN_PER_TOKEN);
        int same = memcmp(y2, y, (size_t)nq * 4) == 0;
        if (!same) fprintf(stderr, "  attention %s: tiled and per-token kernels differ\n", shape);
        CHECK(same);
        for (int n_th = 1; n_th <= 3; n_th += 2) {
            tw_threads_set(n_th);
            tw_cpu_attention(y2, q, kc, vc, bt, seq, pos, &sh);
            same = memcmp(y2, y, (size_t)nq * 4) == 0;
            if (!same) fprintf(stderr, "  attention %s: %d threads change the bits\n", shape, n_th);
            CHECK(same);
        }
        tw_threads_set(th);
        tw_free(y2);
    }

    /* Through the backend: kv_write of the batch's own tokens into the cache (their slots),
     * then attention. */
    for (int64_t t = 0; t < ac->n_tok; t++)
        slots[t] = bt[seq[t] * ac->max_blocks + pos[t] / ac->page_size] * (int32_t)ac->page_size +
                   pos[t] % (int32_t)ac->page_size;
    float *kt = kin_floats(ac->n_tok * row), *vt = kin_floats(ac->n_tok * row);
    for (int64_t t = 0; t < ac->n_tok; t++) {
        memcpy(kt + t * row, kall + (n_slots - 1 - slots[t]) * row, (size_t)row * 4);
        memcpy(vt + t * row, vall + (n_slots - 1 - slots[t]) * row, (size_t)row * 4);
    }
    devs dv = {be, {0}, 0};
    tw_ref rkc = dev_new(&dv, cbytes), rvc = dev_new(&dv, cbytes);
    /* History first (every slot), then the batch's tokens again (same values: no change). */
    tw_ref rall = dev_up(&dv, all, (size_t)n_slots * 4), rk = dev_up(&dv, kall, (size_t)(n_slots * row) * 4),
           rv = dev_up(&dv, vall, (size_t)(n_slots * row) * 4);
    op_ok(tw_op_kv_write(be, rkc, rvc, ct, n_slots, rk, rv, rall, n_slots, ac->n_kv_head, d), "kv_write");
    tw_ref rkt = dev_up(&dv, kt, (size_t)(ac->n_tok * row) * 4), rvt = dev_up(&dv, vt, (size_t)(ac->n_tok * row) * 4),
           rsl = dev_up(&dv, slots, (size_t)ac->n_tok * 4);
    op_ok(tw_op_kv_write(be, rkc, rvc, ct, n_slots, rkt, rvt, rsl, ac->n_tok, ac->n_kv_head, d), "kv_write");
    void *back = tw_malloc(cbytes);
    TW_ASSERT(back);
    dev_down(rkc, back, cbytes);
    CHECK(memcmp(back, kc_ref, cbytes) == 0);
    dev_down(rvc, back, cbytes);
    CHECK(memcmp(back, vc_ref, cbytes) == 0);
    tw_ref rq = dev_up(&dv, q, (size_t)nq * 4), rbt = dev_up(&dv, bt, (size_t)(ac->n_seq * ac->max_blocks) * 4),
           rs = dev_up(&dv, seq, (size_t)ac->n_tok * 4), rp = dev_up(&dv, pos, (size_t)ac->n_tok * 4),
           ro = dev_new(&dv, (size_t)nq * 4);
    op_ok(tw_op_attention(be, ro, rq, rkc, rvc, ct, n_slots, rbt, ac->n_seq, ac->max_blocks,
                          ac->page_size, rs, rp, ac->n_tok, ac->n_head, ac->n_kv_head, d, sh.scale),
          "attention");
    memset(y, 0, (size_t)nq * 4);
    dev_down(ro, y, (size_t)nq * 4);
    cmp_report("attention", "backend", shape, kin_max_scaled_err(y, ref, mag, nq), 1.0);

    /* Each sequence alone (all its tokens of the batch, in one call) gives bit-identical
     * output: batch invariance. */
    for (int64_t sq = 0; sq < ac->n_seq; sq++) {
        int64_t n1 = 0, hd = ac->n_head * d;
        float *q1 = kin_floats(ac->n_tok * hd), *y1 = kin_floats(ac->n_tok * hd);
        int32_t *s1 = tw_malloc((size_t)ac->n_tok * 4), *p1 = tw_malloc((size_t)ac->n_tok * 4);
        TW_ASSERT(s1 && p1);
        for (int64_t t = 0; t < ac->n_tok; t++)
            if (seq[t] == sq) {
                memcpy(q1 + n1 * hd, q + t * hd, (size_t)hd * 4);
                s1[n1] = seq[t], p1[n1] = pos[t], n1++;
            }
        tw_attn_shape one = sh;
        one.n_tok = n1;
        tw_cpu_attention(y1, q1, kc, vc, bt, s1, p1, &one);
        for (int64_t t = 0, k1 = 0; t < ac->n_tok; t++)
            if (seq[t] == sq) {
                if (memcmp(y1 + k1 * hd, y + t * hd, (size_t)hd * 4) != 0)
                    fprintf(stderr, "  attention %s: token %lld differs in its sequence alone\n", shape, (long long)t);
                CHECK(memcmp(y1 + k1 * hd, y + t * hd, (size_t)hd * 4) == 0);
                k1++;
            }
        tw_free(q1), tw_free(y1), tw_free(s1), tw_free(p1);
    }
    dev_free(&dv);
    tw_free(back), tw_free(kt), tw_free(vt);
    tw_free(perm), tw_free(bt), tw_free(seq), tw_free(pos), tw_free(slots), tw_free(all);
    tw_free(q), tw_free(kall), tw_free(vall), tw_free(kc_ref), tw_free(vc_ref), tw_free(kc), tw_free(vc);
    tw_free(ref), tw_free(y), tw_free(mag);
}

static void diff_attention(tw_backend *be) {
    worst_ratio = 0;
    static const attn_case cases[] = {
        /* n_pages, page_size, n_seq, max_blocks, n_tok, n_head, n_kv_head, head_dim, shared */
        {4, 16, 1, 4, 1, 1, 1, 8, 0},   /* one head, decode */
        {24, 16, 3, 8, 7, 9, 3, 64, 0}, /* SmolLM2 heads, three sequences */
        {40, 5, 4, 10, 13, 8, 8, 33, 0}, /* odd page and head size, no grouping */
        {16, 32, 2, 8, 37, 4, 1, 16, 0}, /* multi-query, a prefill chunk */
        {8, 1, 1, 8, 3, 2, 2, 1024, 0}, /* page of 1, the largest head_dim */
        /* prompt chunks long enough for several query tiles (odd tile ends, odd row counts),
         * sequences sharing their first pages */
        {44, 16, 2, 20, 151, 9, 3, 64, 4},
        {30, 8, 3, 10, 67, 4, 1, 24, 2},
        {24, 16, 4, 6, 90, 6, 2, 128, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        diff_attention_case(be, &cases[i], TW_DTYPE_F32);
        diff_attention_case(be, &cases[i], TW_DTYPE_F16);
    }
    fprintf(stderr, "  attention: largest error is %.3f of its bound\n", worst_ratio);
}

/* The AVX2 exponential (kernels/cpu/simd_avx2.h, ggml's arithmetic): within 2 ulp of e^x on
 * [-87.3, 88.3] (checked against fp64 exp on a grid of the whole range plus random points),
 * gradual underflow below (0 far below), +inf past FLT_MAX, NaN for NaN. */
static void test_exp_avx2(void) {
    if (!tw_cpu_has_avx2_fma()) return;
    int64_t n = 200003;
    float *x = kin_floats(n), *y = kin_floats(n);
    for (int64_t i = 0; i < n; i++)
        x[i] = i < 100000 ? -87.3f + (float)i * (175.6f / 100000) : (float)(kin_unit(&rng) * 40 - 20);
    tw_cpu_exp_f32_avx2(y, x, n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = exp((double)x[i]);
        double ulp = ldexp(1.0, ilogb(e) - 23); /* the fp32 ulp at e */
        double err = fabs(y[i] - e) / ulp;
        if (!(err <= worst)) worst = err;
    }
    fprintf(stderr, "  exp: largest error %.2f ulp\n", worst);
    CHECK(worst <= 2.0);
    float sp[8] = {-88.0f, -1000.0f, 89.0f, 1000.0f, NAN, 0.0f, -0.0f, 1.0f}, ys[8];
    tw_cpu_exp_f32_avx2(ys, sp, 8);
    CHECK(ys[0] >= 0.0f && ys[0] < 1e-37f && fabs(ys[0] - exp(-88.0)) < 1e-40);
    CHECK(ys[1] == 0.0f);
    CHECK(isinf(ys[2]) && ys[2] > 0 && isinf(ys[3]));
    CHECK(isnan(ys[4]));
    CHECK(ys[5] == 1.0f && ys[6] == 1.0f);
    CHECK_NEAR(ys[7], exp(1.0), 3e-7);
    tw_free(x), tw_free(y);
}

/* swiglu: the exponential within 2 ulp (4u; expf: 1 ulp), then 1 + e, the division and the
 * product: each output within 8u of the reference relatively (no cancellation: every step
 * multiplies or adds values of one sign). */
static void diff_swiglu(tw_backend *be) {
    static const int64_t cases[][2] = {{1, 1}, {3, 1536}, {7, 33}, {2, 100003}};
    for (size_t ci = 0; ci < 4; ci++) {
        int64_t rows = cases[ci][0], n = cases[ci][1], nx = rows * n;
        float *g = kin_floats(nx), *u = kin_floats(nx), *ref = kin_floats(nx), *y = kin_floats(nx);
        fill(g, nx, 4.0f); /* gates in +-[0.5, 8): both tails of the sigmoid */
        fill(u, nx, 1.0f);
        tw_ref_swiglu_f32(ref, g, u, nx);
        tw_cpu_swiglu_f32_portable(y, g, u, nx);
        cmp_report("swiglu", "portable", "", kin_max_rel_err(y, ref, nx), 8 * U);
        if (tw_cpu_has_avx2_fma()) {
            tw_cpu_swiglu_f32_avx2(y, g, u, nx);
            cmp_report("swiglu", "avx2", "", kin_max_rel_err(y, ref, nx), 8 * U);
        }
        tw_cpu_swiglu_f32(y, g, u, nx);
        cmp_report("swiglu", "dispatched", "", kin_max_rel_err(y, ref, nx), 8 * U);
        devs d = {be, {0}, 0};
        tw_ref rg = dev_up(&d, g, (size_t)nx * 4), ru = dev_up(&d, u, (size_t)nx * 4);
        op_ok(tw_op_swiglu(be, ru, rg, ru, rows, n), "swiglu in place");
        dev_down(ru, y, (size_t)nx * 4);
        cmp_report("swiglu", "backend", "", kin_max_rel_err(y, ref, nx), 8 * U);
        dev_free(&d);
        tw_free(g), tw_free(u), tw_free(ref), tw_free(y);
    }
}

/* gelu: 1 + tanh (or 1 + erf) cancels for negative x, so the bound is absolute, from the
 * error of the inner argument a (4u relatively: three products and a sum) and of tanhf/erff
 * (2 ulp): |dy| <= 0.5 |x| (4u |a| + 4u) + 2u |y| <= 8u |x| (1 + |x|^3) + 2u |y|. */
static void diff_gelu(tw_backend *be) {
    static const int64_t sizes[] = {1, 31, 65537};
    for (size_t si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        float *x = kin_floats(n), *ref = kin_floats(n), *y = kin_floats(n);
        double *mag = tw_malloc((size_t)n * sizeof(double));
        TW_ASSERT(mag);
        fill(x, n, 2.0f);
        for (int mode = 0; mode < 2; mode++) {
            tw_ref_gelu_f32(ref, x, n, mode);
            for (int64_t i = 0; i < n; i++) {
                double ax = fabs(x[i]);
                mag[i] = 8 * ax * (1 + ax * ax * ax) + 2 * fabs(ref[i]) + 1e-30;
            }
            tw_cpu_gelu_f32(y, x, n, mode);
            const char *mn = mode ? "erf" : "tanh";
            cmp_report("gelu", mn, "", kin_max_scaled_err(y, ref, mag, n), U);
            if (mode == TW_GELU_ERF) { /* each variant of the erf form on its own */
                tw_cpu_gelu_erf_f32_portable(y, x, n);
                cmp_report("gelu", mn, "portable", kin_max_scaled_err(y, ref, mag, n), U);
                if (tw_cpu_has_avx2_fma()) {
                    tw_cpu_gelu_erf_f32_avx2(y, x, n);
                    cmp_report("gelu", mn, "avx2", kin_max_scaled_err(y, ref, mag, n), U);
                }
            }
            devs d = {be, {0}, 0};
            tw_ref rx = dev_up(&d, x, (size_t)n * 4), ry = dev_new(&d, (size_t)n * 4);
            op_ok(tw_op_gelu(be, ry, rx, n, (tw_gelu_mode)mode), "gelu");
            dev_down(ry, y, (size_t)n * 4);
            cmp_report("gelu", mn, "backend", kin_max_scaled_err(y, ref, mag, n), U);
            dev_free(&d);
        }
        tw_free(x), tw_free(ref), tw_free(y), tw_free(mag);
    }
}

/* softmax: the argument scale * x - max is within u (|scale x| + |max|) absolutely, so each
 * exponential within that plus 2 ulp (4u) relatively; the sum (8 lanes, n/8 + 3 roundings)
 * and the normalization add (n/8 + 5) u, the sum's exponentials their own 4u: relative bound
 * 2 u (|scale x_i| + |max|) + (n/8 + 14) u. */
static void diff_softmax(tw_backend *be) {
    for (size_t si = 0; si < N_SHAPES; si++) {
        int64_t rows = shapes[si].rows, n = shapes[si].n, nx = rows * n;
        float scale = si % 2 ? 1.0f : 0.125f;
        float *x = kin_floats(nx), *ref = kin_floats(nx), *y = kin_floats(nx);
        double *mag = tw_malloc((size_t)nx * sizeof(double));
        TW_ASSERT(mag);
        fill(x, nx, 4.0f);
        tw_ref_softmax_f32(ref, x, rows, n, scale);
        for (int64_t r = 0; r < rows; r++) {
            double mx = -INFINITY;
            for (int64_t i = 0; i < n; i++) mx = fmax(mx, scale * x[r * n + i]);
            for (int64_t i = 0; i < n; i++)
                mag[r * n + i] = fabs(ref[r * n + i]) *
                                 (2 * (fabs(scale * x[r * n + i]) + fabs(mx)) + (double)n / 8 + 14);
        }
        tw_cpu_softmax_f32(y, x, rows, n, scale);
        cmp_report("softmax", "dispatched", "", kin_max_scaled_err(y, ref, mag, nx), U);
        devs d = {be, {0}, 0};
        tw_ref rx = dev_up(&d, x, (size_t)nx * 4);
        op_ok(tw_op_softmax(be, rx, rx, rows, n, scale), "softmax in place");
        dev_down(rx, y, (size_t)nx * 4);
        cmp_report("softmax", "backend", "", kin_max_scaled_err(y, ref, mag, nx), U);
        dev_free(&d);
        tw_free(x), tw_free(ref), tw_free(y), tw_free(mag);
    }
}

/* argmax, topk: exact (values compared, never computed). Values on a coarse grid, so that
 * ties are frequent and the lower-index rule is tested. */
static void diff_select(tw_backend *be) {
    static const int64_t cases[][3] = {{1, 1, 1}, {3, 7, 7}, {5, 100, 10}, {2, 49152, 40}, {4, 1000, 1}};
    for (size_t ci = 0; ci < 5; ci++) {
        int64_t rows = cases[ci][0], n = cases[ci][1], k = cases[ci][2], nx = rows * n;
        float *x = kin_floats(nx), *rv = kin_floats(rows * k), *v = kin_floats(rows * k);
        int32_t *ri = tw_malloc((size_t)(rows * k) * 4), *id = tw_malloc((size_t)(rows * k) * 4),
                *ra = tw_malloc((size_t)rows * 4), *ia = tw_malloc((size_t)rows * 4);
        TW_ASSERT(ri && id && ra && ia);
        for (int64_t i = 0; i < nx; i++) x[i] = (float)((int64_t)(kin_next(&rng) % 41) - 20) * 0.5f;
        tw_ref_argmax_f32(ra, x, rows, n);
        tw_cpu_argmax_f32(ia, x, rows, n);
        CHECK(memcmp(ia, ra, (size_t)rows * 4) == 0);
        tw_ref_topk_f32(rv, ri, x, rows, n, k);
        CHECK_EQ_INT(tw_cpu_topk_f32(v, id, x, rows, n, k), TW_OK);
        CHECK(memcmp(v, rv, (size_t)(rows * k) * 4) == 0);
        CHECK(memcmp(id, ri, (size_t)(rows * k) * 4) == 0);
        for (int64_t r = 0; r < rows; r++) CHECK_EQ_INT(ri[r * k], ra[r]); /* top-1 = argmax */
        devs d = {be, {0}, 0};
        tw_ref rx = dev_up(&d, x, (size_t)nx * 4), rvals = dev_new(&d, (size_t)(rows * k) * 4),
               ridx = dev_new(&d, (size_t)(rows * k) * 4), rarg = dev_new(&d, (size_t)rows * 4);
        op_ok(tw_op_argmax(be, rarg, rx, rows, n), "argmax");
        op_ok(tw_op_topk(be, rvals, ridx, rx, rows, n, k), "topk");
        dev_down(rarg, ia, (size_t)rows * 4);
        dev_down(rvals, v, (size_t)(rows * k) * 4);
        dev_down(ridx, id, (size_t)(rows * k) * 4);
        CHECK(memcmp(ia, ra, (size_t)rows * 4) == 0);
        CHECK(memcmp(v, rv, (size_t)(rows * k) * 4) == 0);
        CHECK(memcmp(id, ri, (size_t)(rows * k) * 4) == 0);
        dev_free(&d);
        tw_free(x), tw_free(rv), tw_free(v), tw_free(ri), tw_free(id), tw_free(ra), tw_free(ia);
    }
}

static void test_differential(void) {
    rng.s = 20240611;
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    int avx2 = tw_cpu_has_avx2_fma();
    fprintf(stderr, "  AVX2+FMA variants %s\n", avx2 ? "tested" : "not available on this CPU");
    for (int op = 0; op < TW_OP_COUNT; op++) {
        /* The CPU backend implements every inference op; the training ops are checked (against
         * their references and finite differences) by test_kernels_train and, for the segment
         * attention, test_kernels_attn_seg. */
        if (op < TW_OP_ATTN_SEG) CHECK(tw_backend_supports(be, (tw_op)op));
        switch ((tw_op)op) {
        case TW_OP_ADD: diff_add(be, avx2); break;
        case TW_OP_RMSNORM: diff_rmsnorm(be, avx2); break;
        case TW_OP_MUL: /* mul, scale and copy share one case */
        case TW_OP_SCALE: break;
        case TW_OP_COPY: diff_mul_scale_copy(be); break;
        case TW_OP_GET_ROWS: diff_get_rows(be); break;
        case TW_OP_MATMUL: diff_matmul(be, avx2); break;
        case TW_OP_LAYERNORM: diff_layernorm(be); break;
        case TW_OP_ROPE: diff_rope(be); break;
        case TW_OP_KV_WRITE: break; /* with attention: it fills the cache attention reads */
        case TW_OP_ATTENTION: diff_attention(be); break;
        case TW_OP_SWIGLU: diff_swiglu(be); break;
        case TW_OP_GELU: diff_gelu(be); break;
        case TW_OP_SOFTMAX: diff_softmax(be); break;
        case TW_OP_ARGMAX: break; /* with topk */
        case TW_OP_TOPK: diff_select(be); break;
        case TW_OP_ATTN_SEG:
        case TW_OP_ATTN_SEG_BWD:
        case TW_OP_MATMUL_DX:
        case TW_OP_MATMUL_DW:
        case TW_OP_RMSNORM_BWD:
        case TW_OP_LAYERNORM_BWD:
        case TW_OP_ROPE_BWD:
        case TW_OP_SWIGLU_BWD:
        case TW_OP_GELU_BWD:
        case TW_OP_EMBED_BWD:
        case TW_OP_XENT:
        case TW_OP_ADAMW: break; /* test_kernels_train, test_kernels_attn_seg */
        case TW_OP_DROPOUT: break; /* test_kernels_dropout */
        case TW_OP_COUNT:
            break;
        }
    }
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 0);
    tw_backend_free(be);
}

/* Each row (and each add chunk) is computed by one thread in a fixed order, so the thread
 * count cannot change a single bit. */
static void test_threads_bit_identical(void) {
    rng.s = 77;
    int64_t rows = 257, n = 576, na = 300007;
    float *x = kin_floats(rows * n), *w = kin_floats(n), *y1 = kin_floats(rows * n), *y3 = kin_floats(rows * n);
    float *a = kin_floats(na), *b = kin_floats(na), *s1 = kin_floats(na), *s3 = kin_floats(na);
    fill(x, rows * n, 1.0f);
    fill(w, n, 1.0f);
    fill(a, na, 1.0f);
    fill(b, na, 1.0f);
    int saved = tw_threads_get();
    tw_threads_set(1);
    tw_cpu_rmsnorm_f32(y1, x, w, rows, n, 1e-5f);
    tw_cpu_add_f32(s1, a, b, na);
    tw_threads_set(3);
    tw_cpu_rmsnorm_f32(y3, x, w, rows, n, 1e-5f);
    tw_cpu_add_f32(s3, a, b, na);
    tw_threads_set(saved);
    CHECK(memcmp(y1, y3, (size_t)(rows * n) * sizeof(float)) == 0);
    CHECK(memcmp(s1, s3, (size_t)na * sizeof(float)) == 0);
    tw_free(x), tw_free(w), tw_free(y1), tw_free(y3);
    tw_free(a), tw_free(b), tw_free(s1), tw_free(s3);
}

/* ---- the op table ------------------------------------------------------------------------ */

static void test_op_names(void) {
    CHECK_EQ_INT(TW_OP_COUNT, TW_OP_COUNT_PINNED);
    for (int i = 0; i < TW_OP_COUNT; i++) {
        CHECK(strcmp(tw_op_name((tw_op)i), "?") != 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(tw_op_name((tw_op)i), tw_op_name((tw_op)j)) != 0);
    }
    CHECK_EQ_STR(tw_op_name(TW_OP_RMSNORM), "rmsnorm");
    CHECK_EQ_STR(tw_op_name(TW_OP_COUNT), "?");
    CHECK_EQ_STR(tw_op_name((tw_op)-1), "?");
}

/* ---- auto: the CPU fallback logs one line, once ------------------------------------------ */

/* Opens "auto" twice with stderr sent to a file, and returns what was written (tw_free). */
static char *open_auto_twice(tw_backend **b1, tw_backend **b2) {
    char path[] = "/tmp/twin-test-kernels-XXXXXX";
    int fd = mkstemp(path);
    TW_ASSERT(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    CHECK_EQ_INT(tw_backend_open("auto", b1), TW_OK);
    CHECK_EQ_INT(tw_backend_open("auto", b2), TW_OK);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *text = NULL;
    size_t len;
    CHECK_EQ_INT(tw_file_read(path, &text, &len), TW_OK);
    unlink(path);
    return text;
}

static void test_auto_fallback(void) {
    tw_log_set_level(TW_LOG_INFO);
    int count = 0;
    tw_status cst = tw_cuda_device_count(&count);
    char reason[1024];
    snprintf(reason, sizeof reason, "%s", tw_errmsg());
    tw_backend *b1 = NULL, *b2 = NULL;
    char *log = open_auto_twice(&b1, &b2);
    if (!b1 || !b2 || !log) goto out;
    if (cst == TW_OK && count > 0) {
        fprintf(stderr, "  a CUDA device is present: auto picked %s\n", tw_backend_name(b1));
        CHECK_EQ_INT(tw_backend_get_kind(b1), TW_BACKEND_CUDA);
        CHECK(strstr(log, "no CUDA device") == NULL);
    } else {
        CHECK(count == 0 && cst != TW_OK && reason[0] != 0);
        if (!tw_cuda_compiled()) CHECK_EQ_STR(reason, "built without CUDA");
        CHECK_EQ_INT(tw_backend_get_kind(b1), TW_BACKEND_CPU);
        CHECK_EQ_STR(tw_backend_name(b2), "cpu");
        char want[1200];
        snprintf(want, sizeof want, "twin: no CUDA device found (%s); using the CPU backend\n",
                 reason);
        CHECK_EQ_STR(log, want); /* exactly one line, although auto was opened twice */

        /* Asking for CUDA by name fails with the reason instead of falling back. */
        tw_backend *bc = NULL;
        CHECK(tw_backend_open("cuda", &bc) != TW_OK);
        CHECK(bc == NULL && strstr(tw_errmsg(), "cuda:0") != NULL);
    }
out:
    tw_free(log);
    tw_backend_free(b1);
    tw_backend_free(b2);
}

static void test_open_names(void) {
    tw_backend *be = (tw_backend *)1;
    CHECK_EQ_INT(tw_backend_open("tpu", &be), TW_ERR_ARG);
    CHECK(be == NULL);
    CHECK(strstr(tw_errmsg(), "'tpu'") != NULL);
    CHECK_EQ_INT(tw_backend_open("cuda:x", &be), TW_ERR_ARG);
    CHECK_EQ_INT(tw_backend_open("cuda:", &be), TW_ERR_ARG);
    CHECK(tw_backend_open("cuda:99999", &be) != TW_OK);
    tw_backend_free(NULL);
    tw_buffer_free(NULL);
}

/* ---- buffers ----------------------------------------------------------------------------- */

static void test_buffers(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    tw_buffer *a = NULL, *b = NULL, *c = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, 0, &a), TW_ERR_ARG);
    CHECK_EQ_INT(tw_buffer_alloc(be, 1000, &a), TW_OK);
    CHECK_EQ_INT(tw_buffer_size(a), 1000);
    tw_mem_stats st = tw_backend_mem_stats(be);
    CHECK_EQ_INT(st.current_bytes, 1000);
    CHECK_EQ_INT(st.n_allocs, 1);

    /* The hook: the 2nd allocation from now fails, the ones around it succeed. */
    tw_buffer_fail_after(2);
    CHECK_EQ_INT(tw_buffer_alloc(be, 24, &b), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(be, 24, &c), TW_ERR_NOMEM);
    CHECK(c == NULL && strstr(tw_errmsg(), "cpu") != NULL);
    CHECK_EQ_INT(tw_buffer_alloc(be, 24, &c), TW_OK);
    st = tw_backend_mem_stats(be);
    CHECK_EQ_INT(st.current_bytes, 1048);
    CHECK_EQ_INT(st.n_allocs, 3);

    /* A host allocation failure surfaces as the buffer's failure too. */
    tw_buffer *d = NULL;
    tw_mem_fail_after(2); /* 1: the tw_buffer struct, 2: the memory itself */
    CHECK_EQ_INT(tw_buffer_alloc(be, 64, &d), TW_ERR_NOMEM);
    CHECK(d == NULL);
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 1048);

    /* Round trip and range checks. */
    uint8_t in[1000], out[1000];
    for (int i = 0; i < 1000; i++) in[i] = (uint8_t)(i * 7 + 1);
    CHECK_EQ_INT(tw_buffer_upload(a, 0, in, 1000), TW_OK);
    memset(out, 0, sizeof out);
    CHECK_EQ_INT(tw_buffer_download(a, 10, out, 990), TW_OK);
    CHECK(memcmp(out, in + 10, 990) == 0);
    CHECK_EQ_INT(tw_buffer_upload(a, 1, in, 1000), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "outside the buffer of 1000 bytes") != NULL);
    CHECK_EQ_INT(tw_buffer_download(a, 1001, out, 0), TW_ERR_ARG);
    CHECK_EQ_INT(tw_buffer_download(a, 1000, out, 0), TW_OK);
    CHECK_EQ_INT(tw_buffer_upload(a, SIZE_MAX, in, 2), TW_ERR_ARG);

    tw_buffer_free(b);
    tw_buffer_free(c);
    tw_buffer_free(a);
    st = tw_backend_mem_stats(be);
    CHECK_EQ_INT(st.current_bytes, 0);
    CHECK_EQ_INT(st.peak_bytes, 1048);
    tw_backend_free(be);
}

/* ---- op argument checks -------------------------------------------------------------------- */

#define CHECK_ARG_ERR(call, needle)                                                           \
    do {                                                                                      \
        CHECK_EQ_INT((call), TW_ERR_ARG);                                                     \
        if (!strstr(tw_errmsg(), (needle))) {                                                 \
            fprintf(stderr, "  message '%s' lacks '%s'\n", tw_errmsg(), (needle));            \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)

static void test_op_checks(void) {
    tw_backend *be = NULL, *other = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    CHECK_EQ_INT(tw_backend_open("cpu", &other), TW_OK);
    if (!be || !other) return;
    tw_buffer *buf = NULL, *wb = NULL, *ob = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, 64 * sizeof(float), &buf), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(be, 8 * sizeof(float), &wb), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(other, 64 * sizeof(float), &ob), TW_OK);
    float ones[64];
    for (int i = 0; i < 64; i++) ones[i] = 1.0f;
    tw_buffer_upload(buf, 0, ones, sizeof ones);
    tw_buffer_upload(wb, 0, ones, 8 * sizeof(float));
    tw_buffer_upload(ob, 0, ones, sizeof ones);
    tw_ref x = tw_ref_at(buf, 0), w = tw_ref_at(wb, 0);

    /* x: (4, 8) at 0, y: (4, 8) at byte 128 -> fits exactly in 64 floats. */
    CHECK_EQ_INT(tw_op_rmsnorm(be, tw_ref_at(buf, 128), x, w, 4, 8, 1e-5f), TW_OK);
    CHECK_ARG_ERR(tw_op_rmsnorm(be, tw_ref_at(buf, 132), x, w, 4, 8, 1e-5f),
                  "rmsnorm: y: needs bytes [132, 132 + 128) but its buffer holds 256 bytes");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, tw_ref_at(buf, 130), x, w, 1, 8, 1e-5f),
                  "rmsnorm: y: offset 130 is not a multiple of 4 bytes");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, tw_ref_at(buf, 64), x, w, 4, 8, 1e-5f),
                  "rmsnorm: y overlaps x");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, w, tw_ref_at(buf, 0), w, 1, 8, 1e-5f),
                  "rmsnorm: y overlaps w");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, tw_ref_at(ob, 0), x, w, 4, 8, 1e-5f),
                  "rmsnorm: y: the buffer belongs to backend cpu, the op runs on cpu");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, tw_ref_at(NULL, 0), 4, 8, 1e-5f),
                  "rmsnorm: w: buffer is NULL");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, w, 4, 0, 1e-5f), "rmsnorm: n = 0");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, w, -1, 8, 1e-5f), "rmsnorm: rows = -1");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, w, 4, 8, -1.0f), "rmsnorm: eps = -1");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, w, 4, 8, NAN), "rmsnorm: eps");
    CHECK_ARG_ERR(tw_op_rmsnorm(be, x, x, w, 4, 9, 1e-5f), "rmsnorm: w: needs bytes [0, 0 + 36)");
    CHECK_EQ_INT(tw_op_rmsnorm(be, x, x, w, 0, 8, 1e-5f), TW_OK); /* no rows: nothing to do */
    CHECK_EQ_INT(tw_op_rmsnorm(be, x, x, w, 4, 8, 1e-5f), TW_OK); /* in place */

    CHECK_ARG_ERR(tw_op_add(be, tw_ref_at(buf, 4), x, x, 8), "add: y overlaps a");
    CHECK_ARG_ERR(tw_op_add(be, x, x, x, -3), "add: n = -3");
    CHECK_ARG_ERR(tw_op_add(be, x, x, tw_ref_at(ob, 0), 8), "add: b: the buffer belongs");
    CHECK_EQ_INT(tw_op_add(be, x, x, x, 64), TW_OK); /* in place, a == b */
    CHECK_EQ_INT(tw_op_add(be, x, x, x, 0), TW_OK);
    CHECK_ARG_ERR(tw_op_add(NULL, x, x, x, 8), "add: backend is NULL");

    /* The checks ran before any computing: the in-place ops above did change the data. */
    float back[64];
    CHECK_EQ_INT(tw_buffer_download(buf, 0, back, sizeof back), TW_OK);
    /* rmsnorm of ones with w = 1 is ~1 (eps aside), then doubled by add. */
    CHECK_NEAR(back[0], 2.0 / sqrt(1.0 + 1e-5), 1e-6);
    CHECK_NEAR(back[63], 2.0 / sqrt(1.0 + 1e-5), 1e-6);

    tw_buffer_free(buf);
    tw_buffer_free(wb);
    tw_buffer_free(ob);
    tw_backend_free(be);
    tw_backend_free(other);
}

/* Argument checks of the inference ops: each names the op and the argument at fault. */
static void test_op_checks_infer(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    tw_buffer *buf = NULL, *ib = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, 4096 * sizeof(float), &buf), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(be, 64 * sizeof(int32_t), &ib), TW_OK);
    if (!buf || !ib) goto out;
    float ones[4096];
    for (int i = 0; i < 4096; i++) ones[i] = 1.0f;
    int32_t zeros[64] = {0};
    tw_buffer_upload(buf, 0, ones, sizeof ones);
    tw_buffer_upload(ib, 0, zeros, sizeof zeros);
    tw_ref a = tw_ref_at(buf, 0), b = tw_ref_at(buf, 8192), c = tw_ref_at(buf, 12288);
    tw_ref ids = tw_ref_at(ib, 0), none = tw_ref_none();

    /* matmul: types, block multiples, sizes, overlaps. */
    CHECK_ARG_ERR(tw_op_matmul(be, c, a, b, TW_DTYPE_Q4_1, none, 1, 48, 4),
                  "matmul: w: rows of 48 elements are not a multiple of the q4_1 block size 32");
    CHECK_EQ_INT(tw_op_matmul(be, c, a, b, TW_DTYPE_Q8_K, none, 1, 256, 1), TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "matmul: w: type q8_K (15) is not supported") != NULL);
    CHECK_ARG_ERR(tw_op_matmul(be, c, a, b, (tw_dtype)99, none, 1, 32, 1), "matmul: w: type ?");
    CHECK_ARG_ERR(tw_op_matmul(be, c, a, b, TW_DTYPE_F32, none, 1, 0, 4), "matmul: k = 0");
    CHECK_ARG_ERR(tw_op_matmul(be, a, a, b, TW_DTYPE_F32, none, 1, 8, 4), "matmul: y overlaps x");
    CHECK_ARG_ERR(tw_op_matmul(be, c, a, b, TW_DTYPE_F32, none, 1, 8, 300),
                  "matmul: w: needs bytes [8192, 8192 + 9600)");
    CHECK_ARG_ERR(tw_op_matmul(be, c, a, b, TW_DTYPE_F32, tw_ref_at(buf, 2), 1, 8, 4),
                  "matmul: bias: offset 2");
    CHECK_EQ_INT(tw_op_matmul(be, c, a, b, TW_DTYPE_F32, a, 2, 8, 4), TW_OK);
    CHECK_EQ_INT(tw_op_matmul(be, c, a, b, TW_DTYPE_F32, none, 0, 8, 4), TW_OK); /* m = 0 */

    /* get_rows: ids out of range are found on the host. */
    CHECK_ARG_ERR(tw_op_get_rows(be, c, a, TW_DTYPE_F32, 0, ids, 1, 8), "get_rows: n_rows = 0");
    zeros[1] = -1;
    tw_buffer_upload(ib, 0, zeros, sizeof zeros);
    CHECK_ARG_ERR(tw_op_get_rows(be, c, a, TW_DTYPE_F32, 4, ids, 2, 8),
                  "get_rows: ids[1] = -1 is outside [0, 4)");
    zeros[1] = 0;
    tw_buffer_upload(ib, 0, zeros, sizeof zeros);

    /* rope, kv_write, attention. */
    CHECK_ARG_ERR(tw_op_rope(be, a, a, ids, 1, 1, 8, 9, TW_ROPE_NORM, 1e4f, 1, none),
                  "rope: rope_dim = 9 is outside [2, 8]");
    CHECK_ARG_ERR(tw_op_rope(be, a, a, ids, 1, 1, 8, 6, (tw_rope_mode)1, 1e4f, 1, none),
                  "rope: mode = 1");
    CHECK_ARG_ERR(tw_op_rope(be, a, a, ids, 1, 1, 8, 8, TW_ROPE_NEOX, 0, 1, none),
                  "rope: theta_base = 0");
    CHECK_EQ_INT(tw_op_kv_write(be, a, b, TW_DTYPE_BF16, 4, c, c, ids, 1, 1, 8),
                 TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "kv_write: cache: type bf16 (30) is not supported") != NULL);
    CHECK_ARG_ERR(tw_op_kv_write(be, a, a, TW_DTYPE_F32, 4, c, c, ids, 1, 1, 8),
                  "kv_write: k_cache overlaps v_cache");
    zeros[0] = 4;
    tw_buffer_upload(ib, 0, zeros, sizeof zeros);
    CHECK_ARG_ERR(tw_op_kv_write(be, a, b, TW_DTYPE_F32, 4, c, c, ids, 1, 1, 8),
                  "kv_write: slots[0] = 4 is outside [0, 4)");
    /* attention: ids holds block_table (1, 2) = {4, 0}, tok_seq = {0}, tok_pos = {0}: page 4
     * of a cache of 8 slots with pages of 2 starts at slot 8, past the end. */
    tw_ref seq0 = tw_ref_at(ib, 4 * 8), pos0 = tw_ref_at(ib, 4 * 9);
    CHECK_ARG_ERR(tw_op_attention(be, c, tw_ref_at(buf, 12288 + 64), a, b, TW_DTYPE_F32, 8, ids,
                                  1, 2, 2, seq0, pos0, 1, 2, 1, 8, 0.35f),
                  "attention: block_table[0][0] = 4: page outside the cache of 8 slots");
    CHECK_ARG_ERR(tw_op_attention(be, c, a, a, b, TW_DTYPE_F32, 8, ids, 1, 2, 2, seq0, pos0, 1, 3,
                                  2, 8, 0.35f),
                  "attention: n_head = 3 is not a multiple of n_kv_head = 2");
    CHECK_ARG_ERR(tw_op_attention(be, c, a, a, b, TW_DTYPE_F32, 8, ids, 1, 2, 2, seq0, pos0, 1, 2,
                                  1, 2048, 0.35f),
                  "attention: head_dim = 2048 is outside [1, 1024]");
    zeros[0] = 0;
    zeros[9] = 4; /* tok_pos 4 >= max_blocks * page_size */
    tw_buffer_upload(ib, 0, zeros, sizeof zeros);
    CHECK_ARG_ERR(tw_op_attention(be, c, tw_ref_at(buf, 12288 + 64), a, b, TW_DTYPE_F32, 8, ids,
                                  1, 2, 2, seq0, pos0, 1, 2, 1, 8, 0.35f),
                  "attention: tok_pos[0] = 4 is outside [0, 4)");

    /* The rest. */
    CHECK_ARG_ERR(tw_op_topk(be, a, ids, b, 1, 8, 9), "topk: k = 9 is outside [1, 8]");
    CHECK_ARG_ERR(tw_op_topk(be, a, tw_ref_at(buf, 16), b, 1, 8, 8), "topk: vals overlaps idx");
    CHECK_ARG_ERR(tw_op_argmax(be, ids, a, 1, 0), "argmax: n = 0");
    CHECK_ARG_ERR(tw_op_gelu(be, a, a, 8, (tw_gelu_mode)7), "gelu: mode = 7");
    CHECK_ARG_ERR(tw_op_softmax(be, a, a, 1, 8, INFINITY), "softmax: scale");
    CHECK_ARG_ERR(tw_op_copy(be, a, a, 8), "copy: y overlaps x");
    CHECK_ARG_ERR(tw_op_swiglu(be, tw_ref_at(buf, 4), a, b, 1, 8), "swiglu: y overlaps gate");
    CHECK_ARG_ERR(tw_op_layernorm(be, a, a, b, tw_ref_at(buf, 6), 1, 8, 1e-5f),
                  "layernorm: b: offset 6");
    CHECK_EQ_INT(tw_op_layernorm(be, a, a, none, none, 2, 8, 1e-5f), TW_OK);
    CHECK_ARG_ERR(tw_op_scale(be, a, a, NAN, 8), "scale: s = nan");
out:
    tw_buffer_free(buf);
    tw_buffer_free(ib);
    tw_backend_free(be);
}

/* Host memory wrapped as a buffer: no copy, no accounting, not freed by tw_buffer_free; an
 * op reads it where it lies. */
static void test_wrap_host(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    _Alignas(16) float host[64];
    for (int i = 0; i < 64; i++) host[i] = (float)i;
    tw_buffer *wb = NULL, *yb = NULL;
    CHECK_EQ_INT(tw_buffer_wrap_host(be, (char *)host + 4, 16, &wb), TW_ERR_ARG);
    CHECK(wb == NULL && strstr(tw_errmsg(), "not 16-byte aligned") != NULL);
    CHECK_EQ_INT(tw_buffer_wrap_host(be, host, 0, &wb), TW_ERR_ARG);
    CHECK_EQ_INT(tw_buffer_wrap_host(be, host, sizeof host, &wb), TW_OK);
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 0);
    CHECK_EQ_INT(tw_buffer_size(wb), sizeof host);
    CHECK_EQ_INT(tw_buffer_alloc(be, 64 * sizeof(float), &yb), TW_OK);
    if (wb && yb) {
        CHECK_EQ_INT(tw_op_add(be, tw_ref_at(yb, 0), tw_ref_at(wb, 0), tw_ref_at(wb, 0), 64), TW_OK);
        float y[64];
        CHECK_EQ_INT(tw_buffer_download(yb, 0, y, sizeof y), TW_OK);
        CHECK(y[63] == 126.0f);
        host[63] = -1; /* no copy: the op sees the change */
        CHECK_EQ_INT(tw_op_add(be, tw_ref_at(yb, 0), tw_ref_at(wb, 0), tw_ref_at(wb, 0), 64), TW_OK);
        CHECK_EQ_INT(tw_buffer_download(yb, 0, y, sizeof y), TW_OK);
        CHECK(y[63] == -2.0f);
    }
    tw_buffer_free(wb); /* the handle only: host stays valid */
    tw_buffer_free(yb);
    CHECK(host[0] == 0.0f);
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 0);
    tw_backend_free(be); /* no live buffers: no warning */
}

static void test_cpu_features(void) {
    tw_cpu_features f = tw_cpu_features_get();
    CHECK(f.avx2 == 0 || f.avx2 == 1);
    const char *pe = getenv("TWIN_CPU_PORTABLE");
    int forced = pe && *pe && strcmp(pe, "0") != 0;
    CHECK_EQ_INT(tw_cpu_has_avx2_fma(), f.avx2 && f.fma && !forced);
    /* Every AVX-512 CPU has AVX2 and FMA. */
    if (f.avx512f) CHECK(f.avx2 && f.fma);
}

int main(void) {
    RUN(test_auto_fallback); /* first: the fallback line is logged by the first auto open */
    RUN(test_reference_values);
    RUN(test_reference_values_infer);
    RUN(test_op_names);
    RUN(test_open_names);
    RUN(test_cpu_features);
    RUN(test_exp_avx2);
    RUN(test_differential);
    RUN(test_threads_bit_identical);
    RUN(test_buffers);
    RUN(test_op_checks);
    RUN(test_op_checks_infer);
    RUN(test_wrap_host);
    TEST_DONE();
}
