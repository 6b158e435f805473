/* select.c: the optimized CPU kernels of TW_OP_SOFTMAX, TW_OP_ARGMAX and TW_OP_TOPK
 * (kernels.h), OpenMP over rows.
 *
 * softmax: fp32 (maximum, tw_exp8 (2 ulp) or expf, a sum over 8 partial sums, one reciprocal). argmax and
 * top-k compare values exactly, so they agree with the reference on every index: top-k keeps
 * the k best seen so far in a binary min-heap laid out in the outputs (the worst at the root;
 * "better" = larger, or equal and a lower index), then sorts it in place: O(n log k). */
#include "cpu_kernels.h"
#include "simd_avx2.h"

#include <math.h>

#define PAR_MIN_ELEMS 65536

void tw_cpu_softmax_f32(float *y, const float *x, int64_t rows, int64_t n, float scale) {
    int avx2 = tw_cpu_has_avx2_fma();
    int par = rows > 1 && rows * n >= PAR_MIN_ELEMS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, scale * xr[i]);
        float s[8] = {0};
        for (int64_t i = 0; i < n; i++) yr[i] = scale * xr[i] - mx;
        if (avx2)
            tw_cpu_exp_f32_avx2(yr, yr, n);
        else
            for (int64_t i = 0; i < n; i++) yr[i] = expf(yr[i]);
        for (int64_t i = 0; i < n; i++) s[i % 8] += yr[i];
        float inv = 1.0f / (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
        for (int64_t i = 0; i < n; i++) yr[i] *= inv;
    }
}

void tw_cpu_argmax_f32(int32_t *idx, const float *x, int64_t rows, int64_t n) {
    int par = rows > 1 && rows * n >= PAR_MIN_ELEMS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        int64_t best = 0;
        float bv = xr[0];
        for (int64_t i = 1; i < n; i++)
            if (xr[i] > bv) bv = xr[i], best = i;
        idx[r] = (int32_t)best;
    }
}

/* 1 when (va, ia) ranks below (vb, ib): smaller, or equal with a higher index. */
static int worse(float va, int32_t ia, float vb, int32_t ib) {
    return va < vb || (va == vb && ia > ib);
}

/* Restores the min-heap (worst at the root) below node i of a heap of n entries. */
static void sift_down(float *v, int32_t *id, int64_t n, int64_t i) {
    for (;;) {
        int64_t c = 2 * i + 1, w = i;
        if (c < n && worse(v[c], id[c], v[w], id[w])) w = c;
        if (c + 1 < n && worse(v[c + 1], id[c + 1], v[w], id[w])) w = c + 1;
        if (w == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[w], id[i] = id[w];
        v[w] = tv, id[w] = ti;
        i = w;
    }
}

tw_status tw_cpu_topk_f32(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t n,
                          int64_t k) {
    int par = rows > 1 && rows * n >= PAR_MIN_ELEMS;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *v = vals + r * k;     /* (k): the heap, then the result */
        int32_t *id = idx + r * k;   /* (k) */
        for (int64_t i = 0; i < k; i++) v[i] = xr[i], id[i] = (int32_t)i;
        for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(v, id, k, i);
        for (int64_t i = k; i < n; i++)
            if (worse(v[0], id[0], xr[i], (int32_t)i)) {
                v[0] = xr[i], id[0] = (int32_t)i;
                sift_down(v, id, k, 0);
            }
        /* Heap sort: move the worst to the end, repeatedly: descending order. */
        for (int64_t end = k - 1; end > 0; end--) {
            float tv = v[0];
            int32_t ti = id[0];
            v[0] = v[end], id[0] = id[end];
            v[end] = tv, id[end] = ti;
            sift_down(v, id, end, 0);
        }
    }
    return TW_OK;
}
