/* test_cuda_ops.c: every op the CUDA backend supports, against the CPU reference, on seeded
 * random inputs (never zero) with odd sizes, under a relative-error bound derived below; and
 * the CUDA backend's buffers (accounting, the fault hook, a failing cudaMalloc reported as a
 * status naming the call), in-place and queued ops, and "auto" picking the device.
 * Prints a table: op, shape, max relative error, its bound, and the time of the op on CUDA
 * and on the CPU backend (same handle API, tw_threads_get() threads).
 * Exits 77 (skipped) when there is no CUDA device, or the binary is built without CUDA. */
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

static kin_rng rng = {20240612};
static tw_backend *gpu, *cpu; /* opened by main: cuda:0 and the CPU backend */

/* ---- bounds (u = 2^-24) -------------------------------------------------------------------
 *
 * add: __fadd_rn is one correctly rounded fp32 add, as is the reference (ref_add.c): 0.
 *
 * rmsnorm (kernels/cuda/rmsnorm.cu): each lane accumulates ceil(n/32) or fewer squares with
 * fmaf (one rounding each), then at most 5 shuffle levels in the warp and 5 more across the
 * warps of a block join the partial sums: k = ceil(n/32) + 10 roundings on any term's path,
 * all on non-negative values, so the sum is within k*u relatively. The mean, +eps, sqrtf and
 * the reciprocal are IEEE-rounded (nvcc defaults; the build does not use -use_fast_math) and
 * add one rounding each, sqrt halving the error before it; the two products add one each;
 * the reference is within ~0.5u of exact: |rel err| <= (k + 2)/2 * u + 4.5u. A worst case:
 * a wrong index, a lost tail, a missed warp or a wrong eps is off by far more. */
static double rmsnorm_tol(int64_t n) {
    double k = (double)((n + 31) / 32 + 10);
    return ((k + 2) / 2 + 4.5) * 0x1.0p-24;
}

/* ---- running an op on a backend ----------------------------------------------------------- */

typedef struct {
    tw_op op;
    int64_t rows, n; /* add: rows = 1 */
    float eps;
} op_case;

/* Device copies of a case's inputs and output. */
typedef struct {
    tw_buffer *x, *w, *y; /* rmsnorm: x (rows, n), w (n), y (rows, n); add: a = x, b = w, y */
} op_bufs;

static int64_t case_out_elems(const op_case *c) { return c->rows * c->n; }
static int64_t case_w_elems(const op_case *c) { return c->n; } /* w (rmsnorm) or b (add) */

static tw_status bufs_make(tw_backend *be, const op_case *c, const float *x, const float *w,
                           op_bufs *b) {
    size_t nx = (size_t)case_out_elems(c) * sizeof(float),
           nw = (size_t)case_w_elems(c) * sizeof(float);
    memset(b, 0, sizeof *b);
    tw_status st;
    if ((st = tw_buffer_alloc(be, nx, &b->x)) || (st = tw_buffer_alloc(be, nw, &b->w)) ||
        (st = tw_buffer_alloc(be, nx, &b->y)) || (st = tw_buffer_upload(b->x, 0, x, nx)) ||
        (st = tw_buffer_upload(b->w, 0, w, nw)))
        return st;
    return TW_OK;
}

static void bufs_free(op_bufs *b) {
    tw_buffer_free(b->x);
    tw_buffer_free(b->w);
    tw_buffer_free(b->y);
}

static tw_status case_run(tw_backend *be, const op_case *c, op_bufs *b) {
    switch (c->op) {
    case TW_OP_ADD:
        return tw_op_add(be, tw_ref_at(b->y, 0), tw_ref_at(b->x, 0), tw_ref_at(b->w, 0), c->n);
    case TW_OP_RMSNORM:
        return tw_op_rmsnorm(be, tw_ref_at(b->y, 0), tw_ref_at(b->x, 0), tw_ref_at(b->w, 0),
                             c->rows, c->n, c->eps);
    default: /* not on CUDA yet: test_ops skips what the backend does not support */
        break;
    }
    return tw_error(TW_ERR_UNSUPPORTED, "no test case for op %s", tw_op_name(c->op));
}

static void case_ref(const op_case *c, float *y, const float *x, const float *w) {
    switch (c->op) {
    case TW_OP_ADD: tw_ref_add_f32(y, x, w, c->n); return;
    case TW_OP_RMSNORM: tw_ref_rmsnorm_f32(y, x, w, c->rows, c->n, c->eps); return;
    default: break;
    }
    TW_ASSERT(!"no reference for this op");
}

static double case_tol(const op_case *c) {
    return c->op == TW_OP_RMSNORM ? rmsnorm_tol(c->n) : 0.0;
}

/* Mean seconds per run of the op on `be`, over enough runs to fill ~50 ms (at least 3), after
 * one warm-up run; includes the launch and the final sync, as the engine would see it. */
static double case_time(tw_backend *be, const op_case *c, op_bufs *b) {
    if (case_run(be, c, b) != TW_OK || tw_backend_sync(be) != TW_OK) return NAN;
    double t0 = tw_now_s(), t;
    int runs = 0;
    do {
        if (case_run(be, c, b) != TW_OK) return NAN;
        runs++;
        if (runs % 4 == 0 && tw_backend_sync(be) != TW_OK) return NAN;
        t = tw_now_s() - t0;
    } while (runs < 3 || (t < 0.05 && runs < 10000));
    if (tw_backend_sync(be) != TW_OK) return NAN;
    return (tw_now_s() - t0) / runs;
}

static void print_row(const op_case *c, double err, double tol, double t_gpu, double t_cpu) {
    char shape[64];
    if (c->op == TW_OP_ADD)
        snprintf(shape, sizeof shape, "(%lld)", (long long)c->n);
    else
        snprintf(shape, sizeof shape, "(%lld, %lld)", (long long)c->rows, (long long)c->n);
    printf("%-8s %-16s %11.3e %11.3e %10.4f %10.4f %8.1fx %s\n", tw_op_name(c->op), shape, err,
           tol, t_gpu * 1e3, t_cpu * 1e3, t_cpu / t_gpu, err <= tol ? "ok" : "FAIL");
    fflush(stdout);
}

/* Runs one case on CUDA and on the CPU backend and checks CUDA against the reference. */
static void check_case(const op_case *c) {
    int64_t ny = case_out_elems(c), nw = case_w_elems(c);
    float *x = kin_floats(ny), *w = kin_floats(nw), *ref = kin_floats(ny), *y = kin_floats(ny);
    if (c->op == TW_OP_RMSNORM)
        for (int64_t r = 0; r < c->rows; r++)
            kin_fill(&rng, x + r * c->n, c->n, ldexpf(1.0f, (int)(r % 13) - 6));
    else
        kin_fill(&rng, x, ny, 1.0f);
    kin_fill(&rng, w, nw, c->op == TW_OP_ADD ? 0.01f : 1.0f);
    case_ref(c, ref, x, w);

    op_bufs bg, bc;
    tw_status st = bufs_make(gpu, c, x, w, &bg);
    if (st == TW_OK) st = case_run(gpu, c, &bg);
    if (st == TW_OK) st = tw_buffer_download(bg.y, 0, y, (size_t)ny * sizeof(float));
    if (st != TW_OK) fprintf(stderr, "  %s: %s\n", tw_op_name(c->op), tw_errmsg());
    CHECK_EQ_INT(st, TW_OK);
    double err = st == TW_OK ? kin_max_rel_err(y, ref, ny) : INFINITY, tol = case_tol(c);
    CHECK(err <= tol);

    double t_gpu = st == TW_OK ? case_time(gpu, c, &bg) : NAN;
    CHECK_EQ_INT(bufs_make(cpu, c, x, w, &bc), TW_OK);
    double t_cpu = case_time(cpu, c, &bc);
    print_row(c, err, tol, t_gpu, t_cpu);
    bufs_free(&bg);
    bufs_free(&bc);
    tw_free(x), tw_free(w), tw_free(ref), tw_free(y);
}

static void test_ops(void) {
    static const int64_t add_sizes[] = {1, 7, 33, 4097, 1000003, 16777259};
    static const int64_t rms_shapes[][2] = {{1, 1},     {7, 33},     {3, 1023}, {5, 1024},
                                            {2, 1025},  {33, 4097},  {4, 8193}, {3, 100003},
                                            {4097, 576}, {1024, 4096}, {65537, 64}};
    static const float eps_list[] = {1e-5f, 1e-6f, 0.25f};
    printf("%-8s %-16s %11s %11s %10s %10s %9s\n", "op", "shape", "max rel err", "bound",
           "cuda ms", "cpu ms", "cpu/cuda");
    for (int op = 0; op < TW_OP_COUNT; op++) {
        if (!tw_backend_supports(gpu, (tw_op)op)) {
            printf("%-8s not supported by %s: the CPU runs it\n", tw_op_name((tw_op)op),
                   tw_backend_name(gpu));
            continue;
        }
        switch ((tw_op)op) {
        case TW_OP_ADD:
            for (size_t i = 0; i < sizeof add_sizes / sizeof add_sizes[0]; i++) {
                op_case c = {TW_OP_ADD, 1, add_sizes[i], 0};
                check_case(&c);
            }
            break;
        case TW_OP_RMSNORM:
            for (size_t i = 0; i < sizeof rms_shapes / sizeof rms_shapes[0]; i++) {
                op_case c = {TW_OP_RMSNORM, rms_shapes[i][0], rms_shapes[i][1], eps_list[i % 3]};
                check_case(&c);
            }
            break;
        case TW_OP_COUNT:
            break;
        default: /* an op without a case here is a test defect */
            fprintf(stderr, "no CUDA test case for op %s\n", tw_op_name((tw_op)op));
            test_failures++;
        }
    }
}

/* Ops queue on the device stream in order; in place works: x <- x + x, then x <- rmsnorm(x),
 * then one download, compared with the same chain on the reference. */
static void test_queued_in_place(void) {
    int64_t rows = 37, n = 2049;
    float *x = kin_floats(rows * n), *w = kin_floats(n), *ref = kin_floats(rows * n),
          *y = kin_floats(rows * n);
    kin_fill(&rng, x, rows * n, 1.0f);
    kin_fill(&rng, w, n, 1.0f);
    tw_buffer *bx = NULL, *bw = NULL;
    size_t nx = (size_t)(rows * n) * sizeof(float);
    CHECK_EQ_INT(tw_buffer_alloc(gpu, nx, &bx), TW_OK);
    CHECK_EQ_INT(tw_buffer_alloc(gpu, (size_t)n * sizeof(float), &bw), TW_OK);
    if (bx && bw) {
        CHECK_EQ_INT(tw_buffer_upload(bx, 0, x, nx), TW_OK);
        CHECK_EQ_INT(tw_buffer_upload(bw, 0, w, (size_t)n * sizeof(float)), TW_OK);
        tw_ref rx = tw_ref_at(bx, 0);
        CHECK_EQ_INT(tw_op_add(gpu, rx, rx, rx, rows * n), TW_OK);
        CHECK_EQ_INT(tw_op_rmsnorm(gpu, rx, rx, tw_ref_at(bw, 0), rows, n, 1e-5f), TW_OK);
        CHECK_EQ_INT(tw_buffer_download(bx, 0, y, nx), TW_OK);
        tw_ref_add_f32(x, x, x, rows * n); /* exact: doubling */
        tw_ref_rmsnorm_f32(ref, x, w, rows, n, 1e-5f);
        CHECK(kin_max_rel_err(y, ref, rows * n) <= rmsnorm_tol(n));
    }
    tw_buffer_free(bx);
    tw_buffer_free(bw);
    tw_free(x), tw_free(w), tw_free(ref), tw_free(y);
}

static void test_buffers(void) {
    tw_mem_stats s0 = tw_backend_mem_stats(gpu);
    tw_buffer *a = NULL, *b = NULL;
    tw_buffer_fail_after(1);
    CHECK_EQ_INT(tw_buffer_alloc(gpu, 4096, &a), TW_ERR_NOMEM);
    CHECK(a == NULL);
    CHECK_EQ_INT(tw_buffer_alloc(gpu, 4096, &a), TW_OK);
    CHECK_EQ_INT(tw_backend_mem_stats(gpu).current_bytes, s0.current_bytes + 4096);

    /* A real device failure: 2^50 bytes (1 PiB) is more than any GPU has. The status comes
     * back (no abort) and the message names the backend, the call and the place. */
    CHECK_EQ_INT(tw_buffer_alloc(gpu, (size_t)1 << 50, &b), TW_ERR_NOMEM);
    CHECK(b == NULL);
    CHECK(strstr(tw_errmsg(), "cudaMalloc") != NULL);
    CHECK(strstr(tw_errmsg(), "kernels/cuda/backend_cuda.cu:") != NULL);
    CHECK(strstr(tw_errmsg(), tw_backend_name(gpu)) != NULL);
    fprintf(stderr, "  (expected) %s\n", tw_errmsg());
    CHECK_EQ_INT(tw_backend_mem_stats(gpu).current_bytes, s0.current_bytes + 4096);

    /* The failure is not sticky: the device still works. */
    uint8_t in[4096], out[4096];
    for (int i = 0; i < 4096; i++) in[i] = (uint8_t)(i * 13 + 5);
    CHECK_EQ_INT(tw_buffer_upload(a, 0, in, sizeof in), TW_OK);
    CHECK_EQ_INT(tw_buffer_download(a, 0, out, sizeof out), TW_OK);
    CHECK(memcmp(in, out, sizeof in) == 0);
    CHECK_EQ_INT(tw_backend_sync(gpu), TW_OK);
    tw_buffer_free(a);
    CHECK_EQ_INT(tw_backend_mem_stats(gpu).current_bytes, s0.current_bytes);
}

static void test_auto_picks_cuda(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("auto", &be), TW_OK);
    if (be) CHECK_EQ_STR(tw_backend_name(be), "cuda:0");
    tw_backend_free(be);
}

int main(void) {
    int count = 0;
    if (tw_cuda_device_count(&count) != TW_OK) TEST_SKIP("no CUDA device: %s", tw_errmsg());
    tw_device_info d;
    CHECK_EQ_INT(tw_cuda_device_info(0, &d), TW_OK);
    printf("device: cuda:0 %s, compute capability %d.%d, %d SMs, %.1f GiB; %s; cpu threads %d\n",
           d.name, d.cc_major, d.cc_minor, d.sm_count, (double)d.mem_total / (1 << 30),
           tw_cuda_build_info(), tw_threads_get());
    CHECK(d.sm_count > 0 && d.mem_total > 0 && d.cc_major >= 7);

    if (tw_backend_open("cuda:0", &gpu) != TW_OK) {
        fprintf(stderr, "cuda:0: %s\n", tw_errmsg());
        return 1;
    }
    CHECK_EQ_INT(tw_backend_open("cpu", &cpu), TW_OK);
    if (!cpu) return 1;
    CHECK_EQ_INT(tw_backend_get_kind(gpu), TW_BACKEND_CUDA);

    RUN(test_auto_picks_cuda);
    RUN(test_ops);
    RUN(test_queued_in_place);
    RUN(test_buffers);

    CHECK_EQ_INT(tw_backend_mem_stats(gpu).current_bytes, 0);
    CHECK_EQ_INT(tw_backend_mem_stats(cpu).current_bytes, 0);
    tw_backend_free(gpu);
    tw_backend_free(cpu);
    TEST_DONE();
}
