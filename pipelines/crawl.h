/* crawl.h: crawling one source into the warehouse, for every platform.
 *
 *   crawl_source(ctx, source, &counts)   one run: wh_run_begin .. events .. wh_run_finish
 *
 * Platforms (each in crawl_<platform>.c, sharing crawl_impl.h); every one takes its base URL
 * from the source, so tests point it at a local server:
 *   medium    <base> is a profile URL (https://medium.com/@name): its RSS feed
 *             (<base with /feed/ inserted: https://medium.com/feed/@name>, or <base>/feed for a
 *             custom domain) then each article page; main text from the article body.
 *   substack  <base> is the publication (https://name.substack.com): /api/v1/archive?sort=new&
 *             offset=N&limit=L pages, then /api/v1/posts/<slug> (body_html); /feed as fallback.
 *   github    <base> is https://github.com/<user> or https://github.com/<user>/<repo>; the REST
 *             API at $GITHUB_API_URL (default https://api.github.com): repositories, the
 *             recursive tree of the default branch, file contents; binaries, vendored folders,
 *             lock files and files over the size cap skipped; GITHUB_TOKEN when set; rate-limit
 *             headers honoured.
 *   linkedin  <base> is the member data export (a .zip or its unpacked folder): Shares.csv
 *             posts and Articles/<name>.html.
 *   article   <base> is one page URL; main content extracted at cleaning.
 *   local     <base> is a folder of .md, .markdown, .txt, .html, .htm files (recursive).
 * Incremental: conditional GETs with the stored ETag / Last-Modified, feed GUIDs and post ids
 * already seen are not fetched again, unchanged content writes no row (wh_document_upsert).
 *
 * Thread safety: one crawl at a time per ctx (its db and http client are single-threaded).
 */
#ifndef TWIN_CRAWL_H
#define TWIN_CRAWL_H

#include <stdint.h>

#include "core.h"
#include "http.h"
#include "warehouse.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    wh_db *db;
    http_client *http;
    const char *github_api;   /* NULL: $GITHUB_API_URL, else https://api.github.com */
    const char *github_token; /* NULL: $GITHUB_TOKEN, else none */
    size_t max_file_bytes;    /* GitHub / local files over this are skipped; 0: 1 MiB */
    int64_t max_items;        /* stop after this many documents per source; 0: no limit */
    /* Progress: called after each item with the counts so far (may be NULL). */
    void (*progress)(void *ctx, const wh_source *s, const wh_run_counts *c);
    void *progress_ctx;
} crawl_ctx;

/* Crawls source s once: takes its lock (wh_source_lock), records a run with an event for every
 * URL fetched, skipped or failed, upserts the documents, marks the source crawled and unlocks.
 * *counts (may be NULL) gets the run's counts. Returns TW_OK when the run finished (even with
 * failed items: see counts.failed and the run's events); an error when it could not run at all
 * (source locked by another live crawl, database error), with the run marked "failed". */
tw_status crawl_source(crawl_ctx *ctx, const wh_source *s, wh_run_counts *counts, int64_t *run_id);

#ifdef __cplusplus
}
#endif

#endif
