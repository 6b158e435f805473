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

static void test_differential(void) {
    rng.s = 20240611;
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    int avx2 = tw_cpu_has_avx2_fma();
    fprintf(stderr, "  AVX2+FMA variants %s\n", avx2 ? "tested" : "not available on this CPU");
    for (int op = 0; op < TW_OP_COUNT; op++) {
        CHECK(tw_backend_supports(be, (tw_op)op)); /* the CPU backend implements every op */
        switch ((tw_op)op) {
        case TW_OP_ADD: diff_add(be, avx2); break;
        case TW_OP_RMSNORM: diff_rmsnorm(be, avx2); break;
        case TW_OP_COUNT:
            break;
        default: /* the cases of the inference ops are being written */
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

static void test_cpu_features(void) {
    tw_cpu_features f = tw_cpu_features_get();
    CHECK(f.avx2 == 0 || f.avx2 == 1);
    CHECK_EQ_INT(tw_cpu_has_avx2_fma(), f.avx2 && f.fma);
    /* Every AVX-512 CPU has AVX2 and FMA. */
    if (f.avx512f) CHECK(f.avx2 && f.fma);
}

int main(void) {
    RUN(test_auto_fallback); /* first: the fallback line is logged by the first auto open */
    RUN(test_reference_values);
    RUN(test_op_names);
    RUN(test_open_names);
    RUN(test_cpu_features);
    RUN(test_differential);
    RUN(test_threads_bit_identical);
    RUN(test_buffers);
    RUN(test_op_checks);
    TEST_DONE();
}
