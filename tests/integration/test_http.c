/* test_http.c: the HTTP client (http.h) against tests/fixture_server.py's ugly endpoints:
 * statuses, retries with backoff and Retry-After, redirect limits and loops, timeouts, the body
 * cap, raw bytes, gzip, robots.txt, conditional GET, per-host limits and waits that do not hold
 * up other hosts, cancellation, bad URLs and allocation failures. */
#include "fixture_server.h"
#include "pipelines/http.h"
#include "json.h"
#include "test.h"

#include <sys/resource.h>
#include <unistd.h>

static fixture_server srv;

static void opts_test(http_opts *o) {
    http_opts_default(o);
    o->min_interval_s = 0;
    o->backoff_base_s = 0.05;
    o->backoff_max_s = 5;
    o->timeout_s = 10;
    o->seed = 42;
}

static http_client *client_new(const http_opts *o) {
    http_client *c = NULL;
    if (http_client_new(o, &c) != TW_OK) {
        fprintf(stderr, "http_client_new: %s\n", tw_errmsg());
        exit(1);
    }
    return c;
}

static void url_of(char *buf, size_t cap, const char *path) { snprintf(buf, cap, "%s%s", srv.base, path); }

/* One GET of path with client c; the response in *r (clear it). */
static void get(http_client *c, const char *path, http_response *r) {
    char url[512];
    url_of(url, sizeof url, path);
    http_request q = {.url = url};
    tw_status st = http_fetch(c, &q, r);
    CHECK_EQ_INT(st, TW_OK);
}

/* The server's request log (and clears it); a JSON array (tw_json_free). */
static tw_json *server_log(void) {
    http_opts o;
    opts_test(&o);
    o.obey_robots = 0;
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/__fixture/log?clear=1", &r);
    tw_json *j = tw_json_parse(r.body, r.body_len, "fixture log");
    CHECK(j != NULL && tw_json_is_array(j));
    http_response_clear(&r);
    http_client_free(c);
    return j;
}

static int log_has_path_prefix(const tw_json *log, const char *prefix) {
    int n = 0;
    for (tw_json *e = tw_json_first(log); e; e = tw_json_next(e))
        if (strncmp(tw_json_get_str(e, "path", ""), prefix, strlen(prefix)) == 0) n++;
    return n;
}

static void test_status_404(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/no/such/page.html", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_STATUS);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_INT(r.attempts, 1); /* a 404 is not retried */
    CHECK(strstr(r.reason, "HTTP 404") != NULL);
    CHECK_EQ_STR(http_result_name(r.result), "status");
    http_response_clear(&r);
    get(c, "/__ugly/status/403", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_STATUS);
    CHECK_EQ_INT(r.status, 403);
    CHECK_EQ_STR(r.reason, "HTTP 403 Forbidden");
    http_response_clear(&r);
    http_client_free(c);
}

static void test_flaky_retries(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/__ugly/flaky/f1?fail=2", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_INT(r.attempts, 3);
    CHECK_EQ_STR(r.body, "ok f1");
    http_response_clear(&r);
    /* more failures than retries: the last status, and the reason says how many attempts */
    get(c, "/__ugly/flaky/f2?fail=10", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_STATUS);
    CHECK_EQ_INT(r.status, 500);
    CHECK_EQ_INT(r.attempts, 4);
    CHECK(strstr(r.reason, "HTTP 500") && strstr(r.reason, "gave up after 4 attempts"));
    http_response_clear(&r);
    http_stats s;
    http_client_stats(c, &s);
    CHECK_EQ_INT(s.retries, 2 + 3);
    CHECK_EQ_INT(s.requests, 1 + 3 + 4); /* robots.txt, then the attempts */
    http_client_free(c);
}

static void test_retry_after(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/__ugly/429/r1?after=1", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_INT(r.attempts, 2);
    CHECK(r.elapsed_s >= 1.0);
    CHECK(r.elapsed_s < 3.0);
    http_response_clear(&r);
    /* as an HTTP date two seconds ahead (whole seconds: the wait is 1 to 2 s) */
    get(c, "/__ugly/429-date/r2?after=2", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_INT(r.attempts, 2);
    CHECK(r.elapsed_s >= 0.9);
    http_response_clear(&r);
    /* longer than backoff_max_s: give up at once and say why */
    double t0 = tw_now_s();
    get(c, "/__ugly/429-long", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_STATUS);
    CHECK_EQ_INT(r.status, 429);
    CHECK_EQ_INT(r.attempts, 1);
    CHECK(strstr(r.reason, "Retry-After 3600 s exceeds the 5 s limit") != NULL);
    CHECK(tw_now_s() - t0 < 1.0);
    http_response_clear(&r);
    http_client_free(c);
}

static void test_redirects(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/__ugly/redirect-loop", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_REDIRECTS);
    CHECK(strstr(r.reason, "redirect loop") != NULL);
    http_response_clear(&r);
    get(c, "/__ugly/redirect/3", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_STR(r.body, "redirected");
    CHECK(r.final_url && strstr(r.final_url, "/__ugly/redirect/0") != NULL);
    CHECK_EQ_INT(r.attempts, 1); /* hops are not retries */
    http_response_clear(&r);
    get(c, "/__ugly/redirect/6", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_REDIRECTS);
    CHECK(strstr(r.reason, "more than 5 redirects") != NULL);
    http_response_clear(&r);
    http_client_free(c);
}

static void test_timeout(void) {
    http_opts o;
    opts_test(&o);
    o.timeout_s = 1;
    o.max_retries = 1;
    http_client *c = client_new(&o);
    http_response r;
    double t0 = tw_now_s();
    get(c, "/__ugly/slow?s=4", &r);
    double dt = tw_now_s() - t0;
    CHECK_EQ_INT(r.result, HTTP_ERR_TIMEOUT);
    CHECK_EQ_INT(r.attempts, 2); /* a timeout is retried */
    CHECK(strstr(r.reason, "timed out") != NULL);
    CHECK(dt >= 2.0 && dt < 3.5);
    http_response_clear(&r);
    http_client_free(c);
}

static long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_body_cap(void) {
    http_opts o;
    opts_test(&o);
    o.max_body = 1 << 20;
    http_client *c = client_new(&o);
    http_response r;
    long rss0 = peak_rss_kb();
    double t0 = tw_now_s();
    get(c, "/__ugly/big?mb=50", &r);
    double dt = tw_now_s() - t0;
    CHECK_EQ_INT(r.result, HTTP_ERR_TOO_LARGE);
    CHECK_EQ_INT(r.attempts, 1);
    CHECK(strstr(r.reason, "larger than 1048576 bytes") != NULL);
    CHECK_EQ_INT(r.body_len, 0);
    CHECK(dt < 3.0); /* aborted at 1 MiB, not after reading 50 */
    long grew_kb = peak_rss_kb() - rss0;
    if (grew_kb > 16 * 1024) fprintf(stderr, "  peak RSS grew by %ld KiB\n", grew_kb);
    CHECK(grew_kb < 16 * 1024);
    http_stats s;
    http_client_stats(c, &s);
    CHECK(s.bytes <= (1 << 20) + 1024);
    http_response_clear(&r);
    http_client_free(c);
}

static void test_raw_bytes_and_gzip(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    static const char bad[] = "<!doctype html><html><head><title>bad bytes</title></head><body><p>"
                              "caf\xe9 \xff\xfe lone \x80 overlong \xc0\xaf surrogate \xed\xa0\x80 "
                              "cut \xe2\x82</p></body></html>\n";
    get(c, "/__ugly/invalid-utf8", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_INT(r.body_len, sizeof bad - 1);
    CHECK(r.body_len == sizeof bad - 1 && memcmp(r.body, bad, sizeof bad - 1) == 0);
    CHECK(r.content_type && strncmp(r.content_type, "text/html", 9) == 0);
    http_response_clear(&r);

    tw_sb want;
    tw_sb_init(&want);
    tw_sb_puts(&want, "gzip fixture: ");
    for (int i = 0; i < 40; i++) tw_sb_puts(&want, "the quick brown fox jumps over the lazy dog. ");
    tw_sb_putc(&want, '\n');
    get(c, "/__ugly/gzip", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_STR(r.body, tw_sb_str(&want));
    char enc[32];
    CHECK(http_response_header(&r, "content-encoding", enc, sizeof enc)); /* it was gzip on the wire */
    CHECK_EQ_STR(enc, "gzip");
    size_t len = 0;
    char *body = http_response_take_body(&r, &len);
    CHECK(len == want.len && body && strcmp(body, want.buf) == 0);
    CHECK(r.body && r.body[0] == 0 && r.body_len == 0);
    tw_free(body);
    http_response_clear(&r);
    tw_sb_free(&want);
    http_client_free(c);
}

static void test_robots(void) {
    tw_json_free(server_log());
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    get(c, "/private/x", &r);
    CHECK_EQ_INT(r.result, HTTP_ERR_ROBOTS);
    CHECK_EQ_INT(r.attempts, 0);
    CHECK(strstr(r.reason, "disallowed by robots.txt") != NULL);
    http_response_clear(&r);
    char url[512];
    url_of(url, sizeof url, "/private/deeper/page.html");
    CHECK_EQ_INT(http_robots_allowed(c, url), 0);
    url_of(url, sizeof url, "/public.html");
    CHECK_EQ_INT(http_robots_allowed(c, url), 1);
    get(c, "/robots.txt", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK(strstr(r.body, "Disallow: /private/") != NULL);
    http_response_clear(&r);
    http_stats s;
    http_client_stats(c, &s);
    CHECK_EQ_INT(s.robots_fetches, 1); /* once for the client's life */
    tw_json *log = server_log();
    CHECK_EQ_INT(log_has_path_prefix(log, "/private/"), 0); /* never asked for */
    CHECK_EQ_INT(log_has_path_prefix(log, "/robots.txt"), 2);
    for (tw_json *e = tw_json_first(log); e; e = tw_json_next(e))
        CHECK(strncmp(tw_json_get_str(e, "ua", ""), "twin/", 5) == 0 &&
              strstr(tw_json_get_str(e, "ua", ""), "(+LLM twin crawler)"));
    tw_json_free(log);
    /* A request that opts out (an API used under its own terms) is sent despite robots.txt. */
    url_of(url, sizeof url, "/private/x");
    http_request api = {.url = url, .no_robots = 1};
    CHECK_EQ_INT(http_fetch(c, &api, &r), TW_OK);
    CHECK_EQ_INT(r.result, HTTP_OK);
    CHECK_EQ_INT(r.status, 200);
    http_response_clear(&r);
    log = server_log();
    CHECK_EQ_INT(log_has_path_prefix(log, "/private/"), 1);
    tw_json_free(log);
    http_client_free(c);

    /* robots.txt unreachable: everything is disallowed (RFC 9309 2.3.1.4), and the reason
     * says so; without robots the same URL is a transport error */
    opts_test(&o);
    o.max_retries = 0;
    o.connect_timeout_s = 2;
    c = client_new(&o);
    http_request q = {.url = "http://127.0.0.1:1/page.html"};
    CHECK_EQ_INT(http_fetch(c, &q, &r), TW_OK);
    CHECK_EQ_INT(r.result, HTTP_ERR_ROBOTS);
    CHECK(strstr(r.reason, "unreachable") != NULL);
    http_response_clear(&r);
    http_client_free(c);
    o.obey_robots = 0;
    c = client_new(&o);
    CHECK_EQ_INT(http_fetch(c, &q, &r), TW_OK);
    CHECK_EQ_INT(r.result, HTTP_ERR_TRANSPORT);
    CHECK_EQ_INT(r.status, 0);
    http_response_clear(&r);
    http_client_free(c);
}

typedef struct {
    int calls, stop_after;
    int ok;
    double last_end;
} many_ctx;

static int many_done(void *ctx, const http_request *req, http_response *resp) {
    many_ctx *m = ctx;
    m->calls++;
    if (resp->result == HTTP_OK) m->ok++;
    CHECK(req && req->user == (void *)m);
    return m->stop_after && m->calls >= m->stop_after;
}

/* Crawl-delay in robots.txt raises the host's interval (min_interval_s is 0 here); a server of
 * its own on a temporary root, since the shared fixture robots.txt has no delay. */
static void test_crawl_delay(void) {
    const char *td = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/twin-test-http-%ld", td && *td ? td : "/tmp", (long)getpid());
    CHECK(tw_mkdir_p(dir) == TW_OK);
    const char *robots = "User-agent: twin\nCrawl-delay: 0.4\nDisallow: /no\n";
    snprintf(path, sizeof path, "%s/robots.txt", dir);
    CHECK(tw_file_write_atomic(path, robots, strlen(robots)) == TW_OK);
    snprintf(path, sizeof path, "%s/a.html", dir);
    CHECK(tw_file_write_atomic(path, "<p>a</p>", 8) == TW_OK);
    const char *script = getenv("TWIN_SRC");
    char sp[600], why[256];
    snprintf(sp, sizeof sp, "%s/tests/fixture_server.py", script);
    fixture_server s2;
    if (fixture_server_start(&s2, sp, dir, why, sizeof why) != 0) {
        fprintf(stderr, "  second server: %s\n", why);
        CHECK(0);
        return;
    }
    char urls[3][128];
    http_request q[3];
    many_ctx m = {0};
    for (int i = 0; i < 3; i++) {
        snprintf(urls[i], sizeof urls[i], "%s/a.html?i=%d", s2.base, i);
        q[i] = (http_request){.url = urls[i], .user = &m};
    }
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    double t0 = tw_now_s();
    CHECK_EQ_INT(http_fetch_many(c, q, 3, many_done, &m), TW_OK);
    double dt = tw_now_s() - t0;
    CHECK_EQ_INT(m.ok, 3);
    CHECK(dt >= 3 * 0.4 - 0.05); /* robots.txt, then three pages 0.4 s apart */
    snprintf(urls[0], sizeof urls[0], "%s/no/x", s2.base);
    CHECK_EQ_INT(http_robots_allowed(c, urls[0]), 0); /* our group was the one read */
    http_client_free(c);
    fixture_server_stop(&s2);
    snprintf(path, sizeof path, "%s/robots.txt", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/a.html", dir);
    unlink(path);
    rmdir(dir);
}

static void test_conditional(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r1, r2;
    get(c, "/robots.txt", &r1);
    CHECK_EQ_INT(r1.result, HTTP_OK);
    CHECK(r1.etag && r1.etag[0] == '"');
    CHECK(r1.last_modified != NULL);
    char url[512];
    url_of(url, sizeof url, "/robots.txt");
    http_request q = {.url = url, .etag = r1.etag};
    CHECK_EQ_INT(http_fetch(c, &q, &r2), TW_OK);
    CHECK_EQ_INT(r2.result, HTTP_NOT_MODIFIED);
    CHECK_EQ_INT(r2.status, 304);
    CHECK_EQ_INT(r2.body_len, 0);
    http_response_clear(&r2);
    q.etag = NULL;
    q.last_modified = r1.last_modified;
    CHECK_EQ_INT(http_fetch(c, &q, &r2), TW_OK);
    CHECK_EQ_INT(r2.result, HTTP_NOT_MODIFIED);
    http_response_clear(&r2);
    q.etag = "\"not-the-tag\"";
    q.last_modified = NULL;
    CHECK_EQ_INT(http_fetch(c, &q, &r2), TW_OK);
    CHECK_EQ_INT(r2.result, HTTP_OK);
    CHECK_EQ_INT(r2.body_len, r1.body_len);
    http_response_clear(&r2);
    http_stats s;
    http_client_stats(c, &s);
    CHECK_EQ_INT(s.not_modified, 2);
    http_response_clear(&r1);
    http_client_free(c);
}


/* max_per_host bounds what the server sees at once; min_interval_s spaces the starts. */
static void test_per_host_limits(void) {
    enum { N = 8 };
    char urls[N][512];
    http_request q[N];
    for (int i = 0; i < N; i++) {
        snprintf(urls[i], sizeof urls[i], "%s/__ugly/slow?s=0.3&i=%d", srv.base, i);
        q[i] = (http_request){.url = urls[i], .user = NULL};
    }
    http_opts o;
    opts_test(&o);
    o.max_per_host = 2;
    o.obey_robots = 0;
    http_client *c = client_new(&o);
    tw_json_free(server_log());
    many_ctx m = {0};
    for (int i = 0; i < N; i++) q[i].user = &m;
    CHECK_EQ_INT(http_fetch_many(c, q, N, many_done, &m), TW_OK);
    CHECK_EQ_INT(m.calls, N);
    CHECK_EQ_INT(m.ok, N);
    /* the overlap of these requests at the server, from its start/end times (its own
     * "inflight" also counts earlier tests' requests that a client abandoned) */
    tw_json *log = server_log();
    double st[N], en[N];
    int seen = 0, max_inflight = 0;
    for (tw_json *e = tw_json_first(log); e; e = tw_json_next(e)) {
        if (strncmp(tw_json_get_str(e, "path", ""), "/__ugly/slow?s=0.3&i=", 21) != 0 || seen == N) continue;
        st[seen] = tw_json_get_num(e, "start", 0);
        en[seen] = tw_json_get_num(e, "end", 0);
        seen++;
    }
    for (int a = 0; a < seen; a++) {
        int k = 0;
        for (int b = 0; b < seen; b++) k += st[b] <= st[a] && st[a] < en[b];
        if (k > max_inflight) max_inflight = k;
    }
    CHECK_EQ_INT(seen, N);
    CHECK_EQ_INT(max_inflight, 2); /* at most 2, and the limit was used */
    tw_json_free(log);
    http_client_free(c);

    /* min_interval_s: starts to one host at least 0.2 s apart */
    opts_test(&o);
    o.min_interval_s = 0.2;
    o.max_per_host = 4;
    o.obey_robots = 0;
    c = client_new(&o);
    for (int i = 0; i < 4; i++) snprintf(urls[i], sizeof urls[i], "%s/robots.txt?i=%d", srv.base, i);
    m = (many_ctx){0};
    CHECK_EQ_INT(http_fetch_many(c, q, 4, many_done, &m), TW_OK);
    log = server_log();
    double prev = -1, min_gap = 1e9;
    for (tw_json *e = tw_json_first(log); e; e = tw_json_next(e)) {
        double t = tw_json_get_num(e, "start", 0);
        if (prev >= 0 && t - prev < min_gap) min_gap = t - prev;
        prev = t;
    }
    CHECK(min_gap >= 0.18); /* 0.2 s less the server's own scheduling jitter */
    tw_json_free(log);
    http_client_free(c);
}

/* A host that must wait (Retry-After 2 s) does not hold up another host. 127.0.0.1 and
 * localhost are two hosts for the client (one server). */
static void test_waits_do_not_block(void) {
    char u0[512], u1[512], u2[512];
    snprintf(u0, sizeof u0, "%s/__ugly/429/wb?after=2", srv.base);
    snprintf(u1, sizeof u1, "http://localhost:%d/robots.txt?x=1", srv.port);
    snprintf(u2, sizeof u2, "http://localhost:%d/robots.txt?x=2", srv.port);
    http_request q[3] = {{.url = u0}, {.url = u1}, {.url = u2}};
    http_opts o;
    opts_test(&o);
    o.obey_robots = 0;
    o.min_interval_s = 0.1;
    http_client *c = client_new(&o);
    many_ctx m = {0};
    for (int i = 0; i < 3; i++) q[i].user = &m;
    double t0 = tw_now_s();
    CHECK_EQ_INT(http_fetch_many(c, q, 3, many_done, &m), TW_OK);
    double dt = tw_now_s() - t0;
    CHECK_EQ_INT(m.ok, 3);
    CHECK(dt >= 2.0);
    tw_json *log = server_log();
    double end_local = 0, second_429 = 0;
    for (tw_json *e = tw_json_first(log); e; e = tw_json_next(e)) {
        const char *p = tw_json_get_str(e, "path", "");
        if (strstr(p, "robots.txt?x=")) end_local = fmax(end_local, tw_json_get_num(e, "end", 0));
        if (strstr(p, "/__ugly/429/wb") && tw_json_get_num(e, "status", 0) == 200)
            second_429 = tw_json_get_num(e, "start", 0);
    }
    if (!(end_local > 0 && second_429 > 0 && end_local < second_429 - 1.0))
        fprintf(stderr, "  localhost answers ended at %.3f s, the 429 retry started at %.3f s\n", end_local, second_429);
    CHECK(end_local > 0 && second_429 > 0 && end_local < second_429 - 1.0);
    tw_json_free(log);
    http_client_free(c);
}

static void test_cancel(void) {
    enum { N = 6 };
    char urls[N][512];
    http_request q[N];
    many_ctx m = {.stop_after = 1};
    for (int i = 0; i < N; i++) {
        snprintf(urls[i], sizeof urls[i], "%s/__ugly/slow?s=0.5&c=%d", srv.base, i);
        q[i] = (http_request){.url = urls[i], .user = &m};
    }
    http_opts o;
    opts_test(&o);
    o.obey_robots = 0;
    o.max_per_host = 2;
    http_client *c = client_new(&o);
    double t0 = tw_now_s();
    CHECK_EQ_INT(http_fetch_many(c, q, N, many_done, &m), TW_OK);
    CHECK_EQ_INT(m.calls, 1);
    CHECK(tw_now_s() - t0 < 1.2); /* did not wait for the rest */
    /* the client is still usable after a cancelled run */
    http_response r;
    get(c, "/robots.txt", &r);
    CHECK_EQ_INT(r.result, HTTP_OK);
    http_response_clear(&r);
    http_client_free(c);
}

static void test_bad_urls_and_args(void) {
    http_opts o;
    opts_test(&o);
    http_client *c = client_new(&o);
    http_response r;
    const char *bad[] = {"ftp://example.com/x", "not a url", "http://", "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_request q = {.url = bad[i]};
        CHECK_EQ_INT(http_fetch(c, &q, &r), TW_OK);
        CHECK_EQ_INT(r.result, HTTP_ERR_URL);
        CHECK(r.reason[0] != 0);
        CHECK_EQ_INT(r.attempts, 0);
        http_response_clear(&r);
    }
    http_request q0 = {.url = NULL};
    CHECK_EQ_INT(http_fetch(c, &q0, &r), TW_ERR_ARG);
    CHECK_EQ_INT(http_robots_allowed(c, "gopher://x/"), -1);
    http_client_free(c);
    http_client_free(NULL);
    http_response_clear(NULL);
    opts_test(&o);
    o.max_per_host = 0;
    http_client *c2 = NULL;
    CHECK_EQ_INT(http_client_new(&o, &c2), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "max_per_host") != NULL);
    CHECK(c2 == NULL);
}

/* Failing the k-th allocation gives TW_ERR_NOMEM or a complete answer; ASan checks leaks. */
static void test_alloc_failures(void) {
    char url[512];
    url_of(url, sizeof url, "/__ugly/redirect/1");
    int nomem = 0, ok = 0;
    for (uint64_t k = 1; k <= 60; k++) {
        http_opts o;
        opts_test(&o);
        http_client *c = NULL;
        http_response r;
        memset(&r, 0, sizeof r);
        tw_mem_fail_after(k);
        tw_status st = http_client_new(&o, &c);
        if (st == TW_OK) {
            http_request q = {.url = url};
            st = http_fetch(c, &q, &r);
        }
        tw_mem_fail_after(0);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        if (st == TW_OK) {
            CHECK(r.result == HTTP_OK || r.result == HTTP_ERR_ROBOTS);
            ok++;
        } else {
            nomem++;
        }
        http_response_clear(&r);
        http_client_free(c);
    }
    CHECK(nomem > 0 && ok > 0);
}

int main(void) {
    const char *src = test_env("TWIN_SRC");
    if (!src) TEST_SKIP("TWIN_SRC is not set");
    char script[1024], root[1024], why[256];
    snprintf(script, sizeof script, "%s/tests/fixture_server.py", src);
    snprintf(root, sizeof root, "%s/tests/fixtures/web", src);
    if (fixture_server_start(&srv, script, root, why, sizeof why) != 0) TEST_SKIP("%s", why);
    RUN(test_status_404);
    RUN(test_flaky_retries);
    RUN(test_retry_after);
    RUN(test_redirects);
    RUN(test_timeout);
    RUN(test_body_cap);
    RUN(test_raw_bytes_and_gzip);
    RUN(test_robots);
    RUN(test_crawl_delay);
    RUN(test_conditional);
    RUN(test_per_host_limits);
    RUN(test_waits_do_not_block);
    RUN(test_cancel);
    RUN(test_bad_urls_and_args);
    RUN(test_alloc_failures);
    fixture_server_stop(&srv);
    TEST_DONE();
}
