/* test_robots.c: robots.txt parsing and matching against RFC 9309's own examples (sections
 * 2.2.2, 2.2.3, 5.1, 5.2) and the edges robots.h promises (group choice and merging, limits,
 * Crawl-delay, line endings, BOM). */
#include "pipelines/robots.h"
#include "test.h"

/* Parses txt for product and returns whether path is allowed (-2 when parsing failed). */
static int allowed(const char *txt, const char *product, const char *path) {
    robots_rules *r = NULL;
    if (robots_parse(txt, strlen(txt), product, &r) != TW_OK) return -2;
    int a = robots_allowed(r, path);
    robots_free(r);
    return a;
}

/* RFC 9309 5.1 "Simple Example". */
static const char *rfc_simple = "User-Agent: *\n"
                                "Disallow: *.gif$\n"
                                "Disallow: /example/\n"
                                "Allow: /publications/\n"
                                "\n"
                                "User-Agent: foobot\n"
                                "Disallow:/\n"
                                "Allow:/example/page.html\n"
                                "Allow:/example/allowed.gif\n"
                                "\n"
                                "User-Agent: barbot\n"
                                "User-Agent: bazbot\n"
                                "Disallow: /example/page.html\n"
                                "\n"
                                "User-Agent: quxbot\n"
                                "\n"
                                "EOF\n";

static void test_rfc_simple_example(void) {
    /* foobot: only the two allowed paths */
    CHECK_EQ_INT(allowed(rfc_simple, "foobot", "/example/page.html"), 1);
    CHECK_EQ_INT(allowed(rfc_simple, "foobot", "/example/allowed.gif"), 1);
    CHECK_EQ_INT(allowed(rfc_simple, "foobot", "/example/other.html"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "foobot", "/"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "FooBot", "/publications/x"), 0); /* tokens are case-blind */
    /* barbot and bazbot share a group */
    CHECK_EQ_INT(allowed(rfc_simple, "barbot", "/example/page.html"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "bazbot", "/example/page.html"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "bazbot", "/example/other.html"), 1);
    CHECK_EQ_INT(allowed(rfc_simple, "barbot", "/x.gif"), 1);
    /* quxbot has a group with no rules: everything is allowed */
    CHECK_EQ_INT(allowed(rfc_simple, "quxbot", "/example/page.gif"), 1);
    /* twin is not named: the "*" group */
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/example/page.html"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/publications/a.html"), 1);
    /* "/publications/" (14 octets) is more specific than "*.gif$" (6) */
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/publications/a.gif"), 1);
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/a.gif"), 0);
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/a.gif?x=1"), 1); /* $ anchors the end */
    CHECK_EQ_INT(allowed(rfc_simple, "twin", "/other"), 1);
}

/* RFC 9309 5.2 "Longest Match". */
static void test_rfc_longest_match(void) {
    const char *t = "User-Agent: foobot\n"
                    "Allow: /example/page/\n"
                    "Disallow: /example/page/disallowed.gif\n";
    CHECK_EQ_INT(allowed(t, "foobot", "/example/page/"), 1);
    CHECK_EQ_INT(allowed(t, "foobot", "/example/page/a.html"), 1);
    CHECK_EQ_INT(allowed(t, "foobot", "/example/page/disallowed.gif"), 0);
    /* equal lengths: allow wins (2.2.2), whatever the order */
    const char *tie1 = "user-agent: twin\nallow: /folder\ndisallow: /folder\n";
    const char *tie2 = "user-agent: twin\ndisallow: /folder\nallow: /folder\n";
    CHECK_EQ_INT(allowed(tie1, "twin", "/folder/page"), 1);
    CHECK_EQ_INT(allowed(tie2, "twin", "/folder/page"), 1);
    /* the more specific disallow beats a shorter allow; the wildcard counts in the length */
    const char *w = "user-agent: *\nallow: /p\ndisallow: /*.php\n";
    CHECK_EQ_INT(allowed(w, "twin", "/page.php"), 0);
    CHECK_EQ_INT(allowed(w, "twin", "/page.html"), 1);
}

/* RFC 9309 2.2.2: the percent-encoding table. */
static void test_rfc_percent_encoding(void) {
    struct {
        const char *rule, *path;
    } same[] = {
        {"/foo/bar?baz=quz", "/foo/bar?baz=quz"},
        {"/foo/bar?baz=https://foo.bar", "/foo/bar?baz=https%3A%2F%2Ffoo.bar"},
        {"/foo/bar/\xE3\x83\x84", "/foo/bar/%E3%83%84"},
        {"/foo/bar/%E3%83%84", "/foo/bar/%E3%83%84"},
        {"/foo/bar/%e3%83%84", "/foo/bar/\xE3\x83\x84"}, /* hex case does not matter */
        {"/foo/bar/%62%61%7A", "/foo/bar/baz"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char txt[256];
        snprintf(txt, sizeof txt, "User-agent: *\nDisallow: %s$\n", same[i].rule);
        if (allowed(txt, "twin", same[i].path) != 0)
            fprintf(stderr, "  rule %s should match path %s\n", same[i].rule, same[i].path);
        CHECK_EQ_INT(allowed(txt, "twin", same[i].path), 0);
    }
    CHECK_EQ_INT(allowed("User-agent: *\nDisallow: /foo/bar/%E3%83%84\n", "twin", "/foo/bar/%E3%83%85"), 1);
}

/* RFC 9309 2.2.3: special characters. */
static void test_rfc_special_characters(void) {
    const char *t = "User-agent: *\n"
                    "Disallow: / # comment in line\n"
                    "Allow: /this/path/exactly$\n"
                    "Allow: /this/*/exactly\n"
                    "Allow: /path/file-with-a-%2A.html\n"
                    "Allow: /path/foo-%24\n";
    CHECK_EQ_INT(allowed(t, "twin", "/"), 0);
    CHECK_EQ_INT(allowed(t, "twin", "/this/path/exactly"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/this/path/exact"), 0);
    CHECK_EQ_INT(allowed(t, "twin", "/thispath/exactly"), 0);
    CHECK_EQ_INT(allowed(t, "twin", "/this/is/exactly"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/this/a/b/c/exactly/and/more"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/this/exactly"), 0); /* '*' needs the two slashes around it */
    CHECK_EQ_INT(allowed(t, "twin", "/path/file-with-a-*.html"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/path/file-with-a-%2a.html"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/path/file-with-a-x.html"), 0); /* %2A is no wildcard */
    CHECK_EQ_INT(allowed(t, "twin", "/path/foo-$"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/path/foo-"), 0); /* %24 is no anchor */
    CHECK_EQ_INT(allowed(t, "twin", "/robots.txt"), 1);  /* always allowed */
}

/* Which group applies: ours over "*", merged groups, none at all. */
static void test_groups(void) {
    const char *t = "user-agent: *\ndisallow: /\n\n"
                    "User-agent: Twin/1.0\ndisallow: /a\n\n"
                    "user-agent: other\ndisallow: /b\n\n"
                    "user-agent: TWIN\ndisallow: /c\n";
    CHECK_EQ_INT(allowed(t, "twin", "/x"), 1); /* our group, not the "*" one */
    CHECK_EQ_INT(allowed(t, "twin", "/a/1"), 0);
    CHECK_EQ_INT(allowed(t, "twin", "/b/1"), 1);
    CHECK_EQ_INT(allowed(t, "twin", "/c/1"), 0); /* the two twin groups are merged */
    CHECK_EQ_INT(allowed(t, "twinkle", "/x"), 0); /* a longer token is another agent */
    CHECK_EQ_INT(allowed(t, "twi", "/x"), 0);
    /* no group for us and no "*": everything is allowed */
    CHECK_EQ_INT(allowed("user-agent: other\ndisallow: /\n", "twin", "/x"), 1);
    /* rules before any user-agent line belong to no group */
    CHECK_EQ_INT(allowed("disallow: /\nuser-agent: *\ndisallow: /z\n", "twin", "/x"), 1);
    /* a user-agent after rules opens a new group; sitemap lines do not end a run of agents */
    const char *g = "user-agent: a\nsitemap: http://x/s.xml\nuser-agent: twin\ndisallow: /d\n"
                    "user-agent: b\nallow: /\n";
    CHECK_EQ_INT(allowed(g, "twin", "/d"), 0);
    CHECK_EQ_INT(allowed(g, "a", "/d"), 0);
    CHECK_EQ_INT(allowed(g, "b", "/d"), 1);
    /* empty disallow matches nothing */
    CHECK_EQ_INT(allowed("user-agent: *\ndisallow:\n", "twin", "/x"), 1);
    /* keys are case-blind, whitespace around the colon is fine, CR and CRLF end lines, a BOM */
    CHECK_EQ_INT(allowed("\xEF\xBB\xBFUSER-AGENT : *\r\nDISALLOW :  /q  \r\n", "twin", "/q1"), 0);
    CHECK_EQ_INT(allowed("user-agent: *\rdisallow: /q\r", "twin", "/q1"), 0);
    /* lines without a colon and unknown keys are skipped */
    CHECK_EQ_INT(allowed("user-agent *\nfoo: bar\nuser-agent: *\ndisallow /x\ndisallow: /y\n", "twin", "/x"), 1);
    CHECK_EQ_INT(allowed("user-agent *\nfoo: bar\nuser-agent: *\ndisallow /x\ndisallow: /y\n", "twin", "/y"), 0);
    /* the empty path is "/" */
    CHECK_EQ_INT(allowed("user-agent: *\ndisallow: /$\n", "twin", ""), 0);
}

static void test_crawl_delay_and_counts(void) {
    robots_rules *r = NULL;
    const char *t = "user-agent: *\ncrawl-delay: 7\ndisallow: /x\n\nuser-agent: twin\n"
                    "crawl-delay: abc\ncrawl-delay: 2.5\ncrawl-delay: 9\ndisallow: /y\nallow: /y/z\n";
    CHECK(robots_parse(t, strlen(t), "twin", &r) == TW_OK);
    CHECK_NEAR(robots_crawl_delay(r), 2.5, 0); /* the first valid value of our group */
    CHECK_EQ_INT(robots_rule_count(r), 2);
    robots_free(r);
    CHECK(robots_parse(t, strlen(t), "other", &r) == TW_OK);
    CHECK_NEAR(robots_crawl_delay(r), 7, 0);
    CHECK_EQ_INT(robots_rule_count(r), 1);
    robots_free(r);
    CHECK(robots_parse("", 0, "twin", &r) == TW_OK);
    CHECK_NEAR(robots_crawl_delay(r), -1, 0);
    CHECK_EQ_INT(robots_allowed(r, "/anything"), 1);
    robots_free(r);
    robots_free(NULL);
    CHECK(robots_parse(NULL, 1, "twin", &r) == TW_ERR_ARG);
    CHECK(r == NULL);
}

static void test_uniform(void) {
    robots_rules *r = NULL;
    CHECK(robots_uniform(0, &r) == TW_OK);
    CHECK_EQ_INT(robots_allowed(r, "/a"), 0);
    CHECK_EQ_INT(robots_allowed(r, "/robots.txt"), 1);
    robots_free(r);
    CHECK(robots_uniform(1, &r) == TW_OK);
    CHECK_EQ_INT(robots_allowed(r, "/a"), 1);
    robots_free(r);
}

/* Only the first 500 KiB are read: a rule past the limit is ignored, one before it is kept. */
static void test_size_limit(void) {
    size_t n = ROBOTS_MAX_BYTES + 4096;
    char *t = malloc(n + 64);
    CHECK(t != NULL);
    if (!t) return;
    const char *head = "user-agent: *\ndisallow: /early\n";
    size_t hl = strlen(head);
    memcpy(t, head, hl);
    for (size_t i = hl; i < n; i++) t[i] = (i % 64 == 63) ? '\n' : '#';
    const char *tail = "\ndisallow: /late\n";
    memcpy(t + n, tail, strlen(tail));
    size_t len = n + strlen(tail);
    robots_rules *r = NULL;
    CHECK(robots_parse(t, len, "twin", &r) == TW_OK);
    CHECK_EQ_INT(robots_allowed(r, "/early"), 0);
    CHECK_EQ_INT(robots_allowed(r, "/late"), 1);
    robots_free(r);
    /* a rule that straddles the limit is dropped rather than cut short to "/l" */
    size_t at = ROBOTS_MAX_BYTES - 5;
    memset(t + hl, '\n', at - hl);
    memcpy(t + at, "disallow: /late\n", 16);
    CHECK(robots_parse(t, at + 16, "twin", &r) == TW_OK);
    CHECK_EQ_INT(robots_allowed(r, "/l"), 1);
    CHECK_EQ_INT(robots_allowed(r, "/late"), 1);
    robots_free(r);
    free(t);
}

/* Failing any one allocation gives TW_ERR_NOMEM or a correct result, never a crash. */
static void test_alloc_failures(void) {
    for (uint64_t k = 1; k < 12; k++) {
        robots_rules *r = NULL;
        tw_mem_fail_after(k);
        tw_status st = robots_parse(rfc_simple, strlen(rfc_simple), "twin", &r);
        int a = st == TW_OK ? robots_allowed(r, "/example/x") : -1;
        tw_mem_fail_after(0);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        if (st == TW_OK) CHECK(a == 0 || a == -1);
        robots_free(r);
    }
}

int main(void) {
    RUN(test_rfc_simple_example);
    RUN(test_rfc_longest_match);
    RUN(test_rfc_percent_encoding);
    RUN(test_rfc_special_characters);
    RUN(test_groups);
    RUN(test_crawl_delay_and_counts);
    RUN(test_uniform);
    RUN(test_size_limit);
    RUN(test_alloc_failures);
    TEST_DONE();
}
