/* ref_attn_seg.c: the reference of TW_OP_ATTN_SEG and TW_OP_ATTN_SEG_BWD (kernels.h): for each
 * token and head, every score in fp64, a two-pass softmax (maximum, then exp and sum) in fp64,
 * the weighted sum of V rows in fp64, rounded once. The backward forms each gradient entry as
 * one fp64 sum over the (query, key) pairs that touch it, rounded once. Nothing is allocated:
 * per-row accumulators live on the stack (head_dim <= 1024, kernels.h).
 *
 * The keys of token t are the tokens u of its segment (seg[u] == seg[t], contiguous since seg
 * is non-decreasing) with u <= t when causal. */
#include "cpu_kernels.h"

#include <math.h>

#define REF_MAX_HEAD_DIM 1024 /* tw_op_attn_seg's bound */

/* First token of t's segment. */
static int64_t seg_first(const int32_t *seg, int64_t t) {
    while (t > 0 && seg[t - 1] == seg[t]) t--;
    return t;
}

/* One past the last token of t's segment. */
static int64_t seg_end(const int32_t *seg, int64_t n_tok, int64_t t) {
    int64_t e = t + 1;
    while (e < n_tok && seg[e] == seg[t]) e++;
    return e;
}

/* scale * q[t,h,:] . k[u,kh,:] in fp64. */
static double score_at(const float *q, const float *k, int64_t t, int64_t h, int64_t u,
                       int64_t kh, const tw_attn_seg_shape *s) {
    const float *qr = q + (t * s->n_head + h) * s->head_dim;     /* (head_dim) */
    const float *kr = k + (u * s->n_kv_head + kh) * s->head_dim; /* (head_dim) */
    double dot = 0;
    for (int64_t i = 0; i < s->head_dim; i++) dot += (double)qr[i] * kr[i];
    return dot * (double)s->scale;
}

void tw_ref_attn_seg_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                         const int32_t *seg, const tw_attn_seg_shape *s) {
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head;
    TW_ASSERT(d <= REF_MAX_HEAD_DIM);
    double acc[REF_MAX_HEAD_DIM];
    for (int64_t t = 0; t < s->n_tok; t++) {
        int64_t u0 = seg_first(seg, t), u1 = s->causal ? t + 1 : seg_end(seg, s->n_tok, t);
        for (int64_t h = 0; h < s->n_head; h++) {
            int64_t kh = h / group;
            double mx = -INFINITY;
            for (int64_t u = u0; u < u1; u++) mx = fmax(mx, score_at(q, k, t, h, u, kh, s));
            double sum = 0;
            for (int64_t i = 0; i < d; i++) acc[i] = 0;
            for (int64_t u = u0; u < u1; u++) {
                double p = exp(score_at(q, k, t, h, u, kh, s) - mx);
                const float *vr = v + (u * s->n_kv_head + kh) * d; /* (head_dim) */
                sum += p;
                for (int64_t i = 0; i < d; i++) acc[i] += p * vr[i];
            }
            float *o = out + (t * s->n_head + h) * d; /* (head_dim) */
            for (int64_t i = 0; i < d; i++) o[i] = (float)(acc[i] / sum);
            if (lse) lse[t * s->n_head + h] = (float)(mx + log(sum));
        }
    }
}

/* D = dout[t,h,:] . out[t,h,:] in fp64. */
static double drow_at(const float *dout, const float *out, int64_t t, int64_t h,
                      const tw_attn_seg_shape *s) {
    const float *a = dout + (t * s->n_head + h) * s->head_dim, *b = out + (t * s->n_head + h) * s->head_dim;
    double acc = 0;
    for (int64_t i = 0; i < s->head_dim; i++) acc += (double)a[i] * b[i];
    return acc;
}

/* P = exp(score - lse), dP = dout[t,h,:] . v[u,kh,:], dS = P (dP - D): the pair's terms. */
static void pair_terms(const float *dout, const float *out, const float *lse, const float *q,
                       const float *k, const float *v, int64_t t, int64_t h, int64_t u,
                       int64_t kh, const tw_attn_seg_shape *s, double *p, double *ds) {
    const int64_t d = s->head_dim;
    *p = exp(score_at(q, k, t, h, u, kh, s) - (double)lse[t * s->n_head + h]);
    const float *dor = dout + (t * s->n_head + h) * d, *vr = v + (u * s->n_kv_head + kh) * d;
    double dp = 0;
    for (int64_t i = 0; i < d; i++) dp += (double)dor[i] * vr[i];
    *ds = *p * (dp - drow_at(dout, out, t, h, s));
}

void tw_ref_attn_seg_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *seg, const tw_attn_seg_shape *s) {
    const int64_t d = s->head_dim, group = s->n_head / s->n_kv_head;
    const double scale = s->scale;
    TW_ASSERT(d <= REF_MAX_HEAD_DIM);
    double a1[REF_MAX_HEAD_DIM], a2[REF_MAX_HEAD_DIM];
    /* dq[t,h,:] = scale * sum_u dS(t,u) k[u,kh,:] */
    for (int64_t t = 0; t < s->n_tok; t++) {
        int64_t u0 = seg_first(seg, t), u1 = s->causal ? t + 1 : seg_end(seg, s->n_tok, t);
        for (int64_t h = 0; h < s->n_head; h++) {
            int64_t kh = h / group;
            for (int64_t i = 0; i < d; i++) a1[i] = 0;
            for (int64_t u = u0; u < u1; u++) {
                double p, ds;
                pair_terms(dout, out, lse, q, k, v, t, h, u, kh, s, &p, &ds);
                const float *kr = k + (u * s->n_kv_head + kh) * d;
                for (int64_t i = 0; i < d; i++) a1[i] += ds * kr[i];
            }
            float *o = dq + (t * s->n_head + h) * d; /* (head_dim) */
            for (int64_t i = 0; i < d; i++) o[i] = (float)(a1[i] * scale);
        }
    }
    /* dv[u,kh,:] = sum_{h of kh} sum_t P(t,u) dout[t,h,:];
     * dk[u,kh,:] = scale * sum_{h of kh} sum_t dS(t,u) q[t,h,:], over the queries t that see u */
    for (int64_t u = 0; u < s->n_tok; u++) {
        int64_t t0 = s->causal ? u : seg_first(seg, u), t1 = seg_end(seg, s->n_tok, u);
        for (int64_t kh = 0; kh < s->n_kv_head; kh++) {
            for (int64_t i = 0; i < d; i++) a1[i] = a2[i] = 0;
            for (int64_t h = kh * group; h < (kh + 1) * group; h++)
                for (int64_t t = t0; t < t1; t++) {
                    double p, ds;
                    pair_terms(dout, out, lse, q, k, v, t, h, u, kh, s, &p, &ds);
                    const float *dor = dout + (t * s->n_head + h) * d, *qr = q + (t * s->n_head + h) * d;
                    for (int64_t i = 0; i < d; i++) {
                        a1[i] += p * dor[i];
                        a2[i] += ds * qr[i];
                    }
                }
            float *ov = dv + (u * s->n_kv_head + kh) * d, *ok = dk + (u * s->n_kv_head + kh) * d;
            for (int64_t i = 0; i < d; i++) {
                ov[i] = (float)a1[i];
                ok[i] = (float)(a2[i] * scale);
            }
        }
    }
}
