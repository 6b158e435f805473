/* crawl_impl.h: private to the crawlers (crawl.c and crawl_<platform>.c). What every platform
 * needs, so that each one only knows its own site: a run handle, fetches with the stored
 * conditional-GET state, run events that also keep the run's counts, document upserts that
 * count their outcome, and URL helpers.
 *
 * A platform function crawl_<platform>_run(run) walks its source and, for every URL it touches,
 * leaves exactly one event (FETCHED, NOT_MODIFIED, SKIPPED or FAILED with a reason) through the
 * helpers below. It returns TW_OK when it got to the end (failed items are in the counts), an
 * error only when the run could not go on (database error, out of memory: message set); then
 * crawl_source marks the run "failed" with that message.
 *
 * Counting rule (wh_run_counts): fetched += 1 per FETCHED event (a body received); skipped /
 * failed += 1 per SKIPPED / FAILED event; unchanged += 1 per NOT_MODIFIED event (a 304, a known
 * GUID, a body whose hash did not change) and per document upsert that changed nothing;
 * new_docs / changed per upsert outcome. crawl_event and crawl_doc_store keep these counts, so
 * platform code never touches run->counts itself.
 *
 * Crash safety: crawl_fetch never stores state. A platform stores a URL's state
 * (crawl_state_save) only after everything it got from that body is in the warehouse, so a
 * process killed half-way through a feed does not leave the feed marked "seen" with items
 * missing: the next run gets a 200 again and completes it (items done before the kill are
 * found as seen GUIDs / unchanged documents).
 *
 * Thread safety: a crawl_run belongs to the thread running crawl_source.
 */
#ifndef TWIN_CRAWL_IMPL_H
#define TWIN_CRAWL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "crawl.h"
#include "http.h"
#include "warehouse.h"

/* One run of one source, made by crawl_source and handed to the platform function. */
typedef struct {
    crawl_ctx *ctx;          /* the caller's context: db, http client, limits */
    const wh_source *src;    /* the source being crawled (id, author, platform, url) */
    int64_t run_id;          /* the crawl_runs row of this run */
    wh_run_counts counts;    /* kept by crawl_event / crawl_doc_store */
    int64_t docs;            /* documents stored by this run (for ctx->max_items) */
} crawl_run;

/* The platforms. Each is in crawl_<platform>.c and has this signature. */
tw_status crawl_medium_run(crawl_run *run);
tw_status crawl_substack_run(crawl_run *run);
tw_status crawl_article_run(crawl_run *run);
tw_status crawl_github_run(crawl_run *run);
tw_status crawl_linkedin_run(crawl_run *run);
tw_status crawl_local_run(crawl_run *run);

/* 1 when the run should stop taking new items: ctx->max_items documents stored already.
 * Platforms check it before each item. */
int crawl_should_stop(const crawl_run *run);

/* Records one event of the run and counts it (see the counting rule above). reason is a
 * printf format (may be NULL for FETCHED / NOT_MODIFIED); SKIPPED / FAILED must give one, short
 * and starting with the cause class so `twin crawl` can group them: "HTTP 404",
 * "timeout", "paywalled (audience only_paid)", "HTTP 404; fell back to the feed's content".
 * The text before the first "; " is the group. Returns a database error only. */
tw_status crawl_event(crawl_run *run, const char *url, wh_event_kind kind, int http_status,
                      const char *reason_fmt, ...) TW_PRINTF(5, 6);

/* The short reason of a failed http_response for an event: "HTTP 404", "timeout: <text>",
 * "robots.txt disallows", "too large: <text>", "redirects: <text>", "transport: <text>".
 * Writes at most cap bytes (NUL included) into buf and returns buf. */
const char *crawl_http_reason(const http_response *r, char *buf, size_t cap);

/* Flags of crawl_fetch. */
enum {
    CRAWL_COND = 1,          /* send the stored ETag / Last-Modified of this URL, and treat a
                                200 whose body hash equals the stored one as unchanged */
    CRAWL_QUIET_FAIL = 2,    /* on failure record no event: the caller records its own (e.g.
                                with a fallback in the reason) */
    CRAWL_API = 4            /* an API called under its own terms: robots.txt is not consulted
                                (http_request.no_robots; api.github.com disallows all crawling
                                in robots.txt, its REST API is for programs) */
};

/* What crawl_fetch found. */
typedef enum {
    CRAWL_GOT_BODY = 0,      /* 2xx with a new body: a FETCHED event was recorded */
    CRAWL_UNCHANGED,         /* 304, or (CRAWL_COND) the same body hash as stored: a
                                NOT_MODIFIED event was recorded */
    CRAWL_FAILED             /* no usable answer: a FAILED event with crawl_http_reason was
                                recorded (unless CRAWL_QUIET_FAIL); see resp->result/status */
} crawl_fetch_result;

/* GETs url (accept and headers as in http_request, may be NULL) into *resp (always filled:
 * the caller frees it with http_response_clear, whatever the outcome) and sets *res. Never
 * stores fetch state (see crawl_state_save). Returns TW_OK whenever the request ran to an
 * outcome; an error only for twin's own failures (no memory, database error). */
tw_status crawl_fetch(crawl_run *run, const char *url, const char *accept,
                      const char *const *headers, int flags, http_response *resp,
                      crawl_fetch_result *res);

/* Stores url's conditional-GET state from a CRAWL_GOT_BODY response: its ETag, Last-Modified
 * and the sha256 of its body. Call it once the body's content is safely in the warehouse. */
tw_status crawl_state_save(crawl_run *run, const char *url, const http_response *resp);

/* Stores a document of the run's source (d->source_id is set from the run; the other fields
 * as wh_doc_in says), counts its outcome, bumps run->docs and calls ctx->progress. *outcome
 * may be NULL. Returns the warehouse's error when it could not store it. */
tw_status crawl_doc_store(crawl_run *run, wh_doc_in *d, wh_doc_outcome *outcome);

/* Calls ctx->progress (when set) with the counts so far. crawl_doc_store does it; platforms
 * call it after items that store no document (skipped, failed) to keep the line moving. */
void crawl_progress(const crawl_run *run);

/* Walks the RSS/Atom feed at feed_url (crawl_feed.c), shared by medium and substack's fallback:
 * the feed is fetched conditionally (a 304 or an unchanged body ends the walk at once, nothing
 * parsed); items seen before (same GUID, and same atom:updated, title and content: an edited
 * item counts as new) are NOT_MODIFIED events; for a new item, fetch_pages 1
 * fetches the item's link as the document ("html"), falling back to the item's own content
 * ("html_fragment") with the page's failure and the fallback in the FAILED event's reason;
 * fetch_pages 0 stores the item's content directly. Document URLs are the item links made
 * canonical (crawl_url_canonical). The feed's state is saved only when every item was stored,
 * so an interrupted or partly failed walk is redone by the next run. */
tw_status crawl_feed_walk(crawl_run *run, const char *feed_url, int fetch_pages);

/* The feed URL of a Medium profile (crawl.h): https://medium.com/@u -> https://medium.com/feed/@u,
 * https://u.medium.com -> https://u.medium.com/feed, any other host <base>/feed. Heap string
 * (tw_free), NULL on no memory. */
char *crawl_medium_feed_url(const char *profile);

/* Appends "key":"value" (JSON-escaped, with a ',' before it unless it is the first member,
 * i.e. sb ends with '{') to a JSON object being built in sb. Skips NULL values. */
void crawl_json_member(tw_sb *sb, const char *key, const char *value);

/* ---- URL helpers (heap strings, tw_free; NULL only on no memory) ------------------------- */

/* rel resolved against base (RFC 3986 for the common forms: absolute "http(s)://", "//host",
 * "/path", "?query", "#frag", and relative paths with "./" and "../"). */
char *crawl_url_join(const char *base, const char *rel);

/* url without its fragment and without tracking query parameters (source, utm_*, ref, fbclid,
 * gclid, mc_cid, mc_eid, sk); other parameters are kept in order; a query left empty is
 * removed. */
char *crawl_url_canonical(const char *url);

/* base without trailing '/' characters (but "http://h/" keeps nothing more than "http://h"). */
char *crawl_url_trim(const char *base);

#endif
