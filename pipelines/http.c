/* http.c: twin's one HTTP client over libcurl's multi interface (contract in http.h). The only
 * file that includes curl/curl.h.
 *
 * How a run works (http_fetch, http_fetch_many and http_robots_allowed all go through
 * http_run): every request is a job with a state (waiting, waiting for its host's robots.txt,
 * running, done). One loop on the calling thread starts every waiting job whose time has come
 * and whose host has a free slot (max_per_host, max_total, min_interval_s between starts),
 * drives the transfers with curl_multi_perform, and sleeps in curl_multi_poll until the next
 * socket event or the next job's start time, so a job that waits (backoff, Retry-After, its
 * host's interval) never holds up another host's transfers. robots.txt is a job of its own,
 * made the first time a host is needed; the host's jobs wait for it. Redirects are followed
 * here rather than by curl, so every hop is checked against robots.txt, counted against its
 * own host's limits, and compared with the URLs already visited (loop detection).
 */
#include "http.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "robots.h"

#ifndef TWIN_VERSION
#define TWIN_VERSION "0"
#endif

#define HTTP_PRODUCT "twin"             /* our product token in robots.txt */
#define HTTP_ROBOTS_REDIRECTS 5         /* RFC 9309 2.3.1.2: follow at least five */
#define HTTP_CRAWL_DELAY_MAX 60.0       /* a larger Crawl-delay is taken as 60 s: a crawl must end */

/* The body of a response that has none, and what take_body leaves: never written, never freed. */
static const char http_no_body[1] = "";

/* ---- one-time library init ------------------------------------------------------------ */

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc = CURLE_FAILED_INIT;
static void http_global_init(void) { http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- the client ----------------------------------------------------------------------- */

enum { ROBOTS_UNKNOWN = 0, ROBOTS_FETCHING, ROBOTS_READY };

typedef struct {
    char *key;          /* "scheme://host:port", lower case */
    int inflight;       /* transfers running now */
    double next_start;  /* monotonic s: no start before this */
    double interval;    /* min_interval_s, raised by Crawl-delay */
    int robots_state;
    uint64_t blocked;   /* the scan (http_client.scan) in which the host had no free slot */
    robots_rules *robots;
    char robots_note[200]; /* why everything is disallowed, when robots.txt was not usable */
} http_host;

struct http_client {
    http_opts o;
    char *ua;
    CURLM *multi;
    CURL **pool; /* idle easy handles for reuse */
    size_t n_pool, cap_pool;
    http_host *hosts;
    size_t n_hosts, cap_hosts;
    int inflight;
    uint64_t scan;      /* counts the start scans of http_run */
    uint64_t rng;
    http_stats stats;
};

void http_opts_default(http_opts *o) {
    memset(o, 0, sizeof *o);
    o->user_agent = "twin/" TWIN_VERSION " (+LLM twin crawler)";
    o->max_per_host = 4;
    o->max_total = 16;
    o->min_interval_s = 0.25;
    o->connect_timeout_s = 10;
    o->timeout_s = 30;
    o->max_body = (size_t)16 << 20;
    o->max_redirects = 5;
    o->max_retries = 3;
    o->backoff_base_s = 0.5;
    o->backoff_max_s = 30;
    o->obey_robots = 1;
    o->seed = 0;
}

const char *http_result_name(http_result r) {
    switch (r) {
    case HTTP_OK: return "ok";
    case HTTP_NOT_MODIFIED: return "not_modified";
    case HTTP_ERR_STATUS: return "status";
    case HTTP_ERR_TRANSPORT: return "transport";
    case HTTP_ERR_TIMEOUT: return "timeout";
    case HTTP_ERR_TOO_LARGE: return "too_large";
    case HTTP_ERR_REDIRECTS: return "redirects";
    case HTTP_ERR_ROBOTS: return "robots";
    case HTTP_ERR_URL: return "url";
    }
    return "unknown";
}

tw_status http_client_new(const http_opts *o, http_client **out) {
    if (!out) return tw_error(TW_ERR_ARG, "http_client_new: NULL out");
    *out = NULL;
    http_opts d;
    if (!o) {
        http_opts_default(&d);
        o = &d;
    }
#define HTTP_CHECK_OPT(cond, field, fmt, val)                                                 \
    if (!(cond)) return tw_error(TW_ERR_ARG, "http_opts." field ": " fmt, val)
    HTTP_CHECK_OPT(o->max_per_host >= 1, "max_per_host", "must be >= 1 (got %d)", o->max_per_host);
    HTTP_CHECK_OPT(o->max_total >= 1, "max_total", "must be >= 1 (got %d)", o->max_total);
    HTTP_CHECK_OPT(o->min_interval_s >= 0, "min_interval_s", "must be >= 0 (got %g)", o->min_interval_s);
    HTTP_CHECK_OPT(o->connect_timeout_s > 0, "connect_timeout_s", "must be > 0 (got %g)", o->connect_timeout_s);
    HTTP_CHECK_OPT(o->timeout_s > 0, "timeout_s", "must be > 0 (got %g)", o->timeout_s);
    HTTP_CHECK_OPT(o->max_body >= 1, "max_body", "must be >= 1 (got %zu)", o->max_body);
    HTTP_CHECK_OPT(o->max_redirects >= 0, "max_redirects", "must be >= 0 (got %d)", o->max_redirects);
    HTTP_CHECK_OPT(o->max_retries >= 0, "max_retries", "must be >= 0 (got %d)", o->max_retries);
    HTTP_CHECK_OPT(o->backoff_base_s >= 0, "backoff_base_s", "must be >= 0 (got %g)", o->backoff_base_s);
    HTTP_CHECK_OPT(o->backoff_max_s >= 0, "backoff_max_s", "must be >= 0 (got %g)", o->backoff_max_s);
#undef HTTP_CHECK_OPT
    pthread_once(&http_once, http_global_init);
    if (http_init_rc != CURLE_OK)
        return tw_error(TW_ERR_RUNTIME, "http: curl_global_init failed: %s", curl_easy_strerror(http_init_rc));
    http_client *c = tw_calloc(1, sizeof *c);
    if (!c) return tw_error(TW_ERR_NOMEM, "http_client_new: out of memory");
    c->o = *o;
    c->ua = tw_strdup(o->user_agent ? o->user_agent : "twin/" TWIN_VERSION " (+LLM twin crawler)");
    c->multi = curl_multi_init();
    if (!c->ua || !c->multi) {
        http_client_free(c);
        return tw_error(TW_ERR_NOMEM, "http_client_new: out of memory");
    }
    c->o.user_agent = c->ua;
    c->rng = o->seed ? o->seed : (uint64_t)(tw_now_s() * 1e9) ^ (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
    if (!c->rng) c->rng = 1;
    *out = c;
    return TW_OK;
}

void http_client_free(http_client *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_pool; i++) curl_easy_cleanup(c->pool[i]);
    tw_free(c->pool);
    for (size_t i = 0; i < c->n_hosts; i++) {
        tw_free(c->hosts[i].key);
        robots_free(c->hosts[i].robots);
    }
    tw_free(c->hosts);
    if (c->multi) curl_multi_cleanup(c->multi);
    tw_free(c->ua);
    tw_free(c);
}

void http_client_stats(const http_client *c, http_stats *out) {
    if (!out) return;
    if (!c) memset(out, 0, sizeof *out);
    else *out = c->stats;
}

/* Uniform in [0, 1) from the client's xorshift64* stream. */
static double http_rand01(http_client *c) {
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (double)((c->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* ---- responses ------------------------------------------------------------------------ */

void http_response_clear(http_response *r) {
    if (!r) return;
    if (r->body != http_no_body) tw_free(r->body);
    tw_free(r->final_url);
    tw_free(r->content_type);
    tw_free(r->etag);
    tw_free(r->last_modified);
    tw_free(r->headers);
    memset(r, 0, sizeof *r);
}

char *http_response_take_body(http_response *r, size_t *len) {
    if (!r) return NULL;
    char *b = r->body;
    size_t n = r->body_len;
    if (!b || b == http_no_body) {
        b = tw_strdup("");
        n = 0;
        if (!b) return NULL;
    }
    r->body = (char *)http_no_body;
    r->body_len = 0;
    if (len) *len = n;
    return b;
}

/* Finds header `name` in a block of "Name: value\r\n" lines: its trimmed value. */
static int http_header_find(const char *block, const char *name, const char **v, size_t *vn) {
    if (!block) return 0;
    size_t nl = strlen(name);
    for (const char *p = block; *p;) {
        const char *e = strchr(p, '\n');
        size_t ln = e ? (size_t)(e - p) : strlen(p);
        if (ln > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *s = p + nl + 1, *t = p + ln;
            while (s < t && (*s == ' ' || *s == '\t')) s++;
            while (t > s && (t[-1] == '\r' || t[-1] == ' ' || t[-1] == '\t')) t--;
            *v = s;
            *vn = (size_t)(t - s);
            return 1;
        }
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int http_response_header(const http_response *r, const char *name, char *buf, size_t cap) {
    const char *v;
    size_t vn;
    if (!r || !name || !http_header_find(r->headers, name, &v, &vn)) return 0;
    if (buf && cap) {
        size_t n = vn < cap - 1 ? vn : cap - 1;
        memcpy(buf, v, n);
        buf[n] = 0;
    }
    return 1;
}

/* ---- jobs ----------------------------------------------------------------------------- */

enum { J_USER, J_ROBOTS, J_PROBE };
enum { J_WAIT, J_WAIT_ROBOTS, J_RUN, J_DONE };

typedef struct hjob {
    http_client *c;
    const http_request *req; /* NULL for a robots.txt job */
    int kind, state;
    char *url;               /* the current hop, normalised by curl */
    char *path;              /* its path and query, for robots.txt */
    size_t host;             /* index in c->hosts */
    size_t robots_for;       /* a robots job: the host whose robots.txt it fetches */
    double ready_at;         /* not before this (monotonic s) */
    double t_first;          /* the first attempt's start, or when the job was made */
    int started, retries, redirects;
    http_result final;       /* the outcome, kept after the response is cleared */
    char **visited;          /* every URL of this job's chain so far */
    size_t n_visited;
    CURL *easy;
    struct curl_slist *hdrs;
    tw_sb body, head;
    int too_large, nomem;
    char status_text[64];
    char errbuf[CURL_ERROR_SIZE];
    http_response resp;
} hjob;

typedef struct {
    http_client *c;
    hjob *user;         /* (n) the caller's requests */
    size_t n;
    hjob **all;         /* user jobs, then robots jobs as they are made */
    size_t n_all, cap_all, cursor;
    size_t open;        /* jobs not done */
    http_done_fn done;
    void *ctx;
    int cancelled;
} hrun;

static void http_job_release(hjob *j) {
    for (size_t i = 0; i < j->n_visited; i++) tw_free(j->visited[i]);
    tw_free(j->visited);
    j->visited = NULL;
    j->n_visited = 0;
    tw_free(j->url);
    tw_free(j->path);
    j->url = j->path = NULL;
    curl_slist_free_all(j->hdrs);
    j->hdrs = NULL;
    tw_sb_free(&j->body);
    tw_sb_free(&j->head);
    http_response_clear(&j->resp);
}

/* The index of host `key` in c->hosts, added when new; SIZE_MAX when memory ran out. */
static size_t http_host_get(http_client *c, const char *key) {
    for (size_t i = 0; i < c->n_hosts; i++)
        if (strcmp(c->hosts[i].key, key) == 0) return i;
    if (c->n_hosts == c->cap_hosts) {
        size_t nc = c->cap_hosts ? 2 * c->cap_hosts : 8;
        http_host *nh = tw_realloc(c->hosts, nc * sizeof *nh);
        if (!nh) return SIZE_MAX;
        c->hosts = nh;
        c->cap_hosts = nc;
    }
    http_host *h = &c->hosts[c->n_hosts];
    memset(h, 0, sizeof *h);
    h->key = tw_strdup(key);
    if (!h->key) return SIZE_MAX;
    h->interval = c->o.min_interval_s;
    h->robots_state = c->o.obey_robots ? ROBOTS_UNKNOWN : ROBOTS_READY;
    return c->n_hosts++;
}

/* Points j at url: checks it is http(s), normalises it, finds its host. On a bad URL fills
 * j->resp.reason and returns HTTP_ERR_URL; TW_ERR_NOMEM is reported as -1. */
static int http_job_set_url(hjob *j, const char *url) {
    http_client *c = j->c;
    CURLU *u = curl_url();
    if (!u) return -1;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *norm = NULL;
    int rc = HTTP_OK;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(j->resp.reason, sizeof j->resp.reason, "bad URL '%.160s': %s", url, curl_url_strerror(uc));
        rc = HTTP_ERR_URL;
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(j->resp.reason, sizeof j->resp.reason, "not an http(s) URL: '%.180s'", url);
        rc = HTTP_ERR_URL;
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(j->resp.reason, sizeof j->resp.reason, "URL without a host: '%.180s'", url);
        rc = HTTP_ERR_URL;
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0); /* never sent; not part of the identity */
    curl_url_get(u, CURLUPART_URL, &norm, 0);
    if (!norm) {
        rc = -1;
        goto out;
    }
    tw_sb key, pq;
    tw_sb_init(&key);
    tw_sb_init(&pq);
    tw_sb_printf(&key, "%s://%s:%s", scheme, host, port ? port : "");
    for (size_t i = 0; i < key.len; i++)
        if (key.buf[i] >= 'A' && key.buf[i] <= 'Z') key.buf[i] = (char)(key.buf[i] + 32);
    tw_sb_puts(&pq, path && *path ? path : "/");
    if (query) {
        tw_sb_putc(&pq, '?');
        tw_sb_puts(&pq, query);
    }
    size_t h = key.failed ? SIZE_MAX : http_host_get(c, key.buf);
    char *nurl = tw_strdup(norm);
    if (h == SIZE_MAX || pq.failed || !nurl) {
        tw_free(nurl);
        tw_sb_free(&key);
        tw_sb_free(&pq);
        rc = -1;
        goto out;
    }
    tw_free(j->url);
    tw_free(j->path);
    j->url = nurl;
    j->path = tw_sb_take(&pq);
    j->host = h;
    tw_sb_free(&key);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(norm);
    curl_url_cleanup(u);
    return rc;
}

static int http_job_visit(hjob *j) {
    char **nv = tw_realloc(j->visited, (j->n_visited + 1) * sizeof *nv);
    if (!nv) return -1;
    j->visited = nv;
    nv[j->n_visited] = tw_strdup(j->url);
    if (!nv[j->n_visited]) return -1;
    j->n_visited++;
    return 0;
}

/* ---- transfers ------------------------------------------------------------------------ */

static size_t http_on_body(char *p, size_t size, size_t nmemb, void *ud) {
    hjob *j = ud;
    size_t n = size * nmemb;
    size_t cap = j->kind == J_ROBOTS ? ROBOTS_MAX_BYTES : j->c->o.max_body;
    if (j->body.len + n > cap) {
        /* a robots.txt keeps its first 500 KiB (all that is parsed); anything else is refused */
        j->c->stats.bytes += (int64_t)(cap - j->body.len);
        if (j->kind == J_ROBOTS) tw_sb_append(&j->body, p, cap - j->body.len);
        j->too_large = 1;
        return 0; /* != n: curl aborts the transfer now */
    }
    if (tw_sb_append(&j->body, p, n) != 0) {
        j->nomem = 1;
        return 0;
    }
    j->c->stats.bytes += (int64_t)n;
    return n;
}

static size_t http_on_header(char *p, size_t size, size_t nmemb, void *ud) {
    hjob *j = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 1xx): its block replaces the previous one */
        tw_sb_clear(&j->head);
        j->status_text[0] = 0;
        const char *s = memchr(p, ' ', n);
        if (s) s = memchr(s + 1, ' ', n - (size_t)(s + 1 - p));
        if (s) {
            s++;
            size_t k = 0;
            while (s < p + n && *s != '\r' && *s != '\n' && k + 1 < sizeof j->status_text)
                j->status_text[k++] = *s++;
            j->status_text[k] = 0;
        }
    }
    if (tw_sb_append(&j->head, p, n) != 0) {
        j->nomem = 1;
        return 0;
    }
    return n;
}

static CURL *http_easy_get(http_client *c) {
    if (c->n_pool) return c->pool[--c->n_pool];
    return curl_easy_init();
}

static void http_easy_put(http_client *c, CURL *e) {
    if (!e) return;
    curl_easy_reset(e);
    if (c->n_pool == c->cap_pool) {
        size_t nc = c->cap_pool ? 2 * c->cap_pool : 16;
        CURL **np = tw_realloc(c->pool, nc * sizeof *np);
        if (!np) {
            curl_easy_cleanup(e);
            return;
        }
        c->pool = np;
        c->cap_pool = nc;
    }
    c->pool[c->n_pool++] = e;
}

/* The request's header lines, built once per job. 0 on success. */
static int http_job_headers(hjob *j) {
    const http_request *q = j->req;
    if (!q || j->kind != J_USER) return 0;
    char line[1024];
    struct curl_slist *l = NULL, *t;
#define HTTP_ADD(str)                                                                         \
    do {                                                                                      \
        t = curl_slist_append(l, str);                                                        \
        if (!t) goto fail;                                                                    \
        l = t;                                                                                \
    } while (0)
    if (q->etag && *q->etag) {
        snprintf(line, sizeof line, "If-None-Match: %s", q->etag);
        HTTP_ADD(line);
    }
    if (q->last_modified && *q->last_modified) {
        snprintf(line, sizeof line, "If-Modified-Since: %s", q->last_modified);
        HTTP_ADD(line);
    }
    if (q->accept && *q->accept) {
        snprintf(line, sizeof line, "Accept: %s", q->accept);
        HTTP_ADD(line);
    }
    for (const char *const *h = q->headers; h && *h; h++) HTTP_ADD(*h);
#undef HTTP_ADD
    j->hdrs = l;
    return 0;
fail:
    curl_slist_free_all(l);
    return -1;
}

static int http_job_start(hrun *r, hjob *j, double now) {
    http_client *c = r->c;
    http_host *h = &c->hosts[j->host];
    CURL *e = http_easy_get(c);
    if (!e) return -1;
    tw_sb_clear(&j->body);
    tw_sb_clear(&j->head);
    j->too_large = j->nomem = 0;
    j->errbuf[0] = 0;
    j->status_text[0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)j);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->ua);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* every encoding curl can decode */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* followed here (file comment) */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->o.connect_timeout_s * 1000 + 0.5));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->o.timeout_s * 1000 + 0.5));
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (j->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs);
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        http_easy_put(c, e);
        return -1;
    }
    j->easy = e;
    j->state = J_RUN;
    if (!j->started) {
        j->started = 1;
        j->t_first = now;
    }
    h->inflight++;
    c->inflight++;
    h->next_start = now + h->interval;
    c->stats.requests++;
    return 0;
}

/* ---- finishing ------------------------------------------------------------------------ */

static char *http_dup_header(const char *block, const char *name) {
    const char *v;
    size_t vn;
    return http_header_find(block, name, &v, &vn) ? tw_strndup(v, vn) : NULL;
}

/* Wakes the jobs that waited for host h's robots.txt. */
static void http_robots_wake(hrun *r, size_t h) {
    for (size_t i = r->cursor; i < r->n_all; i++)
        if (r->all[i]->state == J_WAIT_ROBOTS && r->all[i]->host == h) r->all[i]->state = J_WAIT;
}

/* Sets host h's rules from a finished robots.txt job (RFC 9309 2.3.1: 2xx parsed, 4xx allow
 * all, anything else disallow all). 0, or -1 when memory ran out. */
static int http_robots_set(hrun *r, hjob *j, http_result res) {
    http_client *c = r->c;
    http_host *h = &c->hosts[j->robots_for];
    robots_rules *rules = NULL;
    int status = j->resp.status;
    if (res == HTTP_OK) {
        if (robots_parse(j->body.buf ? j->body.buf : "", j->body.len, HTTP_PRODUCT, &rules) != TW_OK) return -1;
    } else if (res == HTTP_ERR_STATUS && status >= 400 && status < 500 && status != 429) {
        if (robots_uniform(1, &rules) != TW_OK) return -1;
    } else if (res == HTTP_ERR_REDIRECTS) {
        if (robots_uniform(1, &rules) != TW_OK) return -1; /* 2.3.1.2: as unavailable (4xx) */
    } else {
        if (robots_uniform(0, &rules) != TW_OK) return -1;
        snprintf(h->robots_note, sizeof h->robots_note, "%s/robots.txt unreachable (%.120s): all disallowed",
                 h->key, j->resp.reason);
    }
    double delay = robots_crawl_delay(rules);
    if (delay > 0) {
        double d = delay < HTTP_CRAWL_DELAY_MAX ? delay : HTTP_CRAWL_DELAY_MAX;
        if (d > h->interval) h->interval = d;
        /* the delay counts from the robots.txt request too */
        if (j->t_first + h->interval > h->next_start) h->next_start = j->t_first + h->interval;
    }
    robots_free(h->robots);
    h->robots = rules;
    h->robots_state = ROBOTS_READY;
    http_robots_wake(r, j->robots_for);
    return 0;
}

/* Ends job j with result res (reason already in j->resp.reason when res is an error): fills
 * the response, calls done for the caller's jobs, frees what the job held. 0, or -1 when
 * memory ran out. */
static int http_job_finish(hrun *r, hjob *j, http_result res, int status) {
    http_client *c = r->c;
    double now = tw_now_s();
    http_response *o = &j->resp;
    o->result = res;
    o->status = status;
    o->attempts = j->retries + 1;
    if (!j->started) o->attempts = 0;
    o->elapsed_s = now - j->t_first;
    j->state = J_DONE;
    j->final = res;
    r->open--;
    int rc = 0;
    if (j->kind == J_ROBOTS) {
        rc = http_robots_set(r, j, res);
        http_job_release(j);
        return rc;
    }
    if (res == HTTP_NOT_MODIFIED) c->stats.not_modified++;
    if (res != HTTP_ERR_TOO_LARGE && j->body.len) { /* error bodies too: a 404 page may help */
        o->body_len = j->body.len;
        o->body = tw_sb_take(&j->body);
    } else {
        o->body = (char *)http_no_body;
        o->body_len = 0;
    }
    o->final_url = tw_strdup(j->url ? j->url : (j->req && j->req->url ? j->req->url : ""));
    o->headers = j->head.len ? tw_sb_take(&j->head) : tw_strdup("");
    o->etag = http_dup_header(o->headers, "ETag");
    o->last_modified = http_dup_header(o->headers, "Last-Modified");
    o->content_type = http_dup_header(o->headers, "Content-Type");
    if (!o->final_url || !o->headers) rc = -1;
    if (rc == 0 && j->kind == J_USER && r->done && !r->cancelled) {
        if (r->done(r->ctx, j->req, o) != 0) r->cancelled = 1;
    }
    if (j->kind == J_USER) http_job_release(j);
    return rc;
}

static int http_job_fail(hrun *r, hjob *j, http_result res, int status, const char *fmt, ...)
    TW_PRINTF(5, 6);
static int http_job_fail(hrun *r, hjob *j, http_result res, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->resp.reason, sizeof j->resp.reason, fmt, ap);
    va_end(ap);
    return http_job_finish(r, j, res, status);
}

/* Retry-After in seconds from now: 1 when present and parsed (seconds or an HTTP date). */
static int http_retry_after(const char *head, double *secs) {
    const char *v;
    size_t vn;
    if (!http_header_find(head, "Retry-After", &v, &vn) || !vn || vn > 100) return 0;
    char buf[128];
    memcpy(buf, v, vn);
    buf[vn] = 0;
    size_t digits = strspn(buf, "0123456789");
    if (digits == vn) {
        *secs = digits > 9 ? 1e9 : (double)strtol(buf, NULL, 10);
        return 1;
    }
    time_t t = curl_getdate(buf, NULL);
    if (t == (time_t)-1) return 0;
    double d = difftime(t, time(NULL));
    *secs = d > 0 ? d : 0;
    return 1;
}

/* The transfer of j ended with curl code cc: decide done, retry or redirect. 0, or -1 when
 * memory ran out. */
static int http_job_ended(hrun *r, hjob *j, CURLcode cc) {
    http_client *c = r->c;
    http_host *h = &c->hosts[j->host];
    CURL *e = j->easy;
    long status = 0;
    char *redirect = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &redirect);
    char *next = redirect ? tw_strdup(redirect) : NULL;
    curl_multi_remove_handle(c->multi, e);
    http_easy_put(c, e);
    j->easy = NULL;
    h->inflight--;
    c->inflight--;
    double now = tw_now_s();
    if (redirect && !next) return -1;
    if (j->nomem || cc == CURLE_OUT_OF_MEMORY) {
        tw_free(next);
        return -1;
    }
    j->resp.status = (int)status;

    http_result cls = HTTP_OK;  /* a retryable outcome's class, HTTP_OK when final */
    char why[200] = "";
    if (j->too_large && cc != CURLE_OK && j->kind != J_ROBOTS) {
        tw_free(next);
        return http_job_fail(r, j, HTTP_ERR_TOO_LARGE, (int)status,
                             "body larger than %zu bytes (max_body): transfer aborted", c->o.max_body);
    } else if (j->too_large && j->kind == J_ROBOTS) {
        tw_free(next);
        return http_job_finish(r, j, HTTP_OK, (int)status); /* the first 500 KiB are parsed */
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        cls = HTTP_ERR_TIMEOUT;
        snprintf(why, sizeof why, "timed out (connect_timeout_s %g, timeout_s %g): %.120s", c->o.connect_timeout_s,
                 c->o.timeout_s, j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
    } else if (cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT) {
        tw_free(next);
        return http_job_fail(r, j, HTTP_ERR_URL, 0, "bad URL '%.120s': %.100s", j->url,
                             j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
    } else if (cc == CURLE_BAD_CONTENT_ENCODING) {
        tw_free(next);
        return http_job_fail(r, j, HTTP_ERR_TRANSPORT, (int)status, "bad content encoding: %.180s",
                             j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
    } else if (cc != CURLE_OK) {
        cls = HTTP_ERR_TRANSPORT;
        snprintf(why, sizeof why, "%.180s (curl %d)", j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc), (int)cc);
    } else if (status >= 300 && status < 400 && status != 304 && next) {
        /* a redirect: the next hop is a new start of this job */
        int limit = j->kind == J_ROBOTS ? HTTP_ROBOTS_REDIRECTS : c->o.max_redirects;
        if (j->redirects >= limit) {
            int rc = http_job_fail(r, j, HTTP_ERR_REDIRECTS, (int)status,
                                   "more than %d redirects (max_redirects); the last to %.160s", limit, next);
            tw_free(next);
            return rc;
        }
        char from[200];
        snprintf(from, sizeof from, "%s", j->url);
        int u = http_job_set_url(j, next);
        tw_free(next);
        if (u < 0) return -1;
        if (u == HTTP_ERR_URL) {
            char inner[256];
            snprintf(inner, sizeof inner, "%s", j->resp.reason);
            return http_job_fail(r, j, HTTP_ERR_URL, (int)status, "redirect from %.60s: %.180s", from, inner);
        }
        for (size_t i = 0; i < j->n_visited; i++) {
            if (strcmp(j->visited[i], j->url) == 0) /* the normalised form was visited */
                return http_job_fail(r, j, HTTP_ERR_REDIRECTS, (int)status,
                                     "redirect loop: %.100s redirects to %.100s, visited before", from, j->url);
        }
        if (http_job_visit(j) != 0) return -1;
        j->redirects++;
        j->state = J_WAIT;
        j->ready_at = now;
        return 0;
    } else if (status == 304) {
        tw_free(next);
        return http_job_finish(r, j, HTTP_NOT_MODIFIED, 304);
    } else if (status >= 200 && status < 300) {
        tw_free(next);
        return http_job_finish(r, j, HTTP_OK, (int)status);
    } else if (status == 429 || status == 408 || (status >= 500 && status != 501 && status != 505)) {
        cls = HTTP_ERR_STATUS;
        snprintf(why, sizeof why, "HTTP %ld%s%.60s", status, j->status_text[0] ? " " : "", j->status_text);
    } else {
        tw_free(next);
        return http_job_fail(r, j, HTTP_ERR_STATUS, (int)status, "HTTP %ld%s%.60s", status,
                             j->status_text[0] ? " " : "", j->status_text);
    }
    tw_free(next);

    /* retryable */
    double ra = 0;
    int has_ra = cls == HTTP_ERR_STATUS && http_retry_after(j->head.buf, &ra);
    if (has_ra && ra > c->o.backoff_max_s)
        return http_job_fail(r, j, cls, (int)status, "%s; Retry-After %.0f s exceeds the %g s limit (backoff_max_s)",
                             why, ra, c->o.backoff_max_s);
    if (j->retries >= c->o.max_retries)
        return http_job_fail(r, j, cls, (int)status, "%s; gave up after %d attempt%s (max_retries %d)", why,
                             j->retries + 1, j->retries ? "s" : "", c->o.max_retries);
    double delay;
    if (has_ra) {
        delay = ra;
        /* the server asked the whole host to wait, not this request only */
        if (now + delay > h->next_start) h->next_start = now + delay;
    } else {
        double cap = c->o.backoff_base_s * ldexp(1.0, j->retries > 60 ? 60 : j->retries);
        if (cap > c->o.backoff_max_s) cap = c->o.backoff_max_s;
        delay = http_rand01(c) * cap; /* full jitter */
    }
    j->retries++;
    c->stats.retries++;
    j->state = J_WAIT;
    j->ready_at = now + delay;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------- */

static int http_run_add(hrun *r, hjob *j) {
    if (r->n_all == r->cap_all) {
        size_t nc = r->cap_all ? 2 * r->cap_all : 16;
        hjob **na = tw_realloc(r->all, nc * sizeof *na);
        if (!na) return -1;
        r->all = na;
        r->cap_all = nc;
    }
    r->all[r->n_all++] = j;
    r->open++;
    return 0;
}

/* Makes the robots.txt job of host h. 0, or -1 when memory ran out. */
static int http_robots_spawn(hrun *r, size_t h, double now) {
    http_client *c = r->c;
    hjob *j = tw_calloc(1, sizeof *j);
    if (!j) return -1;
    j->c = c;
    j->kind = J_ROBOTS;
    j->robots_for = h;
    j->t_first = now;
    tw_sb_init(&j->body);
    tw_sb_init(&j->head);
    char url[600];
    snprintf(url, sizeof url, "%s/robots.txt", c->hosts[h].key);
    if (http_run_add(r, j) != 0) {
        tw_free(j);
        return -1;
    }
    int u = http_job_set_url(j, url);
    if (u < 0 || http_job_visit(j) != 0) return -1;
    if (u == HTTP_ERR_URL) return http_job_finish(r, j, HTTP_ERR_URL, 0); /* disallow all */
    c->hosts[h].robots_state = ROBOTS_FETCHING;
    c->stats.robots_fetches++;
    return 0;
}

/* Tries to start waiting job j now. Updates *wake with the time it could start when that is
 * a time (not a free slot). 0, or -1 when memory ran out. */
static int http_job_try(hrun *r, hjob *j, double now, double *wake) {
    http_client *c = r->c;
    http_host *h = &c->hosts[j->host];
    /* A request that opts out of robots.txt (an API used under its own terms) skips both. */
    int obey = j->kind != J_ROBOTS && !(j->req && j->req->no_robots);
    if (obey && h->robots_state != ROBOTS_READY) {
        j->state = J_WAIT_ROBOTS;
        return h->robots_state == ROBOTS_UNKNOWN ? http_robots_spawn(r, j->host, now) : 0;
    }
    if (obey && h->robots) {
        int a = robots_allowed(h->robots, j->path);
        if (a < 0) return -1;
        if (a == 0) {
            if (h->robots_note[0])
                return http_job_fail(r, j, HTTP_ERR_ROBOTS, 0, "disallowed by robots.txt: %s", h->robots_note);
            return http_job_fail(r, j, HTTP_ERR_ROBOTS, 0, "disallowed by robots.txt (%.160s/robots.txt)", h->key);
        }
    }
    if (j->kind == J_PROBE) return http_job_finish(r, j, HTTP_OK, 0);
    if (h->inflight >= c->o.max_per_host) {
        h->blocked = c->scan;
        return 0;
    }
    if (h->next_start > now) {
        if (h->next_start < *wake) *wake = h->next_start;
        h->blocked = c->scan;
        return 0;
    }
    return http_job_start(r, j, now);
}

/* Runs r to the end (or until cancelled). TW_OK, or TW_ERR_NOMEM. */
static tw_status http_run(hrun *r) {
    http_client *c = r->c;
    int fatal = 0;
    while (r->open > 0 && !r->cancelled && !fatal) {
        double now = tw_now_s();
        double wake = INFINITY;
        c->scan++;
        /* O(jobs) per event; a host found without a free slot is skipped for the rest of the
         * scan (one compare per job), which keeps this cheap up to some 10^4 jobs per call */
        for (size_t i = r->cursor; i < r->n_all && !r->cancelled && !fatal; i++) {
            hjob *j = r->all[i];
            if (j->state != J_WAIT || c->hosts[j->host].blocked == c->scan) continue;
            if (j->ready_at > now) {
                if (j->ready_at < wake) wake = j->ready_at;
                continue;
            }
            if (c->inflight >= c->o.max_total && j->kind != J_PROBE) break; /* a completion wakes us */
            if (http_job_try(r, j, now, &wake) != 0) fatal = 1;
        }
        while (r->cursor < r->n_all && r->all[r->cursor]->state == J_DONE) r->cursor++;
        if (r->open == 0 || r->cancelled || fatal) break;

        int running = 0;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) fatal = 1;
        int ended = 0, left;
        CURLMsg *m;
        while (!fatal && !r->cancelled && (m = curl_multi_info_read(c->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            hjob *j = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode cc = m->data.result;
            if (http_job_ended(r, j, cc) != 0) fatal = 1;
            ended++;
        }
        if (ended || fatal || r->cancelled) continue;
        if (r->open == 0) break;
        now = tw_now_s();
        double wait_s = wake - now;
        if (wait_s > 1) wait_s = 1; /* also bounds a wait on jobs that just became startable */
        if (wait_s < 0) wait_s = 0;
        if (c->inflight == 0 && wake == INFINITY) {
            /* nothing runs and nothing waits for a time: only jobs whose slot frees up, and
             * none will; a broken invariant, not an input problem */
            TW_ASSERT(!"http_run: jobs waiting with nothing running");
        }
        if (curl_multi_poll(c->multi, NULL, 0, (int)(wait_s * 1000 + 0.999), NULL) != CURLM_OK) fatal = 1;
    }
    /* cancelled or failed: stop what runs, release what is left (no callbacks) */
    for (size_t i = 0; i < r->n_all; i++) {
        hjob *j = r->all[i];
        if (j->easy) {
            curl_multi_remove_handle(c->multi, j->easy);
            http_easy_put(c, j->easy);
            j->easy = NULL;
            c->hosts[j->host].inflight--;
            c->inflight--;
        }
        if (j->kind == J_ROBOTS && j->state != J_DONE &&
            c->hosts[j->robots_for].robots_state == ROBOTS_FETCHING)
            c->hosts[j->robots_for].robots_state = ROBOTS_UNKNOWN; /* fetched again next time */
        http_job_release(j);
        if (j->kind == J_ROBOTS) tw_free(j);
    }
    tw_free(r->all);
    r->all = NULL;
    if (fatal) return tw_error(TW_ERR_NOMEM, "http: out of memory (or curl failed) while fetching");
    return TW_OK;
}

/* Sets up r with n jobs of `kind` for reqs (each req->url must be set). */
static tw_status http_run_init(hrun *r, http_client *c, const http_request *reqs, size_t n, int kind,
                               http_done_fn done, void *ctx) {
    memset(r, 0, sizeof *r);
    r->c = c;
    r->n = n;
    r->done = done;
    r->ctx = ctx;
    r->user = tw_calloc(n ? n : 1, sizeof *r->user);
    if (!r->user) return tw_error(TW_ERR_NOMEM, "http: out of memory for %zu requests", n);
    double now = tw_now_s();
    for (size_t i = 0; i < n; i++) {
        hjob *j = &r->user[i];
        j->c = c;
        j->req = &reqs[i];
        j->kind = kind;
        j->t_first = now;
        tw_sb_init(&j->body);
        tw_sb_init(&j->head);
        if (http_run_add(r, j) != 0) return tw_error(TW_ERR_NOMEM, "http: out of memory");
    }
    for (size_t i = 0; i < n && !r->cancelled; i++) {
        hjob *j = &r->user[i];
        int u = http_job_set_url(j, reqs[i].url);
        if (u < 0 || (u == HTTP_OK && (http_job_visit(j) != 0 || http_job_headers(j) != 0)))
            return tw_error(TW_ERR_NOMEM, "http: out of memory");
        if (u == HTTP_ERR_URL && http_job_finish(r, j, HTTP_ERR_URL, 0) != 0)
            return tw_error(TW_ERR_NOMEM, "http: out of memory");
    }
    return TW_OK;
}

static void http_run_free(hrun *r) {
    if (r->all) { /* http_run did not run: release here */
        for (size_t i = 0; i < r->n_all; i++) {
            http_job_release(r->all[i]);
            if (r->all[i]->kind == J_ROBOTS) tw_free(r->all[i]);
        }
        tw_free(r->all);
    }
    tw_free(r->user);
}

tw_status http_fetch_many(http_client *c, const http_request *reqs, size_t n, http_done_fn done, void *ctx) {
    if (!c || (!reqs && n)) return tw_error(TW_ERR_ARG, "http_fetch_many: NULL %s", !c ? "client" : "reqs");
    for (size_t i = 0; i < n; i++)
        if (!reqs[i].url) return tw_error(TW_ERR_ARG, "http_fetch_many: request %zu: NULL url", i);
    hrun r;
    tw_status st = http_run_init(&r, c, reqs, n, J_USER, done, ctx);
    if (st == TW_OK) st = http_run(&r);
    http_run_free(&r);
    return st;
}

/* http_fetch's done callback: moves the response to the caller. */
static int http_fetch_take(void *ctx, const http_request *req, http_response *resp) {
    (void)req;
    http_response *out = ctx;
    *out = *resp;
    memset(resp, 0, sizeof *resp);
    return 0;
}

tw_status http_fetch(http_client *c, const http_request *req, http_response *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!c || !req || !out) return tw_error(TW_ERR_ARG, "http_fetch: NULL %s", !c ? "client" : !req ? "request" : "out");
    if (!req->url) return tw_error(TW_ERR_ARG, "http_fetch: NULL url");
    tw_status st = http_fetch_many(c, req, 1, http_fetch_take, out);
    if (st != TW_OK) http_response_clear(out);
    return st;
}

int http_robots_allowed(http_client *c, const char *url) {
    if (!c || !url) {
        tw_error(TW_ERR_ARG, "http_robots_allowed: NULL %s", !c ? "client" : "url");
        return -1;
    }
    if (!c->o.obey_robots) return 1;
    http_request q = {.url = url};
    hrun r;
    int ans = -1;
    tw_status st = http_run_init(&r, c, &q, 1, J_PROBE, NULL, NULL);
    if (st == TW_OK) {
        hjob *j = &r.user[0];
        if (j->state == J_DONE) {
            tw_error(TW_ERR_ARG, "http_robots_allowed: %s", j->resp.reason);
        } else {
            st = http_run(&r);
            if (st == TW_OK) ans = j->final == HTTP_OK ? 1 : 0;
        }
    }
    http_run_free(&r);
    return ans;
}
