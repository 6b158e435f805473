/* crawl.c: one crawl run of one source (crawl.h), and the helpers every platform shares
 * (crawl_impl.h): events that keep the counts, conditional fetches, document stores. */
#include "crawl.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "crawl_impl.h"

/* A lock older than this is taken over whatever its owner: a crawl of one source that runs for
 * six hours is stuck. Owners on this host are checked by pid at once (crawl_owner_alive). */
#define CRAWL_LOCK_STALE_S (6 * 3600.0)

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void host_name(char *buf, size_t cap) {
    if (gethostname(buf, cap) != 0) snprintf(buf, cap, "localhost");
    buf[cap - 1] = 0;
}

/* wh_owner_alive_fn for owners "pid:<pid>@<host>": on this host the process is asked
 * (kill(pid, 0)); on another host, or for an owner in another form, it is taken as alive and
 * only the lock's age can free it. */
static int crawl_owner_alive(const char *owner) {
    if (!owner || strncmp(owner, "pid:", 4) != 0) return 1;
    char *end;
    long pid = strtol(owner + 4, &end, 10);
    if (end == owner + 4 || *end != '@' || pid <= 0) return 1;
    char host[256];
    host_name(host, sizeof host);
    if (strcmp(end + 1, host) != 0) return 1;
    if (kill((pid_t)pid, 0) == 0) return 1;
    return errno == EPERM; /* exists but is not ours */
}

int crawl_should_stop(const crawl_run *run) {
    return run->ctx->max_items > 0 && run->docs >= run->ctx->max_items;
}

void crawl_progress(const crawl_run *run) {
    if (run->ctx->progress) run->ctx->progress(run->ctx->progress_ctx, run->src, &run->counts);
}

tw_status crawl_event(crawl_run *run, const char *url, wh_event_kind kind, int http_status,
                      const char *reason_fmt, ...) {
    char reason[512];
    reason[0] = 0;
    if (reason_fmt) {
        va_list ap;
        va_start(ap, reason_fmt);
        vsnprintf(reason, sizeof reason, reason_fmt, ap);
        va_end(ap);
    }
    switch (kind) {
    case WH_EVENT_FETCHED: run->counts.fetched++; break;
    case WH_EVENT_NOT_MODIFIED: run->counts.unchanged++; break;
    case WH_EVENT_SKIPPED: run->counts.skipped++; break;
    case WH_EVENT_FAILED: run->counts.failed++; break;
    }
    return wh_run_event(run->ctx->db, run->run_id, url, kind, http_status,
                        reason_fmt ? reason : NULL);
}

const char *crawl_http_reason(const http_response *r, char *buf, size_t cap) {
    char cls[64];
    switch (r->result) {
    case HTTP_OK: snprintf(cls, sizeof cls, "ok"); break;
    case HTTP_NOT_MODIFIED: snprintf(cls, sizeof cls, "not modified"); break;
    case HTTP_ERR_STATUS: snprintf(cls, sizeof cls, "HTTP %d", r->status); break;
    case HTTP_ERR_TRANSPORT: snprintf(cls, sizeof cls, "transport error"); break;
    case HTTP_ERR_TIMEOUT: snprintf(cls, sizeof cls, "timeout"); break;
    case HTTP_ERR_TOO_LARGE: snprintf(cls, sizeof cls, "too large"); break;
    case HTTP_ERR_REDIRECTS: snprintf(cls, sizeof cls, "too many redirects"); break;
    case HTTP_ERR_ROBOTS: snprintf(cls, sizeof cls, "disallowed by robots.txt"); break;
    case HTTP_ERR_URL: snprintf(cls, sizeof cls, "bad URL"); break;
    default: snprintf(cls, sizeof cls, "%s", http_result_name(r->result)); break;
    }
    /* the client's own line adds the detail, unless it only repeats the class */
    size_t cl = strlen(cls);
    if (!r->reason[0]) {
        snprintf(buf, cap, "%s", cls);
    } else if (strncmp(r->reason, cls, cl) != 0) {
        snprintf(buf, cap, "%s; %s", cls, r->reason);
    } else {
        /* the client's line starts with the class: "HTTP 404 Not Found" is just the class,
         * "HTTP 429; Retry-After 120 s exceeds ..." and "disallowed by robots.txt: <why>" keep
         * their detail after "; " */
        const char *rest = r->reason + cl;
        if (r->result == HTTP_ERR_STATUS) rest = strstr(rest, "; ") ? strstr(rest, "; ") : "";
        while (*rest == ':' || *rest == ';' || *rest == ' ') rest++;
        snprintf(buf, cap, "%s%s%s", cls, *rest ? "; " : "", rest);
    }
    return buf;
}

static void body_hash(const http_response *resp, char hex[65]) {
    uint8_t h[32];
    tw_sha256(resp->body ? resp->body : "", resp->body_len, h);
    tw_hex(h, 32, hex);
}

tw_status crawl_fetch(crawl_run *run, const char *url, const char *accept,
                      const char *const *headers, int flags, http_response *resp,
                      crawl_fetch_result *res) {
    memset(resp, 0, sizeof *resp);
    *res = CRAWL_FAILED;
    wh_fetch_state st = {0};
    if (flags & CRAWL_COND) {
        tw_status s = wh_fetch_state_get(run->ctx->db, run->src->id, url, &st);
        if (s == TW_ERR_NOT_FOUND) {
            memset(&st, 0, sizeof st);
            tw_error_clear();
        } else if (s) {
            return s;
        }
    }
    http_request rq = {.url = url, .etag = st.etag, .last_modified = st.last_modified,
                       .accept = accept, .headers = headers,
                       .no_robots = (flags & CRAWL_API) != 0};
    tw_status s = http_fetch(run->ctx->http, &rq, resp);
    if (s) {
        wh_fetch_state_clear(&st);
        return s;
    }
    if (resp->result == HTTP_OK) {
        char hex[65];
        body_hash(resp, hex);
        if ((flags & CRAWL_COND) && st.content_hash && !strcmp(st.content_hash, hex)) {
            *res = CRAWL_UNCHANGED;
            s = crawl_event(run, url, WH_EVENT_NOT_MODIFIED, resp->status,
                            "same content as the last fetch");
        } else {
            *res = CRAWL_GOT_BODY;
            s = crawl_event(run, url, WH_EVENT_FETCHED, resp->status, NULL);
        }
    } else if (resp->result == HTTP_NOT_MODIFIED) {
        *res = CRAWL_UNCHANGED;
        s = crawl_event(run, url, WH_EVENT_NOT_MODIFIED, resp->status ? resp->status : 304, NULL);
    } else if (!(flags & CRAWL_QUIET_FAIL)) {
        char why[320];
        s = crawl_event(run, url, WH_EVENT_FAILED, resp->status, "%s",
                        crawl_http_reason(resp, why, sizeof why));
    }
    wh_fetch_state_clear(&st);
    return s;
}

tw_status crawl_state_save(crawl_run *run, const char *url, const http_response *resp) {
    char hex[65];
    body_hash(resp, hex);
    return wh_fetch_state_put(run->ctx->db, run->src->id, url, resp->etag, resp->last_modified,
                              hex);
}

tw_status crawl_doc_store(crawl_run *run, wh_doc_in *d, wh_doc_outcome *outcome) {
    d->source_id = run->src->id;
    int64_t id;
    wh_doc_outcome oc;
    tw_status s = wh_document_upsert(run->ctx->db, run->run_id, d, &id, &oc);
    if (s) return s;
    switch (oc) {
    case WH_DOC_NEW: run->counts.new_docs++; break;
    case WH_DOC_CHANGED: run->counts.changed++; break;
    case WH_DOC_UNCHANGED: run->counts.unchanged++; break;
    }
    run->docs++;
    if (outcome) *outcome = oc;
    crawl_progress(run);
    return TW_OK;
}

static tw_status dispatch(crawl_run *run) {
    switch (run->src->platform) {
    case WH_PLATFORM_MEDIUM: return crawl_medium_run(run);
    case WH_PLATFORM_SUBSTACK: return crawl_substack_run(run);
    case WH_PLATFORM_ARTICLE: return crawl_article_run(run);
    case WH_PLATFORM_GITHUB: return crawl_github_run(run);
    case WH_PLATFORM_LINKEDIN: return crawl_linkedin_run(run);
    case WH_PLATFORM_LOCAL: return crawl_local_run(run);
    default: break;
    }
    return tw_error(TW_ERR_ARG, "source %lld: platform %d is not one twin crawls",
                    (long long)run->src->id, (int)run->src->platform);
}

tw_status crawl_source(crawl_ctx *ctx, const wh_source *s, wh_run_counts *counts, int64_t *run_id) {
    if (counts) memset(counts, 0, sizeof *counts);
    if (run_id) *run_id = 0;
    if (!ctx || !ctx->db || !ctx->http || !s || !s->url)
        return tw_error(TW_ERR_ARG, "crawl_source: ctx, its db and http client, and the source "
                                    "with its url are required");
    char host[256], owner[320];
    host_name(host, sizeof host);
    snprintf(owner, sizeof owner, "pid:%ld@%s", (long)getpid(), host);
    /* No run is begun when the lock is held: wh_run_begin would mark the holder's live run
     * "interrupted". */
    tw_status st = wh_source_lock(ctx->db, s->id, owner, CRAWL_LOCK_STALE_S, crawl_owner_alive);
    if (st) return st;
    crawl_run run = {.ctx = ctx, .src = s};
    st = wh_run_begin(ctx->db, s->id, &run.run_id);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tw_errmsg());
        wh_source_unlock(ctx->db, s->id, owner);
        return tw_error(st, "%s", msg);
    }
    if (run_id) *run_id = run.run_id;
    tw_log_debug("crawl: source %lld (%s %s): run %lld", (long long)s->id,
                 wh_platform_name(s->platform), s->url, (long long)run.run_id);
    st = dispatch(&run);
    char err[512] = "";
    if (st) snprintf(err, sizeof err, "%s", tw_errmsg());
    const char *status = st ? "failed" : run.counts.failed ? "partial" : "ok";
    tw_status fs = wh_run_finish(ctx->db, run.run_id, &run.counts, status, st ? err : NULL);
    if (!fs) fs = wh_source_crawled(ctx->db, s->id, wall_now(), status);
    char ferr[512] = "";
    if (fs) snprintf(ferr, sizeof ferr, "%s", tw_errmsg());
    wh_source_unlock(ctx->db, s->id, owner);
    if (counts) *counts = run.counts;
    if (st) return tw_error(st, "%s", err);
    if (fs) return tw_error(fs, "%s", ferr);
    return TW_OK;
}
