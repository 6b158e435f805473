/* train_ops.c: the optimized CPU kernels of the training ops other than the two GEMMs
 * (train_gemm.c): RMSNORM_BWD, LAYERNORM_BWD, ROPE_BWD, SWIGLU_BWD, GELU_BWD, EMBED_BWD,
 * XENT and ADAMW (kernels.h, "training ops").
 *
 * Determinism: no result depends on the thread count. Row-local outputs (dx) are computed
 * by the thread that owns the row; sums over rows (the dw and db of the norms, the rows an
 * embedding table receives) are split by columns, each column summed over the rows in order
 * by one thread. Elementwise ops are elementwise.
 *
 * Precision (bounds in tests/unit/test_kernels_train.c): the norms form their row sums in
 * fp64 (n is small, the cost is nothing beside the GEMMs) and the rest in fp32; SwiGLU's
 * backward uses tw_exp8 (AVX2, 2 ulp) or expf; GELU's uses libm's fp32 functions; XENT uses
 * tw_exp8 for the softmax with an fp64 sum. */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx2.h"
#define TW_X86 1
#endif

/* Elements per OpenMP chunk of the elementwise ops (as elementwise.c). */
#define CHUNK 65536
/* Columns per task of the sums over rows. */
#define COLS 64

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- RMSNORM_BWD --------------------------------------------------------------------------- */

tw_status tw_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, int64_t rows, int64_t n, float eps) {
    float *rstd = tw_malloc((size_t)rows * sizeof(float) + 4); /* (rows) */
    if (!rstd) return tw_error_wrap("rmsnorm_bwd: %lld rows of scratch", (long long)rows);
    int nt = tw_threads_get(), par = rows > 1 && rows * n >= 32768;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *gr = dy + r * n; /* (n) */
        double ss = 0, dot = 0;
        for (int64_t i = 0; i < n; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)(gr[i] * w[i]) * xr[i];
        }
        double rs = 1.0 / sqrt(ss / (double)n + (double)eps);
        float a = (float)rs, b = (float)(rs * rs * rs / (double)n * dot);
        for (int64_t i = 0; i < n; i++) dx[r * n + i] = a * (gr[i] * w[i]) - b * xr[i];
        rstd[r] = a;
    }
    if (dw) {
        int64_t n_sl = (n + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) num_threads(nt) if (par && n_sl > 1)
        for (int64_t s = 0; s < n_sl; s++) {
            int64_t i0 = s * COLS, i1 = min64(i0 + COLS, n);
            float acc[COLS] = {0};
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = i0; i < i1; i++) acc[i - i0] += dy[r * n + i] * x[r * n + i] * rstd[r];
            for (int64_t i = i0; i < i1; i++) dw[i] += acc[i - i0];
        }
    }
    tw_free(rstd);
    return TW_OK;
}

/* ---- LAYERNORM_BWD ------------------------------------------------------------------------- */

tw_status tw_cpu_layernorm_bwd_f32(float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *w, int64_t rows, int64_t n,
                                   float eps) {
    float *st = tw_malloc((size_t)(2 * rows) * sizeof(float) + 4); /* (rows, 2): mean, rstd */
    if (!st) return tw_error_wrap("layernorm_bwd: %lld rows of scratch", (long long)rows);
    int nt = tw_threads_get(), par = rows > 1 && rows * n >= 32768;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *gr = dy + r * n; /* (n) */
        double mean = 0, var = 0, mg = 0, mgx = 0;
        for (int64_t i = 0; i < n; i++) mean += xr[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        double rs = 1.0 / sqrt(var / (double)n + (double)eps);
        float fm = (float)mean, frs = (float)rs;
        for (int64_t i = 0; i < n; i++) {
            double g = w ? (double)(gr[i] * w[i]) : (double)gr[i];
            mg += g;
            mgx += g * ((xr[i] - mean) * rs);
        }
        float a = (float)(mg / (double)n), b = (float)(mgx / (double)n);
        for (int64_t i = 0; i < n; i++) {
            float g = w ? gr[i] * w[i] : gr[i], xh = (xr[i] - fm) * frs;
            dx[r * n + i] = frs * (g - a - xh * b);
        }
        st[2 * r] = fm;
        st[2 * r + 1] = frs;
    }
    if (dw || db) {
        int64_t n_sl = (n + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) num_threads(nt) if (par && n_sl > 1)
        for (int64_t s = 0; s < n_sl; s++) {
            int64_t i0 = s * COLS, i1 = min64(i0 + COLS, n);
            float aw[COLS] = {0}, ab[COLS] = {0};
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = i0; i < i1; i++) {
                    float g = dy[r * n + i];
                    aw[i - i0] += g * ((x[r * n + i] - st[2 * r]) * st[2 * r + 1]);
                    ab[i - i0] += g;
                }
            for (int64_t i = i0; i < i1; i++) {
                if (dw) dw[i] += aw[i - i0];
                if (db) db[i] += ab[i - i0];
            }
        }
    }
    tw_free(st);
    return TW_OK;
}

/* ---- ROPE_BWD ------------------------------------------------------------------------------
 * The transpose of tw_cpu_rope_f32 is the same kernel run with every angle negated: a negative
 * freq_scale gives angle -theta with exactly the forward's theta (the product freq_scale * te
 * only changes sign), sincosf(-t) = (-sin t, cos t) bit for bit, and the rotation
 * (fma(a, c, -(b s')), fma(a, s', b c)) with s' = -s is (a c + b s, -a s + b c) rounded as the
 * forward rounds. So the backward is the exact adjoint of the forward's arithmetic. */
void tw_cpu_rope_bwd_f32(float *dx, const float *dy, const int32_t *pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, int mode,
                         float theta_base, float freq_scale, const float *ff) {
    tw_cpu_rope_f32(dx, dy, pos, n_tok, n_head, head_dim, rope_dim, mode, theta_base, -freq_scale,
                    ff);
}

/* ---- SWIGLU_BWD ---------------------------------------------------------------------------- */

void tw_cpu_swiglu_bwd_f32_portable(float *dgate, float *dup, const float *dy, const float *gate,
                                    const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dy[i];
        dgate[i] = d * up[i] * (s * (1.0f + g * (1.0f - s)));
        dup[i] = d * (g * s);
    }
}

#ifdef TW_X86
TW_AVX2 void tw_cpu_swiglu_bwd_f32_avx2(float *dgate, float *dup, const float *dy,
                                        const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i), d = _mm256_loadu_ps(dy + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, tw_exp8(_mm256_xor_ps(g, neg))));
        /* s (1 + g (1 - s)) */
        __m256 ds = _mm256_mul_ps(s, _mm256_fmadd_ps(g, _mm256_sub_ps(one, s), one));
        _mm256_storeu_ps(dgate + i, _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(up + i)), ds));
        _mm256_storeu_ps(dup + i, _mm256_mul_ps(d, _mm256_mul_ps(g, s)));
    }
    tw_cpu_swiglu_bwd_f32_portable(dgate + i, dup + i, dy + i, gate + i, up + i, n - i);
}
#else
void tw_cpu_swiglu_bwd_f32_avx2(float *dgate, float *dup, const float *dy, const float *gate,
                                const float *up, int64_t n) {
    tw_cpu_swiglu_bwd_f32_portable(dgate, dup, dy, gate, up, n);
}
#endif

void tw_cpu_swiglu_bwd_f32(float *dgate, float *dup, const float *dy, const float *gate,
                           const float *up, int64_t n) {
    void (*fn)(float *, float *, const float *, const float *, const float *, int64_t) =
        tw_cpu_has_avx2_fma() ? tw_cpu_swiglu_bwd_f32_avx2 : tw_cpu_swiglu_bwd_f32_portable;
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i0 = c * CHUNK, len = min64(CHUNK, n - i0);
        fn(dgate + i0, dup + i0, dy + i0, gate + i0, up + i0, len);
    }
}

/* ---- GELU_BWD ------------------------------------------------------------------------------
 * dx may alias dy: each element is read before it is written. */
void tw_cpu_gelu_bwd_f32(float *dx, const float *dy, const float *x, int64_t n, int mode) {
    const float c = 0.7978845608028654f, a = 0.044715f; /* sqrt(2/pi) */
    const float r2 = 0.70710678118654752f, rpi = 0.3989422804014327f; /* 1/sqrt 2, 1/sqrt(2 pi) */
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i1 = min64(n, (ch + 1) * CHUNK);
        for (int64_t i = ch * CHUNK; i < i1; i++) {
            float v = x[i], d;
            if (mode == TW_GELU_ERF) {
                d = 0.5f * (1.0f + erff(v * r2)) + v * rpi * expf(-0.5f * v * v);
            } else {
                float t = tanhf(c * (v + a * v * v * v));
                d = 0.5f * (1.0f + t) + 0.5f * v * ((1.0f - t * t) * c * (1.0f + 3.0f * a * v * v));
            }
            dx[i] = dy[i] * d;
        }
    }
}

/* ---- EMBED_BWD ------------------------------------------------------------------------------
 * Slices of COLS columns: each adds the rows of dy into the table in order of i, so a table row
 * named by several ids gets the reference's bits. */
void tw_cpu_embed_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int64_t n_ids,
                          int64_t n) {
    int64_t n_sl = (n + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (n_sl > 1 && n_ids * n >= 32768)
    for (int64_t s = 0; s < n_sl; s++) {
        int64_t j0 = s * COLS, j1 = min64(j0 + COLS, n);
        for (int64_t i = 0; i < n_ids; i++) {
            float *row = dtable + (int64_t)ids[i] * n;
            const float *g = dy + i * n;
            for (int64_t j = j0; j < j1; j++) row[j] += g[j];
        }
    }
}

/* ---- XENT -----------------------------------------------------------------------------------
 * Tokens go in chunks of XENT_CHUNK rows that are not ignored (gathered): the logits of a chunk
 * (chunk, n_vocab) come from tw_cpu_matmul (TW_OP_MATMUL: act(h) for quantized heads, as the
 * reference forms them), each row's softmax turns them into dlogits in place, then dh rows =
 * dlogits . W (tw_cpu_matmul_dx) are scattered back and dw += dlogits^T . h (tw_cpu_matmul_dw).
 * A larger chunk amortizes the dequantization of W in tw_cpu_matmul_dx (each W element is
 * dequantized once per chunk) at the cost of chunk * n_vocab floats of scratch: 64 rows of a
 * 49152 vocabulary are 12 MiB. */
#define XENT_CHUNK 64

/* logits (n) -> dlogits (n) in place: scale * (softmax - onehot(target)); returns the loss
 * logsumexp - logit[target]. dlogits only when want_grad. */
static float xent_row(float *l, int64_t n, int32_t target, float scale, int want_grad, int avx2) {
    float mx = l[0];
    for (int64_t v = 1; v < n; v++) mx = l[v] > mx ? l[v] : mx;
    float lt = l[target];
    for (int64_t v = 0; v < n; v++) l[v] -= mx;
#ifdef TW_X86
    if (avx2)
        tw_cpu_exp_f32_avx2(l, l, n);
    else
#endif
        for (int64_t v = 0; v < n; v++) l[v] = expf(l[v]);
    double sum = 0;
    for (int64_t v = 0; v < n; v++) sum += l[v];
    float loss = (float)((double)mx + log(sum) - (double)lt);
    if (want_grad) {
        float f = (float)((double)scale / sum);
        for (int64_t v = 0; v < n; v++) l[v] *= f;
        l[target] -= scale;
    }
    return loss;
}

tw_status tw_cpu_xent(float *loss, float *dh, float *dw, const float *h, const void *w,
                      tw_dtype wt, const int32_t *target, int64_t n_tok, int64_t d,
                      int64_t n_vocab, float grad_scale) {
    int64_t ch = min64(XENT_CHUNK, n_tok);
    float *hc = tw_malloc((size_t)(ch * d) * sizeof(float));        /* (ch, d) gathered h */
    float *lg = tw_malloc((size_t)(ch * n_vocab) * sizeof(float));  /* (ch, n_vocab) */
    float *dhc = dh ? tw_malloc((size_t)(ch * d) * sizeof(float)) : NULL; /* (ch, d) */
    int64_t *rows = tw_malloc((size_t)ch * sizeof(int64_t));        /* (ch) token of each row */
    if (!hc || !lg || (dh && !dhc) || !rows) {
        tw_free(hc), tw_free(lg), tw_free(dhc), tw_free(rows);
        return tw_error_wrap("xent: scratch for %lld x %lld logits", (long long)ch,
                             (long long)n_vocab);
    }
    int avx2 = tw_cpu_has_avx2_fma(), grad = dh || dw;
    tw_status st = TW_OK;
    int64_t t = 0;
    while (t < n_tok && st == TW_OK) {
        int64_t cnt = 0;
        for (; t < n_tok && cnt < ch; t++) {
            if (target[t] < 0) {
                loss[t] = 0;
                if (dh) memset(dh + t * d, 0, (size_t)d * sizeof(float));
                continue;
            }
            memcpy(hc + cnt * d, h + t * d, (size_t)d * sizeof(float));
            rows[cnt++] = t;
        }
        if (cnt == 0) break;
        if ((st = tw_cpu_matmul(lg, hc, w, wt, NULL, cnt, d, n_vocab)) != TW_OK) break;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (cnt > 1)
        for (int64_t r = 0; r < cnt; r++)
            loss[rows[r]] = xent_row(lg + r * n_vocab, n_vocab, target[rows[r]], grad_scale, grad,
                                     avx2);
        if (dh) {
            if ((st = tw_cpu_matmul_dx(dhc, lg, w, wt, cnt, d, n_vocab, 0)) != TW_OK) break;
            for (int64_t r = 0; r < cnt; r++)
                memcpy(dh + rows[r] * d, dhc + r * d, (size_t)d * sizeof(float));
        }
        if (dw && (st = tw_cpu_matmul_dw(dw, NULL, lg, hc, cnt, d, n_vocab, 1)) != TW_OK) break;
    }
    tw_free(hc), tw_free(lg), tw_free(dhc), tw_free(rows);
    return st == TW_OK ? TW_OK : tw_error_wrap("xent");
}

/* ---- ADAMW ----------------------------------------------------------------------------------
 * Elementwise in fp32 with the bias corrections folded into two factors formed once in fp64;
 * the same operations for every element whatever the chunking, so bit-identical across
 * thread counts. */
void tw_cpu_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                      float b1, float b2, float eps, float weight_decay, float grad_scale,
                      int64_t step) {
    const float c1 = (float)(1.0 / (1.0 - pow((double)b1, (double)step)));
    const float c2 = (float)(1.0 / (1.0 - pow((double)b2, (double)step)));
    const float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i1 = min64(n, (ch + 1) * CHUNK);
        for (int64_t i = ch * CHUNK; i < i1; i++) {
            float gi = g[i] * grad_scale;
            float mi = b1 * m[i] + ob1 * gi;
            float vi = b2 * v[i] + ob2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            p[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + weight_decay * p[i]);
        }
    }
}
