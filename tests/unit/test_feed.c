/* test_feed.c: the feed scanner (feed.h) on RSS 2.0, Atom and RSS 1.0 written here by hand,
 * its refusals with the byte offset, entity/CDATA/UTF-8 handling, field priorities, dates, an
 * allocation failure at every step; and the crawlers' URL helpers (crawl_impl.h). */
#include <string.h>

#include "pipelines/crawl_impl.h"
#include "pipelines/feed.h"
#include "test.h"

static const char RSS[] =
    "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!-- a comment before the root -->\n"
    "<rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"\n"
    "     xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n"
    "<channel>\n"
    "  <title>Notes &amp; Sketches</title>\n"
    "  <link>https://example.test/@ada</link>\n"
    "  <atom:link href=\"https://example.test/feed/@ada\" rel=\"self\" type=\"application/rss+xml\"/>\n"
    "  <item>\n"
    "    <title><![CDATA[Tides, <em>briefly</em>]]></title>\n"
    "    <link>https://example.test/@ada/tides-1a2b?source=rss----1</link>\n"
    "    <guid isPermaLink=\"false\">https://example.test/p/1a2b</guid>\n"
    "    <dc:creator>Ada</dc:creator>\n"
    "    <description>short teaser</description>\n"
    "    <pubDate>Tue, 05 Mar 2024 09:30:00 +0100</pubDate>\n"
    "    <atom:updated>2024-03-06T10:00:00.000Z</atom:updated>\n"
    "    <content:encoded><![CDATA[<p>The sea &amp; the moon: 5 < 6.</p>]]></content:encoded>\n"
    "  </item>\n"
    "  <item>\n"
    "    <title>Caf&#xE9; &#233; &lt;b&gt; &nbsp; &unknown AT&amp;T &#0; &#xD800;</title>\n"
    "    <link>https://example.test/@ada/cafe</link>\n"
    "    <description>&lt;p&gt;escaped &amp;amp; html&lt;/p&gt;</description>\n"
    "    <pubDate>Wed, 6 Mar 24 23:15 EST</pubDate>\n"
    "  </item>\n"
    "</channel>\n"
    "</rss>\n";

static void test_rss(void) {
    feed f;
    CHECK_EQ_INT(feed_parse(RSS, sizeof RSS - 1, &f), TW_OK);
    CHECK_EQ_INT(f.kind, FEED_RSS);
    CHECK_EQ_STR(f.title, "Notes & Sketches");
    CHECK_EQ_STR(f.link, "https://example.test/@ada");
    CHECK_EQ_INT(f.n_items, 2);
    if (f.n_items != 2) return feed_free(&f);
    const feed_item *a = &f.items[0], *b = &f.items[1];
    CHECK_EQ_STR(a->title, "Tides, <em>briefly</em>");
    CHECK_EQ_STR(a->guid, "https://example.test/p/1a2b");
    CHECK_EQ_STR(a->link, "https://example.test/@ada/tides-1a2b?source=rss----1");
    CHECK_EQ_STR(a->published, "Tue, 05 Mar 2024 09:30:00 +0100");
    CHECK_EQ_STR(a->updated, "2024-03-06T10:00:00.000Z");
    CHECK_EQ_STR(b->updated, "");
    /* content:encoded wins over description; CDATA is verbatim (no entity decoding) */
    CHECK_EQ_STR(a->content, "<p>The sea &amp; the moon: 5 < 6.</p>");
    CHECK_EQ_INT(a->content_len, strlen(a->content));
    /* no guid: the link stands in; numeric references decoded, invalid ones U+FFFD, unknown
     * names kept for the HTML parser, a bare '&' kept */
    CHECK_EQ_STR(b->guid, "https://example.test/@ada/cafe");
    CHECK_EQ_STR(b->title, "Caf\xC3\xA9 \xC3\xA9 <b> &nbsp; &unknown AT&T \xEF\xBF\xBD \xEF\xBF\xBD");
    CHECK_EQ_STR(b->content, "<p>escaped &amp; html</p>");
    feed_free(&f);
    feed_free(&f); /* twice is harmless */
    feed_free(NULL);
}

static const char ATOM[] =
    "<?xml version=\"1.0\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n"
    "  <title type=\"text\">A log</title>\n"
    "  <link rel=\"self\" href=\"https://log.test/atom.xml\"/>\n"
    "  <link href=\"https://log.test/\"/>\n"
    "  <entry>\n"
    "    <id>tag:log.test,2024:1</id>\n"
    "    <title>First</title>\n"
    "    <link rel=\"alternate\" type=\"text/html\" href=\"https://log.test/1?a=1&amp;b=2\"/>\n"
    "    <link rel=\"replies\" href=\"https://log.test/1#comments\"/>\n"
    "    <updated>2024-05-02T08:00:00Z</updated>\n"
    "    <published>2024-05-01T10:00:00+02:00</published>\n"
    "    <summary>sum</summary>\n"
    "    <content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hi &amp; <b>bye</b></p></div></content>\n"
    "  </entry>\n"
    "  <entry>\n"
    "    <id>tag:log.test,2024:2</id>\n"
    "    <title type=\"html\">&lt;i&gt;Second&lt;/i&gt;</title>\n"
    "    <link href=\"/2\"/>\n"
    "    <updated>2024-06-01</updated>\n"
    "    <content type=\"html\">&lt;p&gt;two&lt;/p&gt;</content>\n"
    "    <summary>loses to content even after it</summary>\n"
    "  </entry>\n"
    "  <entry/>\n"
    "</feed>";

static void test_atom(void) {
    feed f;
    CHECK_EQ_INT(feed_parse(ATOM, sizeof ATOM - 1, &f), TW_OK);
    CHECK_EQ_INT(f.kind, FEED_ATOM);
    CHECK_EQ_STR(f.title, "A log");
    CHECK_EQ_STR(f.link, "https://log.test/");
    CHECK_EQ_INT(f.n_items, 3);
    if (f.n_items != 3) return feed_free(&f);
    CHECK_EQ_STR(f.items[0].guid, "tag:log.test,2024:1");
    CHECK_EQ_STR(f.items[0].link, "https://log.test/1?a=1&b=2");
    CHECK_EQ_STR(f.items[0].published, "2024-05-01T10:00:00+02:00"); /* published beats updated */
    CHECK_EQ_STR(f.items[0].updated, "2024-05-02T08:00:00Z");
    CHECK_EQ_STR(f.items[0].content,
                 "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hi &amp; <b>bye</b></p></div>");
    CHECK_EQ_STR(f.items[1].title, "<i>Second</i>");
    CHECK_EQ_STR(f.items[1].link, "/2");
    CHECK_EQ_STR(f.items[1].published, "2024-06-01"); /* no published: updated stands in */
    CHECK_EQ_STR(f.items[1].updated, "2024-06-01");
    CHECK_EQ_STR(f.items[1].content, "<p>two</p>");
    CHECK_EQ_STR(f.items[2].guid, ""); /* an empty entry: every field "" */
    CHECK_EQ_STR(f.items[2].content, "");
    feed_free(&f);
}

static void test_rdf_and_utf8(void) {
    static const char RDF[] =
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xmlns=\"http://purl.org/rss/1.0/\">"
        "<channel><title>R</title></channel>"
        "<item rdf:about=\"https://r.test/a\"><title>bad \xFF\xC3 byte\x01</title>"
        "<link>https://r.test/a</link><dc:date>2024-01-02T03:04:05Z</dc:date></item>"
        "</rdf:RDF>";
    feed f;
    CHECK_EQ_INT(feed_parse(RDF, sizeof RDF - 1, &f), TW_OK);
    CHECK_EQ_INT(f.kind, FEED_RDF);
    CHECK_EQ_INT(f.n_items, 1);
    if (f.n_items == 1) {
        CHECK_EQ_STR(f.items[0].title, "bad \xEF\xBF\xBD\xEF\xBF\xBD byte\xEF\xBF\xBD");
        CHECK_EQ_STR(f.items[0].published, "2024-01-02T03:04:05Z");
        CHECK(tw_utf8_valid(f.items[0].title, strlen(f.items[0].title)));
    }
    feed_free(&f);
}

/* A malformed input is refused with TW_ERR_FORMAT and a message holding `want`. */
static void refused(const char *xml, size_t len, const char *want) {
    feed f;
    tw_status st = feed_parse(xml, len, &f);
    if (st != TW_ERR_FORMAT || !strstr(tw_errmsg(), want)) {
        fprintf(stderr, "  input %.60s: status %d, message '%s', wanted '%s'\n", xml, (int)st,
                tw_errmsg(), want);
        test_failures++;
    }
    CHECK(f.items == NULL && f.arena == NULL && f.n_items == 0);
}

static void test_refusals(void) {
    const struct {
        const char *xml, *want;
    } cases[] = {
        {"<rss><channel><item><title>x</item></channel></rss>", "byte 28: </item> closes <title>"},
        {"<rss><channel><item><![CDATA[x</item></channel></rss>", "unterminated CDATA"},
        {"<!DOCTYPE rss [<!ENTITY x \"boom\">]><rss></rss>", "internal subset"},
        {"<rss></rss><rss></rss>", "after the root"},
        {"<rss></rss>junk", "text after the root"},
        {"junk<rss></rss>", "text before the root"},
        {"<html><body>not a feed</body></html>", "root element is not rss"},
        {"<rss><channel>", "end of input inside <channel>"},
        {"<rss a=b></rss>", "not quoted"},
        {"<rss a=\"b></rss>", "unterminated attribute"},
        {"<rss><!-- x </rss>", "unterminated comment"},
        {"<rss><? x </rss>", "unterminated processing"},
        {"<rss></channel>", "</channel> closes <rss>"},
        {"</rss>", "end tag without a start tag"},
        {"<rss><1x/></rss>", "bad tag name"},
        {"<rss><!ELEMENT x></rss>", "unknown markup"},
        {"", "no root element"},
        {"   \n ", "no root element"},
        {"<rss", "unterminated start tag"},
        {"<rss/ >", "'/' inside a start tag"},
        {"<rss a=\"1\"b=\"2\"/>", "without space"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        refused(cases[i].xml, strlen(cases[i].xml), cases[i].want);
    static const char nul[] = "<rss>\0</rss>";
    refused(nul, sizeof nul - 1, "byte 5: NUL byte");
    /* nesting: FEED_MAX_DEPTH open elements are fine, one more is refused */
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_puts(&sb, "<rss>");
    for (int i = 1; i < FEED_MAX_DEPTH; i++) tw_sb_puts(&sb, "<a>");
    for (int i = 1; i < FEED_MAX_DEPTH; i++) tw_sb_puts(&sb, "</a>");
    tw_sb_puts(&sb, "</rss>");
    feed f;
    CHECK_EQ_INT(feed_parse(sb.buf, sb.len, &f), TW_OK);
    feed_free(&f);
    tw_sb_clear(&sb);
    tw_sb_puts(&sb, "<rss>");
    for (int i = 0; i < FEED_MAX_DEPTH; i++) tw_sb_puts(&sb, "<a>");
    refused(sb.buf, sb.len, "deeper than FEED_MAX_DEPTH");
    tw_sb_free(&sb);
}

/* Every allocation of a parse fails once in turn: a clean error each time, no leak. */
static void test_alloc_failures(void) {
    tw_mem_stats before = tw_mem_get_stats();
    int failures = 0;
    for (uint64_t n = 1; n < 400; n++) {
        feed f;
        tw_mem_fail_after(n);
        tw_status st = feed_parse(RSS, sizeof RSS - 1, &f);
        tw_mem_fail_after(0);
        if (st == TW_OK) {
            CHECK_EQ_INT(f.n_items, 2);
            feed_free(&f);
            break;
        }
        CHECK_EQ_INT(st, TW_ERR_NOMEM);
        CHECK(f.arena == NULL);
        failures++;
    }
    CHECK(failures > 3);
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before.current_bytes);
}

static void date_is(const char *in, const char *want) {
    char out[32];
    int ok = feed_date_iso(in, out, sizeof out);
    if (want ? (!ok || strcmp(out, want) != 0) : (ok || out[0])) {
        fprintf(stderr, "  feed_date_iso(\"%s\") = %d \"%s\", wanted %s\n", in, ok, out,
                want ? want : "a refusal");
        test_failures++;
    }
}

static void test_dates(void) {
    date_is("Tue, 05 Mar 2024 09:30:00 +0100", "2024-03-05T08:30:00Z");
    date_is("Tue, 05 Mar 2024 09:30:00 GMT", "2024-03-05T09:30:00Z");
    date_is("  5 Mar 2024 23:30 -0130 ", "2024-03-06T01:00:00Z");
    date_is("Wed, 6 Mar 24 23:15 EST", "2024-03-07T04:15:00Z");
    date_is("Sun, 31 Dec 1999 23:59:60 PST", "2000-01-01T07:59:59Z");
    date_is("29 Feb 2024 00:00:00 UT", "2024-02-29T00:00:00Z");
    date_is("01 January 2024 12:00:00 Z", "2024-01-01T12:00:00Z");
    date_is("2024-03-05T09:00:00.000Z", "2024-03-05T09:00:00Z");
    date_is("2024-03-05T00:30:00+01:00", "2024-03-04T23:30:00Z");
    date_is("2024-03-05 10:00:00-0500", "2024-03-05T15:00:00Z");
    date_is("2024-03-05T10:00", "2024-03-05T10:00:00Z");
    date_is("2024-03-05", "2024-03-05");
    date_is("29 Feb 2023 00:00:00 GMT", NULL); /* not a leap year */
    date_is("2024-13-01", NULL);
    date_is("2024-02-30T00:00:00Z", NULL);
    date_is("Tue, 05 Foo 2024 09:30:00 GMT", NULL);
    date_is("05 Mar 2024 25:00:00 GMT", NULL);
    date_is("2024-03-05T09:00:00+2", NULL);
    date_is("yesterday", NULL);
    date_is("", NULL);
    date_is(NULL, NULL);
}

static void url_is(char *got, const char *want) {
    CHECK_EQ_STR(got, want);
    tw_free(got);
}

static void test_urls(void) {
    const char *b = "http://h.test:8080/a/b/c?q=1#f";
    url_is(crawl_url_join(b, "https://x.test/y"), "https://x.test/y");
    url_is(crawl_url_join(b, "//x.test/y"), "http://x.test/y");
    url_is(crawl_url_join(b, "/p/../q/./r"), "http://h.test:8080/q/r");
    url_is(crawl_url_join(b, "d"), "http://h.test:8080/a/b/d");
    url_is(crawl_url_join(b, "../d?x"), "http://h.test:8080/a/d?x");
    url_is(crawl_url_join(b, "../../../../d"), "http://h.test:8080/d");
    url_is(crawl_url_join(b, "?z=2"), "http://h.test:8080/a/b/c?z=2");
    url_is(crawl_url_join(b, "#g"), "http://h.test:8080/a/b/c?q=1#g");
    url_is(crawl_url_join(b, ""), "http://h.test:8080/a/b/c?q=1");
    url_is(crawl_url_join("http://h.test", "x/"), "http://h.test/x/");
    url_is(crawl_url_canonical("https://m.test/@a/post-1?source=rss----2&x=1&utm_medium=f#top"),
           "https://m.test/@a/post-1?x=1");
    url_is(crawl_url_canonical("https://m.test/p?source=rss&utm_x=1"), "https://m.test/p");
    url_is(crawl_url_canonical("https://m.test/p?a&sources=1&ref=z"), "https://m.test/p?a&sources=1");
    url_is(crawl_url_canonical("https://m.test/p"), "https://m.test/p");
    url_is(crawl_url_trim("https://s.test///"), "https://s.test");
    url_is(crawl_url_trim("https://s.test/x/"), "https://s.test/x");
    url_is(crawl_medium_feed_url("https://medium.com/@ada/"), "https://medium.com/feed/@ada");
    url_is(crawl_medium_feed_url("https://ada.medium.com"), "https://ada.medium.com/feed");
    url_is(crawl_medium_feed_url("http://127.0.0.1:9/medium/@ada"), "http://127.0.0.1:9/medium/@ada/feed");
}

int main(void) {
    RUN(test_rss);
    RUN(test_atom);
    RUN(test_rdf_and_utf8);
    RUN(test_refusals);
    RUN(test_alloc_failures);
    RUN(test_dates);
    RUN(test_urls);
    TEST_DONE();
}
