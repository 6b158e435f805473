/* test_wh_local_keys: local documents keyed by folder (pipelines/warehouse.h, wh_local_url;
 * pipelines/crawl_local.c), and schema version 3, which moves the older keys to that form.
 *   - wh_local_url: "file://" + the absolute path, pchar bytes kept, every other byte (space,
 *     '%', '#', '?', non-ASCII, controls) percent-encoded in upper-case hex; the source URL's
 *     "file://" / "file:" prefix and trailing slashes ignored; "/" as the folder; a relative
 *     folder gives "file:<rel>"; two folders give two keys for one relative path;
 *   - two real folders of one author with the same relative paths crawl into distinct
 *     documents; a second crawl reads nothing;
 *   - migration: a warehouse holding what the old crawler wrote ("file:<rel>" keys, two local
 *     folders sharing README.md: one document holding the second folder's text), put back to
 *     user_version 2, opens as version 3 with: document ids, versions and cleaned text kept;
 *     local keys rewritten per source folder (percent-encoded); the fetch state of the folder
 *     that lost the shared document dropped (so its file is read again) and the others moved;
 *     LinkedIn keys, a removed source's document and a relative folder's document untouched;
 *     then a crawl re-reads only the file that lost its state and adds only its document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "pipelines/crawl.h"
#include "pipelines/warehouse.h"

static char tmpdir[256];

static void check_url(const char *folder, const char *rel, const char *want) {
    tw_sb sb;
    tw_sb_init(&sb);
    wh_local_url(folder, rel, &sb);
    CHECK(!sb.failed);
    CHECK_EQ_STR(tw_sb_str(&sb), want);
    tw_sb_free(&sb);
}

static void test_local_url(void) {
    check_url("/srv/ada/notes", "README.md", "file:///srv/ada/notes/README.md");
    check_url("/srv/ada/notes//", "a/b.md", "file:///srv/ada/notes/a/b.md");
    check_url("file:///srv/ada/notes/", "a.md", "file:///srv/ada/notes/a.md");
    check_url("file:/srv/ada/notes", "a.md", "file:///srv/ada/notes/a.md");
    check_url("/", "a.md", "file:///a.md");
    check_url("/srv/my notes", "caf\xc3\xa9 100%.md", "file:///srv/my%20notes/caf%C3%A9%20100%25.md");
    check_url("/x", "q?a#b[c]\"d\\e<f>g`h{i}|j^k.md", "file:///x/q%3Fa%23b%5Bc%5D%22d%5Ce%3Cf%3Eg%60h%7Bi%7D%7Cj%5Ek.md");
    check_url("/x", "a(b)+c=d;e,f@g:h~i!j$k&l'm*n-o_p.md", "file:///x/a(b)+c=d;e,f@g:h~i!j$k&l'm*n-o_p.md");
    check_url("/x", "\x01\x7f\xff\t.txt", "file:///x/%01%7F%FF%09.txt");
    check_url("notes", "a.md", "file:notes/a.md");
    check_url("/srv/a", "", "file:///srv/a/");
    /* Same relative path, two folders: two keys; a folder that is a prefix of another too. */
    check_url("/srv/a", "b/README.md", "file:///srv/a/b/README.md");
    check_url("/srv/a/b", "README.md", "file:///srv/a/b/README.md"); /* the same file: one key */
    check_url("/srv/ab", "README.md", "file:///srv/ab/README.md");
}

static int write_file(const char *dir, const char *rel, const char *text) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return tw_file_write_atomic(p, text, strlen(text)) == TW_OK ? 0 : -1;
}

static int make_dir(const char *parent, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", parent, name);
    return mkdir(out, 0755) == 0 ? 0 : -1;
}

static tw_status crawl_one(wh_db *db, int64_t source_id, wh_run_counts *c) {
    http_client *http = NULL;
    http_opts o;
    http_opts_default(&o); /* never used: a local crawl reads no URL */
    tw_status st = http_client_new(&o, &http);
    wh_source s;
    memset(&s, 0, sizeof s);
    if (!st) st = wh_source_get(db, source_id, &s);
    crawl_ctx ctx = {.db = db, .http = http};
    if (!st) st = crawl_source(&ctx, &s, c, NULL);
    if (st) fprintf(stderr, "crawl of source %lld: %s\n", (long long)source_id, tw_errmsg());
    wh_source_clear(&s);
    http_client_free(http);
    return st;
}

static int on_doc(void *ctx, const wh_doc *d) {
    tw_sb *sb = ctx;
    tw_sb_printf(sb, "%s\n", d->url);
    return 0;
}

/* The URLs of every document, one a line (sorted by id). */
static void doc_urls(wh_db *db, tw_sb *out) {
    tw_sb_clear(out);
    CHECK(wh_doc_each(db, NULL, WH_DOC_NONE, on_doc, out) == TW_OK);
}

static int has_line(const tw_sb *sb, const char *line) {
    size_t n = strlen(line);
    for (const char *p = tw_sb_str(sb); (p = strstr(p, line)) != NULL; p++)
        if ((p == sb->buf || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

static void test_two_folders(void) {
    char root[400], a[450], b[450], sub[500], db_path[450];
    CHECK(make_dir(tmpdir, "two", root, sizeof root) == 0);
    CHECK(make_dir(root, "a", a, sizeof a) == 0);
    CHECK(make_dir(root, "b", b, sizeof b) == 0);
    CHECK(make_dir(a, "notes", sub, sizeof sub) == 0);
    CHECK(make_dir(b, "notes", sub, sizeof sub) == 0);
    CHECK(write_file(a, "README.md", "# Folder A\n\nThe first folder.\n") == 0);
    CHECK(write_file(b, "README.md", "# Folder B\n\nThe second folder.\n") == 0);
    CHECK(write_file(a, "notes/2024.md", "# A in 2024\n\nNotes of A.\n") == 0);
    CHECK(write_file(b, "notes/2024.md", "# B in 2024\n\nNotes of B.\n") == 0);
    snprintf(db_path, sizeof db_path, "%s/two.db", tmpdir);
    wh_db *db = NULL;
    CHECK(wh_open(db_path, &db) == TW_OK);
    if (!db) return;
    int64_t sa = 0, sb_id = 0, n = 0;
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, a, 0, &sa, NULL) == TW_OK);
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, b, 0, &sb_id, NULL) == TW_OK);
    wh_run_counts c = {0};
    CHECK(crawl_one(db, sa, &c) == TW_OK);
    CHECK_EQ_INT(c.new_docs, 2);
    CHECK(crawl_one(db, sb_id, &c) == TW_OK);
    CHECK_EQ_INT(c.new_docs, 2); /* not "changed": B does not overwrite A's documents */
    CHECK_EQ_INT(c.changed, 0);
    CHECK(wh_doc_count(db, NULL, &n) == TW_OK);
    CHECK_EQ_INT(n, 4);
    tw_sb urls, want;
    tw_sb_init(&urls);
    tw_sb_init(&want);
    doc_urls(db, &urls);
    const char *dirs[2] = {a, b}, *rels[2] = {"README.md", "notes/2024.md"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            tw_sb_clear(&want);
            tw_sb_printf(&want, "file://%s/%s", dirs[i], rels[j]);
            CHECK(has_line(&urls, tw_sb_str(&want)));
        }
    /* Incremental: nothing is read again, nothing changes. */
    for (int k = 0; k < 2; k++) {
        CHECK(crawl_one(db, k ? sb_id : sa, &c) == TW_OK);
        CHECK_EQ_INT(c.fetched, 0);
        CHECK_EQ_INT(c.new_docs + c.changed, 0);
    }
    /* Removed and added again (a new source id, no fetch state): the files are read again and
     * find their documents (unchanged), no duplicates. */
    CHECK(wh_source_remove(db, sa) == TW_OK);
    int64_t sa2 = 0;
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, a, 0, &sa2, NULL) == TW_OK);
    CHECK(sa2 != sa);
    CHECK(crawl_one(db, sa2, &c) == TW_OK);
    CHECK_EQ_INT(c.fetched, 2);
    CHECK_EQ_INT(c.new_docs, 0);
    CHECK_EQ_INT(c.unchanged, 2);
    CHECK(wh_doc_count(db, NULL, &n) == TW_OK);
    CHECK_EQ_INT(n, 4);
    tw_sb_free(&urls);
    tw_sb_free(&want);
    wh_close(db);
}

/* What the old crawler put in the fetch state of a file: its stamp (crawl_local.c's header)
 * and its content's sha256. */
static void old_state(wh_db *db, int64_t src, const char *dir, const char *rel,
                      const char *content) {
    char p[600], stamp[96], hex[65], key[600];
    uint8_t h[32];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    struct stat sb;
    CHECK(stat(p, &sb) == 0);
    snprintf(stamp, sizeof stamp, "size=%lld mtime=%lld.%09ld", (long long)sb.st_size,
             (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    tw_sha256(content, strlen(content), h);
    tw_hex(h, 32, hex);
    snprintf(key, sizeof key, "file:%s", rel);
    CHECK(wh_fetch_state_put(db, src, key, stamp, NULL, hex) == TW_OK);
}

static int64_t old_doc(wh_db *db, int64_t src, const char *url, const char *content) {
    wh_doc_in d = {.source_id = src, .url = url, .content_type = "markdown",
                   .content = content, .content_len = strlen(content)};
    int64_t id = 0;
    wh_doc_outcome oc;
    CHECK(wh_document_upsert(db, 0, &d, &id, &oc) == TW_OK);
    return id;
}

static void check_doc(wh_db *db, int64_t id, const char *url, const char *content,
                      int64_t version) {
    wh_doc d;
    memset(&d, 0, sizeof d);
    CHECK(wh_doc_get(db, id, WH_DOC_RAW, &d) == TW_OK);
    if (d.url) CHECK_EQ_STR(d.url, url);
    if (d.content) CHECK_EQ_STR(d.content, content);
    CHECK_EQ_INT(d.version, version);
    wh_doc_clear(&d);
}

static int state_hash_is(wh_db *db, int64_t src, const char *url, const char *hash) {
    wh_fetch_state fs;
    tw_status st = wh_fetch_state_get(db, src, url, &fs);
    int r = st == TW_ERR_NOT_FOUND ? !hash
            : st                 ? -1
                                 : hash && fs.content_hash && !strcmp(fs.content_hash, hash);
    if (st == TW_ERR_NOT_FOUND) tw_error_clear();
    if (!st) wh_fetch_state_clear(&fs);
    return r == 1;
}

static void test_migration(void) {
    char root[400], a[450], b[450], sub[500], db_path[450];
    CHECK(make_dir(tmpdir, "mig", root, sizeof root) == 0);
    CHECK(make_dir(root, "a", a, sizeof a) == 0);
    CHECK(make_dir(root, "my notes", b, sizeof b) == 0);
    CHECK(make_dir(a, "notes", sub, sizeof sub) == 0);
    const char *a_readme = "# A readme\n", *a_v1 = "# A notes\n\nv1\n", *a_v2 = "# A notes\n\nv2\n";
    const char *b_readme = "# B readme\n", *b_only = "# Only B\n";
    CHECK(write_file(a, "README.md", a_readme) == 0);
    CHECK(write_file(a, "notes/2024.md", a_v2) == 0);
    CHECK(write_file(b, "README.md", b_readme) == 0);
    CHECK(write_file(b, "only b.md", b_only) == 0);
    snprintf(db_path, sizeof db_path, "%s/mig.db", tmpdir);

    /* What the old code left: A crawled, then B, sharing "file:README.md". */
    wh_db *db = NULL;
    CHECK(wh_open(db_path, &db) == TW_OK);
    if (!db) return;
    int64_t sa = 0, sb_id = 0, sl = 0, sr = 0, se = 0;
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, a, 0, &sa, NULL) == TW_OK);
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, b, 0, &sb_id, NULL) == TW_OK);
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LINKEDIN, "/srv/export", 0, &sl, NULL) == TW_OK);
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "rel/folder", 0, &sr, NULL) == TW_OK);
    CHECK(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/srv/gone", 0, &se, NULL) == TW_OK);
    int64_t d_readme = old_doc(db, sa, "file:README.md", a_readme);
    old_state(db, sa, a, "README.md", a_readme);
    int64_t d_notes = old_doc(db, sa, "file:notes/2024.md", a_v1);
    CHECK(old_doc(db, sa, "file:notes/2024.md", a_v2) == d_notes);
    old_state(db, sa, a, "notes/2024.md", a_v2);
    wh_doc nd;
    memset(&nd, 0, sizeof nd);
    CHECK(wh_doc_get(db, d_notes, WH_DOC_RAW, &nd) == TW_OK);
    CHECK(wh_cleaned_put(db, d_notes, nd.content_hash, "A notes v2", 10, 0, 0, NULL) == TW_OK);
    wh_doc_clear(&nd);
    CHECK(old_doc(db, sb_id, "file:README.md", b_readme) == d_readme); /* the old bug */
    old_state(db, sb_id, b, "README.md", b_readme);
    int64_t d_only = old_doc(db, sb_id, "file:only b.md", b_only);
    old_state(db, sb_id, b, "only b.md", b_only);
    int64_t d_li = old_doc(db, sl, "file:Articles/Articles/x.html", "<p>x</p>");
    CHECK(wh_fetch_state_put(db, sl, "file:Shares.csv", NULL, NULL, "abc") == TW_OK);
    int64_t d_rel = old_doc(db, sr, "file:r.md", "# r\n");
    CHECK(wh_fetch_state_put(db, sr, "file:r.md", NULL, NULL, "def") == TW_OK);
    int64_t d_gone = old_doc(db, se, "file:e.md", "# e\n");
    CHECK(wh_source_remove(db, se) == TW_OK);
    wh_close(db);
    /* Back to version 2: user_version is the big-endian u32 at byte 60 of the SQLite header
     * (the WAL was checkpointed into the file when the connection closed). */
    FILE *fp = fopen(db_path, "r+b");
    CHECK(fp != NULL);
    if (!fp) return;
    unsigned char v[4] = {0, 0, 0, 2};
    CHECK(fseek(fp, 60, SEEK_SET) == 0);
    CHECK(fwrite(v, 1, 4, fp) == 4);
    fclose(fp);

    db = NULL;
    CHECK(wh_open(db_path, &db) == TW_OK);
    if (!db) return;
    CHECK_EQ_INT(wh_schema_version(db), 3);
    CHECK(wh_integrity_check(db) == TW_OK);
    char ua[600], ub[600], uo[600], un[600];
    snprintf(ua, sizeof ua, "file://%s/README.md", a);
    snprintf(un, sizeof un, "file://%s/notes/2024.md", a);
    snprintf(ub, sizeof ub, "file://%s/my%%20notes/README.md", root);
    snprintf(uo, sizeof uo, "file://%s/my%%20notes/only%%20b.md", root);
    check_doc(db, d_readme, ub, b_readme, 2); /* the shared document was B's: it goes to B */
    check_doc(db, d_notes, un, a_v2, 2);
    check_doc(db, d_only, uo, b_only, 1);
    check_doc(db, d_li, "file:Articles/Articles/x.html", "<p>x</p>", 1);
    check_doc(db, d_rel, "file:r.md", "# r\n", 1);
    check_doc(db, d_gone, "file:e.md", "# e\n", 1);
    wh_doc cd;
    memset(&cd, 0, sizeof cd);
    CHECK(wh_doc_get(db, d_notes, WH_DOC_CLEANED, &cd) == TW_OK);
    if (cd.content) CHECK_EQ_STR(cd.content, "A notes v2");
    wh_doc_clear(&cd);
    char h[65];
    uint8_t hb[32];
    tw_sha256(a_v2, strlen(a_v2), hb);
    tw_hex(hb, 32, h);
    CHECK(state_hash_is(db, sa, un, h));
    CHECK(state_hash_is(db, sa, "file:notes/2024.md", NULL));
    CHECK(state_hash_is(db, sa, ua, NULL)); /* dropped: the document under it held B's text */
    CHECK(state_hash_is(db, sa, "file:README.md", NULL));
    tw_sha256(b_readme, strlen(b_readme), hb);
    tw_hex(hb, 32, h);
    CHECK(state_hash_is(db, sb_id, ub, h));
    CHECK(state_hash_is(db, sl, "file:Shares.csv", "abc"));
    CHECK(state_hash_is(db, sr, "file:r.md", "def"));

    /* A re-crawl: A reads its README again (a new document of its own); the rest is unchanged
     * and not read. */
    wh_run_counts c = {0};
    CHECK(crawl_one(db, sa, &c) == TW_OK);
    CHECK_EQ_INT(c.fetched, 1);
    CHECK_EQ_INT(c.new_docs, 1);
    CHECK_EQ_INT(c.changed, 0);
    CHECK(crawl_one(db, sb_id, &c) == TW_OK);
    CHECK_EQ_INT(c.fetched, 0);
    CHECK_EQ_INT(c.new_docs + c.changed, 0);
    int64_t n = 0;
    CHECK(wh_doc_count(db, NULL, &n) == TW_OK);
    CHECK_EQ_INT(n, 7);
    tw_sb urls;
    tw_sb_init(&urls);
    doc_urls(db, &urls);
    CHECK(has_line(&urls, ua));
    tw_sb_free(&urls);
    wh_close(db);
    /* and again: already at version 3 */
    CHECK(wh_open(db_path, &db) == TW_OK);
    CHECK_EQ_INT(wh_schema_version(db), 3);
    wh_close(db);
}

int main(void) {
    /* The expected URLs below write the temporary folder as it is: keep it to bytes that need
     * no percent-encoding. */
    const char *t = getenv("TMPDIR");
    if (!t || !*t || strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") != strlen(t))
        t = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/test_wh_local_keys.XXXXXX", t);
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_local_url);
    RUN(test_two_folders);
    RUN(test_migration);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
