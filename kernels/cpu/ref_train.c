/* ref_train.c: the references of the training ops (kernels.h, "training ops"): MATMUL_DX,
 * MATMUL_DW, RMSNORM_BWD, LAYERNORM_BWD, ROPE_BWD, SWIGLU_BWD, GELU_BWD, EMBED_BWD, XENT and
 * ADAMW. Each is the textbook formula with every sum and product in fp64 and one rounding to
 * fp32 per output (a gradient that is accumulated is rounded once: old + fp64 sum). They are
 * the specification the optimized kernels (train_gemm.c, train_ops.c) are tested against, and
 * are themselves checked against finite differences of fp64 forwards
 * (tests/unit/test_kernels_train.c). One thread; scratch from tw_malloc where a status is
 * returned (TW_ERR_NOMEM). */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

/* W (rows, k) of type t as fp32 (rows, k), from tw_malloc; NULL (error set) without memory. */
static float *dequant_all(const void *w, tw_dtype t, int64_t rows, int64_t k) {
    float *wf = tw_malloc((size_t)(rows * k) * sizeof(float));
    if (!wf) return NULL;
    size_t rb = tw_dtype_row_bytes(t, k);
    for (int64_t o = 0; o < rows; o++)
        TW_ASSERT(tw_dequantize_row(t, (const uint8_t *)w + (size_t)o * rb, wf + o * k, k) == TW_OK);
    return wf;
}

tw_status tw_ref_matmul_dx(float *dx, const float *dy, const void *w, tw_dtype wt, int64_t m,
                           int64_t k, int64_t n_out, int accumulate) {
    float *wf = dequant_all(w, wt, n_out, k); /* (n_out, k) */
    if (!wf) return tw_error_wrap("matmul_dx reference: %lld x %lld weights", (long long)n_out,
                                  (long long)k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t o = 0; o < n_out; o++) s += (double)dy[i * n_out + o] * wf[o * k + j];
            dx[i * k + j] = (float)(accumulate ? dx[i * k + j] + s : s);
        }
    tw_free(wf);
    return TW_OK;
}

void tw_ref_matmul_dw(float *dw, float *dbias, const float *dy, const float *x, int64_t m,
                      int64_t k, int64_t n_out, int accumulate) {
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t i = 0; i < m; i++) s += (double)dy[i * n_out + o] * x[i * k + j];
            dw[o * k + j] = (float)(accumulate ? dw[o * k + j] + s : s);
        }
        if (dbias) {
            double s = 0;
            for (int64_t i = 0; i < m; i++) s += dy[i * n_out + o];
            dbias[o] = (float)(accumulate ? dbias[o] + s : s);
        }
    }
}

/* y = x r w with r = (mean(x^2) + eps)^-1/2:
 *   dx_i = r g_i - r^3 / n * x_i * sum_j g_j x_j   (g = dy w);   dw_i += sum_rows dy_i x_i r. */
tw_status tw_ref_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, int64_t rows, int64_t n, float eps) {
    double *acc = tw_calloc((size_t)n, sizeof(double)); /* (n) the dw sums */
    if (!acc) return tw_error_wrap("rmsnorm_bwd reference: %lld columns", (long long)n);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *gr = dy + r * n; /* (n) */
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < n; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)gr[i] * w[i] * xr[i];
        }
        double rs = 1.0 / sqrt(ss / (double)n + (double)eps);
        for (int64_t i = 0; i < n; i++) {
            dx[r * n + i] = (float)(rs * gr[i] * w[i] - rs * rs * rs / (double)n * xr[i] * dot);
            acc[i] += (double)gr[i] * xr[i] * rs;
        }
    }
    if (dw)
        for (int64_t i = 0; i < n; i++) dw[i] = (float)(dw[i] + acc[i]);
    tw_free(acc);
    return TW_OK;
}

/* y = xhat w + b, xhat = (x - mean) rstd:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat))   (g = dy w, or dy when w is absent);
 *   dw += sum_rows dy xhat;   db += sum_rows dy. */
tw_status tw_ref_layernorm_bwd_f32(float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *w, int64_t rows, int64_t n,
                                   float eps) {
    double *acc = tw_calloc((size_t)(2 * n), sizeof(double)); /* (2, n): dw, db sums */
    if (!acc) return tw_error_wrap("layernorm_bwd reference: %lld columns", (long long)n);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *gr = dy + r * n; /* (n) */
        double mean = 0, var = 0, mg = 0, mgx = 0;
        for (int64_t i = 0; i < n; i++) mean += xr[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        double rstd = 1.0 / sqrt(var / (double)n + (double)eps);
        for (int64_t i = 0; i < n; i++) {
            double g = (double)gr[i] * (w ? (double)w[i] : 1.0), xh = (xr[i] - mean) * rstd;
            mg += g;
            mgx += g * xh;
        }
        mg /= (double)n;
        mgx /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            double g = (double)gr[i] * (w ? (double)w[i] : 1.0), xh = (xr[i] - mean) * rstd;
            dx[r * n + i] = (float)(rstd * (g - mg - xh * mgx));
            acc[i] += gr[i] * xh;
            acc[n + i] += gr[i];
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (dw) dw[i] = (float)(dw[i] + acc[i]);
        if (db) db[i] = (float)(db[i] + acc[n + i]);
    }
    tw_free(acc);
    return TW_OK;
}

/* The forward rotates each pair by theta (ref_rope.c); its transpose rotates by -theta:
 * (ga, gb) -> (ga cos + gb sin, -ga sin + gb cos). Elements from rope_dim on pass through. */
void tw_ref_rope_bwd_f32(float *dx, const float *dy, const int32_t *pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, int mode,
                         float theta_base, float freq_scale, const float *ff) {
    int64_t half = rope_dim / 2;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t h = 0; h < n_head; h++) {
            const float *gr = dy + (t * n_head + h) * head_dim; /* (head_dim) */
            float *xr = dx + (t * n_head + h) * head_dim;       /* (head_dim) */
            for (int64_t i = 0; i < half; i++) {
                double theta = (double)pos[t] * freq_scale *
                               pow((double)theta_base, -2.0 * (double)i / (double)rope_dim);
                if (ff) theta /= ff[i];
                int64_t ia = mode == TW_ROPE_NEOX ? i : 2 * i;
                int64_t ib = mode == TW_ROPE_NEOX ? i + half : 2 * i + 1;
                double a = gr[ia], b = gr[ib], c = cos(theta), s = sin(theta);
                xr[ia] = (float)(a * c + b * s);
                xr[ib] = (float)(-a * s + b * c);
            }
            if (xr != gr)
                memcpy(xr + rope_dim, gr + rope_dim, (size_t)(head_dim - rope_dim) * sizeof(float));
        }
}

/* y = g s(g) u with s the logistic function: dy/dg = u s (1 + g (1 - s)), dy/du = g s. */
void tw_ref_swiglu_bwd_f32(float *dgate, float *dup, const float *dy, const float *gate,
                           const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i], s = 1.0 / (1.0 + exp(-g));
        dgate[i] = (float)((double)dy[i] * up[i] * s * (1.0 + g * (1.0 - s)));
        dup[i] = (float)((double)dy[i] * g * s);
    }
}

/* tanh form: d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2), t = tanh(c (x + a x^3));
 * erf form: d/dx = Phi(x) + x phi(x). */
void tw_ref_gelu_bwd_f32(float *dx, const float *dy, const float *x, int64_t n, int mode) {
    const double c = sqrt(2.0 / M_PI), a = 0.044715;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], d;
        if (mode == TW_GELU_ERF) {
            d = 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        } else {
            double t = tanh(c * (v + a * v * v * v));
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * a * v * v);
        }
        dx[i] = (float)((double)dy[i] * d);
    }
}

/* The op fixes the order (by i) and the precision (fp32 adds into the table) so that a row
 * named twice gets the same bits everywhere: this reference is bit-exact, not fp64. */
void tw_ref_embed_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int64_t n_ids,
                          int64_t n) {
    for (int64_t i = 0; i < n_ids; i++)
        for (int64_t j = 0; j < n; j++) dtable[(int64_t)ids[i] * n + j] += dy[i * n + j];
}

/* Per token: the logits as TW_OP_MATMUL's reference forms them (tw_ref_matmul: act(h) for
 * quantized heads, rounded to fp32), then the softmax, loss and gradients in fp64 against the
 * dequantized W. */
tw_status tw_ref_xent(float *loss, float *dh, float *dw, const float *h, const void *w,
                      tw_dtype wt, const int32_t *target, int64_t n_tok, int64_t d,
                      int64_t n_vocab, float grad_scale) {
    float *wf = dequant_all(w, wt, n_vocab, d);                           /* (n_vocab, d) */
    float *logit = tw_malloc((size_t)n_vocab * sizeof(float));            /* (n_vocab) */
    double *acc = dw ? tw_calloc((size_t)(n_vocab * d), sizeof(double)) : NULL; /* (n_vocab, d) */
    if (!wf || !logit || (dw && !acc)) {
        tw_free(wf), tw_free(logit), tw_free(acc);
        return tw_error_wrap("xent reference: %lld x %lld head", (long long)n_vocab, (long long)d);
    }
    for (int64_t t = 0; t < n_tok; t++) {
        const float *ht = h + t * d; /* (d) */
        if (target[t] < 0) {
            loss[t] = 0;
            if (dh) memset(dh + t * d, 0, (size_t)d * sizeof(float));
            continue;
        }
        tw_ref_matmul(logit, ht, w, wt, NULL, 1, d, n_vocab);
        double mx = -INFINITY, sum = 0;
        for (int64_t v = 0; v < n_vocab; v++) mx = fmax(mx, logit[v]);
        for (int64_t v = 0; v < n_vocab; v++) sum += exp(logit[v] - mx);
        double lse = mx + log(sum);
        loss[t] = (float)(lse - logit[target[t]]);
        for (int64_t j = 0; dh && j < d; j++) {
            double s = 0;
            for (int64_t v = 0; v < n_vocab; v++)
                s += (exp(logit[v] - lse) - (v == target[t])) * wf[v * d + j];
            dh[t * d + j] = (float)(grad_scale * s);
        }
        for (int64_t v = 0; acc && v < n_vocab; v++) {
            double g = grad_scale * (exp(logit[v] - lse) - (v == target[t]));
            for (int64_t j = 0; j < d; j++) acc[v * d + j] += g * ht[j];
        }
    }
    for (int64_t i = 0; acc && i < n_vocab * d; i++) dw[i] = (float)(dw[i] + acc[i]);
    tw_free(wf), tw_free(logit), tw_free(acc);
    return TW_OK;
}

void tw_ref_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                      float b1, float b2, float eps, float weight_decay, float grad_scale,
                      int64_t step) {
    double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * grad_scale;
        double mi = (double)b1 * m[i] + (1.0 - (double)b1) * gi;
        double vi = (double)b2 * v[i] + (1.0 - (double)b2) * gi * gi;
        double upd = (mi / bc1) / (sqrt(vi / bc2) + (double)eps) + (double)weight_decay * p[i];
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)((double)p[i] - (double)lr * upd);
    }
}
