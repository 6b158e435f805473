/* test_kernels_attn_seg.c: segment attention (kernels.h, TW_OP_ATTN_SEG and its backward).
 *
 *   - the reference against values worked out by hand, and the reference backward against
 *     central finite differences of an fp64 forward written here (tiny shapes, GQA, odd
 *     head_dim, causal and not);
 *   - the optimized kernels (portable C, AVX2+FMA when this CPU has it, the dispatched one, and
 *     the op through a CPU backend handle) against the reference on seeded random inputs that
 *     are never zero: segments of lengths 1, 7, 33 and 130 packed in one batch, head_dim 64,
 *     32 and 13, GQA 3:1 and plain heads, causal and bidirectional, under the bounds below;
 *   - the same bits for 1, 2 and 3 threads, and for a segment alone or packed with others;
 *   - argument checks: a decreasing seg, heads not a multiple of kv heads, scale, causal,
 *     overlapping outputs answer TW_ERR_ARG naming the argument.
 * ATTN_VERBOSE=1 prints every error / bound ratio (about 1e-3 .. 5e-2 on an AVX2 machine).
 */
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

#include <float.h>

static kin_rng rng = {0x5EED5EEDull};

#define U 0x1.0p-24 /* fp32 unit roundoff */

/* ---- a packed batch ------------------------------------------------------------------------*/

typedef struct {
    tw_attn_seg_shape s;
    int32_t *seg;                   /* (n_tok) */
    float *q, *k, *v, *dout;        /* inputs */
    int64_t nq, nkv, nl;            /* elements of q-, k-shaped tensors and of lse */
    int64_t max_len;                /* longest segment */
} batch;

static void batch_make(batch *b, const int *lens, int n_seg, int64_t n_head, int64_t n_kv,
                       int64_t hd, int causal, float in_scale) {
    memset(b, 0, sizeof *b);
    int64_t n = 0;
    for (int i = 0; i < n_seg; i++) {
        n += lens[i];
        if (lens[i] > b->max_len) b->max_len = lens[i];
    }
    b->s = (tw_attn_seg_shape){.n_tok = n, .n_head = n_head, .n_kv_head = n_kv, .head_dim = hd,
                               .scale = (float)(1.0 / sqrt((double)hd)), .causal = causal};
    b->nq = n * n_head * hd;
    b->nkv = n * n_kv * hd;
    b->nl = n * n_head;
    b->seg = tw_malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    TW_ASSERT(b->seg);
    for (int i = 0, t = 0; i < n_seg; i++)
        for (int j = 0; j < lens[i]; j++) b->seg[t++] = 3 * i - 5; /* any non-decreasing ids */
    b->q = kin_floats(b->nq);
    b->k = kin_floats(b->nkv);
    b->v = kin_floats(b->nkv);
    b->dout = kin_floats(b->nq);
    kin_fill(&rng, b->q, b->nq, in_scale);
    kin_fill(&rng, b->k, b->nkv, in_scale);
    kin_fill(&rng, b->v, b->nkv, 1.0f);
    kin_fill(&rng, b->dout, b->nq, 1.0f);
}

static void batch_free(batch *b) {
    tw_free(b->seg);
    tw_free(b->q);
    tw_free(b->k);
    tw_free(b->v);
    tw_free(b->dout);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* max |y - ref| / scale; infinity on a NaN. */
static double max_err(const float *y, const float *ref, int64_t n, double scale) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - (double)ref[i]);
        if (isnan(y[i]) || isnan(e)) return INFINITY;
        m = fmax(m, e);
    }
    return m / scale;
}

/* ---- error bounds --------------------------------------------------------------------------
 *
 * Forward (u = 2^-24, first order). A score is an fp32 sum of head_dim products (FMA chains in
 * the AVX2 kernel, plain loops in the portable one) times scale: its error is at most
 * hd * u * sigma with sigma = scale * hd * max|q| * max|k| (the largest sum of |products|),
 * and the rescaling by scale adds u |s|. Every softmax weight e^(s - m) / l inherits twice that
 * error relatively (once in s, once through the maximum and l), plus 2 ulp for tw_exp8 (1 for
 * libm), plus the sum l of up to L terms (L u relatively) and its online rescalings (one
 * rounding per key tile, at most L/128 + 1). out = sum_u w_u v_u is a convex combination: its
 * error is (relative weight error + L u for its own sum + 1 for the division) * max|v|. Hence
 *   |out - ref| <= (2 hd sigma + 2 sigma + 2L + 16) u * max|v|,
 * and for lse = m + log l: (hd sigma + sigma + L + 8) u + u |lse|. These are worst cases (the
 * data lands near their square roots) but a key too many or too few moves out by about
 * |v| / L, far outside them.
 *
 * Backward, per gradient entry, against M = the sum of the magnitudes of its terms (computed
 * in fp64 by grad_mags below; the sums cancel, so an entry-wise relative error means nothing):
 *   dV[u,i] = sum P |dO[t,i]|,  dK[u,i] = scale sum P (A_dP + A_D) |q[t,i]|,
 *   dQ[t,i] = scale sum P (A_dP + A_D) |k[u,i]|,
 * over the (head, query, key) pairs of the entry, with A_dP = sum_d |dO[t,d] v[u,d]| and
 * A_D = sum_d |dO[t,d] out[t,d]|. Each term carries P's relative error (the forward's weight
 * error, 2 hd sigma + 2 sigma + 16 ulp with the saved lse in place of m + log l), dP and D the
 * error of a sum of head_dim products (hd u relative to A_dP, A_D), and the entry is a sum of
 * up to group * L terms:
 *   |g - ref| <= (2 hd sigma + 2 sigma + hd + group L + 24) u * M. */
static double fwd_tol(const batch *b) {
    double hd = (double)b->s.head_dim, L = (double)b->max_len;
    double sigma = b->s.scale * hd * max_abs(b->q, b->nq) * max_abs(b->k, b->nkv);
    return (2 * hd * sigma + 2 * sigma + 2 * L + 16) * U;
}

static double lse_tol(const batch *b, const float *lse_ref) {
    double hd = (double)b->s.head_dim, L = (double)b->max_len;
    double sigma = b->s.scale * hd * max_abs(b->q, b->nq) * max_abs(b->k, b->nkv);
    return (hd * sigma + sigma + L + 8) * U + U * max_abs(lse_ref, b->nl);
}

static double bwd_tol(const batch *b) {
    double hd = (double)b->s.head_dim, L = (double)b->max_len;
    double group = (double)(b->s.n_head / b->s.n_kv_head);
    double sigma = b->s.scale * hd * max_abs(b->q, b->nq) * max_abs(b->k, b->nkv);
    return (2 * hd * sigma + 2 * sigma + hd + group * L + 24) * U;
}

/* M of every gradient entry (see above), from the reference's out and lse. mq: (nq), mk, mv:
 * (nkv), zeroed here. */
static void grad_mags(const batch *b, const float *out, const float *lse, double *mq, double *mk,
                      double *mv) {
    const tw_attn_seg_shape *s = &b->s;
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head;
    memset(mq, 0, (size_t)b->nq * sizeof(double));
    memset(mk, 0, (size_t)b->nkv * sizeof(double));
    memset(mv, 0, (size_t)b->nkv * sizeof(double));
    for (int64_t t = 0; t < s->n_tok; t++) {
        int64_t u0 = t, u1 = t + 1;
        while (u0 > 0 && b->seg[u0 - 1] == b->seg[t]) u0--;
        if (!s->causal)
            while (u1 < s->n_tok && b->seg[u1] == b->seg[t]) u1++;
        for (int64_t h = 0; h < s->n_head; h++) {
            const int64_t kh = h / group, qo = (t * s->n_head + h) * d;
            double ad = 0;
            for (int64_t i = 0; i < d; i++) ad += fabs((double)b->dout[qo + i] * out[qo + i]);
            for (int64_t u = u0; u < u1; u++) {
                const int64_t ko = (u * s->n_kv_head + kh) * d;
                double dot = 0, adp = 0;
                for (int64_t i = 0; i < d; i++) {
                    dot += (double)b->q[qo + i] * b->k[ko + i];
                    adp += fabs((double)b->dout[qo + i] * b->v[ko + i]);
                }
                double p = exp(dot * s->scale - lse[t * s->n_head + h]);
                double w = s->scale * p * (adp + ad);
                for (int64_t i = 0; i < d; i++) {
                    mv[ko + i] += p * fabs((double)b->dout[qo + i]);
                    mk[ko + i] += w * fabs((double)b->q[qo + i]);
                    mq[qo + i] += w * fabs((double)b->k[ko + i]);
                }
            }
        }
    }
}

/* max |y - ref| / mag (elementwise); infinity on a NaN. A zero magnitude needs y == ref. */
static double mag_err(const float *y, const float *ref, const double *mag, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - (double)ref[i]);
        if (isnan(y[i]) || isnan(e)) return INFINITY;
        if (e > 0) m = fmax(m, mag[i] > 0 ? e / mag[i] : INFINITY);
    }
    return m;
}

/* ---- the reference against hand-worked values ----------------------------------------------*/

static void test_reference_values(void) {
    /* One head, head_dim 1, two segments: {t0, t1} and {t2}. scale 1.
     * q = (1, 2, 3), k = (0, ln 3, 5), v = (10, 20, 30).
     * t0 bidirectional sees k0, k1: scores (0, ln 3) -> weights (1/4, 3/4) -> out 17.5,
     *   lse = log(1 + 3) = ln 4. Causal: only k0 -> out 10, lse 0.
     * t1 (q = 2): scores (0, 2 ln 3) -> weights (1/10, 9/10) -> out 19, lse ln 10 (both modes).
     * t2 alone: out 30, lse 15 (score 3 * 5). */
    float q[3] = {1, 2, 3}, k[3] = {0, (float)log(3.0), 5}, v[3] = {10, 20, 30}, out[3], lse[3];
    int32_t seg[3] = {0, 0, 1};
    tw_attn_seg_shape s = {.n_tok = 3, .n_head = 1, .n_kv_head = 1, .head_dim = 1, .scale = 1,
                           .causal = 0};
    tw_ref_attn_seg_f32(out, lse, q, k, v, seg, &s);
    CHECK_NEAR(out[0], 17.5, 1e-5);
    CHECK_NEAR(lse[0], log(4.0), 1e-6);
    CHECK_NEAR(out[1], 19.0, 1e-5);
    CHECK_NEAR(lse[1], log(10.0), 1e-6);
    CHECK_NEAR(out[2], 30.0, 0);
    CHECK_NEAR(lse[2], 15.0, 0);
    s.causal = 1;
    tw_ref_attn_seg_f32(out, lse, q, k, v, seg, &s);
    CHECK_NEAR(out[0], 10.0, 0);
    CHECK_NEAR(lse[0], 0.0, 0);
    CHECK_NEAR(out[1], 19.0, 1e-5);
    CHECK_NEAR(out[2], 30.0, 0);

    /* Backward of t0 (bidirectional) with dout = 1: out = w0 v0 + w1 v1, w = softmax(q k).
     * d out / d v1 = w1 = 3/4 (dv1 collects it from t0 and 9/10 from t1 with dout[1] = 0: no).
     * d out / d q = sum_u w_u (v_u - out) k_u = 3/4 (20 - 17.5) ln 3. */
    float dout[3] = {1, 0, 0}, dq[3], dk[3], dv[3];
    s.causal = 0;
    tw_ref_attn_seg_f32(out, lse, q, k, v, seg, &s);
    tw_ref_attn_seg_bwd_f32(dq, dk, dv, dout, out, lse, q, k, v, seg, &s);
    CHECK_NEAR(dv[1], 0.75, 1e-6);
    CHECK_NEAR(dv[0], 0.25, 1e-6);
    CHECK_NEAR(dv[2], 0.0, 0);
    CHECK_NEAR(dq[0], 0.75 * 2.5 * log(3.0), 1e-5);
    CHECK_NEAR(dq[1], 0.0, 0);
}

/* ---- the reference backward against finite differences --------------------------------------*/

/* L = sum dout * attention(q, k, v), all fp64 (the op's definition, written out again). */
static double loss_fp64(const double *q, const double *k, const double *v, const float *dout,
                        const int32_t *seg, const tw_attn_seg_shape *s) {
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head;
    double L = 0;
    for (int64_t t = 0; t < s->n_tok; t++) {
        int64_t u0 = t, u1 = t + 1;
        while (u0 > 0 && seg[u0 - 1] == seg[t]) u0--;
        if (!s->causal)
            while (u1 < s->n_tok && seg[u1] == seg[t]) u1++;
        for (int64_t h = 0; h < s->n_head; h++) {
            int64_t kh = h / group;
            double sc[64], mx = -INFINITY, sum = 0;
            TW_ASSERT(u1 - u0 <= 64);
            for (int64_t u = u0; u < u1; u++) {
                double dot = 0;
                for (int64_t i = 0; i < d; i++)
                    dot += q[(t * s->n_head + h) * d + i] * k[(u * s->n_kv_head + kh) * d + i];
                sc[u - u0] = dot * s->scale;
                mx = fmax(mx, sc[u - u0]);
            }
            for (int64_t u = u0; u < u1; u++) sum += exp(sc[u - u0] - mx);
            for (int64_t u = u0; u < u1; u++) {
                double w = exp(sc[u - u0] - mx) / sum;
                for (int64_t i = 0; i < d; i++)
                    L += dout[(t * s->n_head + h) * d + i] * w * v[(u * s->n_kv_head + kh) * d + i];
            }
        }
    }
    return L;
}

/* dL/dx[i] by central differences of loss_fp64 in x (one of q, k, v, as doubles), against
 * g[i]; step h = 1e-4: truncation ~h^2 |L'''| ~ 1e-8 here, cancellation ~1e-16 / h. */
static double fd_check(double *x, int64_t n, const float *g, const double *qd, const double *kd,
                       const double *vd, const float *dout, const int32_t *seg,
                       const tw_attn_seg_shape *s) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double h = 1e-4, x0 = x[i];
        x[i] = x0 + h;
        double lp = loss_fp64(qd, kd, vd, dout, seg, s);
        x[i] = x0 - h;
        double lm = loss_fp64(qd, kd, vd, dout, seg, s);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h);
        double e = fabs(fd - (double)g[i]) / fmax(1.0, fabs(fd));
        if (isnan(e)) return INFINITY;
        worst = fmax(worst, e);
    }
    return worst;
}

static void test_backward_finite_differences(void) {
    static const int lens[] = {4, 1, 3};
    for (int causal = 0; causal <= 1; causal++) {
        for (int cfg = 0; cfg < 2; cfg++) {
            int64_t nh = cfg ? 3 : 2, nkv = cfg ? 1 : 2, hd = cfg ? 3 : 4;
            batch b;
            batch_make(&b, lens, 3, nh, nkv, hd, causal, 1.0f);
            float *out = kin_floats(b.nq), *lse = kin_floats(b.nl), *dq = kin_floats(b.nq);
            float *dk = kin_floats(b.nkv), *dv = kin_floats(b.nkv);
            double *qd = tw_malloc((size_t)b.nq * sizeof(double));
            double *kd = tw_malloc((size_t)b.nkv * sizeof(double));
            double *vd = tw_malloc((size_t)b.nkv * sizeof(double));
            TW_ASSERT(qd && kd && vd);
            for (int64_t i = 0; i < b.nq; i++) qd[i] = b.q[i];
            for (int64_t i = 0; i < b.nkv; i++) kd[i] = b.k[i], vd[i] = b.v[i];
            tw_ref_attn_seg_f32(out, lse, b.q, b.k, b.v, b.seg, &b.s);
            /* The reference reads out and lse rounded to fp32 (relative 2^-24): gradients are
             * then within ~1e-6 of the exact ones; the finite differences within ~1e-8. */
            tw_ref_attn_seg_bwd_f32(dq, dk, dv, b.dout, out, lse, b.q, b.k, b.v, b.seg, &b.s);
            double eq = fd_check(qd, b.nq, dq, qd, kd, vd, b.dout, b.seg, &b.s);
            double ek = fd_check(kd, b.nkv, dk, qd, kd, vd, b.dout, b.seg, &b.s);
            double ev = fd_check(vd, b.nkv, dv, qd, kd, vd, b.dout, b.seg, &b.s);
            if (eq > 1e-5 || ek > 1e-5 || ev > 1e-5)
                fprintf(stderr, "  fd causal=%d heads=%lld/%lld hd=%lld: dq %.3g dk %.3g dv %.3g\n",
                        causal, (long long)nh, (long long)nkv, (long long)hd, eq, ek, ev);
            CHECK(eq <= 1e-5);
            CHECK(ek <= 1e-5);
            CHECK(ev <= 1e-5);
            /* and the optimized kernel (fp32 throughout: within ~1e-5 on these tiny shapes) */
            tw_cpu_attn_seg_bwd_f32(dq, dk, dv, b.dout, out, lse, b.q, b.k, b.v, b.seg, &b.s);
            eq = fd_check(qd, b.nq, dq, qd, kd, vd, b.dout, b.seg, &b.s);
            ek = fd_check(kd, b.nkv, dk, qd, kd, vd, b.dout, b.seg, &b.s);
            ev = fd_check(vd, b.nkv, dv, qd, kd, vd, b.dout, b.seg, &b.s);
            CHECK(eq <= 1e-4);
            CHECK(ek <= 1e-4);
            CHECK(ev <= 1e-4);
            tw_free(qd);
            tw_free(kd);
            tw_free(vd);
            tw_free(out);
            tw_free(lse);
            tw_free(dq);
            tw_free(dk);
            tw_free(dv);
            batch_free(&b);
        }
    }
}

/* ---- optimized against the reference ---------------------------------------------------------*/

typedef struct {
    int64_t n_head, n_kv, hd;
} heads_cfg;

static const heads_cfg heads_cfgs[] = {{6, 2, 64}, {4, 4, 32}, {3, 1, 13}, {2, 2, 64}};
static const int mixed_lens[] = {1, 7, 33, 130, 7};

/* Runs the variant (0 portable, 1 AVX2, 2 dispatched) forward and backward on b and compares
 * with the reference; returns 0 when the variant cannot run here. */
static int check_variant(const batch *b, int variant, const float *out_ref, const float *lse_ref,
                         const float *dq_ref, const float *dk_ref, const float *dv_ref) {
    if (variant == 1 && !tw_cpu_has_avx2_fma()) return 0;
    float *out = kin_floats(b->nq), *lse = kin_floats(b->nl), *dq = kin_floats(b->nq);
    float *dk = kin_floats(b->nkv), *dv = kin_floats(b->nkv);
    tw_status st = variant == 2
                       ? tw_cpu_attn_seg_f32(out, lse, b->q, b->k, b->v, b->seg, &b->s)
                       : tw_cpu_attn_seg_f32_variant(out, lse, b->q, b->k, b->v, b->seg, &b->s,
                                                     variant == 0);
    CHECK_EQ_INT(st, TW_OK);
    double vmax = max_abs(b->v, b->nkv);
    double eo = max_err(out, out_ref, b->nq, vmax) / fwd_tol(b);
    double el = max_err(lse, lse_ref, b->nl, 1.0) / lse_tol(b, lse_ref);
    /* The backward from the reference's out and lse, so that it is checked on its own. */
    st = variant == 2 ? tw_cpu_attn_seg_bwd_f32(dq, dk, dv, b->dout, out_ref, lse_ref, b->q, b->k,
                                                b->v, b->seg, &b->s)
                      : tw_cpu_attn_seg_bwd_f32_variant(dq, dk, dv, b->dout, out_ref, lse_ref,
                                                        b->q, b->k, b->v, b->seg, &b->s,
                                                        variant == 0);
    CHECK_EQ_INT(st, TW_OK);
    double bt = bwd_tol(b);
    double *mq = tw_malloc((size_t)b->nq * sizeof(double));
    double *mk = tw_malloc((size_t)b->nkv * sizeof(double));
    double *mv = tw_malloc((size_t)b->nkv * sizeof(double));
    TW_ASSERT(mq && mk && mv);
    grad_mags(b, out_ref, lse_ref, mq, mk, mv);
    double eq = mag_err(dq, dq_ref, mq, b->nq) / bt;
    double ek = mag_err(dk, dk_ref, mk, b->nkv) / bt;
    double ev = mag_err(dv, dv_ref, mv, b->nkv) / bt;
    tw_free(mq);
    tw_free(mk);
    tw_free(mv);
    if (getenv("ATTN_VERBOSE") || eo > 1 || el > 1 || eq > 1 || ek > 1 || ev > 1)
        fprintf(stderr, "  variant %d heads %lld/%lld hd %lld causal %d: err/bound out %.3g "
                "lse %.3g dq %.3g dk %.3g dv %.3g\n", variant, (long long)b->s.n_head,
                (long long)b->s.n_kv_head, (long long)b->s.head_dim, b->s.causal, eo, el, eq,
                ek, ev);
    CHECK(eo <= 1);
    CHECK(el <= 1);
    CHECK(eq <= 1);
    CHECK(ek <= 1);
    CHECK(ev <= 1);
    tw_free(out);
    tw_free(lse);
    tw_free(dq);
    tw_free(dk);
    tw_free(dv);
    return 1;
}

static void test_optimized_vs_reference(void) {
    int ran_avx2 = 0;
    for (size_t c = 0; c < sizeof heads_cfgs / sizeof heads_cfgs[0]; c++)
        for (int causal = 0; causal <= 1; causal++) {
            batch b;
            const heads_cfg *h = &heads_cfgs[c];
            batch_make(&b, mixed_lens, 5, h->n_head, h->n_kv, h->hd, causal, 0.5f);
            float *out = kin_floats(b.nq), *lse = kin_floats(b.nl), *dq = kin_floats(b.nq);
            float *dk = kin_floats(b.nkv), *dv = kin_floats(b.nkv);
            tw_ref_attn_seg_f32(out, lse, b.q, b.k, b.v, b.seg, &b.s);
            tw_ref_attn_seg_bwd_f32(dq, dk, dv, b.dout, out, lse, b.q, b.k, b.v, b.seg, &b.s);
            for (int variant = 0; variant < 3; variant++) {
                int ran = check_variant(&b, variant, out, lse, dq, dk, dv);
                if (variant == 1) ran_avx2 |= ran;
            }
            tw_free(out);
            tw_free(lse);
            tw_free(dq);
            tw_free(dk);
            tw_free(dv);
            batch_free(&b);
        }
    if (!ran_avx2) fprintf(stderr, "  (no AVX2+FMA here: the AVX2 variant was not checked)\n");
}

/* A long segment (several key tiles and query chunks: 300 tokens) and a single token: the
 * online rescaling across tiles, and chunks whose first tile holds none of their keys. */
static void test_long_segment(void) {
    static const int lens[] = {300, 1};
    for (int causal = 0; causal <= 1; causal++) {
        batch b;
        batch_make(&b, lens, 2, 2, 1, 24, causal, 1.0f);
        float *out = kin_floats(b.nq), *lse = kin_floats(b.nl), *dq = kin_floats(b.nq);
        float *dk = kin_floats(b.nkv), *dv = kin_floats(b.nkv);
        tw_ref_attn_seg_f32(out, lse, b.q, b.k, b.v, b.seg, &b.s);
        tw_ref_attn_seg_bwd_f32(dq, dk, dv, b.dout, out, lse, b.q, b.k, b.v, b.seg, &b.s);
        for (int variant = 0; variant < 3; variant++) check_variant(&b, variant, out, lse, dq, dk, dv);
        tw_free(out);
        tw_free(lse);
        tw_free(dq);
        tw_free(dk);
        tw_free(dv);
        batch_free(&b);
    }
}

/* ---- bit identity ----------------------------------------------------------------------------*/

static void run_all(const batch *b, float *out, float *lse, float *dq, float *dk, float *dv) {
    CHECK_EQ_INT(tw_cpu_attn_seg_f32(out, lse, b->q, b->k, b->v, b->seg, &b->s), TW_OK);
    CHECK_EQ_INT(tw_cpu_attn_seg_bwd_f32(dq, dk, dv, b->dout, out, lse, b->q, b->k, b->v, b->seg,
                                         &b->s), TW_OK);
}

static void test_thread_count_bits(void) {
    int saved = tw_threads_get();
    for (int causal = 0; causal <= 1; causal++) {
        batch b;
        batch_make(&b, mixed_lens, 5, 6, 2, 32, causal, 0.5f);
        float *o[3], *l[3], *gq[3], *gk[3], *gv[3];
        for (int r = 0; r < 3; r++) {
            o[r] = kin_floats(b.nq), l[r] = kin_floats(b.nl), gq[r] = kin_floats(b.nq);
            gk[r] = kin_floats(b.nkv), gv[r] = kin_floats(b.nkv);
            tw_threads_set(r + 1);
            run_all(&b, o[r], l[r], gq[r], gk[r], gv[r]);
        }
        for (int r = 1; r < 3; r++) {
            CHECK(memcmp(o[0], o[r], (size_t)b.nq * 4) == 0);
            CHECK(memcmp(l[0], l[r], (size_t)b.nl * 4) == 0);
            CHECK(memcmp(gq[0], gq[r], (size_t)b.nq * 4) == 0);
            CHECK(memcmp(gk[0], gk[r], (size_t)b.nkv * 4) == 0);
            CHECK(memcmp(gv[0], gv[r], (size_t)b.nkv * 4) == 0);
        }
        /* The 130-token segment alone gives the same bits as inside the batch (it starts at
         * token 41 there: 1 + 7 + 33). */
        const int64_t off = 41, len = 130, rq = b.s.n_head * b.s.head_dim, rk = b.s.n_kv_head * b.s.head_dim;
        batch a = b;
        a.s.n_tok = len;
        a.seg = b.seg + off;
        a.q = b.q + off * rq;
        a.k = b.k + off * rk;
        a.v = b.v + off * rk;
        a.dout = b.dout + off * rq;
        a.nq = len * rq;
        a.nkv = len * rk;
        a.nl = len * b.s.n_head;
        float *ao = kin_floats(a.nq), *al = kin_floats(a.nl), *aq = kin_floats(a.nq);
        float *ak = kin_floats(a.nkv), *av = kin_floats(a.nkv);
        tw_threads_set(2);
        run_all(&a, ao, al, aq, ak, av);
        CHECK(memcmp(ao, o[0] + off * rq, (size_t)a.nq * 4) == 0);
        CHECK(memcmp(al, l[0] + off * b.s.n_head, (size_t)a.nl * 4) == 0);
        CHECK(memcmp(aq, gq[0] + off * rq, (size_t)a.nq * 4) == 0);
        CHECK(memcmp(ak, gk[0] + off * rk, (size_t)a.nkv * 4) == 0);
        CHECK(memcmp(av, gv[0] + off * rk, (size_t)a.nkv * 4) == 0);
        tw_free(ao);
        tw_free(al);
        tw_free(aq);
        tw_free(ak);
        tw_free(av);
        for (int r = 0; r < 3; r++) {
            tw_free(o[r]);
            tw_free(l[r]);
            tw_free(gq[r]);
            tw_free(gk[r]);
            tw_free(gv[r]);
        }
        batch_free(&b);
    }
    tw_threads_set(saved);
}

/* ---- through the backend ---------------------------------------------------------------------*/

static void test_backend_op(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    CHECK(tw_backend_supports(be, TW_OP_ATTN_SEG));
    CHECK(tw_backend_supports(be, TW_OP_ATTN_SEG_BWD));
    static const int lens[] = {5, 9};
    batch b;
    batch_make(&b, lens, 2, 4, 2, 16, 1, 0.5f);
    /* one buffer: q k v dout | out lse dq dk dv | seg */
    size_t fq = (size_t)b.nq * 4, fk = (size_t)b.nkv * 4, fl = (size_t)b.nl * 4;
    size_t o_q = 0, o_k = fq, o_v = o_k + fk, o_do = o_v + fk, o_out = o_do + fq;
    size_t o_lse = o_out + fq, o_dq = o_lse + fl, o_dk = o_dq + fq, o_dv = o_dk + fk;
    size_t o_seg = o_dv + fk, total = o_seg + (size_t)b.s.n_tok * 4;
    tw_buffer *buf = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, total, &buf), TW_OK);
    tw_buffer_upload(buf, o_q, b.q, fq);
    tw_buffer_upload(buf, o_k, b.k, fk);
    tw_buffer_upload(buf, o_v, b.v, fk);
    tw_buffer_upload(buf, o_do, b.dout, fq);
    tw_buffer_upload(buf, o_seg, b.seg, (size_t)b.s.n_tok * 4);
#define R(o) tw_ref_at(buf, o)
    const tw_attn_seg_shape *s = &b.s;
    CHECK_EQ_INT(tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok,
                                s->n_head, s->n_kv_head, s->head_dim, s->scale, 1), TW_OK);
    CHECK_EQ_INT(tw_op_attn_seg_bwd(be, R(o_dq), R(o_dk), R(o_dv), R(o_do), R(o_out), R(o_lse),
                                    R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok, s->n_head,
                                    s->n_kv_head, s->head_dim, s->scale, 1), TW_OK);
    float *out = kin_floats(b.nq), *lse = kin_floats(b.nl), *dq = kin_floats(b.nq);
    float *dk = kin_floats(b.nkv), *dv = kin_floats(b.nkv), *got = kin_floats(b.nq);
    run_all(&b, out, lse, dq, dk, dv);
    tw_buffer_download(buf, o_out, got, fq);
    CHECK(memcmp(got, out, fq) == 0);
    tw_buffer_download(buf, o_lse, got, fl);
    CHECK(memcmp(got, lse, fl) == 0);
    tw_buffer_download(buf, o_dq, got, fq);
    CHECK(memcmp(got, dq, fq) == 0);
    tw_buffer_download(buf, o_dk, got, fk);
    CHECK(memcmp(got, dk, fk) == 0);
    tw_buffer_download(buf, o_dv, got, fk);
    CHECK(memcmp(got, dv, fk) == 0);
    /* lse is optional in the forward */
    CHECK_EQ_INT(tw_op_attn_seg(be, R(o_out), tw_ref_none(), R(o_q), R(o_k), R(o_v), R(o_seg),
                                s->n_tok, s->n_head, s->n_kv_head, s->head_dim, s->scale, 1), TW_OK);
    tw_buffer_download(buf, o_out, got, fq);
    CHECK(memcmp(got, out, fq) == 0);

    /* argument checks */
    tw_status st = tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg),
                                  s->n_tok, 3, 2, s->head_dim, s->scale, 1);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "n_head") != NULL);
    st = tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok,
                        s->n_head, s->n_kv_head, s->head_dim, 0.0f, 1);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "scale") != NULL);
    st = tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok,
                        s->n_head, s->n_kv_head, s->head_dim, s->scale, 2);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "causal") != NULL);
    st = tw_op_attn_seg(be, R(o_q), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok,
                        s->n_head, s->n_kv_head, s->head_dim, s->scale, 1);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "out overlaps q") != NULL);
    st = tw_op_attn_seg_bwd(be, R(o_dq), R(o_dq), R(o_dv), R(o_do), R(o_out), R(o_lse), R(o_q),
                            R(o_k), R(o_v), R(o_seg), s->n_tok, s->n_head, s->n_kv_head,
                            s->head_dim, s->scale, 1);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "overlaps") != NULL);
    st = tw_op_attn_seg_bwd(be, R(o_dq), R(o_dk), R(o_dv), R(o_do), R(o_out), tw_ref_none(),
                            R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok, s->n_head, s->n_kv_head,
                            s->head_dim, s->scale, 1);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "lse") != NULL);
    /* a decreasing seg: refused before anything is written */
    int32_t bad[14];
    memcpy(bad, b.seg, sizeof bad);
    bad[9] = bad[0] - 1;
    tw_buffer_upload(buf, o_seg, bad, sizeof bad);
    st = tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok,
                        s->n_head, s->n_kv_head, s->head_dim, s->scale, 0);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "seg[9]") != NULL);
    st = tw_op_attn_seg_bwd(be, R(o_dq), R(o_dk), R(o_dv), R(o_do), R(o_out), R(o_lse), R(o_q),
                            R(o_k), R(o_v), R(o_seg), s->n_tok, s->n_head, s->n_kv_head,
                            s->head_dim, s->scale, 0);
    CHECK_EQ_INT(st, TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "seg[9]") != NULL);
    tw_buffer_download(buf, o_out, got, fq);
    CHECK(memcmp(got, out, fq) == 0);
    /* scratch that cannot be had: TW_ERR_NOMEM, and the next call works */
    tw_buffer_upload(buf, o_seg, b.seg, (size_t)b.s.n_tok * 4);
    for (uint64_t nth = 1; nth <= 3; nth++) {
        tw_mem_fail_after(nth);
        st = tw_op_attn_seg_bwd(be, R(o_dq), R(o_dk), R(o_dv), R(o_do), R(o_out), R(o_lse),
                                R(o_q), R(o_k), R(o_v), R(o_seg), s->n_tok, s->n_head,
                                s->n_kv_head, s->head_dim, s->scale, 1);
        tw_mem_fail_after(0);
        CHECK_EQ_INT(st, TW_ERR_NOMEM);
    }
    tw_mem_fail_after(1);
    st = tw_cpu_attn_seg_f32(out, lse, b.q, b.k, b.v, b.seg, s);
    tw_mem_fail_after(0);
    CHECK_EQ_INT(st, TW_ERR_NOMEM);
    CHECK_EQ_INT(tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg),
                                s->n_tok, s->n_head, s->n_kv_head, s->head_dim, s->scale, 1), TW_OK);
    tw_buffer_download(buf, o_out, got, fq);
    CHECK(memcmp(got, out, fq) == 0);
    /* zero tokens: a no-op */
    CHECK_EQ_INT(tw_op_attn_seg(be, R(o_out), R(o_lse), R(o_q), R(o_k), R(o_v), R(o_seg), 0,
                                s->n_head, s->n_kv_head, s->head_dim, s->scale, 0), TW_OK);
#undef R
    TW_ASSERT(b.s.n_tok == 14);
    tw_free(out);
    tw_free(lse);
    tw_free(dq);
    tw_free(dk);
    tw_free(dv);
    tw_free(got);
    batch_free(&b);
    tw_buffer_free(buf);
    tw_backend_free(be);
}

int main(void) {
    RUN(test_reference_values);
    RUN(test_backward_finite_differences);
    RUN(test_optimized_vs_reference);
    RUN(test_long_segment);
    RUN(test_thread_count_bits);
    RUN(test_backend_op);
    TEST_DONE();
}
