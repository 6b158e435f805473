/* crawl_article.c: one web page as one document; the page's own metadata (html.h) gives its
 * title and date, and cleaning extracts its main content later. */
#include <string.h>

#include "crawl_impl.h"
#include "feed.h"
#include "html.h"

tw_status crawl_article_run(crawl_run *run) {
    char *url = crawl_url_canonical(run->src->url);
    if (!url) return tw_errcode();
    http_response resp;
    crawl_fetch_result res;
    html_doc hd;
    memset(&hd, 0, sizeof hd);
    tw_status st = crawl_fetch(run, run->src->url, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                               NULL, CRAWL_COND, &resp, &res);
    if (st || res != CRAWL_GOT_BODY) goto out; /* failed (event recorded) or unchanged */
    st = html_extract(resp.body, resp.body_len, HTML_MAIN, &hd);
    if (st == TW_ERR_FORMAT) { /* not text at all: recorded, not stored */
        st = crawl_event(run, url, WH_EVENT_SKIPPED, resp.status, "not a text page; %s", tw_errmsg());
        crawl_progress(run);
        goto out;
    }
    if (st) goto out;
    char date[32];
    const char *published = feed_date_iso(hd.published_at, date, sizeof date) ? date
                            : hd.published_at[0]                               ? hd.published_at
                                                                               : NULL;
    tw_sb meta;
    tw_sb_init(&meta);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "author", hd.author[0] ? hd.author : NULL);
    crawl_json_member(&meta, "canonical_url", hd.canonical_url[0] ? hd.canonical_url : NULL);
    crawl_json_member(&meta, "lang", hd.lang[0] ? hd.lang : NULL);
    tw_sb_putc(&meta, '}');
    if (meta.failed) {
        tw_sb_free(&meta);
        st = tw_error(TW_ERR_NOMEM, "crawl: out of memory");
        goto out;
    }
    /* the document keeps the URL the source names: a page's canonical link may point at
     * another host (a mirror's original), and the source's URL is what the user added */
    wh_doc_in d = {.url = url, .title = hd.title[0] ? hd.title : NULL, .published_at = published,
                   .content_type = "html", .meta_json = tw_sb_str(&meta), .content = resp.body,
                   .content_len = resp.body_len};
    st = crawl_doc_store(run, &d, NULL);
    if (!st) st = crawl_state_save(run, run->src->url, &resp);
    tw_sb_free(&meta);
out:
    html_doc_clear(&hd);
    http_response_clear(&resp);
    tw_free(url);
    return st;
}
