/* rope.c: the optimized CPU kernel of TW_OP_ROPE (kernels.h), with llama.cpp's arithmetic so
 * that twin's rotated Q and K are its bits (a 135M model turns differences of one ulp here into
 * different greedy tokens a few dozen steps later):
 *   theta_scale = powf(theta_base, -2/rope_dim) (fp32); theta_0 = pos; theta_{i+1} =
 *   theta_i * theta_scale (fp32, iterated); the angle of pair i is freq_scale * (theta_i /
 *   freq_factors[i]); cos and sin by sincosf; a' = fma(a, c, -(b s)), b' = fma(a, s, b c).
 * The angles depend on the token and the pair, not on the head: they are computed once per
 * token and applied to every head.
 * Precision against the fp64 reference: theta_i carries up to ~(2.5 i + 1) u relative error
 * from the iterated products (u = 2^-24), i.e. an angle error of that times theta_i radians;
 * the rotation adds ~3u of (|a| + |b|). The tests bound each output by both. */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

/* cos and sin of the half = rope_dim/2 angles of position p. cs: (half, 2). */
static void angles(float *cs, int32_t p, int64_t half, float theta_scale, float freq_scale,
                   const float *ff) {
    float theta = (float)p;
    for (int64_t i = 0; i < half; i++) {
        float te = ff ? theta / ff[i] : theta;
        sincosf(freq_scale * te, &cs[2 * i + 1], &cs[2 * i]);
        theta *= theta_scale;
    }
}

/* Rotates the pairs of one head: (ia, ib) = (2i, 2i+1) or (i, i + half). */
#define ROTATE(FMA)                                                                           \
    for (int64_t i = 0; i < half; i++) {                                                      \
        int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;                      \
        float a = xr[ia], b = xr[ib], c = cs[2 * i], s = cs[2 * i + 1];                       \
        yr[ia] = FMA(a, c, -(b * s));                                                         \
        yr[ib] = FMA(a, s, b * c);                                                            \
    }

__attribute__((target("fma"))) static void rotate_fma(float *yr, const float *xr, const float *cs,
                                                      int64_t half, int neox) {
    ROTATE(__builtin_fmaf)
}

static void rotate_libm(float *yr, const float *xr, const float *cs, int64_t half, int neox) {
    ROTATE(fmaf) /* the same fused results where the CPU has no FMA, in software */
}

void tw_cpu_rope_f32(float *y, const float *x, const int32_t *pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, int mode, float theta_base,
                     float freq_scale, const float *ff) {
    int64_t half = rope_dim / 2;
    int neox = mode == TW_ROPE_NEOX;
    float theta_scale = powf(theta_base, -2.0f / (float)rope_dim);
    void (*rotate)(float *, const float *, const float *, int64_t, int) =
        tw_cpu_has_avx2_fma() ? rotate_fma : rotate_libm;
    float *cs_all = tw_malloc((size_t)(n_tok * rope_dim) * sizeof(float)); /* (n_tok, half, 2) */
    int have = cs_all != NULL;
    int par = n_tok > 1 && n_tok * n_head * head_dim >= 16384;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t t = 0; t < n_tok; t++) {
        float local[2 * 64];
        /* A row of angles: from the scratch, or (no memory, or a huge rope_dim) in pieces of
         * the stack buffer, recomputed per head. */
        if (have || half <= 64) {
            float *cs = have ? cs_all + t * rope_dim : local;
            angles(cs, pos[t], half, theta_scale, freq_scale, ff);
            for (int64_t h = 0; h < n_head; h++)
                rotate(y + (t * n_head + h) * head_dim, x + (t * n_head + h) * head_dim, cs, half, neox);
        } else {
            for (int64_t h = 0; h < n_head; h++) {
                float *yr = y + (t * n_head + h) * head_dim;
                const float *xr = x + (t * n_head + h) * head_dim;
                float theta = (float)pos[t];
                for (int64_t i = 0; i < half; i++) {
                    float te = ff ? theta / ff[i] : theta, c, s;
                    sincosf(freq_scale * te, &s, &c);
                    int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
                    float a = xr[ia], b = xr[ib];
                    yr[ia] = fmaf(a, c, -(b * s));
                    yr[ib] = fmaf(a, s, b * c);
                    theta *= theta_scale;
                }
            }
        }
        if (y != x)
            for (int64_t h = 0; h < n_head; h++)
                memcpy(y + (t * n_head + h) * head_dim + rope_dim,
                       x + (t * n_head + h) * head_dim + rope_dim,
                       (size_t)(head_dim - rope_dim) * sizeof(float));
    }
    tw_free(cs_all);
}
