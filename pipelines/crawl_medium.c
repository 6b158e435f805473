/* crawl_medium.c: a Medium profile through its RSS feed, then each new post's page. */
#include "crawl_impl.h"

tw_status crawl_medium_run(crawl_run *run) {
    char *feed_url = crawl_medium_feed_url(run->src->url);
    if (!feed_url) return tw_errcode();
    tw_status st = crawl_feed_walk(run, feed_url, 1);
    tw_free(feed_url);
    return st;
}
