/* test_kernels_train.c: the training ops of the CPU backend (kernels.h, "training ops"):
 * MATMUL_DX, MATMUL_DW, RMSNORM_BWD, LAYERNORM_BWD, ROPE_BWD, SWIGLU_BWD, GELU_BWD, EMBED_BWD,
 * XENT, ADAMW.
 *
 *   - every reference against central finite differences of an fp64 forward written here, on
 *     tiny shapes (the gradient of L = <G, f(x)> for a random G);
 *   - XENT's loss against a direct fp64 softmax; AdamW against a hand computation, 3 steps;
 *   - every optimized kernel (and variant) against its reference on seeded random inputs with
 *     odd sizes, under bounds derived beside each check (u = 2^-24);
 *   - the accumulate flags, ignored targets, the same bits for 1, 2 and 3 threads;
 *   - the ops through a backend handle: the same bits as the kernels, and argument errors
 *     (TW_ERR_ARG naming the argument).
 */
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

#define U 0x1.0p-24

static kin_rng rng = {0x7261696e};

static void fill(float *v, int64_t n, float scale) { kin_fill(&rng, v, n, scale); }

/* max_i |y_i - ref_i| / mag_i; mag from the caller (fp64), see kin_max_scaled_err. */
static double scaled_err(const float *y, const float *ref, const double *mag, int64_t n) {
    return kin_max_scaled_err(y, ref, mag, n);
}

static double *dalloc(int64_t n) {
    double *p = tw_calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    TW_ASSERT(p);
    return p;
}

/* ---- finite differences ---------------------------------------------------------------------
 * fd(i) = (L(x + h e_i) - L(x - h e_i)) / 2h of an fp64 loss over a double parameter vector. */
typedef double (*loss_fn)(const double *x, void *ctx);

static double fd(loss_fn f, double *x, int64_t i, void *ctx) {
    const double h = 1e-4;
    double x0 = x[i];
    x[i] = x0 + h;
    double lp = f(x, ctx);
    x[i] = x0 - h;
    double lm = f(x, ctx);
    x[i] = x0;
    return (lp - lm) / (2 * h);
}

/* Checks grad (n, fp32 from a reference) against finite differences of f at x: the fp64
 * forward's FD error is O(h^2 f''') ~ 1e-8 here plus rounding ~1e-16/h; the reference's fp32
 * rounding is 2^-24 relative. 1e-5 (|fd| + 1e-2) covers both with a wide margin, and a wrong
 * formula (a missing term, a sign) misses by far more. */
static int fd_check(const char *what, loss_fn f, double *x, const float *grad, int64_t n,
                    void *ctx) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fd(f, x, i, ctx);
        if (!(fabs(d - grad[i]) <= 1e-5 * (fabs(d) + 1e-2))) {
            if (bad++ < 3)
                fprintf(stderr, "%s: d/dx[%lld]: analytic %.9g, finite differences %.9g\n", what,
                        (long long)i, (double)grad[i], d);
        }
    }
    CHECK(bad == 0);
    return bad;
}

static void to_double(double *d, const float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
}

/* ---- fp64 forwards of the tests (L = <G, f(params)>) ----------------------------------------*/

typedef struct {
    int64_t rows, n, m, k, n_out;
    const double *G;       /* the random cotangent */
    const double *other;   /* the parameters that are not varied */
    const double *other2;
    float eps;
    int mode, has_w;
    const int32_t *ids;
    int64_t n_vocab;
    double grad_scale;
} fctx;

/* y = x W^T: x (m, k), W (n_out, k). Vary x (other = W) or W (other = x). */
static double l_matmul_x(const double *x, void *vc) {
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t o = 0; o < c->n_out; o++) {
            double s = 0;
            for (int64_t j = 0; j < c->k; j++) s += x[i * c->k + j] * c->other[o * c->k + j];
            L += c->G[i * c->n_out + o] * s;
        }
    return L;
}
static double l_matmul_w(const double *w, void *vc) {
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t o = 0; o < c->n_out; o++) {
            double s = 0;
            for (int64_t j = 0; j < c->k; j++) s += c->other[i * c->k + j] * w[o * c->k + j];
            L += c->G[i * c->n_out + o] * (s + (c->other2 ? c->other2[o] : 0));
        }
    return L;
}
static double l_matmul_b(const double *b, void *vc) { /* the bias term of y = x W^T + b */
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t o = 0; o < c->n_out; o++) L += c->G[i * c->n_out + o] * b[o];
    return L;
}

/* rmsnorm: params = (x (rows, n), w (n)) concatenated. */
static double l_rmsnorm(const double *p, void *vc) {
    fctx *c = vc;
    const double *x = p, *w = p + c->rows * c->n;
    double L = 0;
    for (int64_t r = 0; r < c->rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < c->n; i++) ss += x[r * c->n + i] * x[r * c->n + i];
        double rs = 1 / sqrt(ss / c->n + c->eps);
        for (int64_t i = 0; i < c->n; i++) L += c->G[r * c->n + i] * x[r * c->n + i] * rs * w[i];
    }
    return L;
}

/* layernorm: params = (x (rows, n), w (n), b (n)). */
static double l_layernorm(const double *p, void *vc) {
    fctx *c = vc;
    const double *x = p, *w = p + c->rows * c->n, *b = w + c->n;
    double L = 0;
    for (int64_t r = 0; r < c->rows; r++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < c->n; i++) mean += x[r * c->n + i];
        mean /= c->n;
        for (int64_t i = 0; i < c->n; i++) var += pow(x[r * c->n + i] - mean, 2);
        double rs = 1 / sqrt(var / c->n + c->eps);
        for (int64_t i = 0; i < c->n; i++) {
            double y = (x[r * c->n + i] - mean) * rs;
            if (c->has_w) y = y * w[i] + b[i];
            L += c->G[r * c->n + i] * y;
        }
    }
    return L;
}

/* rope (NEOX or NORM) of x (n_tok=rows, n_head=m, head_dim=k), rope_dim = n_out, pos = ids. */
static double l_rope(const double *x, void *vc) {
    fctx *c = vc;
    int64_t half = c->n_out / 2;
    double L = 0;
    for (int64_t t = 0; t < c->rows; t++)
        for (int64_t h = 0; h < c->m; h++) {
            const double *xr = x + (t * c->m + h) * c->k;
            const double *gr = c->G + (t * c->m + h) * c->k;
            for (int64_t i = 0; i < half; i++) {
                double th = c->ids[t] * 0.5 * pow(10000.0, -2.0 * i / c->n_out) / (1.0 + 0.25 * i);
                int64_t ia = c->mode == TW_ROPE_NEOX ? i : 2 * i;
                int64_t ib = c->mode == TW_ROPE_NEOX ? i + half : 2 * i + 1;
                L += gr[ia] * (xr[ia] * cos(th) - xr[ib] * sin(th)) +
                     gr[ib] * (xr[ia] * sin(th) + xr[ib] * cos(th));
            }
            for (int64_t i = c->n_out; i < c->k; i++) L += gr[i] * xr[i];
        }
    return L;
}

/* swiglu: params = (gate (n), up (n)), n = c->n. */
static double l_swiglu(const double *p, void *vc) {
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->n; i++) L += c->G[i] * p[i] / (1 + exp(-p[i])) * p[c->n + i];
    return L;
}

static double l_gelu(const double *x, void *vc) {
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->n; i++) {
        double v = x[i];
        double y = c->mode == TW_GELU_ERF
                       ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                       : 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        L += c->G[i] * y;
    }
    return L;
}

/* embedding lookup y[i] = table[ids[i]]: table (n_vocab, n), n_ids = rows. */
static double l_embed(const double *table, void *vc) {
    fctx *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->rows; i++)
        for (int64_t j = 0; j < c->n; j++) L += c->G[i * c->n + j] * table[c->ids[i] * c->n + j];
    return L;
}

/* grad_scale * sum of the cross-entropy over tokens with ids >= 0: params = (h (rows, n),
 * W (n_vocab, n)). Also the per-token loss into c->other2 when it is set (a direct fp64
 * softmax). */
static double xent_direct(const double *p, const fctx *c, double *loss) {
    const double *h = p, *w = p + c->rows * c->n;
    double L = 0;
    double *lg = dalloc(c->n_vocab);
    for (int64_t t = 0; t < c->rows; t++) {
        if (loss) loss[t] = 0;
        if (c->ids[t] < 0) continue;
        double mx = -INFINITY, s = 0;
        for (int64_t v = 0; v < c->n_vocab; v++) {
            lg[v] = 0;
            for (int64_t j = 0; j < c->n; j++) lg[v] += h[t * c->n + j] * w[v * c->n + j];
            mx = fmax(mx, lg[v]);
        }
        for (int64_t v = 0; v < c->n_vocab; v++) s += exp(lg[v] - mx);
        double l = mx + log(s) - lg[c->ids[t]];
        if (loss) loss[t] = l;
        L += c->grad_scale * l;
    }
    tw_free(lg);
    return L;
}
static double l_xent(const double *p, void *vc) { return xent_direct(p, vc, NULL); }

/* ---- the references against finite differences --------------------------------------------*/

static void test_fd_matmul(void) {
    int64_t m = 3, k = 5, n_out = 4;
    float x[15], w[20], g[12], dx[15], dw[20], db[4];
    double xd[15], wd[20], gd[12], bd[4] = {0};
    fill(x, 15, 1), fill(w, 20, 1), fill(g, 12, 1);
    to_double(xd, x, 15), to_double(wd, w, 20), to_double(gd, g, 12);
    CHECK(tw_ref_matmul_dx(dx, g, w, TW_DTYPE_F32, m, k, n_out, 0) == TW_OK);
    tw_ref_matmul_dw(dw, db, g, x, m, k, n_out, 0);
    fctx c = {.m = m, .k = k, .n_out = n_out, .G = gd, .other = wd};
    fd_check("matmul_dx", l_matmul_x, xd, dx, 15, &c);
    c.other = xd;
    fd_check("matmul_dw", l_matmul_w, wd, dw, 20, &c);
    fd_check("matmul_dw dbias", l_matmul_b, bd, db, 4, &c);
}

static void test_fd_norms(void) {
    int64_t rows = 3, n = 7;
    float x[21], w[7], b[7], g[21], dx[21], dw[7] = {0}, db[7] = {0};
    double p[35], gd[21];
    fill(x, 21, 1), fill(w, 7, 1), fill(b, 7, 1), fill(g, 21, 1);
    to_double(p, x, 21), to_double(p + 21, w, 7), to_double(p + 28, b, 7), to_double(gd, g, 21);
    fctx c = {.rows = rows, .n = n, .G = gd, .eps = 1e-3f, .has_w = 1};
    CHECK(tw_ref_rmsnorm_bwd_f32(dx, dw, g, x, w, rows, n, c.eps) == TW_OK);
    fd_check("rmsnorm_bwd dx", l_rmsnorm, p, dx, 21, &c);
    memset(dw, 0, sizeof dw); /* rmsnorm's dw: test_fd_rmsnorm_w */
    CHECK(tw_ref_layernorm_bwd_f32(dx, dw, db, g, x, w, rows, n, c.eps) == TW_OK);
    fd_check("layernorm_bwd dx", l_layernorm, p, dx, 21, &c);
    float gw[35];
    memcpy(gw + 21, dw, sizeof dw);
    memcpy(gw + 28, db, sizeof db);
    for (int64_t i = 21; i < 35; i++) {
        double d = fd(l_layernorm, p, i, &c);
        CHECK_NEAR(gw[i], d, 1e-5 * (fabs(d) + 1e-2));
    }
    c.has_w = 0; /* w absent: y = xhat */
    CHECK(tw_ref_layernorm_bwd_f32(dx, NULL, NULL, g, x, NULL, rows, n, c.eps) == TW_OK);
    fd_check("layernorm_bwd dx (no w)", l_layernorm, p, dx, 21, &c);
}

/* RMSNorm's dx and dw together (eps 0). */
static void test_fd_rmsnorm_w(void) {
    int64_t rows = 2, n = 5;
    float x[10], w[5], g[10], dx[10], grad[15] = {0};
    double p[15], gd[10];
    fill(x, 10, 1), fill(w, 5, 1), fill(g, 10, 1);
    to_double(p, x, 10), to_double(p + 10, w, 5), to_double(gd, g, 10);
    fctx c = {.rows = rows, .n = n, .G = gd, .eps = 0.0f};
    CHECK(tw_ref_rmsnorm_bwd_f32(dx, grad + 10, g, x, w, rows, n, 0.0f) == TW_OK);
    memcpy(grad, dx, sizeof dx);
    fd_check("rmsnorm_bwd (dx, dw), eps 0", l_rmsnorm, p, grad, 15, &c);
}

static void test_fd_rope(void) {
    for (int mode = 0; mode <= 2; mode += 2) {
        int64_t n_tok = 3, n_head = 2, head_dim = 6, rope_dim = 4, nx = 36;
        int32_t pos[3] = {0, 5, 17};
        float x[36], g[36], dx[36], ff[2] = {1.0f, 1.25f};
        double xd[36], gd[36];
        fill(x, nx, 1), fill(g, nx, 1);
        to_double(xd, x, nx), to_double(gd, g, nx);
        fctx c = {.rows = n_tok, .m = n_head, .k = head_dim, .n_out = rope_dim, .G = gd,
                  .ids = pos, .mode = mode};
        tw_ref_rope_bwd_f32(dx, g, pos, n_tok, n_head, head_dim, rope_dim, mode, 10000.0f, 0.5f, ff);
        fd_check(mode ? "rope_bwd neox" : "rope_bwd norm", l_rope, xd, dx, nx, &c);
    }
}

static void test_fd_elementwise(void) {
    int64_t n = 9;
    float gate[9], up[9], g[9], dg[9], du[9], grad[18];
    double p[18], gd[9];
    fill(gate, n, 2), fill(up, n, 1), fill(g, n, 1);
    gate[0] = -9.0f, gate[1] = 7.5f; /* the tails of the logistic function */
    to_double(p, gate, n), to_double(p + n, up, n), to_double(gd, g, n);
    fctx c = {.n = n, .G = gd};
    tw_ref_swiglu_bwd_f32(dg, du, g, gate, up, n);
    memcpy(grad, dg, sizeof dg), memcpy(grad + n, du, sizeof du);
    fd_check("swiglu_bwd", l_swiglu, p, grad, 2 * n, &c);
    for (int mode = 0; mode <= 1; mode++) {
        float dx[9];
        c.mode = mode;
        tw_ref_gelu_bwd_f32(dx, g, gate, n, mode);
        fd_check(mode ? "gelu_bwd erf" : "gelu_bwd tanh", l_gelu, p, dx, n, &c);
    }
}

static void test_fd_embed(void) {
    int64_t n = 3, n_ids = 5; /* a table of 4 rows */
    int32_t ids[5] = {2, 0, 2, 3, 2}; /* row 2 three times, row 1 never */
    float g[15], dt[12] = {0};
    double td[12] = {0}, gd[15];
    fill(g, 15, 1);
    to_double(gd, g, 15);
    fctx c = {.rows = n_ids, .n = n, .G = gd, .ids = ids};
    tw_ref_embed_bwd_f32(dt, g, ids, n_ids, n);
    fd_check("embed_bwd", l_embed, td, dt, 12, &c);
    CHECK(dt[3] == 0 && dt[4] == 0 && dt[5] == 0);
}

/* XENT's reference: loss against a direct fp64 softmax; dh and dw against finite
 * differences of grad_scale * sum(loss); ignored tokens. */
static void test_fd_xent(void) {
    int64_t n_tok = 4, d = 6, V = 7;
    int32_t tgt[4] = {3, -1, 0, 6};
    float h[24], w[42], loss[4], dh[24], dw[42] = {0}, grad[66];
    double p[66], lossd[4];
    fill(h, 24, 1), fill(w, 42, 1);
    to_double(p, h, 24), to_double(p + 24, w, 42);
    fctx c = {.rows = n_tok, .n = d, .n_vocab = V, .ids = tgt, .grad_scale = 1.0 / 3};
    CHECK(tw_ref_xent(loss, dh, dw, h, w, TW_DTYPE_F32, tgt, n_tok, d, V, (float)c.grad_scale) == TW_OK);
    xent_direct(p, &c, lossd);
    for (int t = 0; t < 4; t++) CHECK_NEAR(loss[t], lossd[t], 4e-7 * (1 + lossd[t])); /* fp32 logits */
    CHECK(loss[1] == 0.0f);
    for (int j = 0; j < 6; j++) CHECK(dh[6 + j] == 0.0f);
    memcpy(grad, dh, sizeof dh), memcpy(grad + 24, dw, sizeof dw);
    fd_check("xent (dh, dw)", l_xent, p, grad, 66, &c);
}

/* AdamW by hand: lr 0.1, b1 0.9, b2 0.99, eps 1e-8, weight decay 0.01, grad_scale 2, and the
 * same gradient every step, so g' = 2 g. With m0 = v0 = 0 and a constant g', m_t = (1 - b1^t) g'
 * and v_t = (1 - b2^t) g'^2: the bias-corrected moments are g' and g'^2 at every step, and
 * each step is p -= 0.1 (sign(g') + 0.01 p) (eps moves it by 1e-9). Worked by hand:
 *   g' = 1,  p0 = 1:  0.899, 0.899 - 0.1 - 0.000899 = 0.798101, 0.798101 - 0.1 - 0.000798101
 *                     = 0.697302899;
 *   g' = -1, p0 = 1:  1.099, 1.099 + 0.1 - 0.001099 = 1.197901, 1.197901 + 0.1 - 0.001197901
 *                     = 1.296703099;
 *   g' = 0,  p0 = -2: m = v = 0, only the decay: p *= 0.999: -1.998, -1.996002, -1.994005998. */
static void test_adamw_hand(void) {
    static const double want[3][3] = {{0.899, 1.099, -1.998},
                                      {0.798101, 1.197901, -1.996002},
                                      {0.697302899, 1.296703099, -1.994005998}};
    float p[3] = {1.0f, 1.0f, -2.0f}, g[3] = {0.5f, -0.5f, 0.0f}, m[3] = {0}, v[3] = {0};
    float pc[3], mc[3] = {0}, vc[3] = {0};
    memcpy(pc, p, sizeof p);
    for (int step = 1; step <= 3; step++) {
        tw_ref_adamw_f32(p, g, m, v, 3, 0.1f, 0.9f, 0.99f, 1e-8f, 0.01f, 2.0f, step);
        tw_cpu_adamw_f32(pc, g, mc, vc, 3, 0.1f, 0.9f, 0.99f, 1e-8f, 0.01f, 2.0f, step);
        CHECK_NEAR(m[0], 1 - pow(0.9, step), 1e-7);
        CHECK_NEAR(v[0], 1 - pow(0.99, step), 1e-7);
        CHECK(m[2] == 0.0f && v[2] == 0.0f);
        for (int i = 0; i < 3; i++) {
            /* a few fp32 roundings per step (|p| <= 2: 2^-23 each) and the 1e-9 of eps: 1e-6
             * is a wide margin, and a wrong bias correction or decay is off by > 1e-3 */
            CHECK_NEAR(p[i], want[step - 1][i], 1e-6);
            CHECK_NEAR(pc[i], want[step - 1][i], 1e-6);
        }
    }
}

/* ---- optimized kernels against the references -----------------------------------------------*/

static const tw_dtype all_types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                     TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                     TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K, TW_DTYPE_Q5_K,
                                     TW_DTYPE_Q6_K};

/* dx (m, k) = dy (m, n_out) . W: each output is a sum of n_out products. AVX2: one fma per
 * product (one rounding each): |err| <= gamma_{n_out} sum |dy||w| (+ one rounding of the old
 * dx when accumulating); portable: a product and a sum rounded separately: gamma_{2 n_out}.
 * The reference is within 0.5u of exact. mag_ij = sum_o |dy_io||w_oj| + |dx_old_ij|. */
static void test_matmul_dx_vs_ref(void) {
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        tw_dtype t = all_types[ti];
        int64_t bs = tw_dtype_block_size(t);
        int64_t k = bs == 1 ? 37 : bs == 32 ? 160 : 512, m = 13, n_out = 301;
        uint8_t *w = kin_quant_rows(&rng, t, n_out, k, 1.0f);
        float *dy = kin_floats(m * n_out), *old = kin_floats(m * k), *ref = kin_floats(m * k);
        float *y = kin_floats(m * k), *wf = kin_floats(n_out * k);
        double *mag = dalloc(m * k);
        fill(dy, m * n_out, 1), fill(old, m * k, 4);
        for (int64_t o = 0; o < n_out; o++)
            TW_ASSERT(tw_dequantize_row(t, w + (size_t)o * tw_dtype_row_bytes(t, k), wf + o * k, k) == TW_OK);
        for (int acc = 0; acc <= 1; acc++) {
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < k; j++) {
                    double s = acc ? fabs(old[i * k + j]) : 0;
                    for (int64_t o = 0; o < n_out; o++) s += fabs((double)dy[i * n_out + o] * wf[o * k + j]);
                    mag[i * k + j] = s + 1e-30;
                }
            memcpy(ref, old, (size_t)(m * k) * 4);
            CHECK(tw_ref_matmul_dx(ref, dy, w, t, m, k, n_out, acc) == TW_OK);
            for (int portable = 0; portable <= 1; portable++) {
                memcpy(y, old, (size_t)(m * k) * 4);
                CHECK(tw_cpu_matmul_dx_variant(y, dy, w, t, m, k, n_out, acc, portable) == TW_OK);
                double e = scaled_err(y, ref, mag, m * k), tol = (2.0 * n_out + 2) * U;
                if (!(e <= tol))
                    fprintf(stderr, "matmul_dx %s acc %d portable %d: err %.3g > %.3g\n",
                            tw_dtype_name(t), acc, portable, e, tol);
                CHECK(e <= tol);
            }
        }
        /* m = 1 (one token) through the dispatched kernel */
        float y1[512], r1[512];
        CHECK(tw_ref_matmul_dx(r1, dy, w, t, 1, k, n_out, 0) == TW_OK);
        CHECK(tw_cpu_matmul_dx(y1, dy, w, t, 1, k, n_out, 0) == TW_OK);
        CHECK(scaled_err(y1, r1, mag, k) <= (2.0 * n_out + 2) * U);
        tw_free(w), tw_free(dy), tw_free(old), tw_free(ref), tw_free(y), tw_free(wf), tw_free(mag);
    }
}

/* dw (n_out, k) = dy^T x: sums of m products, bound as for dx with m in place of n_out; dbias:
 * sums of m terms (gamma_m sum |dy|). Shapes past one KC panel (m = 300 > 256) and one row
 * tile (n_out = 101 > 96), odd k. */
static void test_matmul_dw_vs_ref(void) {
    int64_t m = 300, k = 70, n_out = 101;
    float *dy = kin_floats(m * n_out), *x = kin_floats(m * k), *old = kin_floats(n_out * k);
    float *ref = kin_floats(n_out * k), *y = kin_floats(n_out * k);
    float bold[101], bref[101], by[101];
    double *mag = dalloc(n_out * k), bmag[101];
    fill(dy, m * n_out, 1), fill(x, m * k, 1), fill(old, n_out * k, 8), fill(bold, n_out, 8);
    for (int acc = 0; acc <= 1; acc++) {
        for (int64_t o = 0; o < n_out; o++) {
            bmag[o] = acc ? fabs(bold[o]) : 0;
            for (int64_t i = 0; i < m; i++) bmag[o] += fabs(dy[i * n_out + o]);
            for (int64_t j = 0; j < k; j++) {
                double s = acc ? fabs(old[o * k + j]) : 0;
                for (int64_t i = 0; i < m; i++) s += fabs((double)dy[i * n_out + o] * x[i * k + j]);
                mag[o * k + j] = s;
            }
        }
        memcpy(ref, old, (size_t)(n_out * k) * 4), memcpy(bref, bold, sizeof bold);
        tw_ref_matmul_dw(ref, bref, dy, x, m, k, n_out, acc);
        for (int portable = 0; portable <= 1; portable++) {
            memcpy(y, old, (size_t)(n_out * k) * 4), memcpy(by, bold, sizeof bold);
            CHECK(tw_cpu_matmul_dw_variant(y, by, dy, x, m, k, n_out, acc, portable) == TW_OK);
            double e = scaled_err(y, ref, mag, n_out * k), tol = (2.0 * m + 2) * U;
            if (!(e <= tol)) fprintf(stderr, "matmul_dw acc %d portable %d: err %.3g\n", acc, portable, e);
            CHECK(e <= tol);
            CHECK(scaled_err(by, bref, bmag, n_out) <= (m + 2.0) * U);
        }
        /* no dbias: dw alone */
        memcpy(y, old, (size_t)(n_out * k) * 4);
        CHECK(tw_cpu_matmul_dw(y, NULL, dy, x, m, k, n_out, acc) == TW_OK);
        CHECK(scaled_err(y, ref, mag, n_out * k) <= (2.0 * m + 2) * U);
    }
    /* m = 0: an empty sum overwrites with 0, or leaves an accumulated gradient alone */
    memcpy(y, old, (size_t)(n_out * k) * 4);
    CHECK(tw_cpu_matmul_dw(y, NULL, dy, x, 0, k, n_out, 1) == TW_OK);
    CHECK(memcmp(y, old, (size_t)(n_out * k) * 4) == 0);
    CHECK(tw_cpu_matmul_dw(y, NULL, dy, x, 0, k, n_out, 0) == TW_OK);
    CHECK(y[0] == 0.0f && y[n_out * k - 1] == 0.0f);
    tw_free(dy), tw_free(x), tw_free(old), tw_free(ref), tw_free(y), tw_free(mag);
}

/* Norms: dx_i = a g_i w_i - b x_i with a, b from fp64 row sums rounded once; the fp32 products
 * and the difference add a few roundings of each term: |err| <= 6u (|a g w| + |b x|). dw, db:
 * fp32 sums over rows of terms t_r that each carry ~3u: (rows + 4) u sum |t_r| (+ |old|). */
static void test_norms_vs_ref(void) {
    int64_t rows = 29, n = 203;
    float *x = kin_floats(rows * n), *g = kin_floats(rows * n), *w = kin_floats(n);
    float *b = kin_floats(n), *dx = kin_floats(rows * n), *rx = kin_floats(rows * n);
    float *dw = kin_floats(n), *rdw = kin_floats(n), *db = kin_floats(n), *rdb = kin_floats(n);
    double *mag = dalloc(rows * n), *wmag = dalloc(n), *bmag = dalloc(n);
    fill(x, rows * n, 2), fill(g, rows * n, 1), fill(w, n, 1), fill(b, n, 1);
    float eps = 1e-5f;
    /* rmsnorm */
    fill(rdw, n, 3);
    memcpy(dw, rdw, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) wmag[i] = fabs(rdw[i]);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i], dot += (double)g[r * n + i] * w[i] * x[r * n + i];
        double rs = 1 / sqrt(ss / n + eps);
        for (int64_t i = 0; i < n; i++) {
            mag[r * n + i] = fabs(rs * g[r * n + i] * w[i]) + fabs(rs * rs * rs / n * dot * x[r * n + i]);
            wmag[i] += fabs(g[r * n + i] * x[r * n + i] * rs);
        }
    }
    CHECK(tw_ref_rmsnorm_bwd_f32(rx, rdw, g, x, w, rows, n, eps) == TW_OK);
    CHECK(tw_cpu_rmsnorm_bwd_f32(dx, dw, g, x, w, rows, n, eps) == TW_OK);
    CHECK(scaled_err(dx, rx, mag, rows * n) <= 6 * U);
    CHECK(scaled_err(dw, rdw, wmag, n) <= (rows + 4.0) * U);
    CHECK(tw_cpu_rmsnorm_bwd_f32(dx, NULL, g, x, w, rows, n, eps) == TW_OK); /* frozen w */
    CHECK(scaled_err(dx, rx, mag, rows * n) <= 6 * U);
    /* layernorm, with and without w: dx = rstd (g - mg - xhat mgx); xhat = (x - mean) rstd in
     * fp32 carries ~3u (|x| + |mean|) rstd: |err| <= 8u rstd (|g| + |mg| + (|x| + |mean|)
     * rstd |mgx|). */
    for (int with_w = 0; with_w <= 1; with_w++) {
        const float *wp = with_w ? w : NULL;
        fill(rdw, n, 3), fill(rdb, n, 3);
        memcpy(dw, rdw, (size_t)n * 4), memcpy(db, rdb, (size_t)n * 4);
        for (int64_t i = 0; i < n; i++) wmag[i] = fabs(rdw[i]), bmag[i] = fabs(rdb[i]);
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n, *gr = g + r * n;
            double mean = 0, var = 0, mg = 0, mgx = 0;
            for (int64_t i = 0; i < n; i++) mean += xr[i];
            mean /= n;
            for (int64_t i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
            double rs = 1 / sqrt(var / n + eps);
            for (int64_t i = 0; i < n; i++) {
                double gg = (double)gr[i] * (wp ? wp[i] : 1);
                mg += gg / n, mgx += gg * (xr[i] - mean) * rs / n;
            }
            for (int64_t i = 0; i < n; i++) {
                double gg = (double)gr[i] * (wp ? wp[i] : 1);
                mag[r * n + i] = rs * (fabs(gg) + fabs(mg) + (fabs(xr[i]) + fabs(mean)) * rs * fabs(mgx));
                wmag[i] += fabs(gr[i]) * (fabs(xr[i]) + fabs(mean)) * rs;
                bmag[i] += fabs(gr[i]);
            }
        }
        CHECK(tw_ref_layernorm_bwd_f32(rx, rdw, rdb, g, x, wp, rows, n, eps) == TW_OK);
        CHECK(tw_cpu_layernorm_bwd_f32(dx, dw, db, g, x, wp, rows, n, eps) == TW_OK);
        CHECK(scaled_err(dx, rx, mag, rows * n) <= 8 * U);
        CHECK(scaled_err(dw, rdw, wmag, n) <= (rows + 6.0) * U);
        CHECK(scaled_err(db, rdb, bmag, n) <= (rows + 2.0) * U);
    }
    tw_free(x), tw_free(g), tw_free(w), tw_free(b), tw_free(dx), tw_free(rx), tw_free(dw);
    tw_free(rdw), tw_free(db), tw_free(rdb), tw_free(mag), tw_free(wmag), tw_free(bmag);
}

/* RoPE backward: the optimized kernel is the forward's arithmetic with the angles negated, so
 * (1) it is the exact adjoint of the optimized forward: <rope(x), g> = <x, rope_bwd(g)> up to
 * the fp32 roundings of the two sides (~4u sum |x||g|); (2) against the fp64 reference each
 * pair is within ((2.5 i + 3) u theta_i + 4u)(|a| + |b|) (the forward's angle error, rope.c). */
static void test_rope_bwd_vs_ref(void) {
    int64_t n_tok = 7, n_head = 3, head_dim = 10, rope_dim = 8, nx = n_tok * n_head * head_dim;
    int32_t pos[7] = {0, 1, 2, 9, 31, 100, 4095};
    float ff[4] = {1.0f, 2.0f, 4.5f, 1.5f};
    float *g = kin_floats(nx), *x = kin_floats(nx), *dx = kin_floats(nx), *rx = kin_floats(nx),
          *y = kin_floats(nx);
    fill(g, nx, 1), fill(x, nx, 1);
    for (int mode = 0; mode <= 2; mode += 2)
        for (int with_ff = 0; with_ff <= 1; with_ff++) {
            const float *f = with_ff ? ff : NULL;
            tw_ref_rope_bwd_f32(rx, g, pos, n_tok, n_head, head_dim, rope_dim, mode, 10000.0f, 1.0f, f);
            tw_cpu_rope_bwd_f32(dx, g, pos, n_tok, n_head, head_dim, rope_dim, mode, 10000.0f, 1.0f, f);
            int bad = 0;
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t h = 0; h < n_head; h++)
                    for (int64_t i = 0; i < rope_dim / 2; i++) {
                        int64_t base = (t * n_head + h) * head_dim;
                        int64_t ia = base + (mode ? i : 2 * i), ib = base + (mode ? i + rope_dim / 2 : 2 * i + 1);
                        double th = pos[t] * pow(10000.0, -2.0 * i / rope_dim) / (f ? f[i] : 1);
                        double tol = ((2.5 * i + 3) * U * th + 4 * U) * (fabs(g[ia]) + fabs(g[ib]));
                        bad += !(fabs(dx[ia] - rx[ia]) <= tol) + !(fabs(dx[ib] - rx[ib]) <= tol);
                    }
            CHECK(bad == 0);
            for (int64_t t = 0; t < n_tok * n_head; t++) /* the tail passes through */
                CHECK(dx[t * head_dim + 8] == g[t * head_dim + 8] && dx[t * head_dim + 9] == g[t * head_dim + 9]);
            tw_cpu_rope_f32(y, x, pos, n_tok, n_head, head_dim, rope_dim, mode, 10000.0f, 1.0f, f);
            double l1 = 0, l2 = 0, mag = 0;
            for (int64_t i = 0; i < nx; i++)
                l1 += (double)y[i] * g[i], l2 += (double)x[i] * dx[i], mag += fabs((double)x[i] * g[i]);
            CHECK(fabs(l1 - l2) <= 8 * U * mag);
            /* in place: dx aliasing dy */
            memcpy(y, g, (size_t)nx * 4);
            tw_cpu_rope_bwd_f32(y, y, pos, n_tok, n_head, head_dim, rope_dim, mode, 10000.0f, 1.0f, f);
            CHECK(memcmp(y, dx, (size_t)nx * 4) == 0);
        }
    tw_free(g), tw_free(x), tw_free(dx), tw_free(rx), tw_free(y);
}

/* SwiGLU: s from tw_exp8 (2 ulp) or expf (1 ulp) then 1/(1+e): ~4u relative on s; the
 * products add ~4u: |err| <= 12u (|dy u s (1 + |g| (1 - s))|) for dgate, 8u |dy g s| for dup.
 * GELU: libm fp32 tanhf/erff/expf within a few ulp; d/dx has a cancellation only where
 * 0.5(1+t) ~ -0.5 x (1-t^2) c(...), so the bound is against the sum of the magnitudes of its
 * terms: 16u (0.5 (1 + |t|) + |x| (...)) |dy|. */
static void test_elementwise_vs_ref(void) {
    int64_t n = 1001;
    float *gt = kin_floats(n), *up = kin_floats(n), *dy = kin_floats(n), *a = kin_floats(n),
          *b = kin_floats(n), *ra = kin_floats(n), *rb = kin_floats(n);
    double *ma = dalloc(n), *mb = dalloc(n);
    fill(gt, n, 4), fill(up, n, 1), fill(dy, n, 1);
    gt[0] = -30.0f, gt[1] = 30.0f, gt[2] = -87.0f;
    for (int64_t i = 0; i < n; i++) {
        double g = gt[i], s = 1 / (1 + exp(-g));
        ma[i] = fabs(dy[i] * up[i] * s) * (1 + fabs(g) * (1 - s)) + 1e-30;
        mb[i] = fabs(dy[i] * g * s) + 1e-30;
    }
    tw_ref_swiglu_bwd_f32(ra, rb, dy, gt, up, n);
    void (*fns[3])(float *, float *, const float *, const float *, const float *, int64_t) = {
        tw_cpu_swiglu_bwd_f32_portable, tw_cpu_swiglu_bwd_f32_avx2, tw_cpu_swiglu_bwd_f32};
    for (int v = 0; v < 3; v++) {
        if (v == 1 && !tw_cpu_has_avx2_fma()) continue;
        fns[v](a, b, dy, gt, up, n);
        double ea = scaled_err(a, ra, ma, n), eb = scaled_err(b, rb, mb, n);
        if (!(ea <= 12 * U && eb <= 8 * U)) fprintf(stderr, "swiglu_bwd variant %d: %.3g %.3g\n", v, ea, eb);
        CHECK(ea <= 12 * U);
        CHECK(eb <= 8 * U);
    }
    for (int mode = 0; mode <= 1; mode++) {
        const double c = sqrt(2 / M_PI);
        for (int64_t i = 0; i < n; i++) {
            double x = gt[i], t = mode ? erf(x / sqrt(2.0)) : tanh(c * (x + 0.044715 * x * x * x));
            double tail = mode ? fabs(x) * exp(-0.5 * x * x) : 0.5 * fabs(x) * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
            ma[i] = fabs(dy[i]) * (0.5 * (1 + fabs(t)) + tail) + 1e-30;
        }
        tw_ref_gelu_bwd_f32(ra, dy, gt, n, mode);
        tw_cpu_gelu_bwd_f32(a, dy, gt, n, mode);
        CHECK(scaled_err(a, ra, ma, n) <= 16 * U);
        memcpy(b, dy, (size_t)n * 4); /* dx aliasing dy */
        tw_cpu_gelu_bwd_f32(b, b, gt, n, mode);
        CHECK(memcmp(a, b, (size_t)n * 4) == 0);
    }
    tw_free(gt), tw_free(up), tw_free(dy), tw_free(a), tw_free(b), tw_free(ra), tw_free(rb);
    tw_free(ma), tw_free(mb);
}

/* EMBED_BWD: the op fixes the order and precision, so the kernel is bit-exact. */
static void test_embed_vs_ref(void) {
    int64_t n_rows = 50, n = 333, n_ids = 211;
    int32_t *ids = tw_malloc((size_t)n_ids * 4);
    float *dy = kin_floats(n_ids * n), *t1 = kin_floats(n_rows * n), *t2 = kin_floats(n_rows * n);
    for (int64_t i = 0; i < n_ids; i++) ids[i] = (int32_t)(kin_next(&rng) % 7 * 7); /* repeats */
    fill(dy, n_ids * n, 1), fill(t1, n_rows * n, 1);
    memcpy(t2, t1, (size_t)(n_rows * n) * 4);
    tw_ref_embed_bwd_f32(t1, dy, ids, n_ids, n);
    tw_cpu_embed_bwd_f32(t2, dy, ids, n_ids, n);
    CHECK(memcmp(t1, t2, (size_t)(n_rows * n) * 4) == 0);
    tw_free(ids), tw_free(dy), tw_free(t1), tw_free(t2);
}

/* XENT: the optimized logits are TW_OP_MATMUL's (tested against tw_ref_matmul elsewhere);
 * the softmax uses tw_exp8 (2 ulp) with an fp64 sum, dlogits are rounded to fp32 (~3u relative
 * of p_v), dh = dlogits . W as MATMUL_DX. Loss: within 2^-18 (1 + loss) of the reference (the
 * logits' own few-ulp differences for the quantized heads shift the loss by about as much as
 * they shift a logit). dh, dw: normwise, max |err| <= 2^-14 max |ref| per row (a wrong index,
 * a missing onehot or an unscaled row is off by O(1)). */
static void test_xent_vs_ref(void) {
    const tw_dtype types[] = {TW_DTYPE_F32, TW_DTYPE_F16, TW_DTYPE_Q8_0, TW_DTYPE_Q4_1,
                              TW_DTYPE_Q6_K};
    int64_t n_tok = 77, V = 301; /* more tokens than one chunk of 64 */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        tw_dtype t = types[ti];
        int64_t d = tw_dtype_block_size(t) == 256 ? 256 : 64;
        uint8_t *w = kin_quant_rows(&rng, t, V, d, 0.5f);
        float *h = kin_floats(n_tok * d), *dh = kin_floats(n_tok * d), *rdh = kin_floats(n_tok * d);
        float *dw = kin_floats(V * d), *rdw = kin_floats(V * d), loss[77], rloss[77];
        int32_t tgt[77];
        fill(h, n_tok * d, 1);
        fill(dw, V * d, 0.01f);
        memcpy(rdw, dw, (size_t)(V * d) * 4);
        int n_used = 0;
        for (int64_t i = 0; i < n_tok; i++) {
            tgt[i] = i % 5 == 2 ? -1 : (int32_t)(kin_next(&rng) % V);
            n_used += tgt[i] >= 0;
        }
        float gs = 1.0f / (float)n_used;
        CHECK(tw_ref_xent(rloss, rdh, rdw, h, w, t, tgt, n_tok, d, V, gs) == TW_OK);
        CHECK(tw_cpu_xent(loss, dh, dw, h, w, t, tgt, n_tok, d, V, gs) == TW_OK);
        int bad = 0;
        for (int64_t i = 0; i < n_tok; i++) {
            bad += !(fabs(loss[i] - rloss[i]) <= 0x1.0p-18 * (1 + fabs(rloss[i])));
            double mx = 0, me = 0;
            for (int64_t j = 0; j < d; j++)
                mx = fmax(mx, fabs(rdh[i * d + j])), me = fmax(me, fabs(dh[i * d + j] - rdh[i * d + j]));
            bad += !(me <= 0x1.0p-14 * mx);
            if (tgt[i] < 0) bad += !(loss[i] == 0 && mx == 0 && dh[i * d] == 0 && dh[i * d + d - 1] == 0);
        }
        for (int64_t v = 0; v < V; v++) {
            double mx = 0, me = 0;
            for (int64_t j = 0; j < d; j++)
                mx = fmax(mx, fabs(rdw[v * d + j])), me = fmax(me, fabs(dw[v * d + j] - rdw[v * d + j]));
            bad += !(me <= 0x1.0p-14 * mx);
        }
        if (bad) fprintf(stderr, "xent %s: %d mismatches\n", tw_dtype_name(t), bad);
        CHECK(bad == 0);
        /* forward only (no dh, no dw): the same losses */
        float l2[77];
        CHECK(tw_cpu_xent(l2, NULL, NULL, h, w, t, tgt, n_tok, d, V, gs) == TW_OK);
        CHECK(memcmp(l2, loss, sizeof loss) == 0);
        /* ignored tokens change nothing else: the kept rows alone give the same bits */
        float hk[77 * 256], dhk[77 * 256], lk[77];
        int32_t tk[77];
        int64_t nk = 0;
        for (int64_t i = 0; i < n_tok; i++)
            if (tgt[i] >= 0) {
                memcpy(hk + nk * d, h + i * d, (size_t)d * 4);
                tk[nk++] = tgt[i];
            }
        CHECK(tw_cpu_xent(lk, dhk, NULL, hk, w, t, tk, nk, d, V, gs) == TW_OK);
        for (int64_t i = 0, r = 0; i < n_tok; i++)
            if (tgt[i] >= 0) {
                CHECK(lk[r] == loss[i]);
                CHECK(memcmp(dhk + r * d, dh + i * d, (size_t)d * 4) == 0);
                r++;
            }
        tw_free(w), tw_free(h), tw_free(dh), tw_free(rdh), tw_free(dw), tw_free(rdw);
    }
}

/* AdamW: fp32 with bias corrections folded into factors: a few roundings per quantity; p's
 * change lr * upd is small beside p, so |p - ref| <= 4u |p| + 8u lr (|upd| + wd |p|); m, v:
 * 3u of their terms. */
static void test_adamw_vs_ref(void) {
    int64_t n = 1003;
    float *p = kin_floats(n), *g = kin_floats(n), *m = kin_floats(n), *v = kin_floats(n);
    float *p2 = kin_floats(n), *m2 = kin_floats(n), *v2 = kin_floats(n);
    fill(p, n, 1), fill(g, n, 1), fill(m, n, 0.1f), fill(v, n, 0.01f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    memcpy(p2, p, (size_t)n * 4), memcpy(m2, m, (size_t)n * 4), memcpy(v2, v, (size_t)n * 4);
    int bad = 0;
    float *mo = kin_floats(n);
    for (int64_t step = 5; step <= 7; step++) {
        memcpy(mo, m, (size_t)n * 4);
        tw_ref_adamw_f32(p, g, m, v, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f, step);
        tw_cpu_adamw_f32(p2, g, m2, v2, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f, step);
        for (int64_t i = 0; i < n; i++) {
            double upd = (double)m[i] / (1 - pow(0.9, step)) / (sqrt(v[i] / (1 - pow(0.999, step))) + 1e-8);
            double e = fabs(p2[i] - p[i]), tol = 4 * U * fabs(p[i]) + 8 * U * 1e-3 * (fabs(upd) + 0.1 * fabs(p[i]));
            if (!(e <= tol) && bad < 3) fprintf(stderr, "adamw p[%lld]: %.9g vs %.9g (upd %g)\n", (long long)i, p2[i], p[i], upd);
            bad += !(e <= tol);
            /* m = b1 m + (1-b1) g' may cancel: against the magnitudes of its two terms */
            bad += !(fabs(m2[i] - m[i]) <= 3 * U * (0.9 * fabs(mo[i]) + 0.1 * fabs(g[i] * 0.5)));
            bad += !(fabs(v2[i] - v[i]) <= 3 * U * fabs(v[i]) + 1e-15);
            p2[i] = p[i], m2[i] = m[i], v2[i] = v[i]; /* no drift between steps */
        }
    }
    CHECK(bad == 0);
    tw_free(p), tw_free(g), tw_free(m), tw_free(v), tw_free(p2), tw_free(m2), tw_free(v2);
    tw_free(mo);
}

/* ---- the same bits for any thread count ------------------------------------------------------
 * Shapes large enough that every kernel takes its parallel path. Each op runs at 1, 2 and 3
 * threads on the same inputs; the outputs must be identical bytes. */
typedef struct {
    int64_t m, k, n_out, rows, n, ne, n_ids, V, d, n_tok;
    float *dy, *x, *w32, *g2, *out, *out2, *out3;
    uint8_t *wq;
    int32_t *ids, *tgt;
} tbuf;

static void run_all(const tbuf *b, float *o1, float *o2, float *o3) {
    /* o1: dx of matmul_dx (m, k) | dw (n_out, k) | dbias (n_out); o2: norms; o3: the rest */
    float *p = o1;
    memset(p, 0, (size_t)(b->m * b->k) * 4);
    TW_ASSERT(tw_cpu_matmul_dx(p, b->dy, b->wq, TW_DTYPE_Q4_1, b->m, b->k, b->n_out, 1) == TW_OK);
    p += b->m * b->k;
    TW_ASSERT(tw_cpu_matmul_dw(p, p + b->n_out * b->k, b->dy, b->x, b->m, b->k, b->n_out, 0) == TW_OK);
    float *q = o2;
    memset(q, 0, (size_t)(2 * b->rows * b->n + 4 * b->n) * 4);
    TW_ASSERT(tw_cpu_rmsnorm_bwd_f32(q, q + b->rows * b->n, b->g2, b->out, b->w32, b->rows, b->n, 1e-5f) == TW_OK);
    q += b->rows * b->n + b->n;
    TW_ASSERT(tw_cpu_layernorm_bwd_f32(q, q + b->rows * b->n, q + b->rows * b->n + b->n, b->g2, b->out, b->w32, b->rows, b->n, 1e-5f) == TW_OK);
    float *r = o3;
    tw_cpu_swiglu_bwd_f32(r, r + b->ne, b->out2, b->out3, b->out, b->ne);
    r += 2 * b->ne;
    tw_cpu_gelu_bwd_f32(r, b->out2, b->out3, b->ne, TW_GELU_ERF);
    r += b->ne;
    memcpy(r, b->out3, (size_t)b->ne * 4); /* adamw state: p = out3, g = out2, m = v = |out|/10 */
    for (int64_t i = 0; i < b->ne; i++) r[b->ne + i] = b->out[i] * 0.1f, r[2 * b->ne + i] = fabsf(b->out[i]) * 0.1f;
    tw_cpu_adamw_f32(r, b->out2, r + b->ne, r + 2 * b->ne, b->ne, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 3);
    r += 3 * b->ne;
    memset(r, 0, (size_t)(64 * b->n) * 4);
    tw_cpu_embed_bwd_f32(r, b->g2, b->ids, b->rows, b->n);
    r += 64 * b->n;
    memset(r + b->n_tok + b->n_tok * b->d, 0, (size_t)(b->V * b->d) * 4);
    TW_ASSERT(tw_cpu_xent(r, r + b->n_tok, r + b->n_tok + b->n_tok * b->d, b->x, b->wq, TW_DTYPE_Q4_1,
                          b->tgt, b->n_tok, b->d, b->V, 0.01f) == TW_OK);
    tw_cpu_rope_bwd_f32(o3, o3, b->ids, 64, 4, b->n / 4, b->n / 4, TW_ROPE_NEOX, 10000.0f, 1.0f, NULL);
}

static void test_thread_bits(void) {
    tbuf b = {.m = 96, .k = 192, .n_out = 200, .rows = 64, .n = 576, .ne = 150001, .V = 200,
              .d = 192, .n_tok = 96};
    b.dy = kin_floats(b.m * b.n_out), b.x = kin_floats(b.m * b.k), b.w32 = kin_floats(b.n);
    b.g2 = kin_floats(b.rows * b.n), b.out = kin_floats(b.ne), b.out2 = kin_floats(b.ne);
    b.out3 = kin_floats(b.ne);
    b.wq = kin_quant_rows(&rng, TW_DTYPE_Q4_1, b.n_out, b.k, 1.0f);
    b.ids = tw_malloc(64 * 4), b.tgt = tw_malloc(96 * 4);
    fill(b.dy, b.m * b.n_out, 1), fill(b.x, b.m * b.k, 1), fill(b.w32, b.n, 1);
    fill(b.g2, b.rows * b.n, 1), fill(b.out, b.ne, 1), fill(b.out2, b.ne, 1), fill(b.out3, b.ne, 3);
    for (int i = 0; i < 64; i++) b.ids[i] = (int32_t)(kin_next(&rng) % 64);
    for (int i = 0; i < 96; i++) b.tgt[i] = i % 7 == 0 ? -1 : (int32_t)(kin_next(&rng) % 200);
    size_t n1 = (size_t)(b.m * b.k + b.n_out * b.k + b.n_out), n2 = (size_t)(2 * b.rows * b.n + 4 * b.n);
    size_t n3 = (size_t)(6 * b.ne + 64 * b.n + b.n_tok + b.n_tok * b.d + b.V * b.d);
    float *r1 = kin_floats((int64_t)n1), *r2 = kin_floats((int64_t)n2), *r3 = kin_floats((int64_t)n3);
    float *s1 = kin_floats((int64_t)n1), *s2 = kin_floats((int64_t)n2), *s3 = kin_floats((int64_t)n3);
    int saved = tw_threads_get();
    tw_threads_set(1);
    run_all(&b, r1, r2, r3);
    for (int nt = 2; nt <= 3; nt++) {
        tw_threads_set(nt);
        run_all(&b, s1, s2, s3);
        CHECK(memcmp(r1, s1, n1 * 4) == 0);
        CHECK(memcmp(r2, s2, n2 * 4) == 0);
        CHECK(memcmp(r3, s3, n3 * 4) == 0);
    }
    tw_threads_set(saved);
    tw_free(b.dy), tw_free(b.x), tw_free(b.w32), tw_free(b.g2), tw_free(b.out), tw_free(b.out2);
    tw_free(b.out3), tw_free(b.wq), tw_free(b.ids), tw_free(b.tgt);
    tw_free(r1), tw_free(r2), tw_free(r3), tw_free(s1), tw_free(s2), tw_free(s3);
}

/* ---- through the backend ---------------------------------------------------------------------*/

static void expect_arg(tw_status st, const char *needle) {
    CHECK_EQ_INT(st, TW_ERR_ARG);
    if (!strstr(tw_errmsg(), needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", tw_errmsg(), needle);
        CHECK(0);
    }
}

static void test_backend_ops(void) {
    tw_backend *be = NULL;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    if (!be) return;
    for (int op = TW_OP_MATMUL_DX; op <= TW_OP_ADAMW; op++) CHECK(tw_backend_supports(be, (tw_op)op));
    int64_t m = 5, k = 64, n_out = 9;
    tw_buffer *buf = NULL;
    CHECK(tw_buffer_alloc(be, 1 << 16, &buf) == TW_OK);
    float dy[45], x[320], dx[320], dx2[320], dw[576], dw2[576], db[9], db2[9];
    fill(dy, 45, 1), fill(x, 320, 1);
    uint8_t *w = kin_quant_rows(&rng, TW_DTYPE_Q8_0, n_out, k, 1.0f);
    size_t wb = tw_dtype_row_bytes(TW_DTYPE_Q8_0, k) * (size_t)n_out;
    /* layout: dy @0, x @256, w @2048, dx @4096, dw @8192, db @12288, ids/targets @12800 */
    tw_buffer_upload(buf, 0, dy, sizeof dy);
    tw_buffer_upload(buf, 256, x, sizeof x);
    tw_buffer_upload(buf, 2048, w, wb);
    CHECK(tw_op_matmul_dx(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 0), tw_ref_at(buf, 2048),
                          TW_DTYPE_Q8_0, m, k, n_out, 0) == TW_OK);
    tw_buffer_download(buf, 4096, dx, sizeof dx);
    CHECK(tw_cpu_matmul_dx(dx2, dy, w, TW_DTYPE_Q8_0, m, k, n_out, 0) == TW_OK);
    CHECK(memcmp(dx, dx2, sizeof dx) == 0);
    CHECK(tw_op_matmul_dw(be, tw_ref_at(buf, 8192), tw_ref_at(buf, 12288), tw_ref_at(buf, 0),
                          tw_ref_at(buf, 256), m, k, n_out, 0) == TW_OK);
    tw_buffer_download(buf, 8192, dw, sizeof dw);
    tw_buffer_download(buf, 12288, db, sizeof db);
    CHECK(tw_cpu_matmul_dw(dw2, db2, dy, x, m, k, n_out, 0) == TW_OK);
    CHECK(memcmp(dw, dw2, sizeof dw) == 0 && memcmp(db, db2, sizeof db) == 0);
    /* m = 0 and overwrite: zeros */
    CHECK(tw_op_matmul_dw(be, tw_ref_at(buf, 8192), tw_ref_none(), tw_ref_at(buf, 0),
                          tw_ref_at(buf, 256), 0, k, n_out, 0) == TW_OK);
    tw_buffer_download(buf, 8192, dw, sizeof dw);
    CHECK(dw[0] == 0 && dw[575] == 0);

    /* argument errors name the argument */
    expect_arg(tw_op_matmul_dx(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 0), tw_ref_at(buf, 2048),
                               TW_DTYPE_Q8_0, m, k, n_out, 2), "accumulate");
    expect_arg(tw_op_matmul_dx(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 0), tw_ref_at(buf, 2048),
                               TW_DTYPE_Q8_0, m, 48, n_out, 0), "block size");
    expect_arg(tw_op_matmul_dx(be, tw_ref_at(buf, 0), tw_ref_at(buf, 0), tw_ref_at(buf, 2048),
                               TW_DTYPE_Q8_0, m, k, n_out, 0), "overlaps");
    expect_arg(tw_op_matmul_dw(be, tw_ref_at(buf, 8192), tw_ref_at(buf, 8192 + 16),
                               tw_ref_at(buf, 0), tw_ref_at(buf, 256), m, k, n_out, 0), "overlaps");
    expect_arg(tw_op_matmul_dw(be, tw_ref_at(buf, 65000), tw_ref_none(), tw_ref_at(buf, 0),
                               tw_ref_at(buf, 256), m, k, n_out, 0), "dw");
    CHECK_EQ_INT(tw_op_matmul_dx(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 0), tw_ref_at(buf, 2048),
                                 TW_DTYPE_Q8_K, m, 256, 1, 0), TW_ERR_UNSUPPORTED);
    /* embed: an id outside the table; xent: a target past the vocabulary */
    int32_t ids[3] = {0, 8, 9};
    tw_buffer_upload(buf, 12800, ids, sizeof ids);
    expect_arg(tw_op_embed_bwd(be, tw_ref_at(buf, 8192), tw_ref_at(buf, 0), tw_ref_at(buf, 12800),
                               9, 3, 4), "ids[2] = 9");
    CHECK(tw_op_embed_bwd(be, tw_ref_at(buf, 8192), tw_ref_at(buf, 0), tw_ref_at(buf, 12800), 10,
                          3, 4) == TW_OK);
    expect_arg(tw_op_xent(be, tw_ref_at(buf, 12288), tw_ref_at(buf, 4096), tw_ref_none(),
                          tw_ref_at(buf, 256), tw_ref_at(buf, 2048), TW_DTYPE_Q8_0,
                          tw_ref_at(buf, 12800), 3, k, n_out, 1.0f), "target[2] = 9");
    ids[2] = -1;
    tw_buffer_upload(buf, 12800, ids, sizeof ids);
    CHECK(tw_op_xent(be, tw_ref_at(buf, 12288), tw_ref_at(buf, 4096), tw_ref_none(),
                     tw_ref_at(buf, 256), tw_ref_at(buf, 2048), TW_DTYPE_Q8_0,
                     tw_ref_at(buf, 12800), 3, k, n_out, 0.5f) == TW_OK);
    float l[3], lc[3], dh[192], dhc[192];
    tw_buffer_download(buf, 12288, l, sizeof l);
    tw_buffer_download(buf, 4096, dh, sizeof dh);
    CHECK(tw_cpu_xent(lc, dhc, NULL, x, w, TW_DTYPE_Q8_0, ids, 3, k, n_out, 0.5f) == TW_OK);
    CHECK(memcmp(l, lc, sizeof l) == 0 && memcmp(dh, dhc, sizeof dh) == 0 && l[2] == 0);
    expect_arg(tw_op_xent(be, tw_ref_at(buf, 12288), tw_ref_at(buf, 256), tw_ref_none(),
                          tw_ref_at(buf, 256), tw_ref_at(buf, 2048), TW_DTYPE_Q8_0,
                          tw_ref_at(buf, 12800), 3, k, n_out, 1.0f), "overlaps");
    /* adamw: hyper-parameters */
    expect_arg(tw_op_adamw(be, tw_ref_at(buf, 0), tw_ref_at(buf, 256), tw_ref_at(buf, 4096),
                           tw_ref_at(buf, 8192), 16, 1e-3f, 1.0f, 0.999f, 1e-8f, 0, 1, 1), "b1");
    expect_arg(tw_op_adamw(be, tw_ref_at(buf, 0), tw_ref_at(buf, 256), tw_ref_at(buf, 4096),
                           tw_ref_at(buf, 8192), 16, 1e-3f, 0.9f, 0.999f, 0.0f, 0, 1, 1), "eps");
    expect_arg(tw_op_adamw(be, tw_ref_at(buf, 0), tw_ref_at(buf, 256), tw_ref_at(buf, 4096),
                           tw_ref_at(buf, 8192), 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, 0), "step");
    expect_arg(tw_op_adamw(be, tw_ref_at(buf, 0), tw_ref_at(buf, 0), tw_ref_at(buf, 4096),
                           tw_ref_at(buf, 8192), 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, 1), "overlaps");
    CHECK(tw_op_adamw(be, tw_ref_at(buf, 0), tw_ref_at(buf, 256), tw_ref_at(buf, 4096),
                      tw_ref_at(buf, 8192), 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, 1) == TW_OK);
    /* norms, rope, swiglu, gelu: a valid call each, and one error */
    CHECK(tw_op_rmsnorm_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 12288), tw_ref_at(buf, 0),
                            tw_ref_at(buf, 256), tw_ref_at(buf, 2048), 2, 16, 1e-5f) == TW_OK);
    expect_arg(tw_op_rmsnorm_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 12288), tw_ref_at(buf, 0),
                                 tw_ref_at(buf, 256), tw_ref_none(), 2, 16, 1e-5f), "w");
    CHECK(tw_op_layernorm_bwd(be, tw_ref_at(buf, 4096), tw_ref_none(), tw_ref_at(buf, 12288),
                              tw_ref_at(buf, 0), tw_ref_at(buf, 256), tw_ref_none(), 2, 16, 0) == TW_OK);
    expect_arg(tw_op_layernorm_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 12288),
                                   tw_ref_at(buf, 12288), tw_ref_at(buf, 0), tw_ref_at(buf, 256),
                                   tw_ref_none(), 2, 16, 0), "overlaps");
    int32_t pos[2] = {3, -1};
    tw_buffer_upload(buf, 12800, pos, sizeof pos);
    expect_arg(tw_op_rope_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 4096), tw_ref_at(buf, 12800),
                              2, 2, 8, 8, TW_ROPE_NORM, 10000.0f, 1.0f, tw_ref_none()), "pos[1]");
    expect_arg(tw_op_rope_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 4096), tw_ref_at(buf, 12800),
                              2, 2, 8, 7, TW_ROPE_NORM, 10000.0f, 1.0f, tw_ref_none()), "odd");
    CHECK(tw_op_swiglu_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 8192), tw_ref_at(buf, 0),
                           tw_ref_at(buf, 256), tw_ref_at(buf, 2048), 2, 8) == TW_OK);
    expect_arg(tw_op_swiglu_bwd(be, tw_ref_at(buf, 4096), tw_ref_at(buf, 4096), tw_ref_at(buf, 0),
                                tw_ref_at(buf, 256), tw_ref_at(buf, 2048), 2, 8), "overlaps");
    CHECK(tw_op_gelu_bwd(be, tw_ref_at(buf, 0), tw_ref_at(buf, 0), tw_ref_at(buf, 256), 40,
                         TW_GELU_TANH) == TW_OK); /* dx aliasing dy */
    expect_arg(tw_op_gelu_bwd(be, tw_ref_at(buf, 256), tw_ref_at(buf, 0), tw_ref_at(buf, 256), 40,
                              TW_GELU_TANH), "overlaps");
    tw_free(w);
    tw_buffer_free(buf);
    tw_backend_free(be);
}

int main(void) {
    RUN(test_fd_matmul);
    RUN(test_fd_norms);
    RUN(test_fd_rmsnorm_w);
    RUN(test_fd_rope);
    RUN(test_fd_elementwise);
    RUN(test_fd_embed);
    RUN(test_fd_xent);
    RUN(test_adamw_hand);
    RUN(test_matmul_dx_vs_ref);
    RUN(test_matmul_dw_vs_ref);
    RUN(test_norms_vs_ref);
    RUN(test_rope_bwd_vs_ref);
    RUN(test_elementwise_vs_ref);
    RUN(test_embed_vs_ref);
    RUN(test_xent_vs_ref);
    RUN(test_adamw_vs_ref);
    RUN(test_thread_bits);
    RUN(test_backend_ops);
    TEST_DONE();
}
