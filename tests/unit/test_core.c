/* test_core.c: the base layer: errors, allocation accounting and fault hook, arenas, string
 * builder, sha256 against FIPS 180-4 vectors, UTF-8 edge cases, atomic files, mmap. */
#include "core.h"
#include "json.h"
#include "test.h"

#include <unistd.h>

static void test_errors(void) {
    tw_status s = tw_error(TW_ERR_FORMAT, "file %s: field %s", "a.gguf", "n_tensors");
    CHECK_EQ_INT(s, TW_ERR_FORMAT);
    CHECK_EQ_STR(tw_errmsg(), "file a.gguf: field n_tensors");
    tw_error_wrap("loading");
    CHECK_EQ_STR(tw_errmsg(), "loading: file a.gguf: field n_tensors");
    CHECK_EQ_INT(tw_errcode(), TW_ERR_FORMAT);
    tw_error_clear();
    CHECK_EQ_STR(tw_errmsg(), "");
}

static void test_alloc(void) {
    tw_mem_stats a = tw_mem_get_stats();
    char *p = tw_malloc(1000);
    CHECK(p != NULL);
    tw_mem_stats b = tw_mem_get_stats();
    CHECK_EQ_INT(b.current_bytes - a.current_bytes, 1000);
    p = tw_realloc(p, 3000);
    CHECK(p != NULL);
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes - a.current_bytes, 3000);
    tw_free(p);
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes, a.current_bytes);
    CHECK(tw_mem_get_stats().peak_bytes >= a.current_bytes + 3000);

    tw_mem_fail_after(2);
    void *x = tw_malloc(8);
    void *y = tw_malloc(8);
    void *z = tw_malloc(8);
    CHECK(x != NULL);
    CHECK(y == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_NOMEM);
    CHECK(z != NULL);
    tw_free(x);
    tw_free(z);
    tw_free(NULL);
    CHECK(tw_calloc(SIZE_MAX / 2, 4) == NULL);
}

static void test_arena(void) {
    tw_arena *a = tw_arena_new(128);
    CHECK(a != NULL);
    char *s = tw_arena_strndup(a, "hello world", 5);
    CHECK_EQ_STR(s, "hello");
    double *d = tw_arena_alloc(a, 1000 * sizeof(double), 64); /* larger than a block */
    CHECK(d != NULL && ((uintptr_t)d & 63) == 0);
    d[999] = 1.5;
    for (int i = 0; i < 100; i++) CHECK(tw_arena_alloc(a, 17, 8) != NULL);
    CHECK(tw_arena_used(a) >= 8000 + 1700);
    tw_arena_reset(a);
    CHECK_EQ_INT(tw_arena_used(a), 0);
    tw_arena_free(a);
    tw_arena_free(NULL);
}

static void test_sb(void) {
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK_EQ_STR(tw_sb_str(&sb), "");
    tw_sb_printf(&sb, "%d-%s", 42, "x");
    tw_sb_putc(&sb, ' ');
    tw_sb_json_str(&sb, "a\"b\\c\n\x01", 7);
    CHECK_EQ_STR(tw_sb_str(&sb), "42-x \"a\\\"b\\\\c\\n\\u0001\"");
    for (int i = 0; i < 1000; i++) tw_sb_puts(&sb, "0123456789");
    CHECK_EQ_INT(sb.len, 22 + 10000);
    char *t = tw_sb_take(&sb);
    CHECK(t && t[0] == '4');
    tw_free(t);
    CHECK(sb.buf == NULL);
}

static void hex_of(const char *msg, size_t n, char *out) {
    uint8_t d[32];
    tw_sha256(msg, n, d);
    tw_hex(d, 32, out);
}

static void test_sha256(void) {
    char h[65];
    hex_of("", 0, h);
    CHECK_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, h);
    CHECK_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m, strlen(m), h);
    CHECK_EQ_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a' fed in uneven pieces: exercises the buffering. */
    tw_sha256_ctx c;
    tw_sha256_init(&c);
    char buf[997];
    memset(buf, 'a', sizeof buf);
    size_t left = 1000000;
    while (left) {
        size_t k = left < sizeof buf ? left : sizeof buf;
        tw_sha256_update(&c, buf, k);
        left -= k;
    }
    uint8_t d[32];
    tw_sha256_final(&c, d);
    tw_hex(d, 32, h);
    CHECK_EQ_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_utf8(void) {
    uint32_t cp;
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xC3\xA9", 2, &cp), 2);
    CHECK_EQ_INT(cp, 0xE9);
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    CHECK_EQ_INT(cp, 0x1F600);
    /* overlong, surrogate, truncated, stray continuation, > U+10FFFF */
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xC0\xAF", 2, &cp), 1);
    CHECK_EQ_INT(cp, TW_UTF8_INVALID);
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp), 1);
    CHECK_EQ_INT(cp, TW_UTF8_INVALID);
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xE2\x82", 2, &cp), 1);
    CHECK_EQ_INT(cp, TW_UTF8_INVALID);
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\x80", 1, &cp), 1);
    CHECK_EQ_INT(cp, TW_UTF8_INVALID);
    CHECK_EQ_INT(tw_utf8_decode((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp), 1);
    char out[4];
    CHECK_EQ_INT(tw_utf8_encode(0x20AC, out), 3);
    CHECK(memcmp(out, "\xE2\x82\xAC", 3) == 0);
    CHECK_EQ_INT(tw_utf8_encode(0xD800, out), 0);
    CHECK(tw_utf8_valid("h\xC3\xA9llo \xF0\x9F\x98\x80", 11));
    CHECK(!tw_utf8_valid("bad \xFF", 5));
}

static void test_files(void) {
    char dir[] = "/tmp/twin-test-core-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], sub[256];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    snprintf(sub, sizeof sub, "%s/x/y/z", dir);
    CHECK_EQ_INT(tw_mkdir_p(sub), TW_OK);
    CHECK(tw_is_dir(sub));
    CHECK_EQ_INT(tw_file_write_atomic(path, "payload", 7), TW_OK);
    tw_mfile mf;
    CHECK_EQ_INT(tw_mfile_open(&mf, path), TW_OK);
    CHECK_EQ_INT(mf.size, 7);
    CHECK(memcmp(mf.data, "payload", 7) == 0);
    tw_mfile_close(&mf);
    /* An aborted write leaves the old file and no temporary behind. */
    tw_afile af;
    CHECK_EQ_INT(tw_afile_open(&af, path), TW_OK);
    tw_afile_write(&af, "half", 4);
    tw_afile_abort(&af);
    char *back;
    size_t n;
    CHECK_EQ_INT(tw_file_read(path, &back, &n), TW_OK);
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_STR(back, "payload");
    tw_free(back);
    CHECK_EQ_INT(tw_mfile_open(&mf, "/nonexistent/file"), TW_ERR_IO);
    CHECK(strstr(tw_errmsg(), "/nonexistent/file") != NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static void test_json(void) {
    const char *txt = "{\"a\": 1.5, \"b\": [\"x\", true], \"c\": {\"d\": \"e\"}}";
    tw_json *j = tw_json_parse(txt, strlen(txt), "inline");
    CHECK(j != NULL);
    CHECK_NEAR(tw_json_get_num(j, "a", 0), 1.5, 0);
    CHECK_EQ_INT(tw_json_size(tw_json_get(j, "b")), 2);
    CHECK_EQ_STR(tw_json_str(tw_json_first(tw_json_get(j, "b"))), "x");
    CHECK_EQ_STR(tw_json_get_str(tw_json_get(j, "c"), "d", NULL), "e");
    CHECK(tw_json_get(j, "zz") == NULL);
    tw_json_free(j);
    CHECK(tw_json_parse("{\"a\": [1,", 9, "bad.json") == NULL);
    CHECK(strstr(tw_errmsg(), "bad.json: invalid JSON") != NULL);
}

int main(void) {
    RUN(test_errors);
    RUN(test_alloc);
    RUN(test_arena);
    RUN(test_sb);
    RUN(test_sha256);
    RUN(test_utf8);
    RUN(test_files);
    RUN(test_json);
    TEST_DONE();
}
