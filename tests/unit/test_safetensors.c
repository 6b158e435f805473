/* test_safetensors.c: the safetensors reader and writer.
 *   - dtype table: names, sizes, the tw_dtype mapping both ways
 *   - writer -> reader round trip over every dtype, a scalar, an empty tensor and metadata with
 *     characters that need escaping; bytes compared, data aligned, header exactly as specified
 *   - f32 conversion of F32/F16/BF16 against known bit patterns; unaligned data
 *   - every malformed-file check gives TW_ERR_FORMAT (or UNSUPPORTED) with a one-line message
 *     naming the file, the tensor and the field
 *   - allocation failures at every point of st_open_memory and the writer fail cleanly
 */
#include "safetensors.h"
#include "test.h"

#include <unistd.h>

/* A file image: 8-byte little-endian header length, the header, then data_len bytes of data
 * (byte i of the data is i & 0xff). Caller frees with free(). */
static uint8_t *make_file(const char *header, size_t data_len, size_t *size) {
    size_t hn = strlen(header);
    *size = 8 + hn + data_len;
    uint8_t *b = malloc(*size + 1);
    uint64_t n = hn;
    memcpy(b, &n, 8);
    memcpy(b + 8, header, hn);
    for (size_t i = 0; i < data_len; i++) b[8 + hn + i] = (uint8_t)i;
    return b;
}

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static void test_dtypes(void) {
    st_dtype t;
    CHECK_EQ_STR(st_dtype_name(ST_DTYPE_F32), "F32");
    CHECK_EQ_STR(st_dtype_name(ST_DTYPE_BF16), "BF16");
    CHECK_EQ_STR(st_dtype_name(ST_DTYPE_F8_E4M3), "F8_E4M3");
    CHECK(st_dtype_name(ST_DTYPE_COUNT) == NULL);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_BOOL), 1);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_F16), 2);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_I32), 4);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_U64), 8);
    CHECK_EQ_INT(st_dtype_size(ST_DTYPE_COUNT), 0);
    CHECK(st_dtype_parse("I64", &t) == 0 && t == ST_DTYPE_I64);
    CHECK(st_dtype_parse("f32", &t) == -1); /* case-sensitive, as the spec */
    CHECK(st_dtype_parse("F4", &t) == -1);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_F32), TW_DTYPE_F32);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_F16), TW_DTYPE_F16);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_BF16), TW_DTYPE_BF16);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_I32), TW_DTYPE_I32);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_I64), TW_DTYPE_I64);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_F64), TW_DTYPE_F64);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_U8), TW_DTYPE_COUNT);
    CHECK_EQ_INT(st_dtype_to_tw(ST_DTYPE_BOOL), TW_DTYPE_COUNT);
    CHECK(st_dtype_from_tw(TW_DTYPE_BF16, &t) == 0 && t == ST_DTYPE_BF16);
    CHECK(st_dtype_from_tw(TW_DTYPE_I8, &t) == 0 && t == ST_DTYPE_I8);
    CHECK(st_dtype_from_tw(TW_DTYPE_Q4_0, &t) == -1);
    CHECK(st_dtype_from_tw(TW_DTYPE_COUNT, &t) == -1);
}

/* The header of a small file, byte for byte: metadata first, then tensors by element size
 * (descending) and name, compact JSON, padded with spaces to a multiple of 8 with the prefix. */
static void test_writer_header_exact(void) {
    st_writer *w = st_writer_new();
    float a[2] = {1.0f, 2.0f};
    uint16_t b[1] = {0x3C00};
    double c[1] = {3.0};
    int64_t s2[1] = {2}, s1[1] = {1};
    CHECK(st_writer_add_tensor(w, "b", ST_DTYPE_F16, 1, s1, b) == TW_OK);
    CHECK(st_writer_add_tensor(w, "a", ST_DTYPE_F32, 1, s2, a) == TW_OK);
    CHECK(st_writer_add_tensor(w, "c", ST_DTYPE_F64, 1, s1, c) == TW_OK);
    CHECK(st_writer_set_metadata(w, "format", "pt") == TW_OK);
    const char *path = tmp_path("exact.safetensors");
    CHECK(st_writer_write(w, path) == TW_OK);
    st_writer_free(w);

    char *buf;
    size_t n;
    CHECK(tw_file_read(path, &buf, &n) == TW_OK);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[16,18]}}";
    size_t wl = strlen(want), padded = (8 + wl + 7) / 8 * 8 - 8;
    uint64_t hn;
    memcpy(&hn, buf, 8);
    CHECK_EQ_INT(hn, padded);
    CHECK_EQ_INT(n, 8 + padded + 18);
    CHECK(memcmp(buf + 8, want, wl) == 0);
    for (size_t i = wl; i < padded; i++) CHECK(buf[8 + i] == ' ');
    CHECK(memcmp(buf + 8 + padded, c, 8) == 0);
    CHECK(memcmp(buf + 8 + padded + 8, a, 8) == 0);
    CHECK(memcmp(buf + 8 + padded + 16, b, 2) == 0);
    tw_free(buf);
    unlink(path);
}

static void test_roundtrip(void) {
    float f32[2 * 3] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
    uint16_t f16[5] = {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001}; /* odd count: 10 bytes */
    uint16_t bf16[3] = {0x3F80, 0xC040, 0x4049};
    int32_t i32[4] = {-1, 0, 2147483647, -2147483647 - 1};
    int64_t i64[4] = {1, -2, INT64_MAX, INT64_MIN};
    uint8_t u8[7] = {0, 1, 2, 253, 254, 255, 7};
    uint8_t bools[3] = {1, 0, 1};
    double f64[1] = {3.141592653589793};
    int8_t i8[1] = {-7};
    int16_t i16[3] = {-300, 0, 300};

    const struct {
        const char *name;
        st_dtype type;
        uint32_t n_dims;
        int64_t shape[3];
        const void *data;
        size_t nbytes;
    } want[] = {
        {"model.layers.0.w", ST_DTYPE_F32, 2, {2, 3}, f32, sizeof f32},
        {"h16", ST_DTYPE_F16, 1, {5}, f16, sizeof f16},
        {"b16", ST_DTYPE_BF16, 2, {3, 1}, bf16, sizeof bf16},
        {"ids", ST_DTYPE_I32, 1, {4}, i32, sizeof i32},
        {"pos", ST_DTYPE_I64, 2, {2, 2}, i64, sizeof i64},
        {"bytes", ST_DTYPE_U8, 1, {7}, u8, sizeof u8},
        {"mask", ST_DTYPE_BOOL, 3, {1, 3, 1}, bools, sizeof bools},
        {"pi", ST_DTYPE_F64, 0, {0}, f64, sizeof f64}, /* a scalar */
        {"small", ST_DTYPE_I8, 1, {1}, i8, sizeof i8},
        {"short", ST_DTYPE_I16, 1, {3}, i16, sizeof i16},
        {"empty", ST_DTYPE_F32, 2, {0, 4}, NULL, 0},
        {"name \"quoted\" \\ é", ST_DTYPE_F32, 1, {1}, f32, 4},
    };
    size_t nw = sizeof want / sizeof *want;
    st_writer *w = st_writer_new();
    CHECK(w != NULL);
    for (size_t i = 0; i < nw; i++)
        CHECK(st_writer_add_tensor(w, want[i].name, want[i].type, want[i].n_dims, want[i].shape,
                                   want[i].data) == TW_OK);
    CHECK(st_writer_set_metadata(w, "format", "pt") == TW_OK);
    CHECK(st_writer_set_metadata(w, "note", "line1\nline2 \"q\" \x01 ü") == TW_OK);
    CHECK(st_writer_set_metadata(w, "format", "np") == TW_OK); /* later value wins */
    /* Refused: duplicate, reserved and non-UTF-8 names, negative shape. */
    CHECK_EQ_INT(st_writer_add_tensor(w, "h16", ST_DTYPE_F16, 1, want[1].shape, f16), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "'h16'") != NULL);
    CHECK_EQ_INT(st_writer_add_tensor(w, "__metadata__", ST_DTYPE_F16, 1, want[1].shape, f16), TW_ERR_ARG);
    CHECK_EQ_INT(st_writer_add_tensor(w, "bad\xff", ST_DTYPE_F16, 1, want[1].shape, f16), TW_ERR_ARG);
    int64_t neg[1] = {-1};
    CHECK_EQ_INT(st_writer_add_tensor(w, "neg", ST_DTYPE_F16, 1, neg, f16), TW_ERR_ARG);
    const char *path = tmp_path("rt.safetensors");
    CHECK(st_writer_write(w, path) == TW_OK);
    st_writer_free(w);

    st_file *f = st_open(path);
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return;
    }
    CHECK_EQ_STR(st_path(f), path);
    CHECK_EQ_INT(st_n_tensors(f), nw);
    CHECK_EQ_INT(st_data_offset(f) % 8, 0);
    CHECK_EQ_INT(st_n_metadata(f), 2);
    CHECK_EQ_STR(st_metadata_get(f, "format"), "np");
    CHECK_EQ_STR(st_metadata_get(f, "note"), "line1\nline2 \"q\" \x01 ü");
    CHECK(st_metadata_get(f, "missing") == NULL);
    const char *k, *v;
    st_metadata_at(f, 0, &k, &v);
    CHECK_EQ_STR(k, "format");
    CHECK_EQ_STR(v, "np");
    const uint8_t *base = (const uint8_t *)st_tensor_at(f, 0)->data; /* data section start */
    for (size_t i = 0; i < nw; i++) {
        const st_tensor *t = st_find_tensor(f, want[i].name);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK_EQ_STR(t->name, want[i].name);
        CHECK_EQ_INT(t->st_type, want[i].type);
        CHECK_EQ_INT(t->dtype, st_dtype_to_tw(want[i].type));
        CHECK_EQ_INT(t->n_dims, want[i].n_dims);
        int64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            CHECK_EQ_INT(t->shape[d], want[i].shape[d]);
            ne *= want[i].shape[d];
        }
        CHECK_EQ_INT(t->n_elements, ne);
        CHECK_EQ_INT(t->nbytes, want[i].nbytes);
        if (want[i].nbytes) CHECK(memcmp(t->data, want[i].data, want[i].nbytes) == 0);
        /* The writer's order keeps every tensor aligned to its element size. */
        CHECK_EQ_INT(((uintptr_t)t->data - (uintptr_t)base) % st_dtype_size(t->st_type), 0);
        CHECK_EQ_INT((uint64_t)((const uint8_t *)t->data - base), t->offset);
    }
    /* Data order: by offset, 8-byte types first. */
    CHECK_EQ_INT(st_tensor_at(f, 0)->offset, 0);
    CHECK_EQ_INT(st_dtype_size(st_tensor_at(f, 0)->st_type), 8);
    for (uint64_t i = 1; i < st_n_tensors(f); i++) {
        const st_tensor *p = st_tensor_at(f, i - 1), *t = st_tensor_at(f, i);
        CHECK_EQ_INT(t->offset, p->offset + p->nbytes);
        CHECK(st_dtype_size(t->st_type) <= st_dtype_size(p->st_type));
    }
    CHECK(st_find_tensor(f, "nope") == NULL);
    CHECK(st_find_tensor(f, "") == NULL);

    /* Conversions. */
    float out[8];
    CHECK(st_tensor_to_f32(st_find_tensor(f, "model.layers.0.w"), out) == TW_OK);
    for (int i = 0; i < 6; i++) CHECK(memcmp(&out[i], &f32[i], 4) == 0);
    CHECK(st_tensor_to_f32(st_find_tensor(f, "h16"), out) == TW_OK);
    CHECK_EQ_INT(out[0] == 1.0f, 1);
    CHECK_EQ_INT(out[1] == -2.0f, 1);
    CHECK_NEAR(out[2], 0.333251953125, 0); /* 0x3555 is exactly this */
    CHECK_NEAR(out[3], 65504.0, 0);
    CHECK_NEAR(out[4], 5.9604644775390625e-8, 0); /* smallest subnormal, 2^-24 */
    CHECK(st_tensor_to_f32(st_find_tensor(f, "b16"), out) == TW_OK);
    CHECK_NEAR(out[0], 1.0, 0);
    CHECK_NEAR(out[1], -3.0, 0);
    CHECK_NEAR(out[2], 3.140625, 0);
    out[0] = 42.0f;
    CHECK_EQ_INT(st_tensor_to_f32(st_find_tensor(f, "ids"), out), TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "'ids'") != NULL && strstr(tw_errmsg(), "I32") != NULL);
    CHECK(out[0] == 42.0f); /* untouched */
    CHECK(st_tensor_to_f32(st_find_tensor(f, "empty"), out) == TW_OK);
    st_close(f);
    st_close(NULL);
    unlink(path);

    /* An empty writer writes a valid, empty file. */
    w = st_writer_new();
    path = tmp_path("empty.safetensors");
    CHECK(st_writer_write(w, path) == TW_OK);
    st_writer_free(w);
    st_writer_free(NULL);
    f = st_open(path);
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(st_n_tensors(f), 0);
        CHECK_EQ_INT(st_n_metadata(f), 0);
        CHECK_EQ_INT(st_file_size(f), 16);
        st_close(f);
    }
    unlink(path);
}

/* Files other writers may produce: unpadded header (data not aligned), padding with any JSON
 * whitespace, fields in another order and extra fields, tensors listed out of data order. */
static void test_reader_accepts(void) {
    const char *h = "{\"b\":{\"data_offsets\":[4,6],\"dtype\":\"BF16\",\"shape\":[1],\"x\":[1]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} \t\r\n ";
    size_t size;
    uint8_t *b = make_file(h, 6, &size);
    float one = 1.0f;
    uint16_t bf = 0xC000; /* -2.0 */
    size_t hn = strlen(h);
    memcpy(b + 8 + hn, &one, 4);
    memcpy(b + 8 + hn + 4, &bf, 2);
    st_file *f = st_open_memory(b, size, "mem.safetensors");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(st_n_tensors(f), 2);
        CHECK_EQ_STR(st_tensor_at(f, 0)->name, "a"); /* data order */
        CHECK_EQ_INT(st_header_size(f), hn);
        float out[1];
        CHECK(st_tensor_to_f32(st_find_tensor(f, "a"), out) == TW_OK && out[0] == 1.0f);
        CHECK(st_tensor_to_f32(st_find_tensor(f, "b"), out) == TW_OK && out[0] == -2.0f);
        CHECK(st_metadata_get(f, "format") == NULL);
        st_close(f);
    }
    free(b);
}

/* Opens the image and expects failure with `code` and a one-line message that holds the file
 * name and every one of the given substrings. */
static void expect_bad_image(int line, const uint8_t *b, size_t size, tw_status code,
                             const char *s1, const char *s2) {
    st_file *f = st_open_memory(b, size, "bad.safetensors");
    const char *msg = tw_errmsg();
    int ok = f == NULL && tw_errcode() == code && strstr(msg, "bad.safetensors") &&
             (!s1 || strstr(msg, s1)) && (!s2 || strstr(msg, s2)) && !strchr(msg, '\n');
    if (!ok) {
        fprintf(stderr, "line %d: wanted %s with '%s' '%s', got %s: %s\n", line,
                tw_status_name(code), s1 ? s1 : "", s2 ? s2 : "", f ? "success" : tw_status_name(tw_errcode()),
                f ? "" : msg);
        test_failures++;
    }
    st_close(f);
}

static void expect_bad(int line, const char *header, size_t data_len, tw_status code,
                       const char *s1, const char *s2) {
    size_t size;
    uint8_t *b = make_file(header, data_len, &size);
    expect_bad_image(line, b, size, code, s1, s2);
    free(b);
}

#define BAD(h, dl, code, s1, s2) expect_bad(__LINE__, h, dl, code, s1, s2)
#define T1(name, fields) "{\"" name "\":{" fields "}}"

static void test_reader_rejects(void) {
    /* The 8-byte prefix. */
    uint8_t small[5] = {1, 0, 0, 0, 0};
    expect_bad_image(__LINE__, small, sizeof small, TW_ERR_FORMAT, "header length", "shorter than 8");
    uint8_t img[64] = {0};
    expect_bad_image(__LINE__, img, 16, TW_ERR_FORMAT, "header length is 0", NULL);
    uint64_t huge = 100000001;
    memcpy(img, &huge, 8);
    expect_bad_image(__LINE__, img, 64, TW_ERR_FORMAT, "header length 100000001", "limit");
    uint64_t past = 57;
    memcpy(img, &past, 8);
    memset(img + 8, ' ', 56);
    img[8] = '{';
    expect_bad_image(__LINE__, img, 64, TW_ERR_FORMAT, "header length 57", "past the end");
    uint64_t max = UINT64_MAX;
    memcpy(img, &max, 8);
    expect_bad_image(__LINE__, img, 64, TW_ERR_FORMAT, "header length", "limit");

    /* The header text. */
    BAD(" {}", 0, TW_ERR_FORMAT, "header", "start with '{'");
    BAD("[]", 0, TW_ERR_FORMAT, "header", "start with '{'");
    BAD("{\"a\xff\":1}", 0, TW_ERR_FORMAT, "header", "UTF-8");
    BAD("{\"a\":{}", 0, TW_ERR_FORMAT, "header", "not closed");
    BAD("{}  x", 0, TW_ERR_FORMAT, "header", "not padding");
    BAD("{} {}", 0, TW_ERR_FORMAT, "header", "not padding");
    BAD("{\"a\" 1}", 0, TW_ERR_FORMAT, "header", "invalid JSON");
    BAD("{\"a\":[}]}", 0, TW_ERR_FORMAT, "header", NULL);
    BAD("{\"x\":[1,2]}", 0, TW_ERR_FORMAT, "tensor 'x'", "not an object");

    /* Metadata. */
    BAD("{\"__metadata__\":[]}", 0, TW_ERR_FORMAT, "__metadata__", "not an object");
    BAD("{\"__metadata__\":{\"format\":1}}", 0, TW_ERR_FORMAT, "key 'format'", "not a string");
    BAD("{\"__metadata__\":{\"k\":null}}", 0, TW_ERR_FORMAT, "key 'k'", "not a string");
    BAD("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, TW_ERR_FORMAT, "key 'k'", "twice");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, TW_ERR_FORMAT, "__metadata__", "twice");

    /* Tensor fields. */
    BAD(T1("w", "\"shape\":[1],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "'dtype' missing");
    BAD(T1("w", "\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "'shape' missing");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1]"), 4, TW_ERR_FORMAT, "tensor 'w'", "'data_offsets' missing");
    BAD(T1("w", "\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4,
        TW_ERR_FORMAT, "tensor 'w'", "'dtype' appears twice");
    BAD(T1("w", "\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "dtype: not a string");
    BAD(T1("w", "\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "unknown type 'F17'");
    BAD(T1("w", "\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, TW_ERR_UNSUPPORTED, "tensor 'w'", "F4");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "shape: not an array");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "shape[0]");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "shape[1]");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "shape[0]");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "shape[0]");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4,
        TW_ERR_UNSUPPORTED, "tensor 'w'", "9 dimensions");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), 4, TW_ERR_FORMAT, "tensor 'w'", "data_offsets");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 8, TW_ERR_FORMAT, "tensor 'w'", "data_offsets");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "data_offsets");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}"), 4, TW_ERR_FORMAT, "tensor 'w'", "data_offsets");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]"), 4, TW_ERR_FORMAT, "tensor 'w'", "begin 4 > end 0");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 4, TW_ERR_FORMAT, "tensor 'w'", "end 8 beyond");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]"), 4,
        TW_ERR_FORMAT, "tensor 'w'", "data_offsets");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"), 8, TW_ERR_FORMAT, "tensor 'w'", "span 8 bytes");
    BAD(T1("w", "\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,4]"), 4, TW_ERR_FORMAT, "tensor 'w'", "F16");
    /* 2^53 cubed overflows 64 bits; with a zero dimension the product is 0 and it is fine. */
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[9007199254740992,9007199254740992,9007199254740992],"
                "\"data_offsets\":[0,0]"),
        0, TW_ERR_FORMAT, "tensor 'w'", "overflows");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]"), 0,
        TW_ERR_FORMAT, "tensor 'w'", "shape[0]"); /* beyond 2^53 */
    BAD(T1("w", "\"dtype\":\"U64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]"), 0,
        TW_ERR_FORMAT, "tensor 'w'", "overflows"); /* 2^64 elements */
    BAD(T1("w", "\"dtype\":\"U64\",\"shape\":[2147483648,2147483648,2],\"data_offsets\":[0,0]"), 0,
        TW_ERR_FORMAT, "tensor 'w'", "overflows"); /* 2^64 bytes */
    size_t size;
    uint8_t *b = make_file(T1("w", "\"dtype\":\"F32\",\"shape\":[9007199254740992,0,9007199254740992],"
                                   "\"data_offsets\":[0,0]"), 0, &size);
    st_file *f = st_open_memory(b, size, "zero.safetensors");
    CHECK(f != NULL && st_find_tensor(f, "w") && st_find_tensor(f, "w")->n_elements == 0);
    st_close(f);
    free(b);

    /* The data section: overlap, gap, trailing bytes, duplicates. */
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        12, TW_ERR_FORMAT, "tensor 'b'", "overlap tensor 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
        8, TW_ERR_FORMAT, "tensor 'z'", "overlap");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]"), 8, TW_ERR_FORMAT, "tensor 'w'", "gap of 4 bytes");
    BAD(T1("w", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), 8, TW_ERR_FORMAT, "data section", "cover only the first 4");
    BAD("{}", 3, TW_ERR_FORMAT, "data section", "3 bytes");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, TW_ERR_FORMAT, "tensor 'a'", "appears twice");

    /* A hostile name stays on one line and is cut. */
    BAD("{\"line\\nbreak\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        TW_ERR_FORMAT, "tensor 'line?break'", "F99");
    char longh[600];
    snprintf(longh, sizeof longh, "{\"%0300d\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 7);
    BAD(longh, 4, TW_ERR_FORMAT, "...'", "F99");

    /* Files on disk: missing, and a truncated real file. */
    CHECK(st_open(tmp_path("does-not-exist.safetensors")) == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_IO);
    CHECK(strstr(tw_errmsg(), "does-not-exist.safetensors") != NULL);
    b = make_file(T1("w", "\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), 16, &size);
    const char *path = tmp_path("trunc.safetensors");
    CHECK(tw_file_write_atomic(path, b, size - 1) == TW_OK);
    f = st_open(path);
    CHECK(f == NULL && tw_errcode() == TW_ERR_FORMAT && strstr(tw_errmsg(), path) &&
          strstr(tw_errmsg(), "end 16 beyond"));
    st_close(f);
    unlink(path);
    free(b);
}

/* Every allocation st_open_memory and the writer make can fail; each failure must come back as
 * TW_ERR_NOMEM (or succeed) and leak nothing. */
static void test_alloc_failures(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}";
    size_t size;
    uint8_t *b = make_file(h, 12, &size);
    size_t base = tw_mem_get_stats().current_bytes;
    int failed = 0, succeeded = 0;
    for (uint64_t k = 1; k < 200 && !succeeded; k++) {
        tw_mem_fail_after(k);
        st_file *f = st_open_memory(b, size, "nomem.safetensors");
        tw_mem_fail_after(0);
        if (f) {
            succeeded = 1;
            CHECK_EQ_INT(st_n_tensors(f), 2);
            CHECK_EQ_STR(st_metadata_get(f, "k"), "v");
            st_close(f);
        } else {
            failed++;
            CHECK_EQ_INT(tw_errcode(), TW_ERR_NOMEM);
        }
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, base);
    }
    CHECK(succeeded && failed >= 3);
    free(b);

    float x[3] = {1, 2, 3};
    int64_t shape[1] = {3};
    const char *path = tmp_path("nomem.safetensors");
    succeeded = 0;
    for (uint64_t k = 1; k < 200 && !succeeded; k++) {
        tw_mem_fail_after(k);
        st_writer *w = st_writer_new();
        tw_status rc = w ? TW_OK : TW_ERR_NOMEM;
        if (!rc) rc = st_writer_set_metadata(w, "format", "pt");
        if (!rc) rc = st_writer_add_tensor(w, "x", ST_DTYPE_F32, 1, shape, x);
        if (!rc) rc = st_writer_write(w, path);
        tw_mem_fail_after(0);
        st_writer_free(w);
        if (rc == TW_OK) succeeded = 1;
        else CHECK_EQ_INT(rc, TW_ERR_NOMEM);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, base);
    }
    CHECK(succeeded);
    st_file *f = st_open(path);
    CHECK(f && st_n_tensors(f) == 1);
    st_close(f);
    unlink(path);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/twin-st-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_dtypes);
    RUN(test_writer_header_exact);
    RUN(test_roundtrip);
    RUN(test_reader_accepts);
    RUN(test_reader_rejects);
    RUN(test_alloc_failures);
    rmdir(tmpdir);
    TEST_DONE();
}
