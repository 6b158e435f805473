/* crawl_feed.c: walking an RSS/Atom feed into documents (crawl_feed_walk, crawl_impl.h), for
 * Medium and for Substack's fallback. */
#include <stdio.h>
#include <string.h>

#include "crawl_impl.h"
#include "feed.h"

void crawl_json_member(tw_sb *sb, const char *key, const char *value) {
    if (!value) return;
    if (sb->len && sb->buf[sb->len - 1] != '{') tw_sb_putc(sb, ',');
    tw_sb_json_str(sb, key, strlen(key));
    tw_sb_putc(sb, ':');
    tw_sb_json_str(sb, value, strlen(value));
}

/* The key under which an item is remembered (wh_item_mark): its GUID and a hash of what an
 * edit changes (atom:updated, title, content), so an edited post is fetched again and becomes
 * a new version, while a post seen before as it is now costs nothing. */
static void item_key(const feed_item *it, char *out, size_t cap) {
    tw_sha256_ctx h;
    tw_sha256_init(&h);
    tw_sha256_update(&h, it->updated, strlen(it->updated) + 1);
    tw_sha256_update(&h, it->title, strlen(it->title) + 1);
    tw_sha256_update(&h, it->content, it->content_len);
    uint8_t d[32];
    char hex[65];
    tw_sha256_final(&h, d);
    tw_hex(d, 32, hex);
    snprintf(out, cap, "%s@%.16s", it->guid, hex);
}

/* One new item: its page (or its own content) into a document. *stored is 1 when a document
 * was stored (the GUID is then marked seen). */
static tw_status feed_item_store(crawl_run *run, const char *feed_url, const feed_item *it,
                                 const char *key, int fetch_pages, int *stored) {
    *stored = 0;
    char *joined = crawl_url_join(feed_url, it->link);
    char *url = joined ? crawl_url_canonical(joined) : NULL;
    tw_free(joined);
    if (!url) return tw_errcode();
    char date[32];
    const char *published = feed_date_iso(it->published, date, sizeof date) ? date
                            : it->published[0]                                ? it->published
                                                                              : NULL;
    tw_sb meta;
    tw_sb_init(&meta);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "guid", it->guid);
    crawl_json_member(&meta, "feed", feed_url);
    wh_doc_in d = {.url = url, .title = it->title[0] ? it->title : NULL, .published_at = published};
    http_response resp;
    memset(&resp, 0, sizeof resp);
    tw_status st = TW_OK;
    int have = 0;
    if (fetch_pages) {
        crawl_fetch_result res;
        st = crawl_fetch(run, url, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5", NULL,
                         CRAWL_QUIET_FAIL, &resp, &res);
        if (!st && res == CRAWL_GOT_BODY) {
            d.content_type = "html";
            d.content = resp.body;
            d.content_len = resp.body_len;
            have = 1;
        } else if (!st) {
            char why[320];
            crawl_http_reason(&resp, why, sizeof why);
            if (it->content_len)
                st = crawl_event(run, url, WH_EVENT_FAILED, resp.status,
                                 "%s; fell back to the feed's content", why);
            else
                st = crawl_event(run, url, WH_EVENT_FAILED, resp.status,
                                 "%s; the feed has no content for it", why);
            if (it->content_len) crawl_json_member(&meta, "from", "feed");
        }
    }
    if (!st && !have && it->content_len) {
        d.content_type = "html_fragment";
        d.content = it->content;
        d.content_len = it->content_len;
        have = 1;
    } else if (!st && !have && !fetch_pages) {
        st = crawl_event(run, url, WH_EVENT_SKIPPED, 0, "feed item without content");
    }
    tw_sb_putc(&meta, '}');
    if (!st && meta.failed) st = tw_error(TW_ERR_NOMEM, "crawl: out of memory");
    if (!st && have) {
        d.meta_json = tw_sb_str(&meta);
        st = crawl_doc_store(run, &d, NULL);
        if (!st) st = wh_item_mark(run->ctx->db, run->src->id, key);
        if (!st) *stored = 1;
    } else if (!st) {
        crawl_progress(run);
    }
    http_response_clear(&resp);
    tw_sb_free(&meta);
    tw_free(url);
    return st;
}

tw_status crawl_feed_walk(crawl_run *run, const char *feed_url, int fetch_pages) {
    http_response resp;
    crawl_fetch_result res;
    tw_status st = crawl_fetch(run, feed_url,
                               "application/rss+xml,application/atom+xml,application/xml;q=0.9,"
                               "*/*;q=0.5",
                               NULL, CRAWL_COND, &resp, &res);
    if (st || res != CRAWL_GOT_BODY) { /* failed (event recorded) or unchanged: nothing to do */
        http_response_clear(&resp);
        return st;
    }
    feed f;
    if (feed_parse(resp.body, resp.body_len, &f)) {
        st = tw_errcode() == TW_ERR_NOMEM
                 ? TW_ERR_NOMEM
                 : crawl_event(run, feed_url, WH_EVENT_FAILED, resp.status, "bad feed; %s",
                               tw_errmsg());
        http_response_clear(&resp);
        return st;
    }
    int complete = 1;
    for (size_t i = 0; i < f.n_items && !st; i++) {
        const feed_item *it = &f.items[i];
        if (crawl_should_stop(run)) {
            complete = 0;
            break;
        }
        if (!it->guid[0] || !it->link[0]) {
            st = crawl_event(run, it->link[0] ? it->link : feed_url, WH_EVENT_SKIPPED, 0,
                             "feed item %zu without a %s", i + 1, it->link[0] ? "GUID" : "link");
            crawl_progress(run);
            continue;
        }
        char *key = tw_malloc(strlen(it->guid) + 24);
        if (!key) {
            st = TW_ERR_NOMEM;
            break;
        }
        item_key(it, key, strlen(it->guid) + 24);
        int seen = wh_item_seen(run->ctx->db, run->src->id, key);
        if (seen < 0) {
            tw_free(key);
            st = tw_errcode();
            break;
        }
        if (seen) {
            tw_free(key);
            st = crawl_event(run, it->link, WH_EVENT_NOT_MODIFIED, 0, "known GUID");
            crawl_progress(run);
            continue;
        }
        int stored;
        st = feed_item_store(run, feed_url, it, key, fetch_pages, &stored);
        tw_free(key);
        if (!stored) complete = 0;
    }
    if (!st && complete) st = crawl_state_save(run, feed_url, &resp);
    feed_free(&f);
    http_response_clear(&resp);
    return st;
}
