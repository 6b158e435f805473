/* quant.c: ggml's element types (quant.h): the layout table, half-precision conversions,
 * dequantization of rows to f32 and the reference quantizers for the simple block types.
 *
 * Block layouts (all little-endian, packed; "f16" is an IEEE binary16 scale):
 *   Q4_0  32 elems  18 B: d:f16, qs[16]          x[j] = d*(lo(qs[j])-8), x[j+16] = d*(hi(qs[j])-8)
 *   Q4_1  32 elems  20 B: d,m:f16, qs[16]        x = d*q + m (q as in Q4_0, no offset)
 *   Q5_0  32 elems  22 B: d:f16, qh:u32, qs[16]  5th bit of x[j] is bit j of qh, of x[j+16] bit
 *                                                 j+16; x = d*(q-16)
 *   Q5_1  32 elems  24 B: d,m:f16, qh:u32, qs[16] x = d*q + m
 *   Q8_0  32 elems  34 B: d:f16, qs:i8[32]       x = d*q
 *   Q8_1  32 elems  36 B: d,s:f16, qs:i8[32]     x = d*q (s = d*sum(q) is for dot products)
 *   Q2_K 256 elems  84 B: scales[16], qs[64], d,dmin:f16
 *   Q3_K 256 elems 110 B: hmask[32], qs[64], scales[12] (16 x 6 bit), d:f16
 *   Q4_K 256 elems 144 B: d,dmin:f16, scales[12] (8 x (6 bit scale, 6 bit min)), qs[128]
 *   Q5_K 256 elems 176 B: d,dmin:f16, scales[12], qh[32], qs[128]
 *   Q6_K 256 elems 210 B: ql[128], qh[64], scales:i8[16], d:f16
 *   Q8_K 256 elems 292 B: d:f32, qs:i8[256], bsums:i16[16]
 * The K-quant bit walks are written out beside each dequantizer. Written from the layouts in
 * ggml's public headers; the code is our own.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

/* ---- the type table ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int64_t block_size;
    size_t type_size;
} dtype_info;

/* Indexed by ggml type id. Ids ggml retired (4, 5, 31-33, 36-38) have no name and no layout. */
static const dtype_info dtype_table[TW_DTYPE_COUNT] = {
    [0] = {"f32", 1, 4},
    [1] = {"f16", 1, 2},
    [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},
    [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},
    [9] = {"q8_1", 32, 36},
    [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},
    [12] = {"q4_K", 256, 144},
    [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},
    [15] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98},
    [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},
    [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136},
    [24] = {"i8", 1, 1},
    [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},
    [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},
    [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},
    [39] = {"mxfp4", 32, 17},
};

static const dtype_info *dtype_get(tw_dtype t) {
    if ((unsigned)t >= TW_DTYPE_COUNT || !dtype_table[t].name) return NULL;
    return &dtype_table[t];
}

const char *tw_dtype_name(tw_dtype t) {
    const dtype_info *d = dtype_get(t);
    return d ? d->name : NULL;
}

int64_t tw_dtype_block_size(tw_dtype t) {
    const dtype_info *d = dtype_get(t);
    return d ? d->block_size : 0;
}

size_t tw_dtype_type_size(tw_dtype t) {
    const dtype_info *d = dtype_get(t);
    return d ? d->type_size : 0;
}

size_t tw_dtype_row_bytes(tw_dtype t, int64_t n) {
    const dtype_info *d = dtype_get(t);
    if (!d || n < 0 || n % d->block_size != 0) return 0;
    uint64_t blocks = (uint64_t)(n / d->block_size);
    if (blocks > SIZE_MAX / d->type_size) return 0;
    return (size_t)blocks * d->type_size;
}

int tw_dtype_can_dequantize(tw_dtype t) {
    switch (t) {
    case TW_DTYPE_F32: case TW_DTYPE_F16: case TW_DTYPE_BF16:
    case TW_DTYPE_Q4_0: case TW_DTYPE_Q4_1: case TW_DTYPE_Q5_0: case TW_DTYPE_Q5_1:
    case TW_DTYPE_Q8_0: case TW_DTYPE_Q8_1:
    case TW_DTYPE_Q2_K: case TW_DTYPE_Q3_K: case TW_DTYPE_Q4_K: case TW_DTYPE_Q5_K:
    case TW_DTYPE_Q6_K: case TW_DTYPE_Q8_K:
        return 1;
    default:
        return 0;
    }
}

/* ---- half conversions ---------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float tw_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in f32 */
        float f = (float)mant * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7F800000u | (mant << 13)); /* inf / nan */
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t tw_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) /* nan: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* below 2^-14: a subnormal half, mantissa = round(|f| / 2^-24); 2^-25 ties to 0 */
        if (ax <= 0x33000000u) return sign;
        uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
        int shift = 126 - (int)(ax >> 23); /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
    uint32_t h = r >> 13, rem = r & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float tw_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t tw_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64u); /* quiet nan */
    return (uint16_t)((u + (0x7FFFu + ((u >> 16) & 1u))) >> 16);
}

/* ---- little-endian field readers ----------------------------------------------------------- */

static float rd_f16(const uint8_t *p) { return tw_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void wr_f16(uint8_t *p, float f) {
    uint16_t h = tw_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- dequantizers: one block of `bs` elements from b to y ----------------------------------- */

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0xF) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    uint32_t qh = rd_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int hi0 = (int)((qh >> j) & 1u) << 4, hi1 = (int)((qh >> (j + 16)) & 1u) << 4;
        y[j] = d * (float)(((qs[j] & 0xF) | hi0) - 16);
        y[j + 16] = d * (float)(((qs[j] >> 4) | hi1) - 16);
    }
}

static void deq_q5_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t qh = rd_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int hi0 = (int)((qh >> j) & 1u) << 4, hi1 = (int)((qh >> (j + 16)) & 1u) << 4;
        y[j] = d * (float)((qs[j] & 0xF) | hi0) + m;
        y[j + 16] = d * (float)((qs[j] >> 4) | hi1) + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = d * (float)qs[j];
}

static void deq_q8_1(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 32; j++) y[j] = d * (float)qs[j];
}

/* Q2_K: 16 sub-blocks of 16. Sub-block s has scale d*(scales[s]&15) and min dmin*(scales[s]>>4).
 * The 2-bit quants are walked in two halves of 128: in half h, byte l of qs[32h..32h+32) holds
 * four elements at bit shifts 0,2,4,6, which belong to the 32-element groups 0..3 of the half
 * (bytes 0..15 to the group's first sub-block, 16..31 to its second). */
static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
    int is = 0;
    for (int half = 0; half < 2; half++, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; part++, is++) {
                float dl = d * (float)(sc[is] & 0xF), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[l + 16 * part] >> shift) & 3) - ml;
            }
        }
    }
}

/* Q3_K: like Q2_K's walk, plus a high bit per element in hmask: element l of the 32-group g
 * (g = 0..7 over the block) is reduced by 4 when bit g of hmask[l] is clear. The 16 six-bit
 * scales (stored minus 32): low 4 bits from the nibbles of scales[0..8) (sub-blocks 0..7 low
 * nibbles, 8..15 high nibbles), top 2 bits of sub-block s from scales[8 + s%4] >> 2*(s/4). */
static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *ps = b + 96;
    float d = rd_f16(b + 108);
    int scale[16];
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? (ps[s] & 0xF) : (ps[s - 8] >> 4);
        int hi = (ps[8 + s % 4] >> (2 * (s / 4))) & 3;
        scale[s] = (lo | (hi << 4)) - 32;
    }
    int is = 0, g = 0;
    for (int half = 0; half < 2; half++, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, g++) {
            for (int part = 0; part < 2; part++, is++) {
                float dl = d * (float)scale[is];
                for (int l = 16 * part; l < 16 * part + 16; l++) {
                    int v = (q[l] >> shift) & 3;
                    if (!(hm[l] & (1u << g))) v -= 4;
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}

/* The 8 (scale, min) pairs of Q4_K/Q5_K, 6 bits each in 12 bytes: pairs 0..3 are the low 6
 * bits of bytes 0..3 (scale) and 4..7 (min); pairs 4..7 take their low 4 bits from the nibbles
 * of bytes 8..11 and their top 2 bits from the top bits of bytes 0..3 (scale) / 4..7 (min). */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: 8 sub-blocks of 32, taken in pairs: qs[32p..32p+32) holds sub-block 2p in its low
 * nibbles and 2p+1 in its high nibbles; x = d*sc*q - dmin*m. */
static void deq_q4_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int p = 0; p < 4; p++, q += 32) {
        int s0, m0, s1, m1;
        k4_scale_min(sc, 2 * p, &s0, &m0);
        k4_scale_min(sc, 2 * p + 1, &s1, &m1);
        float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++) *y++ = d0 * (float)(q[l] & 0xF) - n0;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] >> 4) - n1;
    }
}

/* Q5_K: Q4_K plus a fifth bit: element l of sub-block s takes 16 when bit s of qh[l] is set. */
static void deq_q5_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *q = b + 48;
    for (int p = 0; p < 4; p++, q += 32) {
        int s0, m0, s1, m1;
        k4_scale_min(sc, 2 * p, &s0, &m0);
        k4_scale_min(sc, 2 * p + 1, &s1, &m1);
        float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
        unsigned b0 = 1u << (2 * p), b1 = 1u << (2 * p + 1);
        for (int l = 0; l < 32; l++)
            *y++ = d0 * (float)((q[l] & 0xF) + ((qh[l] & b0) ? 16 : 0)) - n0;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)((q[l] >> 4) + ((qh[l] & b1) ? 16 : 0)) - n1;
    }
}

/* Q6_K: two halves of 128. In half h (ql += 64h, qh += 32h, scales += 8h), for l < 32:
 *   y[l]    = low nibble of ql[l]    | bits 0-1 of qh[l] << 4, scale sc[l/16]
 *   y[l+32] = low nibble of ql[l+32] | bits 2-3 of qh[l] << 4, scale sc[l/16 + 2]
 *   y[l+64] = high nibble of ql[l]   | bits 4-5 of qh[l] << 4, scale sc[l/16 + 4]
 *   y[l+96] = high nibble of ql[l+32]| bits 6-7 of qh[l] << 4, scale sc[l/16 + 6]
 * each value minus 32, times d * scale. */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static void deq_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)qs[j];
}

typedef void (*deq_block_fn)(const uint8_t *b, float *y);

static deq_block_fn deq_block_for(tw_dtype t) {
    switch (t) {
    case TW_DTYPE_Q4_0: return deq_q4_0;
    case TW_DTYPE_Q4_1: return deq_q4_1;
    case TW_DTYPE_Q5_0: return deq_q5_0;
    case TW_DTYPE_Q5_1: return deq_q5_1;
    case TW_DTYPE_Q8_0: return deq_q8_0;
    case TW_DTYPE_Q8_1: return deq_q8_1;
    case TW_DTYPE_Q2_K: return deq_q2_k;
    case TW_DTYPE_Q3_K: return deq_q3_k;
    case TW_DTYPE_Q4_K: return deq_q4_k;
    case TW_DTYPE_Q5_K: return deq_q5_k;
    case TW_DTYPE_Q6_K: return deq_q6_k;
    case TW_DTYPE_Q8_K: return deq_q8_k;
    default: return NULL;
    }
}

tw_status tw_dequantize_row(tw_dtype t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    int64_t bs = tw_dtype_block_size(t);
    if (bs == 0) return tw_error(TW_ERR_UNSUPPORTED, "dequantize: unknown type id %d", (int)t);
    if (n < 0 || n % bs != 0)
        return tw_error(TW_ERR_ARG, "dequantize %s: %lld elements is not a multiple of %lld",
                        tw_dtype_name(t), (long long)n, (long long)bs);
    switch (t) {
    case TW_DTYPE_F32:
        if (n) memcpy(dst, s, (size_t)n * 4);
        return TW_OK;
    case TW_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = tw_f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return TW_OK;
    case TW_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = tw_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return TW_OK;
    default:
        break;
    }
    deq_block_fn fn = deq_block_for(t);
    if (!fn)
        return tw_error(TW_ERR_UNSUPPORTED, "dequantize: type %s is not supported",
                        tw_dtype_name(t));
    size_t ts = tw_dtype_type_size(t);
    for (int64_t i = 0; i < n / bs; i++) fn(s + (size_t)i * ts, dst + i * bs);
    return TW_OK;
}

/* ---- reference quantizers (ggml's rounding, so the bytes match llama.cpp's) ----------------- */

/* Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero). */
static void quant_q8_0(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* Q4_0: the element of largest magnitude maps to -8: d = max / -8; q = min(15, (int)(x/d +
 * 8.5)) (truncation after the +8.5 offset, as ggml does). */
static void quant_q4_0(const float *x, uint8_t *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < 16; j++) {
        int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        b[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = min(15, (int)((x - min)/d + 0.5)). */
static void quant_q4_1(const float *x, uint8_t *b) {
    float min = INFINITY, max = -INFINITY;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    wr_f16(b + 2, min);
    for (int j = 0; j < 16; j++) {
        int q0 = (int)(int8_t)((x[j] - min) * id + 0.5f);
        int q1 = (int)(int8_t)((x[j + 16] - min) * id + 0.5f);
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        b[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

tw_status tw_quantize_row(tw_dtype t, const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    int64_t bs = tw_dtype_block_size(t);
    if (bs == 0) return tw_error(TW_ERR_UNSUPPORTED, "quantize: unknown type id %d", (int)t);
    if (n < 0 || n % bs != 0)
        return tw_error(TW_ERR_ARG, "quantize %s: %lld elements is not a multiple of %lld",
                        tw_dtype_name(t), (long long)n, (long long)bs);
    void (*fn)(const float *, uint8_t *) = NULL;
    switch (t) {
    case TW_DTYPE_F32:
        if (n) memcpy(d, src, (size_t)n * 4);
        return TW_OK;
    case TW_DTYPE_F16:
    case TW_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = t == TW_DTYPE_F16 ? tw_f32_to_f16(src[i]) : tw_f32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return TW_OK;
    case TW_DTYPE_Q8_0: fn = quant_q8_0; break;
    case TW_DTYPE_Q4_0: fn = quant_q4_0; break;
    case TW_DTYPE_Q4_1: fn = quant_q4_1; break;
    default:
        return tw_error(TW_ERR_UNSUPPORTED, "quantize: type %s is not supported",
                        tw_dtype_name(t));
    }
    size_t ts = tw_dtype_type_size(t);
    for (int64_t i = 0; i < n / bs; i++) fn(src + i * bs, d + (size_t)i * ts);
    return TW_OK;
}
