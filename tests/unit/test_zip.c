/* test_zip.c: the ZIP reader (engine/zip.h).
 *
 * Archives come from two places: a small writer below (stored and deflate through zlib, with
 * ZIP64 records on demand, so each field can be corrupted on purpose), and fixtures written
 * by Python's zipfile and Info-ZIP (tests/data/zip/, made by tools/make_zip_fixtures.py) with
 * the contents Python read back, so the reader is checked against independent writers. */
#include "test.h"
#include "zip.h"
#include "zip_writer.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- shared data ------------------------------------------------------------------------- */

static char lorem[20000];
static uint8_t noise[5000];

static void init_data(void) {
    const char *words[] = {"twin ", "writes ", "like ", "one ", "person, ", "mostly. "};
    size_t n = 0;
    uint32_t x = 12345;
    while (n + 10 < sizeof lorem) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % 6];
        size_t l = strlen(w);
        memcpy(lorem + n, w, l);
        n += l;
    }
    lorem[n] = 0;
    for (size_t i = 0; i < sizeof noise; i++) {
        x = x * 1103515245u + 12345u;
        noise[i] = (uint8_t)(x >> 23);
    }
}

static void make_basic(tzip *t, topts o) {
    tmember m[] = {
        {"hello.txt", "Hello, zip!\n", 12, 0},
        {"docs/lorem.txt", lorem, strlen(lorem), 8},
        {"noise.bin", noise, sizeof noise, 8},
        {"empty", "", 0, 8},
        {"sub/", "", 0, 0},
    };
    tzip_build(t, m, 5, o);
}

static int errmsg_has(const char *needle) {
    if (strstr(tw_errmsg(), needle)) return 1;
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", tw_errmsg(), needle);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void check_basic_archive(zip_archive *z) {
    CHECK_EQ_INT(zip_count(z), 5);
    CHECK_EQ_STR(zip_entry_name(z, 1), "docs/lorem.txt");
    CHECK_EQ_INT(zip_entry_size(z, 1), strlen(lorem));
    CHECK(zip_entry_compressed_size(z, 1) < strlen(lorem) / 2); /* it did compress */
    CHECK(zip_entry_is_dir(z, 4));
    CHECK(!zip_entry_is_dir(z, 0));
    size_t idx = 99;
    CHECK_EQ_INT(zip_find(z, "noise.bin", &idx), TW_OK);
    CHECK_EQ_INT(idx, 2);
    CHECK_EQ_INT(zip_find(z, "nope", &idx), TW_ERR_NOT_FOUND);
    CHECK(errmsg_has("nope"));

    uint8_t *out;
    size_t len;
    CHECK_EQ_INT(zip_extract_memory(z, 0, 100, &out, &len), TW_OK);
    CHECK_EQ_INT(len, 12);
    CHECK(out && memcmp(out, "Hello, zip!\n", 12) == 0 && out[12] == 0);
    tw_free(out);
    CHECK_EQ_INT(zip_extract_memory(z, 1, 1 << 20, &out, &len), TW_OK);
    CHECK_EQ_INT(len, strlen(lorem));
    CHECK(out && memcmp(out, lorem, len) == 0);
    tw_free(out);
    CHECK_EQ_INT(zip_extract_memory(z, 2, 1 << 20, &out, &len), TW_OK);
    CHECK(out && len == sizeof noise && memcmp(out, noise, len) == 0);
    tw_free(out);
    CHECK_EQ_INT(zip_extract_memory(z, 3, 10, &out, &len), TW_OK);
    CHECK_EQ_INT(len, 0);
    tw_free(out);
    /* The cap is checked before anything is allocated or inflated. */
    CHECK_EQ_INT(zip_extract_memory(z, 1, 100, &out, &len), TW_ERR_FORMAT);
    CHECK(out == NULL);
    CHECK(errmsg_has("docs/lorem.txt") && errmsg_has("limit"));
}

static void test_stored_and_deflate(void) {
    tzip t;
    make_basic(&t, (topts){0, "a comment"});
    zip_archive *z = zip_open_memory(t.sb.buf, t.sb.len, "basic.zip");
    CHECK(z != NULL);
    if (z) {
        check_basic_archive(z);
        CHECK_EQ_STR(zip_path(z), "basic.zip");
    }
    zip_close(z);
    tw_sb_free(&t.sb);
}

static void test_zip64_records(void) {
    tzip t;
    make_basic(&t, (topts){1, NULL});
    zip_archive *z = zip_open_memory(t.sb.buf, t.sb.len, "z64.zip");
    CHECK(z != NULL);
    if (z) check_basic_archive(z);
    zip_close(z);
    /* ZIP64 extra too short for the saturated fields. */
    uint8_t *b = tz_bytes(&t);
    size_t x = t.central[0] + 46 + strlen("hello.txt");
    b[x + 2] = 16; /* says 16 bytes; usize, csize and offset need 24 */
    z = zip_open_memory(t.sb.buf, t.sb.len, "z64.zip");
    CHECK(z == NULL);
    CHECK(errmsg_has("z64.zip") && errmsg_has("hello.txt") && errmsg_has("ZIP64 extra"));
    zip_close(z);
    b[x + 2] = 24;
    /* ZIP64 end record pointed outside the archive. */
    size_t loc = t.eocd_off - 20;
    wr32(b + loc + 8, 0x7FFFFFF0u);
    z = zip_open_memory(t.sb.buf, t.sb.len, "z64.zip");
    CHECK(z == NULL && errmsg_has("ZIP64 locator"));
    tw_sb_free(&t.sb);
}

static void test_fixtures(void) {
    const char *dir = test_env("TWIN_TEST_DATA");
    if (!dir) {
        fprintf(stderr, "  TWIN_TEST_DATA unset: fixture check not run\n");
        test_failures++;
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/zip/expected.txt", dir);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    if (!fp) return;
    char line[1024];
    int checked = 0;
    while (fgets(line, sizeof line, fp)) {
        char arch[256], member[512], hex[65];
        unsigned long long size;
        if (sscanf(line, "%255s %511s %llu %64s", arch, member, &size, hex) != 4) continue;
        snprintf(path, sizeof path, "%s/zip/%s", dir, arch);
        zip_archive *z = zip_open(path);
        CHECK(z != NULL);
        if (!z) {
            fprintf(stderr, "  %s\n", tw_errmsg());
            continue;
        }
        size_t i;
        CHECK_EQ_INT(zip_find(z, member, &i), TW_OK);
        uint8_t *out = NULL;
        size_t len = 0;
        if (zip_find(z, member, &i) == TW_OK) {
            CHECK_EQ_INT(zip_entry_size(z, i), size);
            CHECK_EQ_INT(zip_extract_memory(z, i, 1 << 20, &out, &len), TW_OK);
            uint8_t d[32];
            char got[65];
            tw_sha256(out, len, d);
            tw_hex(d, 32, got);
            CHECK_EQ_STR(got, hex);
            CHECK_EQ_INT(len, size);
            checked++;
        }
        tw_free(out);
        zip_close(z);
    }
    fclose(fp);
    CHECK(checked >= 10); /* every line of expected.txt was read */
}

static void test_names_safe(void) {
    CHECK(zip_name_is_safe("a.txt"));
    CHECK(zip_name_is_safe("dir/sub/a.txt"));
    CHECK(zip_name_is_safe("dir/"));
    CHECK(zip_name_is_safe("a..b/c..")); /* dots inside a component are fine */
    CHECK(zip_name_is_safe("./a"));
    CHECK(!zip_name_is_safe(""));
    CHECK(!zip_name_is_safe("/etc/passwd"));
    CHECK(!zip_name_is_safe("../evil"));
    CHECK(!zip_name_is_safe("a/../../evil"));
    CHECK(!zip_name_is_safe("a/.."));
    CHECK(!zip_name_is_safe(".."));
    CHECK(!zip_name_is_safe("..\\evil"));
    CHECK(!zip_name_is_safe("C:evil"));
    CHECK(!zip_name_is_safe("c:/evil"));
}

/* A fresh empty folder under TMPDIR; returns a heap path. */
static char *make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/twin_zip_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpl) ? tw_strdup(tmpl) : NULL;
}

static int count_dir(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void test_extract_file(void) {
    char *dir = make_tmpdir();
    CHECK(dir != NULL);
    if (!dir) return;
    tzip t;
    make_basic(&t, (topts){0, NULL});
    zip_archive *z = zip_open_memory(t.sb.buf, t.sb.len, "basic.zip");
    CHECK(z != NULL);
    char dest[4096], hex[65], want[65];
    uint8_t d[32];
    snprintf(dest, sizeof dest, "%s/lorem.txt", dir);
    CHECK_EQ_INT(zip_extract_file(z, 1, dest, hex), TW_OK);
    tw_sha256(lorem, strlen(lorem), d);
    tw_hex(d, 32, want);
    CHECK_EQ_STR(hex, want);
    CHECK_EQ_INT(tw_sha256_file(dest, hex), TW_OK);
    CHECK_EQ_STR(hex, want);
    zip_close(z);

    /* A corrupt member leaves the older file in place and no temporary behind. */
    uint8_t *b = tz_bytes(&t);
    b[t.data[2] + 100] ^= 0x40; /* inside noise.bin's deflate data */
    z = zip_open_memory(t.sb.buf, t.sb.len, "basic.zip");
    CHECK(z != NULL);
    CHECK(zip_extract_file(z, 2, dest, hex) != TW_OK);
    CHECK(errmsg_has("basic.zip") && errmsg_has("noise.bin"));
    CHECK_EQ_INT(tw_sha256_file(dest, hex), TW_OK);
    CHECK_EQ_STR(hex, want);
    CHECK_EQ_INT(count_dir(dir), 1);

    /* Extraction into a folder creates the member's folders. */
    CHECK_EQ_INT(zip_extract_to_dir(z, 1, dir), TW_OK);
    CHECK_EQ_INT(zip_extract_to_dir(z, 4, dir), TW_OK);
    snprintf(dest, sizeof dest, "%s/docs/lorem.txt", dir);
    CHECK_EQ_INT(tw_sha256_file(dest, hex), TW_OK);
    CHECK_EQ_STR(hex, want);
    snprintf(dest, sizeof dest, "%s/sub", dir);
    CHECK(tw_is_dir(dest));
    zip_close(z);
    tw_sb_free(&t.sb);
    rm_rf(dir);
    tw_free(dir);
}

static void test_zip_slip(void) {
    char *dir = make_tmpdir();
    CHECK(dir != NULL);
    if (!dir) return;
    char inner[4096];
    snprintf(inner, sizeof inner, "%s/inner", dir);
    CHECK_EQ_INT(tw_mkdir_p(inner), TW_OK);
    tmember m[] = {
        {"../evil.txt", "gotcha", 6, 0},
        {"ok/../../evil2.txt", "gotcha", 6, 8},
        {"/tmp/twin_zip_abs_evil.txt", "gotcha", 6, 0},
        {"ok/fine.txt", "fine", 4, 0},
    };
    tzip t;
    tzip_build(&t, m, 4, (topts){0, NULL});
    zip_archive *z = zip_open_memory(t.sb.buf, t.sb.len, "slip.zip");
    CHECK(z != NULL);
    for (size_t i = 0; z && i < 3; i++) {
        CHECK_EQ_INT(zip_extract_to_dir(z, i, inner), TW_ERR_FORMAT);
        CHECK(errmsg_has("slip.zip") && errmsg_has("unsafe path"));
    }
    CHECK_EQ_INT(zip_extract_to_dir(z, 3, inner), TW_OK);
    CHECK_EQ_INT(count_dir(dir), 1); /* only inner/: nothing escaped next to it */
    CHECK(!tw_path_exists("/tmp/twin_zip_abs_evil.txt"));
    zip_close(z);
    tw_sb_free(&t.sb);
    rm_rf(dir);
    tw_free(dir);
}

/* Each corruption must give an error (never a crash) naming the archive and what is wrong. */
static void expect_open_fail(tzip *t, const char *what) {
    zip_archive *z = zip_open_memory(t->sb.buf, t->sb.len, "bad.zip");
    CHECK(z == NULL);
    CHECK(errmsg_has("bad.zip") && errmsg_has(what));
    zip_close(z);
}

static void expect_extract_fail(tzip *t, size_t i, tw_status code, const char *what) {
    zip_archive *z = zip_open_memory(t->sb.buf, t->sb.len, "bad.zip");
    CHECK(z != NULL);
    if (!z) return;
    uint8_t *out = NULL;
    size_t len;
    CHECK_EQ_INT(zip_extract_memory(z, i, 1 << 20, &out, &len), code);
    CHECK(out == NULL);
    CHECK(errmsg_has("bad.zip") && errmsg_has(what));
    zip_close(z);
}

static void test_corrupt(void) {
    tzip t;
    topts o = {0, NULL};
    uint8_t *b;

    make_basic(&t, o); /* central directory signature */
    b = tz_bytes(&t);
    b[t.central[2]] = 'X';
    expect_open_fail(&t, "entry 2");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* central directory offset beyond the end record */
    b = tz_bytes(&t);
    wr32(b + t.eocd_off + 16, (uint32_t)t.eocd_off);
    expect_open_fail(&t, "central directory");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* entry count larger than the directory can hold */
    b = tz_bytes(&t);
    b[t.eocd_off + 8] = b[t.eocd_off + 10] = 200;
    expect_open_fail(&t, "200 entries");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* name length running past the directory */
    b = tz_bytes(&t);
    b[t.central[4] + 28] = 0xFF;
    expect_open_fail(&t, "entry 4");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* no end record at all */
    b = tz_bytes(&t);
    b[t.eocd_off] = 'X';
    expect_open_fail(&t, "not a ZIP archive");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* local header offset into the central directory */
    b = tz_bytes(&t);
    wr32(b + t.central[1] + 42, (uint32_t)t.cd_off);
    expect_extract_fail(&t, 1, TW_ERR_FORMAT, "docs/lorem.txt");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* local header signature */
    b = tz_bytes(&t);
    b[t.local[0] + 1] = 'Q';
    expect_extract_fail(&t, 0, TW_ERR_FORMAT, "local header signature");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* compressed size running into the central directory */
    b = tz_bytes(&t);
    wr32(b + t.central[2] + 20, 0x10000000u);
    expect_extract_fail(&t, 2, TW_ERR_FORMAT, "runs past");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* CRC */
    b = tz_bytes(&t);
    b[t.central[0] + 16] ^= 1;
    expect_extract_fail(&t, 0, TW_ERR_FORMAT, "CRC-32 mismatch");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* declared size smaller than what the deflate data holds */
    b = tz_bytes(&t);
    wr32(b + t.central[1] + 24, 1000);
    expect_extract_fail(&t, 1, TW_ERR_FORMAT, "more than its declared 1000 bytes");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* declared size larger than the data */
    b = tz_bytes(&t);
    wr32(b + t.central[1] + 24, (uint32_t)strlen(lorem) + 5);
    expect_extract_fail(&t, 1, TW_ERR_FORMAT, "inflates to");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* truncated deflate stream: compressed size cut short */
    b = tz_bytes(&t);
    wr32(b + t.central[1] + 20, 50);
    expect_extract_fail(&t, 1, TW_ERR_FORMAT, "truncated");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* stored with different sizes */
    b = tz_bytes(&t);
    wr32(b + t.central[0] + 24, 11);
    expect_extract_fail(&t, 0, TW_ERR_FORMAT, "stored member");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* garbage deflate data */
    b = tz_bytes(&t);
    memset(b + t.data[2], 0xFF, 16);
    expect_extract_fail(&t, 2, TW_ERR_FORMAT, "noise.bin");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* unsupported method (bzip2) */
    b = tz_bytes(&t);
    b[t.central[1] + 10] = 12;
    expect_extract_fail(&t, 1, TW_ERR_UNSUPPORTED, "method 12");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* encrypted */
    b = tz_bytes(&t);
    b[t.central[1] + 8] |= 1;
    expect_extract_fail(&t, 1, TW_ERR_UNSUPPORTED, "encrypted");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* local name differs */
    b = tz_bytes(&t);
    b[t.local[0] + 30] = 'J';
    expect_extract_fail(&t, 0, TW_ERR_FORMAT, "local header's name");
    tw_sb_free(&t.sb);

    make_basic(&t, o); /* a NUL inside a name */
    b = tz_bytes(&t);
    b[t.central[0] + 46 + 2] = 0;
    expect_open_fail(&t, "NUL");
    tw_sb_free(&t.sb);

    /* Every truncation of a valid archive either fails cleanly or (when the cut leaves a
     * complete end record, which only the full length does here) opens. */
    make_basic(&t, (topts){1, "trailing comment"});
    for (size_t n = 0; n < t.sb.len; n++) {
        uint8_t *copy = tw_malloc(n + 1); /* a separate buffer so ASan sees reads past n */
        memcpy(copy, t.sb.buf, n);
        zip_archive *z = zip_open_memory(n ? copy : NULL, n, "cut.zip");
        if (z) {
            for (size_t i = 0; i < zip_count(z); i++) {
                uint8_t *out;
                size_t len;
                if (zip_extract_memory(z, i, 1 << 20, &out, &len) == TW_OK) tw_free(out);
            }
        } else {
            CHECK(strstr(tw_errmsg(), "cut.zip") != NULL);
        }
        zip_close(z);
        tw_free(copy);
    }
    tw_sb_free(&t.sb);
}

/* The N-th allocation failing anywhere in open or extraction gives an error, never a crash
 * or a leak. */
static void test_alloc_failures(void) {
    tzip t;
    make_basic(&t, (topts){0, NULL});
    int failures_seen = 0;
    for (uint64_t k = 1; k < 40; k++) {
        tw_mem_stats before = tw_mem_get_stats();
        tw_mem_fail_after(k);
        zip_archive *z = zip_open_memory(t.sb.buf, t.sb.len, "nomem.zip");
        tw_status s = z ? TW_OK : tw_errcode();
        if (z) {
            uint8_t *out = NULL;
            size_t len;
            s = zip_extract_memory(z, 1, 1 << 20, &out, &len);
            tw_free(out);
        }
        tw_mem_fail_after(0);
        if (s != TW_OK) {
            failures_seen++;
            CHECK_EQ_INT(s, TW_ERR_NOMEM);
        }
        zip_close(z);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before.current_bytes);
    }
    CHECK(failures_seen >= 4); /* open (3 allocations) and inflate state + buffer */
    tw_sb_free(&t.sb);
}

int main(void) {
    init_data();
    RUN(test_stored_and_deflate);
    RUN(test_zip64_records);
    RUN(test_fixtures);
    RUN(test_names_safe);
    RUN(test_extract_file);
    RUN(test_zip_slip);
    RUN(test_corrupt);
    RUN(test_alloc_failures);
    TEST_DONE();
}
