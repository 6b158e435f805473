/* test_warehouse.c: the SQLite warehouse (pipelines/warehouse.h), function by function:
 * opening (fresh, reopened, not a database, a newer schema refused, a missing folder),
 * platforms and intervals, authors and sources (unique, each, due, crawled, remove), the
 * source lock (a live owner blocks, a stale or dead one is taken over), fetch state and seen
 * items, runs (an earlier "running" run becomes "interrupted") and their events, documents
 * (new / unchanged / changed -> versions, unique per author), cleaned text and its staleness,
 * chunks (replace -> tombstones, unchunked listing, duplicates), embeddings (mark, unembedded,
 * reset), walks whose callbacks write, nested transactions, allocation failures
 * (tw_mem_fail_after), and a crash: a child upserting in a loop is SIGKILLed, the file must
 * pass PRAGMA integrity_check and every document must have its version rows. */
#include "test.h"
#include "pipelines/warehouse.h"

#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* A fresh database file in the test folder. */
static wh_db *fresh_db(const char *name) {
    char p[512];
    path_in(p, sizeof p, name);
    unlink(p);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
    wh_db *db = NULL;
    tw_status st = wh_open(p, &db);
    if (st) fprintf(stderr, "wh_open %s: %s\n", p, tw_errmsg());
    CHECK(st == TW_OK && db != NULL);
    return db;
}

static wh_doc_in doc_in(int64_t source_id, const char *url, const char *content) {
    wh_doc_in d;
    memset(&d, 0, sizeof d);
    d.source_id = source_id;
    d.url = url;
    d.title = "A title";
    d.published_at = "2024-05-01";
    d.content_type = "markdown";
    d.content = content;
    d.content_len = strlen(content);
    return d;
}

/* ---- open ---------------------------------------------------------------------------------- */

static void test_open_and_schema(void) {
    wh_db *db = fresh_db("open.db");
    CHECK_EQ_INT(wh_schema_version(db), 3); /* 2: training runs (test_trun), 3: local keys */
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    int64_t a;
    CHECK_EQ_INT(wh_author_ensure(db, "ada", &a), TW_OK);
    wh_close(db);
    wh_close(NULL); /* no-op */

    /* Reopening keeps the data and the version. */
    char p[512];
    path_in(p, sizeof p, "open.db");
    CHECK_EQ_INT(wh_open(p, &db), TW_OK);
    int64_t b = 0;
    CHECK_EQ_INT(wh_author_find(db, "ada", &b), TW_OK);
    CHECK_EQ_INT(b, a);
    CHECK_EQ_INT(wh_schema_version(db), 3);
    wh_close(db);

    /* A file that is not SQLite. */
    char junk[512];
    path_in(junk, sizeof junk, "junk.db");
    FILE *fp = fopen(junk, "wb");
    for (int i = 0; i < 300; i++) fputs("this is not a database ", fp);
    fclose(fp);
    db = (wh_db *)1;
    CHECK_EQ_INT(wh_open(junk, &db), TW_ERR_FORMAT);
    CHECK(db == NULL);
    CHECK(strstr(tw_errmsg(), junk) != NULL);

    /* A folder that does not exist. */
    char missing[512];
    path_in(missing, sizeof missing, "no/such/folder/twin.db");
    CHECK_EQ_INT(wh_open(missing, &db), TW_ERR_IO);
    CHECK(strstr(tw_errmsg(), missing) != NULL);
    CHECK_EQ_INT(wh_open("", &db), TW_ERR_ARG);

    /* A schema newer than this build: user_version is the big-endian u32 at byte 60 of the
     * SQLite file header (the file format's documented layout). The WAL was checkpointed into
     * the file when the last connection closed. */
    fp = fopen(p, "r+b");
    CHECK(fp != NULL);
    if (fp) {
        unsigned char v[4] = {0, 0, 0, 99};
        fseek(fp, 60, SEEK_SET);
        fwrite(v, 1, 4, fp);
        fclose(fp);
    }
    CHECK_EQ_INT(wh_open(p, &db), TW_ERR_FORMAT);
    CHECK(db == NULL);
    CHECK(strstr(tw_errmsg(), p) != NULL);
    CHECK(strstr(tw_errmsg(), "99") != NULL);
    CHECK(strstr(tw_errmsg(), "version 3") != NULL);

    /* Another application's SQLite file (tables, no twin application id). Made with a twin
     * database whose application_id (byte 68) is overwritten. */
    path_in(p, sizeof p, "foreign.db");
    db = fresh_db("foreign.db");
    wh_close(db);
    fp = fopen(p, "r+b");
    if (fp) {
        unsigned char v[4] = {0, 0, 0x12, 0x34};
        fseek(fp, 68, SEEK_SET);
        fwrite(v, 1, 4, fp);
        fclose(fp);
    }
    CHECK_EQ_INT(wh_open(p, &db), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "not a twin database") != NULL);
}

/* ---- platforms, intervals ------------------------------------------------------------------ */

static void test_platforms_and_intervals(void) {
    CHECK_EQ_STR(wh_platform_name(WH_PLATFORM_SUBSTACK), "substack");
    CHECK_EQ_STR(wh_platform_name((wh_platform)99), "?");
    CHECK_EQ_INT(wh_platform_parse("GitHub"), WH_PLATFORM_GITHUB);
    CHECK_EQ_INT(wh_platform_parse("myspace"), -1);
    CHECK_EQ_INT(wh_platform_parse(NULL), -1);

    CHECK_EQ_INT(wh_platform_guess("https://medium.com/@ada"), WH_PLATFORM_MEDIUM);
    CHECK_EQ_INT(wh_platform_guess("https://ada.medium.com/feed"), WH_PLATFORM_MEDIUM);
    CHECK_EQ_INT(wh_platform_guess("https://notmedium.com/x"), WH_PLATFORM_ARTICLE);
    CHECK_EQ_INT(wh_platform_guess("HTTPS://Ada.Substack.COM"), WH_PLATFORM_SUBSTACK);
    CHECK_EQ_INT(wh_platform_guess("https://substack.com/@ada"), WH_PLATFORM_ARTICLE);
    CHECK_EQ_INT(wh_platform_guess("https://github.com/ada/engine"), WH_PLATFORM_GITHUB);
    CHECK_EQ_INT(wh_platform_guess("http://user@github.com:443/ada"), WH_PLATFORM_GITHUB);
    CHECK_EQ_INT(wh_platform_guess("https://gist.github.com/ada"), WH_PLATFORM_ARTICLE);
    CHECK_EQ_INT(wh_platform_guess("https://example.org/blog/post"), WH_PLATFORM_ARTICLE);
    CHECK_EQ_INT(wh_platform_guess("https:///nohost"), -1);
    CHECK_EQ_INT(wh_platform_guess("ftp://example.org/x"), -1);
    CHECK_EQ_INT(wh_platform_guess("Downloads/Basic_LinkedInDataExport.ZIP"), WH_PLATFORM_LINKEDIN);
    CHECK_EQ_INT(wh_platform_guess(g_dir), WH_PLATFORM_LOCAL);
    char li[512], f[600];
    path_in(li, sizeof li, "linkedin_export");
    mkdir(li, 0755);
    snprintf(f, sizeof f, "%s/Shares.csv", li);
    FILE *fp = fopen(f, "w");
    if (fp) fclose(fp);
    CHECK_EQ_INT(wh_platform_guess(li), WH_PLATFORM_LINKEDIN);
    path_in(li, sizeof li, "no-such-folder");
    CHECK_EQ_INT(wh_platform_guess(li), -1);
    CHECK_EQ_INT(wh_platform_guess(""), -1);

    int64_t s = 0;
    CHECK_EQ_INT(wh_interval_parse("6h", &s), TW_OK);
    CHECK_EQ_INT(s, 21600);
    CHECK_EQ_INT(wh_interval_parse("30m", &s), TW_OK);
    CHECK_EQ_INT(s, 1800);
    CHECK_EQ_INT(wh_interval_parse("1d", &s), TW_OK);
    CHECK_EQ_INT(s, 86400);
    CHECK_EQ_INT(wh_interval_parse("2w", &s), TW_OK);
    CHECK_EQ_INT(s, 14 * 86400);
    CHECK_EQ_INT(wh_interval_parse("90", &s), TW_OK);
    CHECK_EQ_INT(s, 90);
    CHECK_EQ_INT(wh_interval_parse("45s", &s), TW_OK);
    CHECK_EQ_INT(s, 45);
    s = 7;
    CHECK_EQ_INT(wh_interval_parse("0", &s), TW_ERR_ARG);
    CHECK_EQ_INT(wh_interval_parse("6x", &s), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "6x") != NULL);
    CHECK_EQ_INT(wh_interval_parse("h", &s), TW_ERR_ARG);
    CHECK_EQ_INT(wh_interval_parse("-5", &s), TW_ERR_ARG);
    CHECK_EQ_INT(wh_interval_parse("6hh", &s), TW_ERR_ARG);
    CHECK_EQ_INT(wh_interval_parse("99999999999999999999999d", &s), TW_ERR_ARG);
    CHECK_EQ_INT(wh_interval_parse("", &s), TW_ERR_ARG);
    CHECK_EQ_INT(s, 7); /* untouched on failure */
}

/* ---- authors and sources ------------------------------------------------------------------- */

typedef struct {
    int n;
    int64_t ids[16];
    char urls[16][128];
    int stop_after; /* 0: never */
} src_list;

static int collect_source(void *ctx, const wh_source *s) {
    src_list *l = ctx;
    if (l->n < 16) {
        l->ids[l->n] = s->id;
        snprintf(l->urls[l->n], sizeof l->urls[0], "%s", s->url);
    }
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void test_sources(void) {
    wh_db *db = fresh_db("sources.db");
    int64_t a1, a2, again;
    CHECK_EQ_INT(wh_author_ensure(db, "ada", &a1), TW_OK);
    CHECK_EQ_INT(wh_author_ensure(db, "ada", &again), TW_OK);
    CHECK_EQ_INT(again, a1);
    CHECK_EQ_INT(wh_author_ensure(db, "grace", &a2), TW_OK);
    CHECK(a2 != a1);
    CHECK_EQ_INT(wh_author_find(db, "linus", &again), TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "linus") != NULL);
    CHECK_EQ_INT(wh_author_ensure(db, "", &again), TW_ERR_ARG);

    int64_t s1, s2, s3, sdup;
    int existed = -1;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_MEDIUM, "https://medium.com/@ada", 3600,
                               &s1, &existed), TW_OK);
    CHECK_EQ_INT(existed, 0);
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_MEDIUM, "https://medium.com/@ada", 60, &sdup,
                               &existed), TW_OK);
    CHECK_EQ_INT(existed, 1);
    CHECK_EQ_INT(sdup, s1);
    /* Same URL, other platform or author: other sources. */
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_ARTICLE, "https://medium.com/@ada", 0, &s2,
                               &existed), TW_OK);
    CHECK_EQ_INT(existed, 0);
    CHECK(s2 != s1);
    CHECK_EQ_INT(wh_source_add(db, "linus", WH_PLATFORM_GITHUB, "https://github.com/linus", 86400,
                               &s3, NULL), TW_OK);
    int64_t linus;
    CHECK_EQ_INT(wh_author_find(db, "linus", &linus), TW_OK); /* added with the source */
    CHECK_EQ_INT(wh_source_add(db, "", WH_PLATFORM_GITHUB, "x", 0, &sdup, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_COUNT, "x", 0, &sdup, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "", 0, &sdup, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/x", -1, &sdup, NULL), TW_ERR_ARG);

    wh_source s;
    CHECK_EQ_INT(wh_source_get(db, s1, &s), TW_OK);
    CHECK_EQ_STR(s.author, "ada");
    CHECK_EQ_INT(s.author_id, a1);
    CHECK_EQ_INT(s.platform, WH_PLATFORM_MEDIUM);
    CHECK_EQ_STR(s.url, "https://medium.com/@ada");
    CHECK_EQ_INT(s.every_s, 3600); /* the duplicate add did not change it */
    CHECK(s.next_crawl_at == 0 && s.last_crawl_at == 0);
    CHECK_EQ_STR(s.last_status, "");
    wh_source_clear(&s);
    wh_source_clear(&s); /* reusable, idempotent */
    CHECK_EQ_INT(wh_source_get(db, 999, &s), TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "999") != NULL);

    src_list l;
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_source_each(db, 0, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK(l.ids[0] == s1 && l.ids[1] == s2 && l.ids[2] == s3);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_source_each(db, a1, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 2);
    memset(&l, 0, sizeof l);
    l.stop_after = 1;
    CHECK_EQ_INT(wh_source_each(db, 0, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 1);

    /* Due: every_s > 0 and next_crawl_at <= now, in next_crawl_at order. */
    double now = 1.7e9;
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_source_each_due(db, now, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 2); /* s2 has every_s 0 */
    CHECK(l.ids[0] == s1 && l.ids[1] == s3);
    CHECK_EQ_INT(wh_source_crawled(db, s1, now, "ok"), TW_OK);
    CHECK_EQ_INT(wh_source_get(db, s1, &s), TW_OK);
    CHECK(s.last_crawl_at == now && s.next_crawl_at == now + 3600);
    CHECK_EQ_STR(s.last_status, "ok");
    wh_source_clear(&s);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_source_each_due(db, now + 10, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_INT(l.ids[0], s3);
    CHECK_EQ_INT(wh_source_crawled(db, s3, now, "partial"), TW_OK);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_source_each_due(db, now + 7200, collect_source, &l), TW_OK);
    CHECK_EQ_INT(l.n, 1); /* s1 due again (1 h), s3 not (1 d) */
    CHECK_EQ_INT(l.ids[0], s1);
    CHECK_EQ_INT(wh_source_crawled(db, s1, now, "bogus"), TW_ERR_ARG);
    CHECK_EQ_INT(wh_source_crawled(db, 999, now, "ok"), TW_ERR_NOT_FOUND);

    /* Fetch state and seen items. */
    wh_fetch_state fs;
    CHECK_EQ_INT(wh_fetch_state_get(db, s1, "https://medium.com/feed/@ada", &fs), TW_ERR_NOT_FOUND);
    CHECK(fs.etag == NULL && fs.last_modified == NULL && fs.content_hash == NULL);
    CHECK_EQ_INT(wh_fetch_state_put(db, s1, "https://medium.com/feed/@ada", "\"e1\"", NULL, "abc"),
                 TW_OK);
    CHECK_EQ_INT(wh_fetch_state_get(db, s1, "https://medium.com/feed/@ada", &fs), TW_OK);
    CHECK_EQ_STR(fs.etag, "\"e1\"");
    CHECK(fs.last_modified == NULL);
    CHECK_EQ_STR(fs.content_hash, "abc");
    wh_fetch_state_clear(&fs);
    CHECK_EQ_INT(wh_fetch_state_put(db, s1, "https://medium.com/feed/@ada", NULL,
                                    "Wed, 01 May 2024 10:00:00 GMT", NULL), TW_OK);
    CHECK_EQ_INT(wh_fetch_state_get(db, s1, "https://medium.com/feed/@ada", &fs), TW_OK);
    CHECK(fs.etag == NULL && fs.content_hash == NULL); /* replaced, not merged */
    CHECK_EQ_STR(fs.last_modified, "Wed, 01 May 2024 10:00:00 GMT");
    wh_fetch_state_clear(&fs);
    CHECK_EQ_INT(wh_fetch_state_put(db, 999, "u", NULL, NULL, NULL), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_item_seen(db, s1, "guid-1"), 0);
    CHECK_EQ_INT(wh_item_mark(db, s1, "guid-1"), TW_OK);
    CHECK_EQ_INT(wh_item_mark(db, s1, "guid-1"), TW_OK); /* idempotent */
    CHECK_EQ_INT(wh_item_seen(db, s1, "guid-1"), 1);
    CHECK_EQ_INT(wh_item_seen(db, s2, "guid-1"), 0); /* per source */
    CHECK_EQ_INT(wh_item_mark(db, 999, "g"), TW_ERR_NOT_FOUND);

    /* Remove: fetch state and seen items go with it. */
    CHECK_EQ_INT(wh_source_remove(db, s1), TW_OK);
    CHECK_EQ_INT(wh_source_get(db, s1, &s), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_source_remove(db, s1), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_item_seen(db, s1, "guid-1"), 0);
    CHECK_EQ_INT(wh_fetch_state_get(db, s1, "https://medium.com/feed/@ada", &fs), TW_ERR_NOT_FOUND);
    wh_stats stt;
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.sources, 2);
    CHECK_EQ_INT(stt.authors, 3);
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    wh_close(db);
}

/* ---- the source lock ----------------------------------------------------------------------- */

static int owner_dead(const char *owner) { return strcmp(owner, "pid:1@alive") == 0; }

static void test_source_lock(void) {
    wh_db *db = fresh_db("lock.db");
    int64_t s;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/notes", 0, &s, NULL), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:1@alive", 3600, NULL), TW_OK);
    /* A live owner with a young lock blocks, with a message naming the owner. */
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:2@other", 3600, NULL), TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "pid:1@alive") != NULL);
    CHECK(strstr(tw_errmsg(), "being crawled") != NULL);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:2@other", 3600, owner_dead), TW_ERR_RUNTIME);
    /* The same owner takes it again. */
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:1@alive", 3600, NULL), TW_OK);
    /* Unlock by another owner leaves it alone. */
    CHECK_EQ_INT(wh_source_unlock(db, s, "pid:2@other"), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:2@other", 3600, NULL), TW_ERR_RUNTIME);
    /* Stale: a lock older than stale_s is taken over even from a live owner. */
    usleep(20000);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:2@other", 0.01, owner_dead), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:1@alive", 3600, NULL), TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "pid:2@other") != NULL);
    /* Dead: pid:2@other is not alive for owner_dead: taken over at once. */
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:3@third", 3600, owner_dead), TW_OK);
    CHECK_EQ_INT(wh_source_unlock(db, s, "pid:3@third"), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db, s, "pid:1@alive", 3600, NULL), TW_OK); /* free now */
    CHECK_EQ_INT(wh_source_lock(db, 999, "pid:1@alive", 3600, NULL), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_source_lock(db, s, "", 3600, NULL), TW_ERR_ARG);

    /* Another connection (as another process would) sees the lock. */
    char p[512];
    path_in(p, sizeof p, "lock.db");
    wh_db *db2 = NULL;
    CHECK_EQ_INT(wh_open(p, &db2), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db2, s, "pid:9@h", 3600, NULL), TW_ERR_RUNTIME);
    CHECK_EQ_INT(wh_source_unlock(db, s, "pid:1@alive"), TW_OK);
    CHECK_EQ_INT(wh_source_lock(db2, s, "pid:9@h", 3600, NULL), TW_OK);
    wh_close(db2);
    wh_close(db);
}

/* ---- runs ---------------------------------------------------------------------------------- */

typedef struct {
    int n;
    wh_event_kind kinds[8];
    int http[8];
    char reasons[8][64];
} ev_list;

static int collect_event(void *ctx, const wh_event *e) {
    ev_list *l = ctx;
    if (l->n < 8) {
        l->kinds[l->n] = e->kind;
        l->http[l->n] = e->http_status;
        snprintf(l->reasons[l->n], 64, "%s", e->reason ? e->reason : "(none)");
    }
    l->n++;
    return 0;
}

static void test_runs(void) {
    wh_db *db = fresh_db("runs.db");
    int64_t s, r1, r2;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_ARTICLE, "https://ada.dev/", 0, &s, NULL),
                 TW_OK);
    CHECK_EQ_INT(wh_run_begin(db, s, &r1), TW_OK);
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/a", WH_EVENT_FETCHED, 200, NULL), TW_OK);
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/b", WH_EVENT_NOT_MODIFIED, 304, NULL), TW_OK);
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/c.pdf", WH_EVENT_SKIPPED, 200, "binary"),
                 TW_OK);
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/d", WH_EVENT_FAILED, 500, "server error"),
                 TW_OK);
    /* SKIPPED / FAILED need a reason; bad kinds and runs are refused. */
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/e", WH_EVENT_FAILED, 0, NULL), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "reason") != NULL);
    CHECK_EQ_INT(wh_run_event(db, r1, "https://ada.dev/e", (wh_event_kind)7, 0, "x"), TW_ERR_ARG);
    CHECK_EQ_INT(wh_run_event(db, 999, "https://ada.dev/e", WH_EVENT_FETCHED, 200, NULL),
                 TW_ERR_NOT_FOUND);

    wh_run run;
    CHECK_EQ_INT(wh_run_get(db, r1, &run), TW_OK);
    CHECK_EQ_STR(run.status, "running");
    CHECK(run.finished_at == 0 && run.error == NULL && run.source_id == s);
    wh_run_clear(&run);

    /* The process "died": the next run of the source marks r1 interrupted. */
    CHECK_EQ_INT(wh_run_begin(db, s, &r2), TW_OK);
    CHECK(r2 != r1);
    CHECK_EQ_INT(wh_run_get(db, r1, &run), TW_OK);
    CHECK_EQ_STR(run.status, "interrupted");
    CHECK(run.finished_at >= run.started_at && run.finished_at > 0);
    CHECK(run.error != NULL);
    wh_run_clear(&run);
    wh_source src;
    CHECK_EQ_INT(wh_source_get(db, s, &src), TW_OK);
    CHECK_EQ_STR(src.last_status, "interrupted");
    wh_source_clear(&src);

    wh_run_counts c = {5, 2, 1, 1, 1, 1};
    CHECK_EQ_INT(wh_run_finish(db, r2, &c, "partial", "1 page failed"), TW_OK);
    CHECK_EQ_INT(wh_run_get(db, r2, &run), TW_OK);
    CHECK_EQ_STR(run.status, "partial");
    CHECK_EQ_STR(run.error, "1 page failed");
    CHECK(run.finished_at >= run.started_at);
    CHECK(run.counts.fetched == 5 && run.counts.new_docs == 2 && run.counts.changed == 1 &&
          run.counts.unchanged == 1 && run.counts.skipped == 1 && run.counts.failed == 1);
    wh_run_clear(&run);
    CHECK_EQ_INT(wh_run_finish(db, r2, &c, "running", NULL), TW_ERR_ARG);
    CHECK_EQ_INT(wh_run_finish(db, 999, &c, "ok", NULL), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_run_get(db, 999, &run), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_run_begin(db, 999, &r2), TW_ERR_NOT_FOUND);

    ev_list l;
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_run_each_event(db, r1, collect_event, &l), TW_OK);
    CHECK_EQ_INT(l.n, 4);
    CHECK(l.kinds[0] == WH_EVENT_FETCHED && l.kinds[1] == WH_EVENT_NOT_MODIFIED &&
          l.kinds[2] == WH_EVENT_SKIPPED && l.kinds[3] == WH_EVENT_FAILED);
    CHECK(l.http[1] == 304 && l.http[3] == 500);
    CHECK_EQ_STR(l.reasons[0], "(none)");
    CHECK_EQ_STR(l.reasons[2], "binary");

    /* Many events: the walk reads pages. */
    for (int i = 0; i < 75; i++) {
        char u[64];
        snprintf(u, sizeof u, "https://ada.dev/p%d", i);
        CHECK_EQ_INT(wh_run_event(db, r2, u, WH_EVENT_FETCHED, 200, NULL), TW_OK);
    }
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_run_each_event(db, r2, collect_event, &l), TW_OK);
    CHECK_EQ_INT(l.n, 75);

    /* Runs outlive their source. */
    CHECK_EQ_INT(wh_source_remove(db, s), TW_OK);
    CHECK_EQ_INT(wh_run_get(db, r2, &run), TW_OK);
    CHECK_EQ_INT(run.source_id, 0);
    wh_run_clear(&run);
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    wh_close(db);
}

/* ---- documents ----------------------------------------------------------------------------- */

typedef struct {
    int n;
    int64_t ids[128];
    char first_content[256];
    wh_db *db;       /* when set, the callback writes (cleans the document) */
    int write_fail;
} doc_list;

static int collect_doc(void *ctx, const wh_doc *d) {
    doc_list *l = ctx;
    if (l->n < 128) l->ids[l->n] = d->id;
    if (l->n == 0) snprintf(l->first_content, sizeof l->first_content, "%s", d->content);
    l->n++;
    if (l->db) {
        char text[64];
        snprintf(text, sizeof text, "clean %lld", (long long)d->id);
        if (wh_cleaned_put(l->db, d->id, d->content_hash, text, strlen(text), 0, 0, NULL))
            l->write_fail++;
    }
    return 0;
}

static void test_documents(void) {
    wh_db *db = fresh_db("docs.db");
    int64_t s, s_b, run;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_SUBSTACK, "https://ada.substack.com", 0, &s,
                               NULL), TW_OK);
    CHECK_EQ_INT(wh_source_add(db, "bob", WH_PLATFORM_ARTICLE, "https://bob.dev", 0, &s_b, NULL),
                 TW_OK);
    CHECK_EQ_INT(wh_run_begin(db, s, &run), TW_OK);

    wh_doc_in d = doc_in(s, "https://ada.substack.com/p/one", "# One\n\nfirst words");
    d.meta_json = "{\"lang\":\"en\"}";
    int64_t id1 = 0, id;
    wh_doc_outcome oc;
    CHECK_EQ_INT(wh_document_upsert(db, run, &d, &id1, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_NEW);
    CHECK(id1 > 0);
    CHECK_EQ_INT(wh_document_upsert(db, run, &d, &id, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_UNCHANGED);
    CHECK_EQ_INT(id, id1);
    wh_doc got;
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_INT(got.version, 1);
    CHECK_EQ_STR(got.author, "ada");
    CHECK_EQ_INT(got.platform, WH_PLATFORM_SUBSTACK);
    CHECK_EQ_STR(got.content, "# One\n\nfirst words");
    CHECK_EQ_INT(got.content_len, strlen("# One\n\nfirst words"));
    CHECK_EQ_STR(got.title, "A title");
    CHECK_EQ_STR(got.published_at, "2024-05-01");
    CHECK_EQ_STR(got.meta_json, "{\"lang\":\"en\"}");
    CHECK_EQ_STR(got.content_type, "markdown");
    /* sha256("# One\n\nfirst words") as sha256sum prints it. */
    CHECK_EQ_STR(got.content_hash, "b7477a7644d9244a92e96041fab071dc7639215a2003aaa4032bf7d381dbad9c");
    CHECK(got.last_seen_at >= got.first_seen_at && got.first_seen_at > 1.6e9);
    wh_doc_clear(&got);

    /* Changed content: version 2, the document updated. */
    d.content = "# One\n\nfirst words, edited";
    d.content_len = strlen(d.content);
    d.title = "A better title";
    CHECK_EQ_INT(wh_document_upsert(db, run, &d, &id, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_CHANGED);
    CHECK_EQ_INT(id, id1);
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_INT(got.version, 2);
    CHECK_EQ_STR(got.title, "A better title");
    CHECK_EQ_STR(got.content, "# One\n\nfirst words, edited");
    wh_doc_clear(&got);
    /* Back to the first text: a third version (versions are history, not a set). */
    d.content = "# One\n\nfirst words";
    d.content_len = strlen(d.content);
    CHECK_EQ_INT(wh_document_upsert(db, 0, &d, &id, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_CHANGED);
    wh_stats stt;
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.documents, 1);
    CHECK_EQ_INT(stt.versions, 3);

    /* Unique per author: another author's document of the same URL is another row. */
    wh_doc_in db_ = doc_in(s_b, "https://ada.substack.com/p/one", "quoted by bob");
    db_.title = NULL;
    db_.published_at = NULL;
    int64_t idb;
    CHECK_EQ_INT(wh_document_upsert(db, 0, &db_, &idb, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_NEW);
    CHECK(idb != id1);
    CHECK_EQ_INT(wh_doc_get(db, idb, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_STR(got.title, "");       /* none */
    CHECK_EQ_STR(got.published_at, ""); /* unknown */
    CHECK_EQ_STR(got.meta_json, "{}");
    wh_doc_clear(&got);

    /* Content with a NUL byte and non-UTF-8 bytes survives byte for byte. */
    static const char odd[] = "a\0b\xff\xfe c";
    wh_doc_in dn = doc_in(s, "file:odd.bin.txt", "");
    dn.content = odd;
    dn.content_len = sizeof odd - 1;
    dn.content_type = "text";
    int64_t idn;
    CHECK_EQ_INT(wh_document_upsert(db, run, &dn, &idn, &oc), TW_OK);
    CHECK_EQ_INT(wh_doc_get(db, idn, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_INT(got.content_len, sizeof odd - 1);
    CHECK(memcmp(got.content, odd, sizeof odd - 1) == 0);
    wh_doc_clear(&got);

    /* Bad input. */
    wh_doc_in bad = doc_in(s, "https://x/y", "z");
    bad.content_type = "pdf";
    CHECK_EQ_INT(wh_document_upsert(db, run, &bad, &id, &oc), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "content_type") != NULL);
    bad = doc_in(s, "", "z");
    CHECK_EQ_INT(wh_document_upsert(db, run, &bad, &id, &oc), TW_ERR_ARG);
    bad = doc_in(999, "https://x/y", "z");
    CHECK_EQ_INT(wh_document_upsert(db, run, &bad, &id, &oc), TW_ERR_NOT_FOUND);
    bad = doc_in(s, "https://x/y", "z");
    CHECK_EQ_INT(wh_document_upsert(db, 999, &bad, &id, &oc), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_doc_get(db, 999, WH_DOC_RAW, &got), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.documents, 3); /* nothing half-stored by the failures */

    /* Filters and counts. */
    doc_list l;
    memset(&l, 0, sizeof l);
    wh_doc_filter f = {0, -1, 0, 0, 0};
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_NONE, collect_doc, &l), TW_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK_EQ_STR(l.first_content, "");
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_doc_each(db, NULL, WH_DOC_RAW, collect_doc, &l), TW_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK_EQ_STR(l.first_content, "# One\n\nfirst words");
    int64_t bob, n;
    CHECK_EQ_INT(wh_author_find(db, "bob", &bob), TW_OK);
    f.author_id = bob;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 1);
    f.author_id = 0;
    f.platform = WH_PLATFORM_SUBSTACK;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 2);
    f.platform = WH_PLATFORM_GITHUB;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 0);
    f.platform = -1;
    f.source_id = s_b;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 1);
    f.source_id = 0;
    f.need_cleaning = 1;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 3);

    /* Cleaned text: fresh until the document changes. */
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_CLEANED, &got), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_RAW, &got), TW_OK);
    int64_t cid = 0;
    CHECK_EQ_INT(wh_cleaned_put(db, id1, got.content_hash, "One. First words.", 17, 0, 0, &cid),
                 TW_OK);
    CHECK(cid > 0);
    wh_doc_clear(&got);
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_CLEANED, &got), TW_OK);
    CHECK_EQ_STR(got.content, "One. First words.");
    wh_doc_clear(&got);
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 2);
    memset(&l, 0, sizeof l);
    f.need_cleaning = 0;
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_CLEANED, collect_doc, &l), TW_OK);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_STR(l.first_content, "One. First words.");
    d.content = "# One\n\nnew words";
    d.content_len = strlen(d.content);
    CHECK_EQ_INT(wh_document_upsert(db, run, &d, &id, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_CHANGED);
    CHECK_EQ_INT(wh_doc_get(db, id1, WH_DOC_CLEANED, &got), TW_ERR_NOT_FOUND); /* stale */
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_CLEANED, collect_doc, &l), TW_OK);
    CHECK_EQ_INT(l.n, 0);
    f.need_cleaning = 1;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(wh_cleaned_put(db, 999, "h", "x", 1, 0, 0, NULL), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_cleaned_put(db, id1, "h", "x", 1, id1, 1, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(wh_cleaned_put(db, id1, "h", "x", 1, 999, 1, NULL), TW_ERR_NOT_FOUND);
    CHECK_EQ_INT(wh_cleaned_put(db, id1, "", "x", 1, 0, 0, NULL), TW_ERR_ARG);

    /* A removed source: its documents stay and no longer point to it; re-adding it and
     * seeing a document again points it to the new source. */
    CHECK_EQ_INT(wh_source_remove(db, s_b), TW_OK);
    CHECK_EQ_INT(wh_doc_get(db, idb, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_INT(got.source_id, 0);
    CHECK_EQ_STR(got.author, "bob");
    wh_doc_clear(&got);
    int64_t s_b2;
    CHECK_EQ_INT(wh_source_add(db, "bob", WH_PLATFORM_ARTICLE, "https://bob.dev", 0, &s_b2, NULL),
                 TW_OK);
    db_.source_id = s_b2;
    CHECK_EQ_INT(wh_document_upsert(db, 0, &db_, &id, &oc), TW_OK);
    CHECK_EQ_INT(oc, WH_DOC_UNCHANGED);
    CHECK_EQ_INT(id, idb);
    CHECK_EQ_INT(wh_doc_get(db, idb, WH_DOC_RAW, &got), TW_OK);
    CHECK_EQ_INT(got.source_id, s_b2);
    wh_doc_clear(&got);
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    wh_close(db);
}

/* Walks longer than a page whose callbacks write to the same connection. */
static void test_walk_with_writes(void) {
    wh_db *db = fresh_db("walk.db");
    int64_t s;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/notes", 0, &s, NULL), TW_OK);
    CHECK_EQ_INT(wh_begin(db), TW_OK); /* 100 documents, one transaction */
    for (int i = 0; i < 100; i++) {
        char u[32], c[32];
        snprintf(u, sizeof u, "file:n%03d.md", i);
        snprintf(c, sizeof c, "note %d", i);
        wh_doc_in d = doc_in(s, u, c);
        CHECK_EQ_INT(wh_document_upsert(db, 0, &d, NULL, NULL), TW_OK);
    }
    CHECK_EQ_INT(wh_commit(db), TW_OK);
    doc_list l;
    memset(&l, 0, sizeof l);
    l.db = db;
    wh_doc_filter f = {0, -1, 0, 1, 0}; /* need_cleaning: shrinks while we walk */
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_RAW, collect_doc, &l), TW_OK);
    CHECK_EQ_INT(l.n, 100);
    CHECK_EQ_INT(l.write_fail, 0);
    int ascending = 1;
    for (int i = 1; i < 100; i++) ascending &= l.ids[i] > l.ids[i - 1];
    CHECK(ascending);
    int64_t n;
    CHECK_EQ_INT(wh_doc_count(db, &f, &n), TW_OK);
    CHECK_EQ_INT(n, 0);
    wh_stats stt;
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.cleaned, 100);
    wh_close(db);
}

/* ---- chunks, embeddings, tombstones -------------------------------------------------------- */

typedef struct {
    int n;
    int64_t ids[64];
    wh_db *db;
    int marked;
} chunk_list;

static int collect_chunk(void *ctx, const wh_chunk *c) {
    chunk_list *l = ctx;
    if (l->n < 64) l->ids[l->n] = c->id;
    l->n++;
    if (l->db && wh_embeddings_mark(l->db, "minilm", 384, &c->id, 1) == TW_OK) l->marked++;
    return 0;
}

static int collect_id(void *ctx, int64_t id) {
    chunk_list *l = ctx;
    if (l->n < 64) l->ids[l->n] = id;
    l->n++;
    return 0;
}

static void test_chunks(void) {
    wh_db *db = fresh_db("chunks.db");
    int64_t s, d1, d2, d3;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_GITHUB, "https://github.com/ada/x", 0, &s,
                               NULL), TW_OK);
    wh_doc_in a = doc_in(s, "https://github.com/ada/x/README.md", "# X\n\nabout x");
    wh_doc_in b = doc_in(s, "https://github.com/ada/x/main.c", "int main(void){}");
    wh_doc_in c = doc_in(s, "https://github.com/ada/x/COPY.md", "# X\n\nabout x (copy)");
    b.content_type = "code";
    CHECK_EQ_INT(wh_document_upsert(db, 0, &a, &d1, NULL), TW_OK);
    CHECK_EQ_INT(wh_document_upsert(db, 0, &b, &d2, NULL), TW_OK);
    CHECK_EQ_INT(wh_document_upsert(db, 0, &c, &d3, NULL), TW_OK);
    wh_chunk_in ch[2] = {{0, "X", "prose", "about x", 7, 2}, {1, NULL, "code", "int main", 8, 3}};
    CHECK_EQ_INT(wh_chunks_replace(db, d1, "minilm", ch, 2), TW_ERR_NOT_FOUND); /* not cleaned */
    CHECK(strstr(tw_errmsg(), "cleaned") != NULL);

    wh_doc g;
    CHECK_EQ_INT(wh_doc_get(db, d1, WH_DOC_RAW, &g), TW_OK);
    CHECK_EQ_INT(wh_cleaned_put(db, d1, g.content_hash, "X\n\nabout x", 10, 0, 0, NULL), TW_OK);
    wh_doc_clear(&g);
    CHECK_EQ_INT(wh_doc_get(db, d2, WH_DOC_RAW, &g), TW_OK);
    CHECK_EQ_INT(wh_cleaned_put(db, d2, g.content_hash, "int main(void){}", 16, 0, 0, NULL), TW_OK);
    wh_doc_clear(&g);
    CHECK_EQ_INT(wh_doc_get(db, d3, WH_DOC_RAW, &g), TW_OK);
    CHECK_EQ_INT(wh_cleaned_put(db, d3, g.content_hash, "X\n\nabout x (copy)", 17, d1, 0.9, NULL),
                 TW_OK);
    wh_doc_clear(&g);

    /* Unchunked: d1 and d2 (d3 is a duplicate). */
    doc_list dl;
    memset(&dl, 0, sizeof dl);
    CHECK_EQ_INT(wh_doc_each_unchunked(db, 0, collect_doc, &dl), TW_OK);
    CHECK_EQ_INT(dl.n, 2);
    CHECK(dl.ids[0] == d1 && dl.ids[1] == d2);
    CHECK_EQ_STR(dl.first_content, "X\n\nabout x"); /* the cleaned text */
    /* skip_duplicates leaves d3 out of the cleaned walk. */
    wh_doc_filter f = {0, -1, 0, 0, 1};
    memset(&dl, 0, sizeof dl);
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_CLEANED, collect_doc, &dl), TW_OK);
    CHECK_EQ_INT(dl.n, 2);
    f.skip_duplicates = 0;
    memset(&dl, 0, sizeof dl);
    CHECK_EQ_INT(wh_doc_each(db, &f, WH_DOC_CLEANED, collect_doc, &dl), TW_OK);
    CHECK_EQ_INT(dl.n, 3);

    CHECK_EQ_INT(wh_chunks_replace(db, d1, "minilm", ch, 2), TW_OK);
    wh_chunk_in one = {0, "main", "code", "int main(void){}", 16, 6};
    CHECK_EQ_INT(wh_chunks_replace(db, d2, "minilm", &one, 1), TW_OK);
    memset(&dl, 0, sizeof dl);
    CHECK_EQ_INT(wh_doc_each_unchunked(db, 0, collect_doc, &dl), TW_OK);
    CHECK_EQ_INT(dl.n, 0);
    /* Bad chunks roll back completely: d1 keeps its two chunks. */
    wh_chunk_in dupos[2] = {{0, NULL, "prose", "a", 1, 1}, {0, NULL, "prose", "b", 1, 1}};
    CHECK_EQ_INT(wh_chunks_replace(db, d1, "minilm", dupos, 2), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "position 0") != NULL);
    wh_chunk_in badkind = {0, NULL, "poetry", "a", 1, 1};
    CHECK_EQ_INT(wh_chunks_replace(db, d1, "minilm", &badkind, 1), TW_ERR_ARG);
    CHECK_EQ_INT(wh_chunks_replace(db, d1, "", ch, 2), TW_ERR_ARG);

    chunk_list cl;
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "minilm", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 3);
    int64_t c0 = cl.ids[0], c1 = cl.ids[1], c2 = cl.ids[2];
    wh_chunk k;
    CHECK_EQ_INT(wh_chunk_get(db, c0, &k), TW_OK);
    CHECK_EQ_INT(k.document_id, d1);
    CHECK_EQ_INT(k.position, 0);
    CHECK_EQ_STR(k.heading, "X");
    CHECK_EQ_STR(k.kind, "prose");
    CHECK_EQ_STR(k.text, "about x");
    CHECK_EQ_INT(k.n_tokens, 2);
    CHECK_EQ_STR(k.author, "ada");
    CHECK_EQ_INT(k.platform, WH_PLATFORM_GITHUB);
    CHECK_EQ_STR(k.url, "https://github.com/ada/x/README.md");
    CHECK_EQ_STR(k.title, "A title");
    CHECK_EQ_STR(k.published_at, "2024-05-01");
    CHECK_EQ_STR(k.content_type, "markdown");
    wh_chunk_clear(&k);
    CHECK_EQ_INT(wh_chunk_get(db, c1, &k), TW_OK);
    CHECK_EQ_STR(k.heading, ""); /* none */
    wh_chunk_clear(&k);
    CHECK_EQ_INT(wh_chunk_get(db, 999, &k), TW_ERR_NOT_FOUND);

    /* Embeddings: mark some, the others stay unembedded; per model. */
    CHECK_EQ_INT(wh_embeddings_mark(db, "minilm", 384, &c0, 1), TW_OK);
    int64_t gone = 987654;
    CHECK_EQ_INT(wh_embeddings_mark(db, "minilm", 384, &gone, 1), TW_OK); /* skipped */
    CHECK_EQ_INT(wh_embeddings_mark(db, "minilm", 0, &c0, 1), TW_ERR_ARG);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "minilm", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 2);
    CHECK(cl.ids[0] == c1 && cl.ids[1] == c2);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "other", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 3);
    /* A callback that marks while the walk goes on. */
    memset(&cl, 0, sizeof cl);
    cl.db = db;
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "minilm", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.marked, 2);
    wh_stats stt;
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.chunks, 3);
    CHECK_EQ_INT(stt.embedded, 3);
    CHECK_EQ_INT(stt.cleaned, 3);
    CHECK_EQ_INT(stt.duplicates, 1);
    CHECK_EQ_INT(wh_embeddings_mark(db, "other", 768, &c0, 1), TW_OK);
    CHECK_EQ_INT(wh_embeddings_reset_except(db, "other"), TW_OK);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "minilm", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 3);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "other", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 2);

    /* No tombstones yet. */
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_tombstones_each(db, collect_id, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 0);

    /* Re-chunking d1 deletes its chunks: their ids become tombstones; new ids are new. */
    CHECK_EQ_INT(wh_chunks_replace(db, d1, "minilm", ch, 1), TW_OK);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_tombstones_each(db, collect_id, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 2);
    CHECK(cl.ids[0] == c0 && cl.ids[1] == c1);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_chunk_each_unembedded(db, "zzz", collect_chunk, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 2);
    CHECK(cl.ids[0] == c2 && cl.ids[1] > c2); /* AUTOINCREMENT: never reused */
    int64_t c3 = cl.ids[1];

    /* Same cleaned text again: chunks kept. Changed text: chunks deleted, d1 unchunked. */
    CHECK_EQ_INT(wh_doc_get(db, d1, WH_DOC_RAW, &g), TW_OK);
    CHECK_EQ_INT(wh_cleaned_put(db, d1, g.content_hash, "X\n\nabout x", 10, 0, 0, NULL), TW_OK);
    CHECK_EQ_INT(wh_chunk_get(db, c3, &k), TW_OK);
    wh_chunk_clear(&k);
    CHECK_EQ_INT(wh_cleaned_put(db, d1, g.content_hash, "X\n\nall about x", 14, 0, 0, NULL), TW_OK);
    CHECK_EQ_INT(wh_chunk_get(db, c3, &k), TW_ERR_NOT_FOUND);
    memset(&dl, 0, sizeof dl);
    CHECK_EQ_INT(wh_doc_each_unchunked(db, 0, collect_doc, &dl), TW_OK);
    CHECK_EQ_INT(dl.n, 1);
    CHECK_EQ_INT(dl.ids[0], d1);
    /* d2 becomes a duplicate (same text): its chunk goes. */
    CHECK_EQ_INT(wh_cleaned_put(db, d2, g.content_hash, "int main(void){}", 16, d1, 0.95, NULL),
                 TW_OK);
    wh_doc_clear(&g);
    CHECK_EQ_INT(wh_chunk_get(db, c2, &k), TW_ERR_NOT_FOUND);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_tombstones_each(db, collect_id, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 4);
    CHECK(cl.ids[2] == c2 && cl.ids[3] == c3);
    CHECK_EQ_INT(wh_tombstones_clear(db, c2), TW_OK);
    memset(&cl, 0, sizeof cl);
    CHECK_EQ_INT(wh_tombstones_each(db, collect_id, &cl), TW_OK);
    CHECK_EQ_INT(cl.n, 1);
    CHECK_EQ_INT(cl.ids[0], c3);
    CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
    CHECK_EQ_INT(stt.chunks, 0);
    CHECK_EQ_INT(stt.embedded, 0); /* embeddings went with their chunks */
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    wh_close(db);
}

/* ---- transactions -------------------------------------------------------------------------- */

static void test_transactions(void) {
    wh_db *db = fresh_db("tx.db");
    int64_t s, id;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/n", 0, &s, NULL), TW_OK);
    CHECK_EQ_INT(wh_commit(db), TW_ERR_ARG); /* no begin */
    wh_rollback(db);                         /* no-op */

    /* A rolled-back group leaves nothing. */
    CHECK_EQ_INT(wh_begin(db), TW_OK);
    wh_doc_in d = doc_in(s, "file:a.md", "a");
    CHECK_EQ_INT(wh_document_upsert(db, 0, &d, &id, NULL), TW_OK);
    wh_rollback(db);
    int64_t n = -1;
    CHECK_EQ_INT(wh_doc_count(db, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 0);

    /* Nested: only the outermost commit writes; an inner rollback dooms the whole group. */
    CHECK_EQ_INT(wh_begin(db), TW_OK);
    CHECK_EQ_INT(wh_begin(db), TW_OK);
    CHECK_EQ_INT(wh_document_upsert(db, 0, &d, &id, NULL), TW_OK);
    CHECK_EQ_INT(wh_commit(db), TW_OK);
    char p[512];
    path_in(p, sizeof p, "tx.db");
    wh_db *other = NULL;
    CHECK_EQ_INT(wh_open(p, &other), TW_OK);
    CHECK_EQ_INT(wh_doc_count(other, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 0); /* not visible before the outer commit */
    CHECK_EQ_INT(wh_commit(db), TW_OK);
    CHECK_EQ_INT(wh_doc_count(other, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 1);

    CHECK_EQ_INT(wh_begin(db), TW_OK);
    wh_doc_in d2 = doc_in(s, "file:b.md", "b");
    CHECK_EQ_INT(wh_document_upsert(db, 0, &d2, &id, NULL), TW_OK);
    wh_doc_in bad = doc_in(s, "file:c.md", "c");
    bad.content_type = "nope";
    CHECK_EQ_INT(wh_document_upsert(db, 0, &bad, &id, NULL), TW_ERR_ARG); /* before any write */
    /* A failure inside a call (a bad chunk after the delete) rolls back its part: the group
     * is doomed. */
    wh_chunk_in dup[2] = {{0, NULL, "prose", "a", 1, 1}, {0, NULL, "prose", "b", 1, 1}};
    wh_doc g;
    CHECK_EQ_INT(wh_doc_get(db, id, WH_DOC_RAW, &g), TW_OK);
    CHECK_EQ_INT(wh_cleaned_put(db, id, g.content_hash, "b", 1, 0, 0, NULL), TW_OK);
    wh_doc_clear(&g);
    CHECK_EQ_INT(wh_chunks_replace(db, id, "t", dup, 2), TW_ERR_ARG);
    CHECK_EQ_INT(wh_commit(db), TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "rolled back") != NULL);
    CHECK_EQ_INT(wh_doc_count(db, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 1); /* b.md is not there */
    /* The connection works normally afterwards. */
    CHECK_EQ_INT(wh_document_upsert(db, 0, &d2, &id, NULL), TW_OK);
    CHECK_EQ_INT(wh_doc_count(other, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 2);
    wh_close(other);
    wh_close(db);
}

/* ---- allocation failures ------------------------------------------------------------------- */

static int count_doc(void *ctx, const wh_doc *d) {
    (void)d;
    ++*(int *)ctx;
    return 0;
}

static void test_alloc_failures(void) {
    wh_db *db = fresh_db("oom.db");
    int64_t s, id;
    CHECK_EQ_INT(wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/n", 3600, &s, NULL), TW_OK);
    for (int i = 0; i < 40; i++) {
        char u[32];
        snprintf(u, sizeof u, "file:%d.md", i);
        wh_doc_in d = doc_in(s, u, "text");
        CHECK_EQ_INT(wh_document_upsert(db, 0, &d, &id, NULL), TW_OK);
    }
    char p[512];
    path_in(p, sizeof p, "oom.db");
    /* Every allocation of each call fails once in turn: the call fails with TW_ERR_NOMEM (or
     * succeeds when that allocation was not its), nothing leaks, and the data is intact. */
    int failures = 0;
    for (uint64_t k = 1; k <= 60; k++) {
        size_t before = tw_mem_get_stats().current_bytes;
        tw_mem_fail_after(k);
        wh_source src;
        tw_status st = wh_source_get(db, s, &src);
        if (st == TW_OK) wh_source_clear(&src);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        failures += st == TW_ERR_NOMEM;
        tw_mem_fail_after(k);
        wh_doc g;
        st = wh_doc_get(db, id, WH_DOC_RAW, &g);
        if (st == TW_OK) wh_doc_clear(&g);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        failures += st == TW_ERR_NOMEM;
        tw_mem_fail_after(k);
        int n = 0;
        st = wh_doc_each(db, NULL, WH_DOC_RAW, count_doc, &n);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        CHECK(st != TW_OK || n == 40);
        failures += st == TW_ERR_NOMEM;
        tw_mem_fail_after(k);
        wh_db *db2 = NULL;
        st = wh_open(p, &db2);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        CHECK((st == TW_OK) == (db2 != NULL));
        wh_close(db2);
        tw_mem_fail_after(0);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before);
    }
    tw_mem_fail_after(0);
    CHECK(failures > 40); /* the hook did reach these calls */
    int64_t n;
    CHECK_EQ_INT(wh_doc_count(db, NULL, &n), TW_OK);
    CHECK_EQ_INT(n, 40);
    CHECK_EQ_INT(wh_integrity_check(db), TW_OK);
    wh_close(db);
}

/* ---- a crash ------------------------------------------------------------------------------- */

static void crash_child(const char *path) {
    wh_db *db = NULL;
    if (wh_open(path, &db)) _exit(3);
    int64_t s;
    if (wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/n", 0, &s, NULL)) _exit(4);
    for (long i = 0;; i++) {
        /* 20 documents, each changed again and again: versions keep growing. */
        char u[32], c[64];
        snprintf(u, sizeof u, "file:%ld.md", i % 20);
        snprintf(c, sizeof c, "content %ld", i);
        wh_doc_in d = doc_in(s, u, c);
        if (wh_document_upsert(db, 0, &d, NULL, NULL)) _exit(5);
        if (i % 7 == 0) { /* and a multi-call group now and then */
            if (wh_begin(db)) _exit(6);
            for (int j = 0; j < 5; j++) {
                snprintf(u, sizeof u, "file:g%d.md", j);
                wh_doc_in e = doc_in(s, u, c);
                if (wh_document_upsert(db, 0, &e, NULL, NULL)) _exit(7);
            }
            if (wh_commit(db)) _exit(8);
        }
    }
}

typedef struct {
    int64_t sum_versions;
    int docs;
} ver_sum;

static int sum_version(void *ctx, const wh_doc *d) {
    ver_sum *v = ctx;
    v->sum_versions += d->version;
    v->docs++;
    return 0;
}

static void test_crash(void) {
    char p[512];
    path_in(p, sizeof p, "crash.db");
    wh_db *db = fresh_db("crash.db");
    wh_close(db);
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        if (pid == 0) crash_child(p);
        CHECK(pid > 0);
        struct timespec ts = {0, (150 + 100 * round) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); /* it was still writing */
        db = NULL;
        CHECK_EQ_INT(wh_open(p, &db), TW_OK);
        if (!db) return;
        tw_status st = wh_integrity_check(db);
        if (st) fprintf(stderr, "integrity: %s\n", tw_errmsg());
        CHECK_EQ_INT(st, TW_OK);
        ver_sum v = {0, 0};
        CHECK_EQ_INT(wh_doc_each(db, NULL, WH_DOC_NONE, sum_version, &v), TW_OK);
        wh_stats stt;
        CHECK_EQ_INT(wh_stats_get(db, &stt), TW_OK);
        CHECK_EQ_INT(stt.versions, v.sum_versions); /* every document has all its versions */
        CHECK(v.docs > 0);
        fprintf(stderr, "  crash round %d: %d documents, %lld versions survived\n", round, v.docs,
                (long long)stt.versions);
        wh_close(db);
    }
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/twin_wh.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    tw_log_set_level(TW_LOG_ERROR);
    RUN(test_open_and_schema);
    RUN(test_platforms_and_intervals);
    RUN(test_sources);
    RUN(test_source_lock);
    RUN(test_runs);
    RUN(test_documents);
    RUN(test_walk_with_writes);
    RUN(test_chunks);
    RUN(test_transactions);
    RUN(test_alloc_failures);
    RUN(test_crash);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_DONE();
}
