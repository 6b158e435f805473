/* http.h: twin's one HTTP client (libcurl multi), for the crawlers. Nothing else includes
 * curl/curl.h.
 *
 *   http_client_new(opts, &c)
 *   http_fetch(c, req, &resp)                one request, blocking
 *   http_fetch_many(c, reqs, n, done, ctx)   many at once, `done` called as each finishes
 *   http_client_free(c)
 *
 * Politeness and robustness, all inside the client so every crawler gets them:
 *   - at most opts.max_per_host requests in flight per host and opts.max_total overall, and at
 *     least opts.min_interval_s between the starts of two requests to one host;
 *   - robots.txt (RFC 9309, robots.h) fetched once per scheme://host:port and cached for the
 *     client's life; a disallowed URL is not fetched (HTTP_ERR_ROBOTS); a robots.txt answering
 *     4xx means "allow all", 5xx or unreachable means "disallow all" (RFC 9309 2.3.1);
 *   - timeouts (connect and total), a body size cap (the transfer is aborted as soon as the cap
 *     is passed, not after reading it all), a redirect limit, gzip/deflate decoding;
 *   - retries on transport errors, 429 and 5xx with exponential backoff and full jitter
 *     (delay = uniform(0, min(backoff_max_s, backoff_base_s * 2^attempt))), honouring
 *     Retry-After (seconds or an HTTP date) when present: a Retry-After longer than
 *     backoff_max_s gives up at once with the reason saying so;
 *   - conditional GET (If-None-Match / If-Modified-Since from the request) with 304 reported as
 *     HTTP_NOT_MODIFIED;
 *   - a real User-Agent naming twin and its version.
 *
 * Thread safety: a client is used by one thread at a time. Distinct clients are independent.
 */
#ifndef TWIN_HTTP_H
#define TWIN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct http_client http_client;

/* Options; http_opts_default fills every field. */
typedef struct {
    const char *user_agent;  /* default "twin/<version> (+LLM twin crawler)"; copied */
    int max_per_host;        /* default 4 */
    int max_total;           /* default 16 */
    double min_interval_s;   /* per host, between request starts; default 0.25 */
    double connect_timeout_s;/* default 10 */
    double timeout_s;        /* whole transfer, default 30 */
    size_t max_body;         /* bytes after decoding; default 16 MiB */
    int max_redirects;       /* default 5 */
    int max_retries;         /* retries after the first attempt; default 3 */
    double backoff_base_s;   /* default 0.5 */
    double backoff_max_s;    /* default 30 */
    int obey_robots;         /* default 1 */
    uint64_t seed;           /* jitter's random stream; 0: from the clock */
} http_opts;

void http_opts_default(http_opts *o);

/* One request (GET). Strings are read during http_fetch / http_fetch_many only. */
typedef struct {
    const char *url;
    const char *etag;          /* If-None-Match, NULL for none */
    const char *last_modified; /* If-Modified-Since, NULL for none */
    const char *accept;        /* Accept header, NULL for curl's default */
    const char *const *headers;/* extra "Name: value" lines, NULL-terminated, or NULL
                                  (e.g. "Authorization: Bearer ...") */
    void *user;                /* for the caller: handed back in the done callback */
    int no_robots;             /* 1: do not consult robots.txt for this request (nor for its
                                  redirects). For APIs used under their own terms, not for
                                  crawling pages: api.github.com's robots.txt disallows every
                                  path for crawlers, while its REST API is meant to be called
                                  by programs (with its rate limits, which are honoured). */
} http_request;

typedef enum {
    HTTP_OK = 0,            /* 2xx with a body (possibly empty) */
    HTTP_NOT_MODIFIED,      /* 304 to a conditional request */
    HTTP_ERR_STATUS,        /* a final non-2xx status (after retries when retryable) */
    HTTP_ERR_TRANSPORT,     /* DNS, connect, TLS, reset, bad encoding (after retries) */
    HTTP_ERR_TIMEOUT,       /* connect or total timeout (after retries) */
    HTTP_ERR_TOO_LARGE,     /* the body passed max_body */
    HTTP_ERR_REDIRECTS,     /* more than max_redirects redirects (or a loop) */
    HTTP_ERR_ROBOTS,        /* robots.txt disallows the URL for our user agent */
    HTTP_ERR_URL            /* not an http(s) URL */
} http_result;

const char *http_result_name(http_result r); /* "ok", "not_modified", "robots", ... */

/* A finished request. Owned by the caller of http_fetch (http_response_clear), or by the
 * client during a done callback (take what you keep with http_response_take_body). */
typedef struct {
    http_result result;
    int status;             /* last HTTP status, 0 when none was received */
    char *body;             /* NUL-terminated (the NUL is not counted), "" when none */
    size_t body_len;
    char *final_url;        /* after redirects */
    char *content_type;     /* NULL when absent */
    char *etag;             /* NULL when absent */
    char *last_modified;    /* NULL when absent */
    char *headers;          /* the final response's header block, "Name: value\r\n" lines */
    int attempts;           /* 1 + retries made */
    double elapsed_s;       /* from first attempt to the end, waits included */
    char reason[256];       /* one line for the crawl log when result != HTTP_OK:
                               "HTTP 429; Retry-After 120 s exceeds the 30 s limit",
                               "body larger than 16777216 bytes", "disallowed by robots.txt" */
} http_response;

void http_response_clear(http_response *r); /* frees the strings; NULL-safe */
/* Hands the body to the caller (tw_free); the response keeps "". */
char *http_response_take_body(http_response *r, size_t *len);
/* The value of header name (case-insensitive) in the final response, copied into buf
 * (truncated to cap-1); 1 when present, 0 when not. */
int http_response_header(const http_response *r, const char *name, char *buf, size_t cap);

tw_status http_client_new(const http_opts *o, http_client **out);
void http_client_free(http_client *c); /* NULL is a no-op */

/* Fetches one URL, retrying as the options say. Returns TW_OK whenever the request ran to an
 * outcome (check out->result: a 404 is TW_OK with HTTP_ERR_STATUS); an error status only when
 * twin itself failed (TW_ERR_NOMEM, TW_ERR_ARG for a NULL url). */
tw_status http_fetch(http_client *c, const http_request *req, http_response *out);

/* Runs n requests concurrently under the politeness limits. done(ctx, req, resp) is called on
 * the calling thread once per request as each finishes, in completion order; resp is valid
 * during the call only. done returns 0 to go on, non-zero to cancel the requests not yet
 * finished (they get no callback). Returns TW_OK when all ran (each outcome is in its resp). */
typedef int (*http_done_fn)(void *ctx, const http_request *req, http_response *resp);
tw_status http_fetch_many(http_client *c, const http_request *reqs, size_t n, http_done_fn done,
                          void *ctx);

/* Is url allowed by its host's robots.txt for the client's user agent? Fetches and caches
 * robots.txt on first use. 1 allowed, 0 disallowed, -1 on error (message set). */
int http_robots_allowed(http_client *c, const char *url);

/* Counters since the client was made (for the crawl summary and tests). */
typedef struct {
    int64_t requests;     /* attempts sent, retries included, robots.txt included */
    int64_t retries;
    int64_t not_modified;
    int64_t bytes;        /* body bytes received after decoding */
    int64_t robots_fetches;
} http_stats;
void http_client_stats(const http_client *c, http_stats *out);

#ifdef __cplusplus
}
#endif

#endif
