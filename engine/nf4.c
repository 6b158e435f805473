/* nf4.c: NF4 quantization with double quantization (nf4.h), bit-compatible with bitsandbytes. */
#include "nf4.h"

#include <math.h>
#include <string.h>

#include "kernels.h" /* the 16 NF4 values; tw_nf4_layout for nf4_tensor_pack */

/* Quantization must round every step in float32 exactly as bitsandbytes does: no fused
 * multiply-adds in the scalar paths (GCC in ISO C mode does not contract; clang would). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif


/* ---- the construction ------------------------------------------------------------------ */

/* torch.linspace(start, end, steps) in float32 on the CPU: the first half counts up from
 * start, the second half down from end, with a float32 step. */
static void linspace_f32(float start, float end, int steps, float *out) {
    float step = (end - start) / (float)(steps - 1);
    int half = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < half ? start + step * (float)i : end - step * (float)(steps - 1 - i);
}

/* Inverse of the standard normal CDF (scipy's norm.ppf) in double: Acklam's rational
 * approximation (relative error 1.15e-9) polished by two Halley steps on erfc, which brings
 * it to the last few ulps of a double. p in (0, 1). */
static double norm_ppf(double p) {
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                -2.759285104469687e+02, 1.383577518672690e+02,
                                -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                -1.556989798598866e+02, 6.680131188771972e+01,
                                -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                -2.400758277161838e+00, -2.549732539343734e+00,
                                4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01,
                                2.445134137142996e+00, 3.754408661907416e+00};
    double x;
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else if (p > 1 - 0.02425) {
        double q = sqrt(-2 * log(1 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    for (int it = 0; it < 2; it++) {
        double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
        double u = e * 2.5066282746310002 /* sqrt(2 pi) */ * exp(x * x / 2);
        x = x - u / (1 + x * u / 2);
    }
    return x;
}

void nf4_code_values_build(float out[16]) {
    /* v1: 8 positive quantiles, v3: 7 negative ones, and one 0 (the other 240 zeros of
     * bitsandbytes' 256-entry version sort into the same single 0). */
    float p9[9], p8[8];
    linspace_f32(0.9677083f, 0.5f, 9, p9);
    linspace_f32(0.9677083f, 0.5f, 8, p8);
    float v[16];
    int n = 0;
    for (int i = 0; i < 8; i++) v[n++] = (float)norm_ppf((double)p9[i]);
    v[n++] = 0.0f;
    for (int i = 0; i < 7; i++) v[n++] = (float)-norm_ppf((double)p8[i]);
    /* ascending order; then divide by the largest (v1[0]) in float32 */
    for (int i = 1; i < 16; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    float mx = v[15];
    for (int i = 0; i < 16; i++) out[i] = v[i] / mx;
}

void nf4_dynamic_map_build(float out[256]) {
    /* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i of
     * 0..6, 2^i fraction values (the float32 midpoints of linspace(0.1, 1, 2^i + 1)) times
     * 10^(i-6), both signs; then 0 and 1.0; 127 + 127 + 2 = 256 values, sorted. */
    float data[256];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int items = (1 << i) + 1;
        float bnd[65];
        linspace_f32(0.1f, 1.0f, items, bnd);
        float scale = (float)pow(10.0, (double)(i - 6));
        for (int j = 0; j + 1 < items; j++) {
            float mean = (bnd[j] + bnd[j + 1]) / 2.0f;
            data[n++] = scale * mean;
            data[n++] = -scale * mean;
        }
    }
    data[n++] = 0.0f;
    data[n++] = 1.0f;
    TW_ASSERT(n == 256);
    for (int i = 1; i < 256; i++)
        for (int j = i; j > 0 && data[j - 1] > data[j]; j--) {
            float t = data[j];
            data[j] = data[j - 1];
            data[j - 1] = t;
        }
    memcpy(out, data, sizeof data);
}

/* ---- scalar quantizers ------------------------------------------------------------------ */

/* bitsandbytes' dQuantizeNF4 compares with the 15 midpoints between neighbouring codes in a
 * binary tree, strict '>'. The tree over sorted thresholds ends at the number of midpoints
 * below x, which is counted here without branches (random weights made the tree's branches
 * mispredict: 15 ns per weight, a third of that now); a NaN passes no test: code 0, as there. */
static const float nf4_mids[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
};

uint8_t nf4_quantize_value(float x) {
    int c = 0;
    for (int i = 0; i < 15; i++) c += x > nf4_mids[i];
    return (uint8_t)c;
}

uint8_t nf4_map_quantize_value(const float map[256], float x) {
    /* bitsandbytes' dQuantize<0>, step for step (its result is the nearest value except in
     * rare ties, which it settles its own way; matching it keeps the codes identical). */
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f, val = map[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = map[pivot];
    }
    if (upper_pivot == 255) upper = map[upper_pivot];
    if (lower_pivot == 0) lower = map[lower_pivot];
    if (x > val) {
        float mid = (upper + val) * 0.5f;
        return (uint8_t)(x > mid ? upper_pivot : pivot);
    }
    float mid = (lower + val) * 0.5f;
    return (uint8_t)(x < mid ? lower_pivot : pivot);
}

/* ---- tensors ----------------------------------------------------------------------------- */

void nf4_tensor_free(nf4_tensor *t) {
    if (!t) return;
    tw_free(t->mem);
    memset(t, 0, sizeof *t);
}

static float block_absmax(const float *x, size_t len) {
    float m = 0.0f;
    for (size_t j = 0; j < len; j++) {
        float a = fabsf(x[j]);
        if (a > m) m = a;
    }
    return m;
}

tw_status nf4_quantize(const float *x, uint64_t n, int double_quant, nf4_tensor *out) {
    memset(out, 0, sizeof *out);
    if (!x || n == 0) return tw_error(TW_ERR_ARG, "nf4_quantize: no input (n = %llu)",
                                      (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return tw_error(TW_ERR_ARG, "nf4_quantize: element %llu is %s; NF4 holds finite "
                                        "values only", (unsigned long long)i,
                            isnan(x[i]) ? "NaN" : "infinite");
    uint64_t nb = (n + NF4_BLOCK - 1) / NF4_BLOCK;
    uint64_t nb2 = double_quant ? (nb + NF4_BLOCK2 - 1) / NF4_BLOCK2 : 0;
    uint64_t nq = (n + 1) / 2;
    /* floats first (map, absmax2 or absmax), then the bytes */
    uint64_t n_f = double_quant ? 256 + nb2 : nb;
    uint64_t bytes = n_f * sizeof(float) + nq + (double_quant ? nb : 0);
    if (n > (UINT64_MAX >> 4) || bytes > SIZE_MAX)
        return tw_error(TW_ERR_ARG, "nf4_quantize: n = %llu is too large",
                        (unsigned long long)n);
    float *absmax = double_quant ? tw_malloc(nb * sizeof(float)) : NULL;
    if (double_quant && !absmax) return TW_ERR_NOMEM;
    uint8_t *mem = tw_malloc((size_t)bytes);
    if (!mem) {
        tw_free(absmax);
        return TW_ERR_NOMEM;
    }
    nf4_tensor t = {0};
    t.n = n;
    t.n_blocks = nb;
    t.n_blocks2 = nb2;
    t.double_quant = double_quant ? 1 : 0;
    t.mem = mem;
    float *fl = (float *)(void *)mem;
    if (double_quant) {
        t.map = fl;
        t.absmax2 = fl + 256;
        t.q = mem + n_f * sizeof(float);
        t.qabsmax = t.q + nq;
        nf4_dynamic_map_build(t.map);
    } else {
        t.absmax = fl;
        absmax = t.absmax;
        t.q = mem + n_f * sizeof(float);
    }
    memset(t.q, 0, (size_t)nq);

    /* blocks are independent and own whole bytes of q (64 elements from an even index), so
     * threads split them without changing a bit */
    const long long nbl = (long long)nb;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nbl >= 1024)
    for (long long bi = 0; bi < nbl; bi++) {
        uint64_t b = (uint64_t)bi;
        uint64_t s = b * NF4_BLOCK, len = n - s < NF4_BLOCK ? n - s : NF4_BLOCK;
        float am = block_absmax(x + s, (size_t)len);
        absmax[b] = am;
        float inv = 1.0f / am;
        for (uint64_t j = 0; j < len; j++) {
            uint64_t i = s + j;
            uint8_t c = am == 0.0f ? 7 : nf4_quantize_value(x[i] * inv);
            t.q[i >> 1] |= (uint8_t)((i & 1) ? c : c << 4);
        }
    }

    if (double_quant) {
        double sum = 0;
        for (uint64_t b = 0; b < nb; b++) sum += absmax[b];
        t.offset = (float)(sum / (double)nb);
        for (uint64_t b = 0; b < nb; b++) absmax[b] = absmax[b] - t.offset;
        uint8_t zero_code = nf4_map_quantize_value(t.map, 0.0f);
        TW_ASSERT(t.map[zero_code] == 0.0f);
        for (uint64_t b2 = 0; b2 < nb2; b2++) {
            uint64_t s = b2 * NF4_BLOCK2, len = nb - s < NF4_BLOCK2 ? nb - s : NF4_BLOCK2;
            float am2 = block_absmax(absmax + s, (size_t)len);
            t.absmax2[b2] = am2;
            float inv2 = 1.0f / am2;
            for (uint64_t j = 0; j < len; j++)
                t.qabsmax[s + j] =
                    am2 == 0.0f ? zero_code : nf4_map_quantize_value(t.map, absmax[s + j] * inv2);
        }
        tw_free(absmax);
    }
    *out = t;
    return TW_OK;
}

uint64_t nf4_tensor_bytes(const nf4_tensor *t) {
    uint64_t b = (t->n + 1) / 2;
    if (t->double_quant) b += t->n_blocks + t->n_blocks2 * 4 + 4;
    else b += t->n_blocks * 4;
    return b;
}

double nf4_bits_per_param(const nf4_tensor *t) {
    return t->n ? (double)nf4_tensor_bytes(t) * 8.0 / (double)t->n : 0.0;
}

void nf4_absmax_dequantize(const nf4_tensor *t, float *absmax) {
    if (!t->double_quant) {
        memcpy(absmax, t->absmax, (size_t)t->n_blocks * sizeof(float));
        return;
    }
    for (uint64_t b = 0; b < t->n_blocks; b++) {
        float v = t->map[t->qabsmax[b]] * t->absmax2[b / NF4_BLOCK2];
        absmax[b] = v + t->offset; /* two float32 roundings, as bitsandbytes */
    }
}

static inline float code_at(const float *nf4, const uint8_t *q, uint64_t i) {
    uint8_t byte = q[i >> 1];
    return nf4[(i & 1) ? byte & 15 : byte >> 4];
}

void nf4_dequantize_range(const nf4_tensor *t, const float *absmax, uint64_t start,
                          uint64_t count, float *out) {
    TW_ASSERT(start <= t->n && count <= t->n - start);
    const float *nf4 = tw_nf4_values_get();
    for (uint64_t j = 0; j < count; j++) {
        uint64_t i = start + j;
        out[j] = code_at(nf4, t->q, i) * absmax[i / NF4_BLOCK];
    }
}

size_t nf4_dequantize_block(const nf4_tensor *t, uint64_t block, float block_absmax,
                            float *out) {
    TW_ASSERT(block < t->n_blocks);
    uint64_t s = block * NF4_BLOCK, len = t->n - s < NF4_BLOCK ? t->n - s : NF4_BLOCK;
    const float *nf4 = tw_nf4_values_get();
    for (uint64_t j = 0; j < len; j++) out[j] = code_at(nf4, t->q, s + j) * block_absmax;
    return (size_t)len;
}

tw_status nf4_dequantize(const nf4_tensor *t, float *out) {
    float *am = tw_malloc((size_t)t->n_blocks * sizeof(float));
    if (!am) return TW_ERR_NOMEM;
    nf4_absmax_dequantize(t, am);
    nf4_dequantize_range(t, am, 0, t->n, out);
    tw_free(am);
    return TW_OK;
}

/* ---- the op table's layout ---------------------------------------------------------------- */

tw_status nf4_tensor_pack(const nf4_tensor *t, int64_t n_out, int64_t k, void *dst,
                          size_t dst_bytes) {
    tw_nf4_layout L;
    if (!t || !t->double_quant || !dst)
        return tw_error(TW_ERR_ARG, "nf4_tensor_pack: %s", !t || !t->double_quant
                        ? "the tensor has no double quantization" : "dst is NULL");
    tw_status st = tw_nf4_layout_get(n_out, k, &L);
    if (st != TW_OK) return st;
    if ((uint64_t)n_out * (uint64_t)k != t->n)
        return tw_error(TW_ERR_ARG, "nf4_tensor_pack: the tensor holds %llu elements, not "
                        "%lld x %lld", (unsigned long long)t->n, (long long)n_out, (long long)k);
    if (dst_bytes != L.bytes)
        return tw_error(TW_ERR_ARG, "nf4_tensor_pack: dst holds %zu bytes; the layout needs %zu",
                        dst_bytes, L.bytes);
    TW_ASSERT((uint64_t)L.n_blocks == t->n_blocks && (uint64_t)L.n_blocks2 == t->n_blocks2);
    uint8_t *d = dst;
    memcpy(d + L.map, t->map, 256 * sizeof(float));
    memcpy(d + L.offset, &t->offset, sizeof(float));
    memcpy(d + L.absmax2, t->absmax2, (size_t)t->n_blocks2 * sizeof(float));
    memcpy(d + L.qabsmax, t->qabsmax, (size_t)t->n_blocks);
    memcpy(d + L.codes, t->q, (size_t)(t->n / 2));
    return TW_OK;
}
