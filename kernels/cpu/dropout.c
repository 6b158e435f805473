/* dropout.c: the mask functions of kernels.h (tw_dropout_bits, _threshold, _key) and the
 * optimized CPU kernel of TW_OP_DROPOUT: rows split over OpenMP threads; each element's mask
 * depends only on (key, row0 + r, j), so the thread count cannot change a bit. */
#include "dropout.h"

#include <math.h>

#include "kernels.h"
#include "core.h"

/* splitmix64's output function (Steele et al. 2014): a bijection of 64 bits with full
 * avalanche, so consecutive counters give unrelated bits. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t tw_dropout_bits(uint64_t key, uint64_t t, uint64_t j) {
    uint64_t h = mix64(key ^ (t * 0x9E3779B97F4A7C15ull));
    return mix64(h + j * 0xD1B54A32D192ED03ull);
}

uint32_t tw_dropout_threshold(float p) {
    double v = nearbyint((double)p * 16777216.0);
    return v <= 0 ? 0u : v >= 16777216.0 ? 16777216u : (uint32_t)v;
}

uint64_t tw_dropout_key(const uint64_t *counters, int n) {
    uint64_t k = 0x6A09E667F3BCC908ull; /* any fixed start: sqrt(2)'s fraction bits */
    for (int i = 0; i < n; i++) k = mix64(k + 0x9E3779B97F4A7C15ull + mix64(counters[i]));
    return k;
}

void tw_cpu_dropout_f32(float *y, const float *x, int64_t rows, int64_t n, float p, uint64_t key,
                        int64_t row0) {
    const uint32_t thr = tw_dropout_threshold(p);
    const float s = (float)(1.0 / (1.0 - (double)p));
    const int64_t work = rows * n;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (work > 65536)
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t t = (uint64_t)(row0 + r);
        const uint64_t h = mix64(key ^ (t * 0x9E3779B97F4A7C15ull));
        const float *xr = x + r * n;
        float *yr = y + r * n;
        for (int64_t j = 0; j < n; j++) {
            uint32_t u = (uint32_t)(mix64(h + (uint64_t)j * 0xD1B54A32D192ED03ull) >> 40);
            yr[j] = u >= thr ? xr[j] * s : 0.0f;
        }
    }
}
