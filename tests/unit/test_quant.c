/* test_quant.c: ggml's type table, the half conversions and the (de)quantizers, checked on
 * blocks built byte by byte with known scales, mins and quants. Every expected float below
 * was worked out by hand from the block layout (the arithmetic is in the comments), not by
 * calling the code under test. */
#include "quant.h"
#include "test.h"

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#define F16_ONE 0x3C00
#define F16_TWO 0x4000
#define F16_HALF 0x3800
#define F16_QUARTER 0x3400
#define F16_MINUS_ONE 0xBC00

static void test_type_table(void) {
    CHECK_EQ_STR(tw_dtype_name(TW_DTYPE_F32), "f32");
    CHECK_EQ_STR(tw_dtype_name(TW_DTYPE_Q4_K), "q4_K");
    CHECK_EQ_STR(tw_dtype_name(TW_DTYPE_BF16), "bf16");
    CHECK_EQ_STR(tw_dtype_name((tw_dtype)39), "mxfp4");
    CHECK_EQ_STR(tw_dtype_name((tw_dtype)23), "iq4_xs");
    CHECK(tw_dtype_name((tw_dtype)4) == NULL);  /* q4_2, retired */
    CHECK(tw_dtype_name((tw_dtype)31) == NULL); /* q4_0_4_4, retired */
    CHECK(tw_dtype_name((tw_dtype)40) == NULL);
    CHECK(tw_dtype_name((tw_dtype)-1) == NULL);
    struct {
        tw_dtype t;
        int64_t bs;
        size_t ts;
    } want[] = {{TW_DTYPE_F32, 1, 4},     {TW_DTYPE_F16, 1, 2},     {TW_DTYPE_Q4_0, 32, 18},
                {TW_DTYPE_Q4_1, 32, 20},  {TW_DTYPE_Q5_0, 32, 22},  {TW_DTYPE_Q5_1, 32, 24},
                {TW_DTYPE_Q8_0, 32, 34},  {TW_DTYPE_Q8_1, 32, 36},  {TW_DTYPE_Q2_K, 256, 84},
                {TW_DTYPE_Q3_K, 256, 110}, {TW_DTYPE_Q4_K, 256, 144}, {TW_DTYPE_Q5_K, 256, 176},
                {TW_DTYPE_Q6_K, 256, 210}, {TW_DTYPE_Q8_K, 256, 292}, {TW_DTYPE_I8, 1, 1},
                {TW_DTYPE_I64, 1, 8},     {TW_DTYPE_F64, 1, 8},     {TW_DTYPE_BF16, 1, 2},
                {(tw_dtype)16, 256, 66},  {(tw_dtype)20, 32, 18},   {(tw_dtype)29, 256, 56},
                {(tw_dtype)34, 256, 54},  {(tw_dtype)35, 256, 66},  {(tw_dtype)39, 32, 17}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK_EQ_INT(tw_dtype_block_size(want[i].t), want[i].bs);
        CHECK_EQ_INT(tw_dtype_type_size(want[i].t), want[i].ts);
    }
    CHECK_EQ_INT(tw_dtype_block_size((tw_dtype)5), 0);
    CHECK_EQ_INT(tw_dtype_type_size((tw_dtype)100), 0);
    CHECK_EQ_INT(tw_dtype_row_bytes(TW_DTYPE_Q4_0, 64), 36);
    CHECK_EQ_INT(tw_dtype_row_bytes(TW_DTYPE_Q6_K, 512), 420);
    CHECK_EQ_INT(tw_dtype_row_bytes(TW_DTYPE_F16, 7), 14);
    CHECK_EQ_INT(tw_dtype_row_bytes(TW_DTYPE_Q4_0, 33), 0);
    CHECK_EQ_INT(tw_dtype_row_bytes((tw_dtype)4, 32), 0);
    CHECK(tw_dtype_can_dequantize(TW_DTYPE_Q6_K) && tw_dtype_can_dequantize(TW_DTYPE_BF16));
    CHECK(!tw_dtype_can_dequantize((tw_dtype)16) && !tw_dtype_can_dequantize(TW_DTYPE_I32));
}

static void test_f16_conversions(void) {
    CHECK(tw_f16_to_f32(0x3C00) == 1.0f);
    CHECK(tw_f16_to_f32(0xC000) == -2.0f);
    CHECK(tw_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(tw_f16_to_f32(0x0001) == 0x1p-24f); /* smallest subnormal */
    CHECK(tw_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
    CHECK(tw_f16_to_f32(0x0400) == 0x1p-14f); /* smallest normal */
    CHECK(tw_f16_to_f32(0x2E66) == 0.0999755859375f);
    CHECK(isinf(tw_f16_to_f32(0x7C00)) && tw_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(tw_f16_to_f32(0x7E00)));
    CHECK(tw_f16_to_f32(0x8000) == 0.0f && signbit(tw_f16_to_f32(0x8000)));

    CHECK_EQ_INT(tw_f32_to_f16(1.0f), 0x3C00);
    CHECK_EQ_INT(tw_f32_to_f16(-2.0f), 0xC000);
    CHECK_EQ_INT(tw_f32_to_f16(0.1f), 0x2E66);
    CHECK_EQ_INT(tw_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_INT(tw_f32_to_f16(65519.0f), 0x7BFF); /* below the halfway point to 65536 */
    CHECK_EQ_INT(tw_f32_to_f16(65520.0f), 0x7C00); /* the tie goes to the even "65536" = inf */
    CHECK_EQ_INT(tw_f32_to_f16(1e10f), 0x7C00);
    CHECK_EQ_INT(tw_f32_to_f16(-INFINITY), 0xFC00);
    CHECK_EQ_INT(tw_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);     /* tie: 1.0 is even */
    CHECK_EQ_INT(tw_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02); /* tie: 1+2^-9 is even */
    CHECK_EQ_INT(tw_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    CHECK_EQ_INT(tw_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(tw_f32_to_f16(0x1p-25f), 0x0000);        /* tie between 0 and 2^-24: 0 */
    CHECK_EQ_INT(tw_f32_to_f16(1.5f * 0x1p-25f), 0x0001); /* above the tie */
    CHECK_EQ_INT(tw_f32_to_f16(3 * 0x1p-25f), 0x0002);    /* 1.5 * 2^-24 ties to even 2 */
    CHECK_EQ_INT(tw_f32_to_f16(1023.5f * 0x1p-24f), 0x0400); /* rounds up into the normals */
    CHECK_EQ_INT(tw_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(tw_f32_to_f16(1e-30f), 0x0000);
    uint16_t n = tw_f32_to_f16(NAN);
    CHECK((n & 0x7C00) == 0x7C00 && (n & 0x03FF) != 0);
    /* every finite or infinite half survives a round trip through f32 */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue; /* nan */
        if (tw_f32_to_f16(tw_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_EQ_INT(bad, 0);

    CHECK(tw_bf16_to_f32(0x3F80) == 1.0f);
    CHECK(tw_bf16_to_f32(0xC040) == -3.0f);
    CHECK_EQ_INT(tw_f32_to_bf16(1.0f), 0x3F80);
    CHECK_EQ_INT(tw_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);     /* tie: even 0x3F80 */
    CHECK_EQ_INT(tw_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82); /* tie: even 0x3F82 */
    CHECK_EQ_INT(tw_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
    CHECK_EQ_INT(tw_f32_to_bf16(-3.0f), 0xC040);
    uint16_t bn = tw_f32_to_bf16(NAN);
    CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x0040));
}

/* Checks dst[idx[k]] == want[k] exactly: every value here is exact in f32. */
static int check_at(const float *y, const int *idx, const float *want, int n, const char *what) {
    int bad = 0;
    for (int k = 0; k < n; k++) {
        if (y[idx[k]] != want[k]) {
            fprintf(stderr, "  %s: y[%d] = %.9g, want %.9g\n", what, idx[k], y[idx[k]], want[k]);
            bad++;
        }
    }
    return bad;
}

static void test_dequant_simple_blocks(void) {
    uint8_t b[64];
    float y[64];

    /* Q4_0: d = 0.5; qs[j] = j | (15-j) << 4: y[j] = 0.5*(j-8), y[j+16] = 0.5*(7-j) */
    put16(b, F16_HALF);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q4_0, b, y, 32), TW_OK);
    {
        const float want[32] = {-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0,   0.5, 1,
                                1.5, 2,  2.5, 3,  3.5, 3.5, 3,  2.5, 2,  1.5, 1,
                                0.5, 0,  -0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4};
        int idx[32];
        for (int i = 0; i < 32; i++) idx[i] = i;
        CHECK_EQ_INT(check_at(y, idx, want, 32, "q4_0"), 0);
    }

    /* Q4_1: d = 0.25, m = -1; qs[j] = j | j << 4: y[j] = y[j+16] = 0.25*j - 1 */
    put16(b, F16_QUARTER);
    put16(b + 2, F16_MINUS_ONE);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | (j << 4));
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q4_1, b, y, 32), TW_OK);
    {
        const int idx[] = {0, 4, 15, 16, 20, 31};
        const float want[] = {-1, 0, 2.75, -1, 0, 2.75};
        CHECK_EQ_INT(check_at(y, idx, want, 6, "q4_1"), 0);
    }

    /* Q5_0: d = 2; qh = 0x80000001 (5th bit for elements 0 and 31); qs all 0x21 (lo 1,
     * hi 2): y[0] = 2*(17-16) = 2, y[1] = 2*(1-16) = -30, y[16] = 2*(2-16) = -28,
     * y[31] = 2*(18-16) = 4 */
    put16(b, F16_TWO);
    b[2] = 0x01, b[3] = 0x00, b[4] = 0x00, b[5] = 0x80;
    memset(b + 6, 0x21, 16);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q5_0, b, y, 32), TW_OK);
    {
        const int idx[] = {0, 1, 15, 16, 30, 31};
        const float want[] = {2, -30, -30, -28, -28, 4};
        CHECK_EQ_INT(check_at(y, idx, want, 6, "q5_0"), 0);
    }

    /* Q5_1: d = 0.5, m = 1, same qh and qs: y[0] = 0.5*17+1 = 9.5, y[1] = 0.5*1+1 = 1.5,
     * y[16] = 0.5*2+1 = 2, y[31] = 0.5*18+1 = 10 */
    put16(b, F16_HALF);
    put16(b + 2, F16_ONE);
    b[4] = 0x01, b[5] = 0x00, b[6] = 0x00, b[7] = 0x80;
    memset(b + 8, 0x21, 16);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q5_1, b, y, 32), TW_OK);
    {
        const int idx[] = {0, 1, 16, 31};
        const float want[] = {9.5, 1.5, 2, 10};
        CHECK_EQ_INT(check_at(y, idx, want, 4, "q5_1"), 0);
    }

    /* Q8_0: d = 0.25; q = -128, 127, -1, 0, ...: y = -32, 31.75, -0.25, 0 */
    memset(b, 0, sizeof b);
    put16(b, F16_QUARTER);
    b[2] = 0x80, b[3] = 0x7F, b[4] = 0xFF, b[33] = 4;
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q8_0, b, y, 32), TW_OK);
    {
        const int idx[] = {0, 1, 2, 3, 31};
        const float want[] = {-32, 31.75, -0.25, 0, 1};
        CHECK_EQ_INT(check_at(y, idx, want, 5, "q8_0"), 0);
    }

    /* Q8_1: d = 0.5 then s (ignored), q at byte 4: q[0] = 10 -> 5, q[31] = -3 -> -1.5 */
    memset(b, 0, sizeof b);
    put16(b, F16_HALF);
    put16(b + 2, 0x5000);
    b[4] = 10, b[35] = (uint8_t)-3;
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q8_1, b, y, 32), TW_OK);
    {
        const int idx[] = {0, 1, 31};
        const float want[] = {5, 0, -1.5};
        CHECK_EQ_INT(check_at(y, idx, want, 3, "q8_1"), 0);
    }

    /* F16 / BF16 / F32 rows, two blocks of Q4_0 in one row */
    uint8_t h[6] = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38}; /* 1, -2, 0.5 */
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_F16, h, y, 3), TW_OK);
    CHECK(y[0] == 1 && y[1] == -2 && y[2] == 0.5);
    uint8_t bh[4] = {0x80, 0x3F, 0x40, 0xC0}; /* 1, -3 */
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_BF16, bh, y, 2), TW_OK);
    CHECK(y[0] == 1 && y[1] == -3);
    uint8_t two[36];
    put16(two, F16_ONE);
    memset(two + 2, 0x88, 16); /* all q = 8 -> 0 */
    put16(two + 18, F16_TWO);
    memset(two + 20, 0xF0, 16); /* lo 0 -> 2*(-8) = -16, hi 15 -> 2*7 = 14 */
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q4_0, two, y, 64), TW_OK);
    CHECK(y[0] == 0 && y[31] == 0 && y[32] == -16 && y[47] == -16 && y[48] == 14 && y[63] == 14);

    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q4_0, b, y, 31), TW_ERR_ARG);
    CHECK_EQ_INT(tw_dequantize_row((tw_dtype)16, b, y, 256), TW_ERR_UNSUPPORTED);
    CHECK_EQ_INT(tw_dequantize_row((tw_dtype)4, b, y, 32), TW_ERR_UNSUPPORTED);
}

/* The 12 scale bytes of Q4_K/Q5_K for scales sc = {1, 2, 3, 63, 17, 33, 48, 5} and mins
 * m = {0, 1, 62, 4, 20, 35, 9, 63}:
 *   bytes 0..3  = sc[j] | (sc[j+4] >> 4) << 6 = 1|1<<6, 2|2<<6, 3|3<<6, 63|0<<6
 *   bytes 4..7  = m[j] | (m[j+4] >> 4) << 6   = 0|1<<6, 1|2<<6, 62|0<<6, 4|3<<6
 *   bytes 8..11 = (sc[j+4] & 15) | (m[j+4] & 15) << 4 = 1|4<<4, 1|3<<4, 0|9<<4, 5|15<<4 */
static const uint8_t k4_scales[12] = {0x41, 0x82, 0xC3, 0x3F, 0x40, 0x81,
                                      0x3E, 0xC4, 0x41, 0x31, 0x90, 0xF5};

static void test_dequant_q4_k_q5_k(void) {
    uint8_t b[176];
    float y[256];
    /* Q4_K: d = 1, dmin = 0.5; qs all 0x3A (lo 10, hi 3) except qs[0] = 0xF0, qs[127] = 0x0F.
     * Sub-block s (32 elements): even s from the low nibbles of qs[16s..], odd s from the high
     * nibbles of the same 32 bytes; y = d*sc*q - dmin*m:
     *   s0: 1*10 - 0 = 10       s1: 2*3 - 0.5 = 5.5      s2: 3*10 - 31 = -1
     *   s3: 63*3 - 2 = 187      s4: 17*10 - 10 = 160      s5: 33*3 - 17.5 = 81.5
     *   s6: 48*10 - 4.5 = 475.5 s7: 5*3 - 31.5 = -16.5
     * qs[0]: y[0] = 1*0 - 0 = 0, y[32] = 2*15 - 0.5 = 29.5;
     * qs[127] (pair 3, l = 31): y[223] = 48*15 - 4.5 = 715.5, y[255] = 5*0 - 31.5 = -31.5 */
    put16(b, F16_ONE);
    put16(b + 2, F16_HALF);
    memcpy(b + 4, k4_scales, 12);
    memset(b + 16, 0x3A, 128);
    b[16] = 0xF0;
    b[16 + 127] = 0x0F;
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q4_K, b, y, 256), TW_OK);
    {
        const int idx[] = {1, 31, 33, 64, 96, 128, 160, 192, 224, 0, 32, 223, 255};
        const float want[] = {10, 10, 5.5, -1, 187, 160, 81.5, 475.5, -16.5, 0, 29.5, 715.5, -31.5};
        CHECK_EQ_INT(check_at(y, idx, want, 13, "q4_k"), 0);
    }

    /* Q5_K: the same scales; qh[32] at byte 16, qs[128] at byte 48, all 0x3A. qh[0] = 0xFF sets
     * the fifth bit (+16) of element 0 of every sub-block; qh[31] = 0x02 that of element 31 of
     * sub-block 1:
     *   y[0] = 1*26 - 0 = 26, y[32] = 2*19 - 0.5 = 37.5, y[63] = 37.5, y[224] = 5*19 - 31.5 =
     *   63.5, y[62] = 5.5 (no fifth bit), y[1] = 10 */
    put16(b, F16_ONE);
    put16(b + 2, F16_HALF);
    memcpy(b + 4, k4_scales, 12);
    memset(b + 16, 0, 32);
    b[16] = 0xFF;
    b[16 + 31] = 0x02;
    memset(b + 48, 0x3A, 128);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q5_K, b, y, 256), TW_OK);
    {
        const int idx[] = {0, 1, 32, 62, 63, 64, 96, 224, 225, 255};
        const float want[] = {26, 10, 37.5, 5.5, 37.5, 30 - 31 + 48, 187 + 16 * 63, 63.5,
                              -16.5, -16.5};
        CHECK_EQ_INT(check_at(y, idx, want, 10, "q5_k"), 0);
    }
}

static void test_dequant_q6_k(void) {
    /* ql[128], qh[64], scales[16] (int8), d. d = 0.5, scales[i] = i+1 but scales[15] = -2.
     * ql and qh zero (q = 0 - 32 = -32) except:
     *   ql[0] = 0x5A, ql[32] = 0x0F, qh[0] = 0xE4 (bit pairs 0,1,2,3), half 0, l = 0:
     *     y[0]  = (10 | 0<<4) - 32 = -22 -> 0.5*sc[0]*-22 = -11
     *     y[32] = (15 | 1<<4) - 32 = -1  -> 0.5*sc[2]*-1  = -1.5
     *     y[64] = (5  | 2<<4) - 32 = 5   -> 0.5*sc[4]*5   = 12.5
     *     y[96] = (0  | 3<<4) - 32 = 16  -> 0.5*sc[6]*16  = 56
     *   qh[63] = 0xC0 (half 1, l = 31, bits 6-7): y[255] = (0 | 3<<4) - 32 = 16 -> 0.5*-2*16
     *     = -16
     * untouched: y[1] = 0.5*1*-32 = -16, y[16] = 0.5*2*-32 = -32, y[128] = 0.5*9*-32 = -144,
     *   y[223] = half 1, l = 31, third quarter: sc[8+1+4] = 14 -> 0.5*14*-32 = -224 */
    uint8_t b[210];
    float y[256];
    memset(b, 0, sizeof b);
    b[0] = 0x5A, b[32] = 0x0F, b[128] = 0xE4, b[128 + 63] = 0xC0;
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)(i + 1);
    b[192 + 15] = (uint8_t)-2;
    put16(b + 208, F16_HALF);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q6_K, b, y, 256), TW_OK);
    const int idx[] = {0, 32, 64, 96, 255, 1, 16, 128, 223};
    const float want[] = {-11, -1.5, 12.5, 56, -16, -16, -32, -144, -224};
    CHECK_EQ_INT(check_at(y, idx, want, 9, "q6_k"), 0);
}

static void test_dequant_q2_k_q3_k_q8_k(void) {
    uint8_t b[292];
    float y[256];
    /* Q2_K: scales[16], qs[64], d, dmin. d = 0.5, dmin = 1; scales[s] = (s+1)&15 | (s%4)<<4
     * (sub-block s: scale (s+1)&15, min s%4). qs zero except qs[0] = 0xE4 (2-bit fields 0,1,2,3
     * at shifts 0,2,4,6), qs[16] = 0x03, qs[32] = 0x40. Sub-blocks of 16 walk: in half h,
     * shift k, sub-block 8h+2k reads qs[32h..32h+16), 8h+2k+1 reads qs[32h+16..32h+32).
     *   y[0]   s0 (1, 0):  0.5*1*0 - 0 = 0       y[16] s1 (2, 1): 0.5*2*3 - 1 = 2
     *   y[17]  s1: 0.5*2*0 - 1 = -1               y[32] s2 (3, 2): 0.5*3*1 - 2 = -0.5
     *   y[64]  s4 (5, 0):  0.5*5*2 - 0 = 5        y[96] s6 (7, 2): 0.5*7*3 - 2 = 8.5
     *   y[224] s14 (15, 2): 0.5*15*1 - 2 = 5.5    y[240] s15 (0, 3): 0 - 3 = -3 */
    memset(b, 0, sizeof b);
    for (int s = 0; s < 16; s++) b[s] = (uint8_t)(((s + 1) & 15) | ((s % 4) << 4));
    b[16 + 0] = 0xE4, b[16 + 16] = 0x03, b[16 + 32] = 0x40;
    put16(b + 80, F16_HALF);
    put16(b + 82, F16_ONE);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q2_K, b, y, 256), TW_OK);
    {
        const int idx[] = {0, 16, 17, 32, 64, 96, 224, 240};
        const float want[] = {0, 2, -1, -0.5, 5, 8.5, 5.5, -3};
        CHECK_EQ_INT(check_at(y, idx, want, 8, "q2_k"), 0);
    }

    /* Q3_K: hmask[32], qs[64], scales[12], d. Six-bit scales v (stored +32):
     *   v = {33, 31, 0, 63, 40, 32 x 10, 47} -> scale = {1, -1, -32, 31, 8, 0 x 10, 15}
     *   low nibbles: bytes 0..7 low = v0..v7 & 15 = 1,15,0,15,8,0,0,0; high = v8..v15 & 15 =
     *     0,..,0,15 -> 01 0F 00 0F 08 00 00 F0
     *   top bits: byte 8+k = v_k>>4 | (v_{k+4}>>4)<<2 | (v_{k+8}>>4)<<4 | (v_{k+12}>>4)<<6
     *     = 2|2<<2|2<<4|2<<6 = AA, 1|..= A9, 0|.. = A8, 3|.. = AB
     * d = 0.5; hmask 0xFF (no -4) except hm[0] = 0xFE (group 0, l 0) and hm[16] = 0x7F
     * (group 7, l 16); qs as in Q2_K: qs[0] = 0xE4, qs[16] = 0x03.
     *   y[0]   s0 (1):  q 0, hmask clear -> -4: 0.5*1*-4 = -2     y[1] s0: 0
     *   y[16]  s1 (-1): q 3 -> 0.5*-1*3 = -1.5                    y[32] s2 (-32): q 1 -> -16
     *   y[48]  s3 (31): q 0 -> 0                                   y[64] s4 (8): q 2 -> 8
     *   y[240] s15 (15), l 16 of group 7, hmask clear: 0.5*15*-4 = -30    y[241]: 0 */
    memset(b, 0, sizeof b);
    memset(b, 0xFF, 32);
    b[0] = 0xFE, b[16] = 0x7F;
    b[32 + 0] = 0xE4, b[32 + 16] = 0x03;
    const uint8_t q3s[12] = {0x01, 0x0F, 0x00, 0x0F, 0x08, 0x00,
                             0x00, 0xF0, 0xAA, 0xA9, 0xA8, 0xAB};
    memcpy(b + 96, q3s, 12);
    put16(b + 108, F16_HALF);
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q3_K, b, y, 256), TW_OK);
    {
        const int idx[] = {0, 1, 16, 32, 48, 64, 240, 241};
        const float want[] = {-2, 0, -1.5, -16, 0, 8, -30, 0};
        CHECK_EQ_INT(check_at(y, idx, want, 8, "q3_k"), 0);
    }

    /* Q8_K: d is an f32 (0.125), q[0] = -8 -> -1, q[255] = 100 -> 12.5 */
    memset(b, 0, sizeof b);
    const uint8_t d125[4] = {0x00, 0x00, 0x00, 0x3E}; /* 0x3E000000 = 0.125f */
    memcpy(b, d125, 4);
    b[4] = (uint8_t)-8, b[4 + 255] = 100;
    CHECK_EQ_INT(tw_dequantize_row(TW_DTYPE_Q8_K, b, y, 256), TW_OK);
    CHECK(y[0] == -1.0f && y[1] == 0.0f && y[255] == 12.5f);
}

static void test_quantize_reference_rounding(void) {
    float x[32];
    uint8_t b[34];

    /* Q8_0: amax 63.5 -> d = 0.5, 1/d = 2; q = roundf(2x), halves away from zero:
     *   63.5 -> 127, -10.25 -> -21, 0.75 -> 2, 0.25 -> 1, -0.25 -> -1 */
    memset(x, 0, sizeof x);
    x[0] = 63.5f, x[1] = -10.25f, x[2] = 0.75f, x[3] = 0.25f, x[31] = -0.25f;
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q8_0, x, b, 32), TW_OK);
    CHECK(b[0] == 0x00 && b[1] == 0x38);
    CHECK(b[2] == 127 && (int8_t)b[3] == -21 && b[4] == 2 && b[5] == 1 && (int8_t)b[33] == -1);
    CHECK(b[6] == 0);

    /* Q4_0: the largest magnitude is -4 -> d = -4/-8 = 0.5, 1/d = 2; q = min(15, (int)(2x +
     * 8.5)): 3.5 -> 15, 3.75 -> 16 -> 15, -4 -> 0, 0.25 -> 9, -0.25 -> 8, 0 -> 8.
     * qs[j] = q[j] | q[j+16] << 4 */
    memset(x, 0, sizeof x);
    x[0] = 3.5f, x[1] = 3.75f, x[5] = -4.0f, x[16] = 0.25f, x[17] = -0.25f;
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q4_0, x, b, 32), TW_OK);
    CHECK(b[0] == 0x00 && b[1] == 0x38);
    CHECK_EQ_INT(b[2], 0x9F);
    CHECK_EQ_INT(b[3], 0x8F);
    CHECK_EQ_INT(b[7], 0x80);
    CHECK_EQ_INT(b[4], 0x88);
    /* a positive maximum gives a negative d: 4 -> d = -0.5, 1/d = -2: 4 -> 0, -4 -> 15 */
    memset(x, 0, sizeof x);
    x[0] = 4.0f, x[16] = -4.0f;
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q4_0, x, b, 32), TW_OK);
    CHECK(b[0] == 0x00 && b[1] == 0xB8); /* -0.5 */
    CHECK_EQ_INT(b[2], 0xF0);

    /* Q4_1: min -1, max 2.75 -> d = 3.75/15 = 0.25, m = -1, 1/d = 4; q = min(15, (int)((x+1)*4 +
     * 0.5)): -1 -> 0, 2.75 -> 15, 0.1 -> 4, 0.15 -> 5, 0.125 -> 5, 0 -> 4 */
    memset(x, 0, sizeof x);
    x[0] = -1.0f, x[1] = 2.75f, x[2] = 0.1f, x[3] = 0.15f, x[16] = 0.125f;
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q4_1, x, b, 32), TW_OK);
    CHECK(b[0] == 0x00 && b[1] == 0x34 && b[2] == 0x00 && b[3] == 0xBC);
    CHECK_EQ_INT(b[4], 0x50);
    CHECK_EQ_INT(b[5], 0x4F);
    CHECK_EQ_INT(b[6], 0x44);
    CHECK_EQ_INT(b[7], 0x45);
    CHECK_EQ_INT(b[19], 0x44);

    /* an all-zero block: d = 0 / -8 = -0 (f16 0x8000, as ggml stores it), every q the zero
     * point 8 */
    memset(x, 0, sizeof x);
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q4_0, x, b, 32), TW_OK);
    CHECK(b[0] == 0 && b[1] == 0x80 && b[2] == 0x88 && b[17] == 0x88);

    /* F16 / BF16 / F32 rows */
    float hx[3] = {1.0f, -2.0f, 65520.0f};
    uint8_t hb[12];
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_F16, hx, hb, 3), TW_OK);
    CHECK(hb[0] == 0x00 && hb[1] == 0x3C && hb[2] == 0x00 && hb[3] == 0xC0 && hb[4] == 0x00 &&
          hb[5] == 0x7C);
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_BF16, hx, hb, 2), TW_OK);
    CHECK(hb[0] == 0x80 && hb[1] == 0x3F && hb[2] == 0x00 && hb[3] == 0xC0);
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_F32, hx, hb, 3), TW_OK);
    CHECK(memcmp(hb, hx, 12) == 0);

    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q4_K, x, b, 256), TW_ERR_UNSUPPORTED);
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q8_0, x, b, 16), TW_ERR_ARG);
}

/* Quantize then dequantize seeded random rows: each element comes back within half a step
 * (d/2 for Q8_0 and Q4_1; the Q4_0 grid has step |d| and clamps the top code, so within |d|),
 * plus the f16 rounding of d (relative 2^-11, times up to 15 steps) and of Q4_1's m (2^-11 of
 * |min|): under 2^-9 of the largest magnitude. */
static void test_quantize_round_trip_bounds(void) {
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    float x[96], y[96];
    uint8_t b[96 * 2];
    for (int trial = 0; trial < 50; trial++) {
        float amax = 0, mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < 96; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            x[i] = ((float)(seed >> 40) / (float)(1u << 24) - 0.5f) * (float)(trial + 1);
            amax = fmaxf(amax, fabsf(x[i]));
            mn = fminf(mn, x[i]);
            mx = fmaxf(mx, x[i]);
        }
        (void)mn, (void)mx; /* bounds below are per row; the per-block ones are tighter */
        struct {
            tw_dtype t;
            float step;
        } cases[] = {{TW_DTYPE_Q8_0, amax / 127}, {TW_DTYPE_Q4_0, amax / 8 * 2},
                     {TW_DTYPE_Q4_1, 2 * amax / 15}};
        for (int c = 0; c < 3; c++) {
            CHECK_EQ_INT(tw_quantize_row(cases[c].t, x, b, 96), TW_OK);
            CHECK_EQ_INT(tw_dequantize_row(cases[c].t, b, y, 96), TW_OK);
            float worst = 0;
            for (int i = 0; i < 96; i++) worst = fmaxf(worst, fabsf(x[i] - y[i]));
            CHECK(worst <= cases[c].step * 0.5f + amax * 0x1p-9f);
        }
    }
}

/* tests/data/quant/golden.bin (tools/gen_quant_golden.py): random blocks decoded, and rows
 * encoded, by gguf-py's numpy implementation of the same formats. Both directions must match
 * bit for bit. */
static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void test_golden_from_gguf_py(void) {
    const char *dir = test_env("TWIN_TEST_DATA");
    if (!dir) {
        fprintf(stderr, "  TWIN_TEST_DATA not set: golden check not run\n");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/quant/golden.bin", dir);
    char *buf;
    size_t n;
    CHECK_EQ_INT(tw_file_read(path, &buf, &n), TW_OK);
    if (!buf) return;
    const uint8_t *p = (const uint8_t *)buf, *end = p + n;
    CHECK(n >= 12 && memcmp(p, "TWQG", 4) == 0 && rd_le(p + 4, 4) == 1);
    uint64_t count = n >= 12 ? rd_le(p + 8, 4) : 0;
    p += 12;
    int seen_types = 0, bad = 0;
    for (uint64_t r = 0; r < count; r++) {
        if (end - p < 24) break;
        uint32_t kind = (uint32_t)rd_le(p, 4);
        tw_dtype t = (tw_dtype)rd_le(p + 4, 4);
        uint64_t ne = rd_le(p + 8, 8), nb = rd_le(p + 16, 8);
        p += 24;
        if (ne > 4096 || nb > 16384 || (uint64_t)(end - p) < ne * 4 + nb) break;
        static float f[4096], g[4096];
        static uint8_t q[16384];
        if (kind == 0) {
            const uint8_t *src = p;
            memcpy(f, p + nb, ne * 4);
            CHECK_EQ_INT(tw_dequantize_row(t, src, g, (int64_t)ne), TW_OK);
            for (uint64_t i = 0; i < ne; i++)
                if (memcmp(&f[i], &g[i], 4) != 0 && bad++ < 5)
                    fprintf(stderr, "  %s dequant [%llu]: %.9g, gguf-py %.9g\n",
                            tw_dtype_name(t),
                            (unsigned long long)i, g[i], f[i]);
        } else {
            memcpy(f, p, ne * 4);
            CHECK_EQ_INT(tw_quantize_row(t, f, q, (int64_t)ne), TW_OK);
            CHECK_EQ_INT(tw_dtype_row_bytes(t, (int64_t)ne), nb);
            for (uint64_t i = 0; i < nb; i++)
                if (q[i] != p[ne * 4 + i] && bad++ < 5)
                    fprintf(stderr, "  %s quant byte %llu: %02x, gguf-py %02x\n",
                            tw_dtype_name(t), (unsigned long long)i, q[i], p[ne * 4 + i]);
        }
        p += ne * 4 + nb;
        seen_types++;
    }
    CHECK_EQ_INT(seen_types, (int)count);
    CHECK(count >= 17);
    CHECK_EQ_INT(bad, 0);
    tw_free(buf);
}

int main(void) {
    RUN(test_type_table);
    RUN(test_f16_conversions);
    RUN(test_dequant_simple_blocks);
    RUN(test_dequant_q4_k_q5_k);
    RUN(test_dequant_q6_k);
    RUN(test_dequant_q2_k_q3_k_q8_k);
    RUN(test_quantize_reference_rounding);
    RUN(test_quantize_round_trip_bounds);
    RUN(test_golden_from_gguf_py);
    TEST_DONE();
}
