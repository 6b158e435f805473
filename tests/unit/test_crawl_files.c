/* test_crawl_files.c: the file rules and decoders of the file crawlers (pipelines/crawl_files.h):
 * content types and languages by name, GitHub's keep/skip rules with their reasons, NUL
 * detection, base64 (RFC 4648's test vectors, the API's line wrapping, every refusal, a random
 * round trip against an encoder written here), URL escaping and titles. */
#include "pipelines/crawl_files.h"
#include "test.h"

static void check_kind(const char *path, const char *type, const char *lang) {
    crawl_file_kind_t k;
    int keep = crawl_file_kind(path, &k);
    if (!type) {
        CHECK_EQ_INT(keep, 0);
        CHECK(k.content_type == NULL && k.language == NULL);
        return;
    }
    CHECK_EQ_INT(keep, 1);
    CHECK_EQ_STR(k.content_type, type);
    CHECK_EQ_STR(k.language, lang);
}

static void test_kinds(void) {
    check_kind("README.md", "markdown", "Markdown");
    check_kind("docs/Guide.MARKDOWN", "markdown", "Markdown");
    check_kind("notes.txt", "text", "Text");
    check_kind("site/index.htm", "html", "HTML");
    check_kind("src/tide.c", "code", "C");
    check_kind("src/Tide.HPP", "code", "C++");
    check_kind("kernels/gemm.cu", "code", "CUDA");
    check_kind("a/b/notes.py", "code", "Python");
    check_kind("web/app.tsx", "code", "TypeScript");
    check_kind("Makefile", "code", "Makefile");
    check_kind("sub/CMakeLists.txt", "code", "CMake"); /* the name wins over .txt */
    check_kind("Dockerfile", "code", "Dockerfile");
    check_kind("README", "text", "Text");
    check_kind("config.yaml", NULL, NULL);
    check_kind("data.json", NULL, NULL);
    check_kind("LICENSE", NULL, NULL);
    check_kind(".bashrc", NULL, NULL); /* a leading dot is not an extension */
    check_kind("archive.tar.gz", NULL, NULL);
    check_kind("", NULL, NULL);
}

static void check_skip(const char *path, int64_t size, const char *want, size_t want_folder) {
    char buf[160];
    size_t folder = 99;
    const char *r = crawl_github_skip_reason(path, size, 1 << 20, buf, sizeof buf, &folder);
    if (!want) {
        if (r) fprintf(stderr, "  %s: unexpected skip \"%s\"\n", path, r);
        CHECK(r == NULL);
    } else {
        CHECK_EQ_STR(r, want);
    }
    CHECK_EQ_INT(folder, want_folder);
}

static void test_github_rules(void) {
    check_skip("src/tide.c", 300, NULL, 0);
    check_skip("docs/guide/moon-phases.md", 300, NULL, 0);
    check_skip("node_modules/leftpad/index.js", 60, "vendored (node_modules/)", 12);
    check_skip("web/node_modules/a/b.js", 60, "vendored (node_modules/)", 16);
    check_skip("third_party/zlib/inflate.c", 60, "vendored (third_party/)", 11);
    check_skip("pkg/__pycache__/x.py", 60, "vendored (__pycache__/)", 15);
    check_skip("Vendor/lib.go", 60, "vendored (vendor/)", 6); /* case-insensitive */
    check_skip("build.c", 60, NULL, 0);                        /* a file named like a folder */
    check_skip("yarn.lock", 60, "lock file (yarn.lock)", 0);
    check_skip("api/Cargo.lock", 60, "lock file (Cargo.lock)", 0);
    check_skip("go.sum", 60, "lock file (go.sum)", 0);
    check_skip("static/app.min.js", 60, "generated (minified .js)", 0);
    check_skip("static/app.MIN.CSS", 60, "generated (minified .css)", 0);
    check_skip("assets/logo.png", 60, "binary (.png)", 0);
    check_skip("model.GGUF", 60, "binary (.gguf)", 0);
    check_skip("data/soundings.c", 5000000, "too large (5000000 bytes > 1048576)", 0);
    check_skip("data/exact.c", 1 << 20, NULL, 0); /* the cap itself is allowed */
    check_skip("config.yaml", 60, "not source or docs (.yaml)", 0);
    check_skip("LICENSE", 60, "not source or docs (LICENSE)", 0);
    check_skip("", 0, "not source or docs (no path)", 0);
    char small[8];
    /* Truncated into a small buffer, still NUL-terminated and still a skip. */
    CHECK(crawl_github_skip_reason("a.png", 1, 0, small, sizeof small, NULL) == small);
    CHECK_EQ_INT(strlen(small), 7);
    /* max_bytes 0: no cap. */
    CHECK(crawl_github_skip_reason("big.c", INT64_MAX, 0, small, sizeof small, NULL) == NULL);
}

static void test_binary(void) {
    CHECK_EQ_INT(crawl_bytes_binary("plain text\n", 11), 0);
    CHECK_EQ_INT(crawl_bytes_binary("a\0b", 3), 1);
    CHECK_EQ_INT(crawl_bytes_binary(NULL, 0), 0);
    static char late[10000];
    memset(late, 'x', sizeof late);
    late[9000] = 0; /* past the first 8 KiB: not looked at */
    CHECK_EQ_INT(crawl_bytes_binary(late, sizeof late), 0);
    late[100] = 0;
    CHECK_EQ_INT(crawl_bytes_binary(late, sizeof late), 1);
}

static void check_b64(const char *in, const char *want, size_t want_len) {
    char *out = NULL;
    size_t len = 0;
    tw_status st = crawl_base64_decode(in, strlen(in), &out, &len);
    CHECK_EQ_INT(st, TW_OK);
    CHECK_EQ_INT(len, want_len);
    CHECK(out && memcmp(out, want, want_len) == 0 && out[len] == 0);
    tw_free(out);
}

static void check_b64_bad(const char *in, const char *msg) {
    char *out = (char *)1;
    size_t len = 7;
    CHECK_EQ_INT(crawl_base64_decode(in, strlen(in), &out, &len), TW_ERR_FORMAT);
    CHECK(out == NULL && len == 0);
    if (!strstr(tw_errmsg(), msg)) fprintf(stderr, "  \"%s\" lacks \"%s\"\n", tw_errmsg(), msg);
    CHECK(strstr(tw_errmsg(), msg) != NULL);
}

static uint32_t rng = 77;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

static void test_base64(void) {
    /* RFC 4648 section 10. */
    check_b64("", "", 0);
    check_b64("Zg==", "f", 1);
    check_b64("Zm8=", "fo", 2);
    check_b64("Zm9v", "foo", 3);
    check_b64("Zm9vYg==", "foob", 4);
    check_b64("Zm9vYmE=", "fooba", 5);
    check_b64("Zm9vYmFy", "foobar", 6);
    check_b64("Zm9vYg", "foob", 4); /* padding optional */
    check_b64("Zm9v\nYmFy\n", "foobar", 6);
    check_b64(" Zm9v\r\n\tYmE= \n", "fooba", 5);
    check_b64("AP8=", "\x00\xff", 2);
    check_b64("+/+/", "\xfb\xff\xbf", 3);
    check_b64_bad("Zm9v!", "outside the alphabet at byte 4");
    check_b64_bad("Zm9-", "outside the alphabet at byte 3"); /* base64url is not accepted */
    check_b64_bad("Zg==Zg==", "data after '=' padding at byte 4");
    check_b64_bad("Z", "a dangling character");
    check_b64_bad("Zm9vY", "a dangling character");
    check_b64_bad("Zg===", "wrong '=' padding");
    check_b64_bad("Zm8==", "wrong '=' padding");
    check_b64_bad("====", "wrong '=' padding");
    /* Random bytes through an encoder written here, wrapped at 60 columns like the API. */
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int t = 0; t < 200; t++) {
        unsigned char raw[300];
        size_t n = rnd() % sizeof raw;
        for (size_t i = 0; i < n; i++) raw[i] = (unsigned char)rnd();
        tw_sb enc;
        tw_sb_init(&enc);
        size_t col = 0;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < n ? (uint32_t)raw[i + 1] << 8 : 0) |
                         (i + 2 < n ? raw[i + 2] : 0);
            char q[4] = {alpha[v >> 18], alpha[(v >> 12) & 63],
                         i + 1 < n ? alpha[(v >> 6) & 63] : '=', i + 2 < n ? alpha[v & 63] : '='};
            for (int k = 0; k < 4; k++) {
                tw_sb_putc(&enc, q[k]);
                if (++col == 60) tw_sb_putc(&enc, '\n'), col = 0;
            }
        }
        char *out = NULL;
        size_t len = 0;
        CHECK_EQ_INT(crawl_base64_decode(tw_sb_str(&enc), enc.len, &out, &len), TW_OK);
        CHECK_EQ_INT(len, n);
        if (len == n && memcmp(out, raw, n) != 0) {
            fprintf(stderr, "  round trip %d differs\n", t);
            CHECK(0);
        }
        tw_free(out);
        tw_sb_free(&enc);
    }
}

static void test_escape(void) {
    char *s = crawl_url_escape("docs/a b/ü?.md", 1);
    CHECK_EQ_STR(s, "docs/a%20b/%C3%BC%3F.md");
    tw_free(s);
    s = crawl_url_escape("feature/x-1_~.", 0);
    CHECK_EQ_STR(s, "feature%2Fx-1_~.");
    tw_free(s);
    s = crawl_url_escape("", 0);
    CHECK_EQ_STR(s, "");
    tw_free(s);
}

static void check_title(const char *text, int markdown, const char *want) {
    char *t = crawl_text_title(text, strlen(text), markdown);
    if (!want) {
        if (t) fprintf(stderr, "  unexpected title \"%s\"\n", t);
        CHECK(t == NULL);
    } else {
        CHECK_EQ_STR(t, want);
    }
    tw_free(t);
}

static void test_titles(void) {
    check_title("# On slow harbours\n\ntext", 1, "On slow harbours");
    check_title("intro\n\n## Knots worth knowing ##\n", 1, "Knots worth knowing");
    check_title("# C#\n", 1, "C#");
    check_title("#hashtag is not a heading\n", 1, NULL);
    check_title("####### seven is not a heading\n", 1, NULL);
    check_title("```\n# in code\n```\n# After code\n", 1, "After code");
    check_title("    # indented code\n", 1, NULL);
    check_title("---\ntitle: \"From front matter\"\ndate: 2024\n---\nno heading\n", 1,
                "From front matter");
    check_title("---\ntitle: FM\n---\n# Heading wins\n", 1, "Heading wins");
    check_title("---\nnot closed\n# Heading\n", 1, "Heading");
    check_title("\xEF\xBB\xBF# With a BOM\r\n", 1, "With a BOM");
    check_title("#\n# \n#   Real\n", 1, "Real");
    check_title("# Title\n", 0, NULL); /* plain text has no headings */
    check_title("", 1, NULL);
}

int main(void) {
    RUN(test_kinds);
    RUN(test_github_rules);
    RUN(test_binary);
    RUN(test_base64);
    RUN(test_escape);
    RUN(test_titles);
    TEST_DONE();
}
