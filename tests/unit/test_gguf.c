/* test_gguf.c: the GGUF reader on files built byte by byte here (every metadata type, nested
 * arrays, alignment, tensors), its refusal of broken and hostile files with one-line messages
 * naming the file and field, and the writer's round trip. */
#include "gguf.h"
#include "test.h"

#include <unistd.h>

/* ---- a byte builder for hand-made files ----------------------------------------------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf;

static void put(buf *w, const void *p, size_t n) {
    if (w->n + n > sizeof w->b) {
        fprintf(stderr, "test buffer overflow\n");
        exit(1);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void put_u8(buf *w, uint8_t v) { put(w, &v, 1); }
static void put_u16(buf *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(w, b, 2);
}
static void put_u32(buf *w, uint32_t v) {
    for (int i = 0; i < 4; i++) put_u8(w, (uint8_t)(v >> (8 * i)));
}
static void put_u64(buf *w, uint64_t v) {
    for (int i = 0; i < 8; i++) put_u8(w, (uint8_t)(v >> (8 * i)));
}
static void put_f32(buf *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(w, u);
}
static void put_f64(buf *w, double f) {
    uint64_t u;
    memcpy(&u, &f, 8);
    put_u64(w, u);
}
static void put_str(buf *w, const char *s) {
    put_u64(w, strlen(s));
    put(w, s, strlen(s));
}
static void put_key(buf *w, const char *k, uint32_t type) {
    put_str(w, k);
    put_u32(w, type);
}
static void set_u32(buf *w, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) w->b[at + i] = (uint8_t)(v >> (8 * i));
}
static void set_u64(buf *w, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) w->b[at + i] = (uint8_t)(v >> (8 * i));
}

/* Where the fields that the refusal tests patch live in the file built below. */
typedef struct {
    size_t n_tensors, n_kv, bool_val, align_val, str_len, arr_count, nested_type;
    size_t b_name_len, b_ndims, b_ne0, b_ne1, b_type, b_offset, c_offset;
    size_t data_offset, key_u8;
} layout;

#define N_KV 19

/* The reference file: every metadata type, alignment 64, three tensors. With pad_end the
 * last tensor is padded to the alignment as ggml's and our writer do; without, the last
 * tensor ends the file (every proper prefix is then truncated). */
static void build_file_ex(buf *w, uint32_t version, layout *L, int pad_end) {
    memset(w, 0, sizeof *w);
    put(w, "GGUF", 4);
    put_u32(w, version);
    L->n_tensors = w->n;
    put_u64(w, 3);
    L->n_kv = w->n;
    put_u64(w, N_KV);
    put_key(w, "general.architecture", GGUF_TYPE_STRING);
    L->str_len = w->n;
    put_str(w, "llama");
    L->key_u8 = w->n + 8;
    put_key(w, "t.u8", GGUF_TYPE_UINT8), put_u8(w, 200);
    put_key(w, "t.i8", GGUF_TYPE_INT8), put_u8(w, (uint8_t)-5);
    put_key(w, "t.u16", GGUF_TYPE_UINT16), put_u16(w, 60000);
    put_key(w, "t.i16", GGUF_TYPE_INT16), put_u16(w, (uint16_t)-30000);
    put_key(w, "t.u32", GGUF_TYPE_UINT32), put_u32(w, 4000000000u);
    put_key(w, "t.i32", GGUF_TYPE_INT32), put_u32(w, (uint32_t)-2000000000);
    put_key(w, "t.f32", GGUF_TYPE_FLOAT32), put_f32(w, 0.5f);
    put_key(w, "t.bool", GGUF_TYPE_BOOL);
    L->bool_val = w->n;
    put_u8(w, 1);
    put_key(w, "t.u64", GGUF_TYPE_UINT64), put_u64(w, UINT64_MAX);
    put_key(w, "t.i64", GGUF_TYPE_INT64), put_u64(w, (uint64_t)-9000000000ll);
    put_key(w, "t.f64", GGUF_TYPE_FLOAT64), put_f64(w, -2.25);
    put_key(w, "t.empty", GGUF_TYPE_STRING), put_str(w, "");
    put_key(w, "t.arr_str", GGUF_TYPE_ARRAY);
    put_u32(w, GGUF_TYPE_STRING);
    L->arr_count = w->n;
    put_u64(w, 3);
    put_str(w, "a"), put_str(w, ""), put_str(w, "h\xc3\xa9llo");
    put_key(w, "t.arr_i32", GGUF_TYPE_ARRAY), put_u32(w, GGUF_TYPE_INT32), put_u64(w, 3);
    put_u32(w, 1), put_u32(w, (uint32_t)-2), put_u32(w, 3);
    put_key(w, "t.arr_f32", GGUF_TYPE_ARRAY), put_u32(w, GGUF_TYPE_FLOAT32), put_u64(w, 2);
    put_f32(w, 0.25f), put_f32(w, -1.0f);
    put_key(w, "t.arr_empty", GGUF_TYPE_ARRAY), put_u32(w, GGUF_TYPE_UINT64), put_u64(w, 0);
    /* [[int16: 7, -8], [string: "x"], [uint8: ]] */
    put_key(w, "t.nested", GGUF_TYPE_ARRAY), put_u32(w, GGUF_TYPE_ARRAY), put_u64(w, 3);
    L->nested_type = w->n;
    put_u32(w, GGUF_TYPE_INT16), put_u64(w, 2), put_u16(w, 7), put_u16(w, (uint16_t)-8);
    put_u32(w, GGUF_TYPE_STRING), put_u64(w, 1), put_str(w, "x");
    put_u32(w, GGUF_TYPE_UINT8), put_u64(w, 0);
    put_key(w, "general.alignment", GGUF_TYPE_UINT32);
    L->align_val = w->n;
    put_u32(w, 64);
    /* tensor infos */
    put_str(w, "a"), put_u32(w, 2), put_u64(w, 3), put_u64(w, 2), put_u32(w, TW_DTYPE_F32);
    put_u64(w, 0); /* 24 bytes */
    L->b_name_len = w->n;
    put_str(w, "b");
    L->b_ndims = w->n;
    put_u32(w, 2);
    L->b_ne0 = w->n;
    put_u64(w, 32);
    L->b_ne1 = w->n;
    put_u64(w, 2);
    L->b_type = w->n;
    put_u32(w, TW_DTYPE_Q8_0);
    L->b_offset = w->n;
    put_u64(w, 64); /* 2 blocks of 34 = 68 bytes */
    put_str(w, "c"), put_u32(w, 1), put_u64(w, 4), put_u32(w, TW_DTYPE_F16);
    L->c_offset = w->n;
    put_u64(w, 192); /* 8 bytes, ends the file */
    while (w->n % 64) put_u8(w, 0);
    L->data_offset = w->n;
    /* a: 1..6 as f32 */
    for (int i = 1; i <= 6; i++) put_f32(w, (float)i);
    while (w->n < L->data_offset + 64) put_u8(w, 0);
    /* b: two q8_0 blocks, d = 0.5 (f16 0x3800), q = j - 16 and 16 - j */
    for (int blk = 0; blk < 2; blk++) {
        put_u16(w, 0x3800);
        for (int j = 0; j < 32; j++) put_u8(w, (uint8_t)(int8_t)(blk ? 16 - j : j - 16));
    }
    while (w->n < L->data_offset + 192) put_u8(w, 0);
    /* c: f16 1.0, -2.0, 0.5, 65504 */
    put_u16(w, 0x3C00), put_u16(w, 0xC000), put_u16(w, 0x3800), put_u16(w, 0x7BFF);
    while (pad_end && w->n % 64) put_u8(w, 0);
}

static void build_file(buf *w, uint32_t version, layout *L) { build_file_ex(w, version, L, 0); }

/* ---- reading the reference file ------------------------------------------------------------- */

static void check_reference(const gguf_file *f, const layout *L, uint32_t version) {
    CHECK_EQ_INT(gguf_version(f), version);
    CHECK_EQ_INT(gguf_alignment(f), 64);
    CHECK_EQ_INT(gguf_data_offset(f), L->data_offset);
    CHECK_EQ_INT(gguf_n_kv(f), N_KV);
    CHECK_EQ_INT(gguf_n_tensors(f), 3);

    const gguf_kv *kv0 = gguf_kv_at(f, 0);
    CHECK(kv0 && gguf_str_eq(kv0->key, "general.architecture"));
    CHECK(gguf_kv_at(f, N_KV) == NULL);
    char *arch = gguf_get_strdup(f, "general.architecture");
    CHECK_EQ_STR(arch, "llama");
    tw_free(arch);

    const gguf_value *v;
    v = gguf_find(f, "t.u8");
    CHECK(v && v->type == GGUF_TYPE_UINT8 && v->v.u64 == 200);
    v = gguf_find(f, "t.i8");
    CHECK(v && v->type == GGUF_TYPE_INT8 && v->v.i64 == -5);
    v = gguf_find(f, "t.u16");
    CHECK(v && v->type == GGUF_TYPE_UINT16 && v->v.u64 == 60000);
    v = gguf_find(f, "t.i16");
    CHECK(v && v->type == GGUF_TYPE_INT16 && v->v.i64 == -30000);
    v = gguf_find(f, "t.u32");
    CHECK(v && v->type == GGUF_TYPE_UINT32 && v->v.u64 == 4000000000u);
    v = gguf_find(f, "t.i32");
    CHECK(v && v->type == GGUF_TYPE_INT32 && v->v.i64 == -2000000000);
    v = gguf_find(f, "t.f32");
    CHECK(v && v->type == GGUF_TYPE_FLOAT32 && v->v.f64 == 0.5);
    v = gguf_find(f, "t.bool");
    CHECK(v && v->type == GGUF_TYPE_BOOL && v->v.u64 == 1);
    v = gguf_find(f, "t.u64");
    CHECK(v && v->type == GGUF_TYPE_UINT64 && v->v.u64 == UINT64_MAX);
    v = gguf_find(f, "t.i64");
    CHECK(v && v->type == GGUF_TYPE_INT64 && v->v.i64 == -9000000000ll);
    v = gguf_find(f, "t.f64");
    CHECK(v && v->type == GGUF_TYPE_FLOAT64 && v->v.f64 == -2.25);
    v = gguf_find(f, "t.empty");
    CHECK(v && v->type == GGUF_TYPE_STRING && v->v.str.len == 0);
    CHECK(gguf_find(f, "t.missing") == NULL);
    CHECK(gguf_find(f, "t.u") == NULL); /* a prefix of a key is not the key */

    /* typed getters: conversions that fit, refusals that do not */
    uint64_t u;
    int64_t i;
    double d;
    int b;
    gguf_str s;
    CHECK_EQ_INT(gguf_get_u64(f, "t.u16", &u), TW_OK);
    CHECK_EQ_INT(u, 60000);
    CHECK_EQ_INT(gguf_get_u64(f, "t.i8", &u), TW_ERR_FORMAT); /* negative */
    CHECK_EQ_INT(gguf_get_i64(f, "t.u32", &i), TW_OK);
    CHECK_EQ_INT(i, 4000000000ll);
    CHECK_EQ_INT(gguf_get_i64(f, "t.u64", &i), TW_ERR_FORMAT); /* does not fit */
    CHECK_EQ_INT(gguf_get_i64(f, "t.i64", &i), TW_OK);
    CHECK_EQ_INT(i, -9000000000ll);
    CHECK_EQ_INT(gguf_get_f64(f, "t.f32", &d), TW_OK);
    CHECK(d == 0.5);
    CHECK_EQ_INT(gguf_get_f64(f, "t.empty", &d), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "t.empty") != NULL);
    CHECK_EQ_INT(gguf_get_bool(f, "t.bool", &b), TW_OK);
    CHECK_EQ_INT(b, 1);
    CHECK_EQ_INT(gguf_get_bool(f, "t.u8", &b), TW_ERR_FORMAT);
    CHECK_EQ_INT(gguf_get_str(f, "general.architecture", &s), TW_OK);
    CHECK(s.len == 5 && memcmp(s.ptr, "llama", 5) == 0);
    CHECK_EQ_INT(gguf_get_str(f, "t.nope", &s), TW_ERR_NOT_FOUND);
    CHECK(gguf_get_strdup(f, "t.u8") == NULL);

    /* arrays */
    v = gguf_find(f, "t.arr_str");
    CHECK(v && v->type == GGUF_TYPE_ARRAY && v->v.arr.elem_type == GGUF_TYPE_STRING &&
          v->v.arr.count == 3);
    if (v && v->v.arr.count == 3) {
        CHECK(gguf_str_eq(gguf_arr_str(v, 0), "a"));
        CHECK(gguf_str_eq(gguf_arr_str(v, 1), ""));
        CHECK(gguf_str_eq(gguf_arr_str(v, 2), "h\xc3\xa9llo"));
    }
    v = gguf_find(f, "t.arr_i32");
    CHECK(v && v->v.arr.elem_type == GGUF_TYPE_INT32 && v->v.arr.count == 3);
    if (v && v->v.arr.count == 3) {
        CHECK_EQ_INT(gguf_arr_i64(v, 0), 1);
        CHECK_EQ_INT(gguf_arr_i64(v, 1), -2);
        CHECK_EQ_INT(gguf_arr_i64(v, 2), 3);
        CHECK(gguf_arr_f64(v, 1) == -2.0);
        CHECK_EQ_INT(gguf_arr_str(v, 0).len, 0); /* not a string array */
    }
    v = gguf_find(f, "t.arr_f32");
    CHECK(v && v->v.arr.elem_type == GGUF_TYPE_FLOAT32 && v->v.arr.count == 2);
    if (v && v->v.arr.count == 2) {
        CHECK(gguf_arr_f64(v, 0) == 0.25);
        CHECK(gguf_arr_f64(v, 1) == -1.0);
    }
    v = gguf_find(f, "t.arr_empty");
    CHECK(v && v->v.arr.elem_type == GGUF_TYPE_UINT64 && v->v.arr.count == 0);
    v = gguf_find(f, "t.nested");
    CHECK(v && v->v.arr.elem_type == GGUF_TYPE_ARRAY && v->v.arr.count == 3);
    if (v && v->v.arr.count == 3) {
        const gguf_value *e0 = gguf_arr_elem(v, 0), *e1 = gguf_arr_elem(v, 1),
                         *e2 = gguf_arr_elem(v, 2);
        CHECK(e0 && e0->type == GGUF_TYPE_ARRAY && e0->v.arr.elem_type == GGUF_TYPE_INT16 &&
              e0->v.arr.count == 2);
        if (e0 && e0->v.arr.count == 2) {
            CHECK_EQ_INT(gguf_arr_i64(e0, 0), 7);
            CHECK_EQ_INT(gguf_arr_i64(e0, 1), -8);
        }
        CHECK(e1 && e1->v.arr.elem_type == GGUF_TYPE_STRING && e1->v.arr.count == 1);
        if (e1 && e1->v.arr.count == 1) CHECK(gguf_str_eq(gguf_arr_str(e1, 0), "x"));
        CHECK(e2 && e2->v.arr.elem_type == GGUF_TYPE_UINT8 && e2->v.arr.count == 0);
    }
    CHECK(gguf_arr_elem(gguf_find(f, "t.arr_i32"), 0) == NULL);

    /* tensors */
    const gguf_tensor *a = gguf_find_tensor(f, "a"), *tb = gguf_find_tensor(f, "b"),
                      *c = gguf_find_tensor(f, "c");
    CHECK(a && tb && c && gguf_find_tensor(f, "d") == NULL);
    CHECK(gguf_tensor_at(f, 1) == tb && gguf_tensor_at(f, 3) == NULL);
    if (!a || !tb || !c) return;
    const uint8_t *base = (const uint8_t *)gguf_kv_at(f, 0)->key.ptr - 32; /* file start */
    CHECK_EQ_INT(a->type, TW_DTYPE_F32);
    CHECK_EQ_INT(a->n_dims, 2);
    CHECK(a->ne[0] == 3 && a->ne[1] == 2 && a->ne[2] == 1 && a->ne[3] == 1);
    CHECK_EQ_INT(a->nbytes, 24);
    CHECK((const uint8_t *)a->data == base + L->data_offset);
    float fa[6];
    memcpy(fa, a->data, sizeof fa);
    CHECK(fa[0] == 1.0f && fa[5] == 6.0f);
    CHECK_EQ_INT(tb->type, TW_DTYPE_Q8_0);
    CHECK_EQ_INT(tb->offset, 64);
    CHECK_EQ_INT(tb->nbytes, 68);
    CHECK((const uint8_t *)tb->data == base + L->data_offset + 64);
    float row[32];
    /* second row of b: d = 0.5, q = 16 - j */
    CHECK_EQ_INT(tw_dequantize_row(tb->type, (const uint8_t *)tb->data + 34, row, 32), TW_OK);
    CHECK(row[0] == 8.0f && row[16] == 0.0f && row[31] == -7.5f);
    CHECK_EQ_INT(c->type, TW_DTYPE_F16);
    CHECK_EQ_INT(c->n_dims, 1);
    CHECK_EQ_INT(c->nbytes, 8);
    float fc[4];
    CHECK_EQ_INT(tw_dequantize_row(c->type, c->data, fc, 4), TW_OK);
    CHECK(fc[0] == 1.0f && fc[1] == -2.0f && fc[2] == 0.5f && fc[3] == 65504.0f);
}

static void test_read_reference_v3(void) {
    static buf w;
    layout L;
    build_file(&w, 3, &L);
    gguf_file *f = gguf_open_memory(w.b, w.n, "ref.gguf");
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "  %s\n", tw_errmsg());
        return;
    }
    check_reference(f, &L, 3);
    CHECK_EQ_STR(gguf_path(f), "ref.gguf");
    CHECK_EQ_INT(gguf_file_size(f), w.n);
    gguf_close(f);
    gguf_close(NULL);
}

static void test_read_reference_v2_from_file(void) {
    static buf w;
    layout L;
    build_file(&w, 2, &L);
    char path[] = "/tmp/twin_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, w.b, w.n) == (ssize_t)w.n);
    close(fd);
    gguf_file *f = gguf_open(path);
    CHECK(f != NULL);
    if (f) check_reference(f, &L, 2);
    gguf_close(f);
    unlink(path);
    CHECK(gguf_open(path) == NULL); /* gone: an I/O error naming the path */
    CHECK_EQ_INT(tw_errcode(), TW_ERR_IO);
    CHECK(strstr(tw_errmsg(), path) != NULL);
}

/* ---- refusals -------------------------------------------------------------------------------- */

/* Opening w must fail with `code` and one line that starts with "bad.gguf: " and contains
 * each of the fragments. */
static int expect_fail(const buf *w, tw_status code, const char *frag1, const char *frag2) {
    gguf_file *f = gguf_open_memory(w->b, w->n, "bad.gguf");
    if (f) {
        gguf_close(f);
        fprintf(stderr, "  expected a failure (%s)\n", frag1);
        return 0;
    }
    const char *m = tw_errmsg();
    int ok = tw_errcode() == code && strncmp(m, "bad.gguf: ", 10) == 0 && !strchr(m, '\n') &&
             (!frag1 || strstr(m, frag1)) && (!frag2 || strstr(m, frag2));
    if (!ok) fprintf(stderr, "  unexpected error (%s): %s\n", tw_status_name(tw_errcode()), m);
    return ok;
}

static void test_refuse_versions_and_magic(void) {
    static buf w;
    layout L;
    build_file(&w, 1, &L);
    CHECK(expect_fail(&w, TW_ERR_UNSUPPORTED, "version 1", "not supported"));
    build_file(&w, 4, &L);
    CHECK(expect_fail(&w, TW_ERR_UNSUPPORTED, "version 4", NULL));
    build_file(&w, 0x03000000u, &L);
    CHECK(expect_fail(&w, TW_ERR_UNSUPPORTED, "big-endian", NULL));
    build_file(&w, 3, &L);
    w.b[0] = 'X';
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "magic 'XGUF'", NULL));
    w.n = 3;
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "too short", NULL));
    w.n = 0;
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "too short", NULL));
}

/* Every proper prefix of the file is refused cleanly (the last tensor ends the file). */
static void test_refuse_every_truncation(void) {
    static buf w;
    layout L;
    build_file(&w, 3, &L);
    int bad = 0;
    size_t full = w.n;
    for (size_t n = 0; n < full; n++) {
        w.n = n;
        gguf_file *f = gguf_open_memory(w.b, n, "bad.gguf");
        const char *m = tw_errmsg();
        if (f || tw_errcode() != TW_ERR_FORMAT || strncmp(m, "bad.gguf: ", 10) != 0 ||
            strchr(m, '\n')) {
            if (bad++ < 3)
                fprintf(stderr, "  prefix %zu: %s\n", n, f ? "opened" : m);
        }
        gguf_close(f);
    }
    CHECK_EQ_INT(bad, 0);
    /* the message names the field: a cut inside the tensor data names the tensor */
    w.n = full - 1;
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "tensor 2 'c'", "past the end of file"));
    w.n = L.arr_count + 8 + 9 + 8 + 8 + 4; /* inside the third string of t.arr_str */
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "metadata 13 't.arr_str'", "string element 2 length 6"));
    w.n = 40; /* too short for the 19 entries the header announces */
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "metadata count 19", NULL));
}

static void test_refuse_hostile_fields(void) {
    static buf w;
    layout L;
#define MUTATE(stmt, code, f1, f2)                                                            \
    do {                                                                                      \
        build_file(&w, 3, &L);                                                                \
        stmt;                                                                                 \
        if (!expect_fail(&w, code, f1, f2)) {                                                 \
            fprintf(stderr, "  mutation: %s\n", #stmt);                                       \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)
    MUTATE(set_u64(&w, L.n_kv, 1ull << 60), TW_ERR_FORMAT, "metadata count", NULL);
    MUTATE(set_u64(&w, L.n_kv, N_KV + 1), TW_ERR_FORMAT, NULL, NULL);
    MUTATE(set_u64(&w, L.n_tensors, 1ull << 62), TW_ERR_FORMAT, "tensor count", NULL);
    MUTATE(set_u64(&w, L.str_len, UINT64_MAX), TW_ERR_FORMAT, "general.architecture",
           "beyond end of file");
    MUTATE(set_u64(&w, L.arr_count, 1ull << 61), TW_ERR_FORMAT, "'t.arr_str'",
           "does not fit");
    /* a fourth string swallows the next key's length: the next entry is the one at fault */
    MUTATE(set_u64(&w, L.arr_count, 4), TW_ERR_FORMAT, "metadata 14", "key length");
    MUTATE(w.b[L.bool_val] = 2, TW_ERR_FORMAT, "'t.bool'", "bool");
    MUTATE(set_u32(&w, L.nested_type, 77), TW_ERR_FORMAT, "'t.nested'", "element type 77");
    MUTATE(set_u32(&w, L.align_val, 48), TW_ERR_FORMAT, "'general.alignment'", "power of two");
    MUTATE(set_u32(&w, L.align_val, 0), TW_ERR_FORMAT, "'general.alignment'", "power of two");
    /* with alignment 128 the data section moves and 'b' at 64 is misaligned */
    MUTATE(set_u32(&w, L.align_val, 128), TW_ERR_FORMAT, "tensor 1 'b'", "alignment 128");
    MUTATE(set_u32(&w, L.b_ndims, 5), TW_ERR_FORMAT, "tensor 1 'b'", "n_dims 5");
    MUTATE(set_u64(&w, L.b_ne1, (uint64_t)-3), TW_ERR_FORMAT, "tensor 1 'b'", "negative");
    MUTATE(set_u32(&w, L.b_type, 4), TW_ERR_FORMAT, "tensor 1 'b'", "unknown tensor type id 4");
    MUTATE(set_u32(&w, L.b_type, 1000), TW_ERR_FORMAT, "tensor 1 'b'", "type id 1000");
    MUTATE(set_u64(&w, L.b_ne0, 33), TW_ERR_FORMAT, "tensor 1 'b'", "block size 32");
    MUTATE(set_u64(&w, L.b_ne1, 1ull << 62), TW_ERR_FORMAT, "tensor 1 'b'", "overflows");
    MUTATE(set_u64(&w, L.b_ne1, 1ull << 40), TW_ERR_FORMAT, "tensor 1 'b'", "past the end");
    MUTATE(set_u64(&w, L.b_offset, 96), TW_ERR_FORMAT, "tensor 1 'b'", "not a multiple");
    MUTATE(set_u64(&w, L.b_offset, 1ull << 40), TW_ERR_FORMAT,
           "tensor 1 'b': data offset 1099511627776 beyond end of file", NULL);
    MUTATE(set_u64(&w, L.c_offset, UINT64_MAX - 63), TW_ERR_FORMAT, "tensor 2 'c'",
           "beyond end of file");
    MUTATE(w.b[L.b_name_len + 8] = 'a', TW_ERR_FORMAT, "tensor 1 'a'", "duplicate tensor");
    /* t.u8 renamed t.i8 (same length) */
    MUTATE(w.b[L.key_u8 + 2] = 'i', TW_ERR_FORMAT, "'t.i8'", "duplicate key");
#undef MUTATE
}

/* Arrays nested past the depth limit are refused without deep recursion. */
static void test_refuse_deep_nesting(void) {
    static buf w;
    memset(&w, 0, sizeof w);
    put(&w, "GGUF", 4), put_u32(&w, 3), put_u64(&w, 0), put_u64(&w, 1);
    put_key(&w, "deep", GGUF_TYPE_ARRAY);
    for (int i = 0; i < 100; i++) put_u32(&w, GGUF_TYPE_ARRAY), put_u64(&w, 1);
    put_u32(&w, GGUF_TYPE_UINT8), put_u64(&w, 0);
    CHECK(expect_fail(&w, TW_ERR_FORMAT, "'deep'", "nested deeper"));
}

/* A file with no tensors may end right after its metadata (vocab-only files do). */
static void test_no_tensors_no_padding(void) {
    static buf w;
    memset(&w, 0, sizeof w);
    put(&w, "GGUF", 4), put_u32(&w, 3), put_u64(&w, 0), put_u64(&w, 1);
    put_key(&w, "k", GGUF_TYPE_UINT8), put_u8(&w, 1);
    gguf_file *f = gguf_open_memory(w.b, w.n, "v.gguf");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(gguf_n_tensors(f), 0);
        CHECK_EQ_INT(gguf_data_offset(f), w.n);
        CHECK(gguf_find_tensor(f, "a") == NULL);
    }
    gguf_close(f);
}

/* A count that the file's size allows but its content does not back costs no memory: a 1 MB
 * file whose header claims 70000 entries (one real entry padding the file out) and one whose
 * nested array claims 80000 elements. The old up-front allocation would take over 4 MB. Runs
 * first, so the allocator's peak reflects this call. */
static void test_lying_counts_cost_no_memory(void) {
    size_t cap = 1 << 20;
    uint8_t *b = calloc(1, cap);
    CHECK(b != NULL);
    if (!b) return;
    for (int variant = 0; variant < 2; variant++) {
        memset(b, 0, cap);
        size_t o = 0;
        memcpy(b, "GGUF", 4), o = 4;
        b[o] = 3, o += 4;
        o += 8; /* no tensors */
        uint64_t nkv = variant == 0 ? 70000 : 1;
        for (int i = 0; i < 8; i++) b[o + i] = (uint8_t)(nkv >> (8 * i));
        o += 8;
        /* key "k" */
        b[o] = 1, o += 8;
        b[o++] = 'k';
        if (variant == 0) { /* a string that fills the file: the next entry is missing */
            b[o] = GGUF_TYPE_STRING, o += 4;
            uint64_t len = cap - o - 8 - 100;
            for (int i = 0; i < 8; i++) b[o + i] = (uint8_t)(len >> (8 * i));
        } else { /* array of 80000 arrays, the first of which claims 2^40 bytes */
            b[o] = GGUF_TYPE_ARRAY, o += 4;
            b[o] = GGUF_TYPE_ARRAY, o += 4;
            uint64_t n = 80000;
            for (int i = 0; i < 8; i++) b[o + i] = (uint8_t)(n >> (8 * i));
            o += 8;
            b[o] = GGUF_TYPE_UINT8, o += 4;
            b[o + 5] = 1; /* count 2^40 */
        }
        size_t before = tw_mem_get_stats().current_bytes;
        gguf_file *f = gguf_open_memory(b, cap, "big.gguf");
        size_t peak = tw_mem_get_stats().peak_bytes;
        CHECK(f == NULL && tw_errcode() == TW_ERR_FORMAT);
        CHECK(peak - before < 512 * 1024);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before);
        gguf_close(f);
    }
    free(b);
}

/* Allocation failures inside gguf_open give TW_ERR_NOMEM and leak nothing. */
static void test_open_allocation_failures(void) {
    static buf w;
    layout L;
    build_file(&w, 3, &L);
    size_t before = tw_mem_get_stats().current_bytes;
    int failed = 0;
    for (uint64_t k = 1; k < 40; k++) {
        tw_mem_fail_after(k);
        gguf_file *f = gguf_open_memory(w.b, w.n, "ref.gguf");
        tw_mem_fail_after(0);
        if (!f) {
            failed++;
            CHECK_EQ_INT(tw_errcode(), TW_ERR_NOMEM);
        }
        gguf_close(f);
    }
    CHECK(failed > 0);
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before);
}

/* ---- writer ---------------------------------------------------------------------------------- */

static char *tmp_path(const char *tag) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/twin_test_gguf_%s_%ld.gguf", tag, (long)getpid());
    return path;
}

static int read_whole(const char *path, buf *out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    out->n = fread(out->b, 1, sizeof out->b, fp);
    int more = fgetc(fp) != EOF;
    fclose(fp);
    return more ? -1 : 0;
}

/* Copying every value and tensor of the reference file through the writer gives the same
 * bytes (the reference is laid out as ggml lays files out). */
static void test_writer_copy_is_byte_identical(void) {
    static buf ref, got;
    layout L;
    build_file_ex(&ref, 3, &L, 1);
    gguf_file *f = gguf_open_memory(ref.b, ref.n, "ref.gguf");
    CHECK(f != NULL);
    if (!f) return;
    gguf_writer *w = gguf_writer_new(gguf_version(f), 0);
    CHECK(w != NULL);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        CHECK_EQ_INT(gguf_writer_set_value(w, key, &kv->value), TW_OK);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_EQ_INT(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data), TW_OK);
    }
    const char *path = tmp_path("copy");
    CHECK_EQ_INT(gguf_writer_write(w, path), TW_OK);
    gguf_writer_free(w);
    gguf_close(f);
    CHECK_EQ_INT(read_whole(path, &got), 0);
    CHECK_EQ_INT(got.n, ref.n);
    size_t first_diff = got.n;
    for (size_t i = 0; i < got.n && i < ref.n; i++)
        if (got.b[i] != ref.b[i]) {
            first_diff = i;
            break;
        }
    CHECK_EQ_INT(first_diff, got.n);
    /* and it reads back as the reference */
    gguf_file *g = gguf_open(path);
    CHECK(g != NULL);
    if (g) check_reference(g, &L, 3);
    gguf_close(g);
    unlink(path);
}

/* The typed setters, replacement of a key, an alignment of 128, tensors of several types. */
static void test_writer_setters_round_trip(void) {
    gguf_writer *w = gguf_writer_new(3, 128);
    CHECK(w != NULL);
    if (!w) return;
    const char *strs[] = {"<s>", "", "\xe2\x96\x81the"};
    const int32_t ints[] = {-1, 0, 2147483647};
    CHECK_EQ_INT(gguf_writer_set_str(w, "general.architecture", "gpt2"), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_u32(w, "k.u32", 7), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_i32(w, "k.i32", -7), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_u64(w, "k.u64", 1ull << 40), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_f32(w, "k.f32", 1e-5f), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_bool(w, "k.bool", 5), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_str(w, "k.empty", ""), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_arr_str(w, "k.strs", strs, 3), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_arr_i32(w, "k.ints", ints, 3), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_arr_f32(w, "k.none", NULL, 0), TW_OK);
    CHECK_EQ_INT(gguf_writer_set_str(w, "general.architecture", "llama"), TW_OK); /* replaces */
    CHECK_EQ_INT(gguf_writer_set_str(w, "general.alignment", "x"), TW_ERR_ARG);
    CHECK_EQ_INT(gguf_writer_set_u32(w, "general.alignment", 96), TW_ERR_ARG);

    float a[2 * 64], q_src[64];
    uint8_t q[2 * 34];
    uint16_t h[3] = {0x3C00, 0x4000, 0xBC00}; /* 1, 2, -1 */
    for (int i = 0; i < 128; i++) a[i] = (float)i;
    for (int i = 0; i < 64; i++) q_src[i] = (float)(i - 32) / 4.0f;
    CHECK_EQ_INT(tw_quantize_row(TW_DTYPE_Q8_0, q_src, q, 64), TW_OK);
    int64_t ne_a[2] = {64, 2}, ne_q[1] = {64}, ne_h[1] = {3}, ne_bad[1] = {33};
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "a", TW_DTYPE_F32, 2, ne_a, a), TW_OK);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "q", TW_DTYPE_Q8_0, 1, ne_q, q), TW_OK);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "h", TW_DTYPE_F16, 1, ne_h, h), TW_OK);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "a", TW_DTYPE_F32, 1, ne_h, a), TW_ERR_ARG);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "x", TW_DTYPE_Q8_0, 1, ne_bad, q), TW_ERR_ARG);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "y", (tw_dtype)4, 1, ne_h, q), TW_ERR_ARG);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "z", TW_DTYPE_F32, 5, ne_a, a), TW_ERR_ARG);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "0123456789012345678901234567890123456789012345678901"
                                           "234567890123", TW_DTYPE_F32, 1, ne_h, a),
                 TW_ERR_ARG);
    const char *path = tmp_path("setters");
    CHECK_EQ_INT(gguf_writer_write(w, path), TW_OK);
    gguf_writer_free(w);

    gguf_file *f = gguf_open(path);
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "  %s\n", tw_errmsg());
        return;
    }
    CHECK_EQ_INT(gguf_alignment(f), 128);
    CHECK_EQ_INT(gguf_data_offset(f) % 128, 0);
    CHECK_EQ_INT(gguf_n_kv(f), 11); /* general.alignment first, then the 10 distinct keys */
    CHECK(gguf_str_eq(gguf_kv_at(f, 0)->key, "general.alignment"));
    CHECK(gguf_str_eq(gguf_kv_at(f, 1)->key, "general.architecture"));
    char *arch = gguf_get_strdup(f, "general.architecture");
    CHECK_EQ_STR(arch, "llama");
    tw_free(arch);
    uint64_t u;
    int64_t i;
    double d;
    int b;
    CHECK(gguf_get_u64(f, "k.u32", &u) == TW_OK && u == 7);
    CHECK(gguf_get_i64(f, "k.i32", &i) == TW_OK && i == -7);
    CHECK(gguf_get_u64(f, "k.u64", &u) == TW_OK && u == (1ull << 40));
    CHECK(gguf_get_f64(f, "k.f32", &d) == TW_OK && d == (double)1e-5f);
    CHECK(gguf_get_bool(f, "k.bool", &b) == TW_OK && b == 1);
    CHECK(gguf_find(f, "k.u32")->type == GGUF_TYPE_UINT32);
    CHECK(gguf_find(f, "k.i32")->type == GGUF_TYPE_INT32);
    CHECK(gguf_find(f, "k.empty")->v.str.len == 0);
    const gguf_value *v = gguf_find(f, "k.strs");
    CHECK(v && v->v.arr.count == 3 && v->v.arr.elem_type == GGUF_TYPE_STRING);
    if (v && v->v.arr.count == 3) {
        CHECK(gguf_str_eq(gguf_arr_str(v, 0), "<s>"));
        CHECK(gguf_str_eq(gguf_arr_str(v, 1), ""));
        CHECK(gguf_str_eq(gguf_arr_str(v, 2), "\xe2\x96\x81the"));
    }
    v = gguf_find(f, "k.ints");
    CHECK(v && v->v.arr.count == 3 && gguf_arr_i64(v, 0) == -1 && gguf_arr_i64(v, 2) == 2147483647);
    v = gguf_find(f, "k.none");
    CHECK(v && v->v.arr.count == 0 && v->v.arr.elem_type == GGUF_TYPE_FLOAT32);
    const gguf_tensor *ta = gguf_find_tensor(f, "a"), *tq = gguf_find_tensor(f, "q"),
                      *th = gguf_find_tensor(f, "h");
    CHECK(ta && tq && th && gguf_n_tensors(f) == 3);
    if (ta && tq && th) {
        CHECK(ta->offset == 0 && tq->offset == 512 && th->offset == 640);
        CHECK(memcmp(ta->data, a, sizeof a) == 0);
        CHECK(memcmp(tq->data, q, sizeof q) == 0);
        CHECK(memcmp(th->data, h, sizeof h) == 0);
        CHECK(ta->ne[0] == 64 && ta->ne[1] == 2 && ta->n_dims == 2);
        /* the file ends with the last tensor padded to the alignment */
        CHECK_EQ_INT(gguf_file_size(f), gguf_data_offset(f) + 768);
    }
    gguf_close(f);
    unlink(path);
    CHECK(gguf_writer_new(1, 0) == NULL);
    CHECK(gguf_writer_new(3, 24) == NULL);
}

int main(void) {
    RUN(test_lying_counts_cost_no_memory);
    RUN(test_read_reference_v3);
    RUN(test_read_reference_v2_from_file);
    RUN(test_refuse_versions_and_magic);
    RUN(test_refuse_every_truncation);
    RUN(test_refuse_hostile_fields);
    RUN(test_refuse_deep_nesting);
    RUN(test_no_tensors_no_padding);
    RUN(test_open_allocation_failures);
    RUN(test_writer_copy_is_byte_identical);
    RUN(test_writer_setters_round_trip);
    TEST_DONE();
}
