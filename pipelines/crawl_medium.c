/* crawl_medium.c: a Medium profile through its RSS feed, then each new post's page. */
#include <string.h>
#include <strings.h>

#include "crawl_impl.h"

/* See crawl_impl.h. */
char *crawl_medium_feed_url(const char *profile) {
    char *base = crawl_url_trim(profile);
    if (!base) return NULL;
    const char *hs = strstr(base, "://");
    const char *host = hs ? hs + 3 : base;
    size_t hl = strcspn(host, "/?#");
    tw_sb sb;
    tw_sb_init(&sb);
    int medium = (hl == 10 && !strncasecmp(host, "medium.com", 10)) ||
                 (hl == 14 && !strncasecmp(host, "www.medium.com", 14));
    if (medium && host[hl] == '/' && host[hl + 1] == '@') {
        tw_sb_append(&sb, base, (size_t)(host + hl - base));
        tw_sb_puts(&sb, "/feed");
        tw_sb_puts(&sb, host + hl);
    } else {
        tw_sb_puts(&sb, base);
        tw_sb_puts(&sb, "/feed");
    }
    tw_free(base);
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "crawl: out of memory");
        return NULL;
    }
    return tw_sb_take(&sb);
}

tw_status crawl_medium_run(crawl_run *run) {
    char *feed_url = crawl_medium_feed_url(run->src->url);
    if (!feed_url) return tw_errcode();
    tw_status st = crawl_feed_walk(run, feed_url, 1);
    tw_free(feed_url);
    return st;
}
