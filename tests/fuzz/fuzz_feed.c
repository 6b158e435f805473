/* fuzz_feed.c: feed_parse on arbitrary bytes (an RSS / Atom body as a server sent it), and
 * feed_date_iso on each item's date. A feed that parses must keep feed.h's promises (every
 * string valid UTF-8 and NUL-terminated, content_len its length, a GUID whenever there is a
 * link); one that does not must leave a one-line message naming the byte offset. */
#include "pipelines/feed.h"

#include <stdint.h>
#include <string.h>

static void check_str(const char *s) {
    TW_ASSERT(s != NULL);
    TW_ASSERT(tw_utf8_valid(s, strlen(s)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    feed f;
    tw_status rc = feed_parse((const char *)data, size, &f);
    if (rc != TW_OK) {
        const char *msg = tw_errmsg();
        TW_ASSERT(tw_errcode() == rc);
        TW_ASSERT(rc == TW_ERR_FORMAT || rc == TW_ERR_NOMEM);
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(rc == TW_ERR_NOMEM || strncmp(msg, "feed: byte ", 11) == 0);
        TW_ASSERT(f.arena == NULL && f.items == NULL && f.n_items == 0);
        return 0;
    }
    TW_ASSERT(f.kind == FEED_RSS || f.kind == FEED_ATOM || f.kind == FEED_RDF);
    TW_ASSERT(f.n_items <= FEED_MAX_ITEMS);
    check_str(f.title);
    check_str(f.link);
    for (size_t i = 0; i < f.n_items; i++) {
        const feed_item *it = &f.items[i];
        check_str(it->guid);
        check_str(it->link);
        check_str(it->title);
        check_str(it->published);
        check_str(it->updated);
        check_str(it->content);
        TW_ASSERT(strlen(it->content) == it->content_len);
        TW_ASSERT(!it->link[0] || it->guid[0]);
        char date[32];
        if (feed_date_iso(it->published, date, sizeof date)) {
            size_t n = strlen(date);
            TW_ASSERT(n == 10 || n == 20);
            TW_ASSERT(date[4] == '-' && date[7] == '-');
        } else {
            TW_ASSERT(date[0] == 0);
        }
    }
    feed_free(&f);
    return 0;
}
