/* test_nf4.c: NF4 with double quantization (engine/nf4.h).
 *   - the 16 code values: the paper's construction (nf4_code_values_build) against the
 *     published table, and the table of the numpy generator (tools/gen_nf4_golden.py);
 *   - the dynamic map equal, bit for bit, to the generator's;
 *   - codes, packed bytes, qabsmax, absmax2, offset and dequantized values bit-exact against
 *     tests/data/nf4/nf4.golden.bin (odd sizes, a 1-element tail block, zero blocks, a block
 *     with one value, a huge value, a subnormal, two double-quantization blocks);
 *   - dequantization error within the bound the format gives, on odd sizes;
 *   - NaN and inf refused with a message naming the element, nothing leaked; allocation
 *     failures;
 *   - bits per parameter (4.127 with double quantization, 4.5 without).
 * Products with an NF4 W are the op table's: tests/unit/test_kernels_nf4.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "nf4.h"
#include "test.h"

/* ---- the golden file --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd;

static const void *take(rd *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const void *q = r->p;
    r->p += n;
    return q;
}
static uint32_t take_u32(rd *r) {
    const void *q = take(r, 4);
    uint32_t v = 0;
    if (q) memcpy(&v, q, 4);
    return v;
}
static float take_f32(rd *r) {
    const void *q = take(r, 4);
    float v = 0;
    if (q) memcpy(&v, q, 4);
    return v;
}

static int f32_same(float a, float b) { return memcmp(&a, &b, 4) == 0; }

/* Same as the generator's synth_input (lowbias32 hash, exact float32 steps). */
static uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}
static void synth_input(float *x, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        float u = (float)((int32_t)(hash32(i) >> 8) - (1 << 23)) * 0x1p-23f;
        x[i] = u * ldexpf(1.0f, (int)((i / 64) % 9) - 4);
    }
}

static tw_mfile golden;
static rd golden_rd;
static int golden_loaded;

static void load_golden(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/nf4/nf4.golden.bin", data);
    if (tw_mfile_open(&golden, path) != TW_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, tw_errmsg());
        exit(1);
    }
    golden_rd = (rd){golden.data, golden.data + golden.size, 0};
    golden_loaded = 1;
}

static void test_code_values(void) {
    const float *v = tw_nf4_values_get();
    float built[16];
    nf4_code_values_build(built);
    /* the construction (double inverse CDF, rounded to float32) lands on the published float32
     * values; 1 ulp near 1.0 (6e-8) is the most a different inverse CDF could move them */
    for (int i = 0; i < 16; i++) CHECK_NEAR(built[i], v[i], 1.2e-7);
    CHECK(v[0] == -1.0f && v[7] == 0.0f && v[15] == 1.0f);
    for (int i = 1; i < 16; i++) CHECK(v[i] > v[i - 1]);
    /* each value quantizes to itself, and the decision points are the midpoints */
    for (int i = 0; i < 16; i++) CHECK_EQ_INT(nf4_quantize_value(v[i]), i);
    for (int i = 0; i + 1 < 16; i++) {
        float mid = (v[i] + v[i + 1]) / 2;
        CHECK_EQ_INT(nf4_quantize_value(nextafterf(mid, -2.0f) - 1e-6f), i);
        CHECK_EQ_INT(nf4_quantize_value(nextafterf(mid, 2.0f) + 1e-6f), i + 1);
    }
    CHECK_EQ_INT(nf4_quantize_value(5.0f), 15);
    CHECK_EQ_INT(nf4_quantize_value(-5.0f), 0);
    CHECK_EQ_INT(nf4_quantize_value(NAN), 0); /* bitsandbytes' tree, as documented */

    /* the generator's table came from Python's NormalDist, an independent inverse CDF */
    rd *r = &golden_rd;
    TW_ASSERT(golden_loaded);
    const uint8_t *magic = take(r, 4);
    CHECK(magic && !memcmp(magic, "NF4G", 4));
    CHECK_EQ_INT(take_u32(r), 1);
    (void)take_u32(r); /* n_cases, read again by test_golden */
    for (int i = 0; i < 16; i++) CHECK_NEAR(take_f32(r), built[i], 1.2e-7);
}

static void test_dynamic_map(void) {
    float map[256];
    nf4_dynamic_map_build(map);
    int same = 1;
    for (int i = 0; i < 256; i++) same &= f32_same(map[i], take_f32(&golden_rd));
    CHECK(same);
    CHECK(map[0] == -map[254] && map[255] == 1.0f && map[127] == 0.0f);
    for (int i = 1; i < 256; i++) CHECK(map[i] > map[i - 1]);
    /* the search lands on each value and on the nearest one between values */
    for (int i = 0; i < 256; i++) CHECK_EQ_INT(nf4_map_quantize_value(map, map[i]), i);
    for (int i = 0; i + 1 < 256; i++) {
        float a = map[i] + (map[i + 1] - map[i]) * 0.25f, b = map[i] + (map[i + 1] - map[i]) * 0.75f;
        CHECK_EQ_INT(nf4_map_quantize_value(map, a), i);
        CHECK_EQ_INT(nf4_map_quantize_value(map, b), i + 1);
    }
}

static void test_golden(void) {
    rd *r = &golden_rd;
    uint32_t n_cases = 0;
    memcpy(&n_cases, golden.data + 8, 4);
    CHECK_EQ_INT(n_cases, 7);
    for (uint32_t c = 0; c < n_cases && !r->bad; c++) {
        uint32_t n = take_u32(r), dq = take_u32(r), stored = take_u32(r);
        if (r->bad || n == 0 || n > (1u << 24)) {
            r->bad = 1;
            break;
        }
        float *x = tw_malloc((size_t)n * 4), *deq = tw_malloc((size_t)n * 4);
        TW_ASSERT(x && deq);
        if (stored) {
            const void *p = take(r, (size_t)n * 4);
            if (!p) break;
            memcpy(x, p, (size_t)n * 4);
        } else {
            synth_input(x, n);
        }
        nf4_tensor t;
        CHECK_EQ_INT(nf4_quantize(x, n, (int)dq, &t), TW_OK);
        uint64_t nb = (n + 63) / 64;
        CHECK_EQ_INT(t.n_blocks, nb);
        const uint8_t *q = take(r, (n + 1) / 2);
        int codes_ok = q && !memcmp(q, t.q, (n + 1) / 2);
        if (!codes_ok) fprintf(stderr, "case %u (n=%u dq=%u): packed codes differ\n", c, n, dq);
        CHECK(codes_ok);
        if (dq) {
            float off = take_f32(r);
            uint32_t nb2 = take_u32(r);
            CHECK_EQ_INT(nb2, t.n_blocks2);
            CHECK(f32_same(off, t.offset));
            int ok = nb2 == t.n_blocks2;
            for (uint32_t b = 0; b < nb2 && ok; b++) ok &= f32_same(take_f32(r), t.absmax2[b]);
            CHECK(ok);
            const uint8_t *qa = take(r, (size_t)nb);
            CHECK(qa && !memcmp(qa, t.qabsmax, (size_t)nb));
        } else {
            int ok = 1;
            for (uint64_t b = 0; b < nb; b++) ok &= f32_same(take_f32(r), t.absmax[b]);
            CHECK(ok);
        }
        float *am = tw_malloc((size_t)nb * 4);
        TW_ASSERT(am);
        nf4_absmax_dequantize(&t, am);
        int ok = 1;
        for (uint64_t b = 0; b < nb; b++) ok &= f32_same(take_f32(r), am[b]);
        CHECK(ok);
        CHECK_EQ_INT(nf4_dequantize(&t, deq), TW_OK);
        ok = 1;
        if (stored) {
            for (uint32_t i = 0; i < n; i++) ok &= f32_same(take_f32(r), deq[i]);
        } else {
            /* not stored: the element is its golden code value times its golden absmax */
            const float *v = tw_nf4_values_get();
            for (uint32_t i = 0; i < n && q; i++) {
                uint8_t code = (i & 1) ? q[i / 2] & 15 : q[i / 2] >> 4;
                ok &= f32_same(v[code] * am[i / 64], deq[i]);
            }
        }
        CHECK(ok);
        /* block-by-block dequantization gives the same values */
        float blk[64];
        ok = 1;
        for (uint64_t b = 0; b < nb; b++) {
            size_t len = nf4_dequantize_block(&t, b, am[b], blk);
            ok &= len == (b + 1 < nb ? 64 : n - b * 64);
            ok &= !memcmp(blk, deq + b * 64, len * 4);
        }
        CHECK(ok);
        tw_free(am);
        nf4_tensor_free(&t);
        tw_free(x);
        tw_free(deq);
    }
    CHECK(!r->bad);
    CHECK(r->p == r->end);
}

/* ---- properties ------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-53;
}
static float nrand(void) { /* Box-Muller */
    double u = urand(), v = urand();
    return (float)(sqrt(-2 * log(u + 1e-300)) * cos(2 * 3.141592653589793 * v));
}

static void test_error_bounds(void) {
    const size_t sizes[] = {1, 2, 3, 63, 64, 65, 127, 129, 1000, 64 * 256 + 1, 64 * 300 + 33};
    const float *v = tw_nf4_values_get();
    float half_gap = 0; /* the widest half-gap between neighbouring codes */
    for (int i = 0; i + 1 < 16; i++)
        if ((v[i + 1] - v[i]) / 2 > half_gap) half_gap = (v[i + 1] - v[i]) / 2;
    float map[256];
    nf4_dynamic_map_build(map);
    float map_half_gap = 0;
    for (int i = 0; i + 1 < 256; i++)
        if ((map[i + 1] - map[i]) / 2 > map_half_gap) map_half_gap = (map[i + 1] - map[i]) / 2;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        float *x = tw_malloc(n * 4), *y = tw_malloc(n * 4);
        TW_ASSERT(x && y);
        for (size_t i = 0; i < n; i++) x[i] = nrand() * 0.05f;
        for (int dq = 0; dq <= 1; dq++) {
            nf4_tensor t;
            CHECK_EQ_INT(nf4_quantize(x, n, dq, &t), TW_OK);
            CHECK_EQ_INT(nf4_dequantize(&t, y), TW_OK);
            size_t nb = (n + 63) / 64;
            float *am = tw_malloc(nb * 4);
            TW_ASSERT(am);
            nf4_absmax_dequantize(&t, am);
            double worst = 0, se = 0, sx = 0;
            for (size_t b = 0; b < nb; b++) {
                size_t s = b * 64, e = s + 64 < n ? s + 64 : n;
                float true_am = 0;
                for (size_t i = s; i < e; i++) true_am = fmaxf(true_am, fabsf(x[i]));
                /* the absmax error: half a gap of the dynamic map times the 256-block scale */
                double am_err = fabs((double)am[b] - true_am);
                if (dq) CHECK(am_err <= map_half_gap * t.absmax2[b / 256] * 1.0001 + 1e-12);
                else CHECK(am_err == 0);
                for (size_t i = s; i < e; i++) {
                    /* |x - c*am'| <= |x - c*am| + |c|*|am - am'| <= half_gap*am + am_err,
                     * plus float32 rounding of the scaled value (a few ulps of am) */
                    double err = fabs((double)x[i] - y[i]);
                    double bound = half_gap * true_am + am_err + 4e-7 * true_am;
                    if (err > bound && worst < err - bound) worst = err - bound;
                    se += err * err;
                    sx += (double)x[i] * x[i];
                }
            }
            CHECK(worst == 0);
            /* NF4 on Gaussian blocks of 64: about 9.2% relative RMS error (measured 0.092) */
            if (n >= 1000) CHECK(sqrt(se / sx) < 0.11);
            if (n == 64 * 300 + 33)
                fprintf(stderr, "  n=%zu dq=%d: relative RMS error %.4f\n", n, dq, sqrt(se / sx));
            tw_free(am);
            nf4_tensor_free(&t);
        }
        tw_free(x);
        tw_free(y);
    }
}

static void test_bad_input(void) {
    float x[100];
    for (int i = 0; i < 100; i++) x[i] = nrand();
    tw_mem_stats before = tw_mem_get_stats();
    nf4_tensor t;
    x[70] = NAN;
    CHECK_EQ_INT(nf4_quantize(x, 100, 1, &t), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "element 70") && strstr(tw_errmsg(), "NaN"));
    CHECK(t.mem == NULL && t.q == NULL);
    x[70] = 0;
    x[5] = -INFINITY;
    CHECK_EQ_INT(nf4_quantize(x, 100, 0, &t), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "element 5") && strstr(tw_errmsg(), "infinite"));
    x[5] = 0;
    CHECK_EQ_INT(nf4_quantize(x, 0, 1, &t), TW_ERR_ARG);
    CHECK_EQ_INT(nf4_quantize(NULL, 10, 1, &t), TW_ERR_ARG);
    for (uint64_t k = 1; k <= 2; k++) {
        tw_mem_fail_after(k);
        CHECK_EQ_INT(nf4_quantize(x, 100, 1, &t), TW_ERR_NOMEM);
        tw_mem_fail_after(0);
    }
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before.current_bytes);
    nf4_tensor_free(NULL);
    nf4_tensor_free(&t); /* zeroed by the failed call */
}

static void test_bits_per_param(void) {
    size_t n = 64 * 256 * 16;
    float *x = tw_malloc(n * 4);
    TW_ASSERT(x);
    for (size_t i = 0; i < n; i++) x[i] = nrand();
    nf4_tensor t;
    CHECK_EQ_INT(nf4_quantize(x, n, 1, &t), TW_OK);
    /* 4 + 8/64 + 32/16384 = 4.127 bits, plus 32 bits of offset over n */
    CHECK_NEAR(nf4_bits_per_param(&t), 4.0 + 0.125 + 32.0 / 16384 + 32.0 / (double)n, 1e-9);
    fprintf(stderr, "  nf4 with double quantization: %.4f bits per parameter\n",
            nf4_bits_per_param(&t));
    nf4_tensor_free(&t);
    CHECK_EQ_INT(nf4_quantize(x, n, 0, &t), TW_OK);
    CHECK_NEAR(nf4_bits_per_param(&t), 4.5, 1e-9);
    nf4_tensor_free(&t);
    tw_free(x);
}

int main(void) {
    load_golden();
    RUN(test_code_values);
    RUN(test_dynamic_map);
    RUN(test_golden);
    RUN(test_error_bounds);
    RUN(test_bad_input);
    RUN(test_bits_per_param);
    tw_mfile_close(&golden);
    TEST_DONE();
}
