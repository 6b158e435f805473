/* test_html.c: html_extract (pipelines/html.h): every structure kept as light Markdown, each
 * kind of boilerplate dropped, entities, broken and hostile markup, the main-block choice, the
 * metadata sources, and allocation failures. */
#include <string.h>

#include "pipelines/html.h"
#include "test.h"

/* Extracts html in mode; the text (static copy, "" on error) and the doc in *d (caller clears). */
static const char *ex(const char *html, html_mode mode, html_doc *d) {
    tw_status s = html_extract(html, strlen(html), mode, d);
    if (s != TW_OK) {
        fprintf(stderr, "html_extract failed: %s\n", tw_errmsg());
        return "";
    }
    return d->text;
}

static int has(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  missing \"%s\" in:\n%s\n", needle, hay);
        return 0;
    }
    return 1;
}
static int lacks(const char *hay, const char *needle) {
    if (strstr(hay, needle)) {
        fprintf(stderr, "  unexpected \"%s\" in:\n%s\n", needle, hay);
        return 0;
    }
    return 1;
}

static void test_structures(void) {
    html_doc d;
    const char *t = ex("<body><p>First para with <a href='x'>a link</a>, <em>emphasis</em> and <code>x++</code>.</p>"
                       "<h2>Second  heading</h2><h3>Third</h3>"
                       "<ul><li>one</li><li>two<ul><li>inner a</li><li>inner b</li></ul></li><li>three</li></ul>"
                       "<ol start='4'><li>four</li><li>five</li></ol>"
                       "<blockquote><p>Quote one.</p><p>Quote two.</p></blockquote>"
                       "<pre><code class='language-python'>def f(x):\n    return  x  # two spaces\n\n\nprint(f(1))\n</code></pre>"
                       "<table><tr><th>Name</th><th>Qty</th></tr><tr><td>apple</td><td>3</td></tr></table>"
                       "<p>Line one<br>line two</p><p>It&rsquo;s “quoted” — ok 😀 don't</p></body>",
                       HTML_ALL, &d);
    CHECK(has(t, "First para with a link, emphasis and x++.\n\n## Second heading\n\n### Third\n\n"));
    CHECK(has(t, "- one\n- two\n  - inner a\n  - inner b\n- three\n\n4. four\n5. five\n\n"));
    CHECK(has(t, "> Quote one.\n>\n> Quote two.\n\n"));
    /* code verbatim: inner spaces and blank lines kept, the language on the fence */
    CHECK(has(t, "```python\ndef f(x):\n    return  x  # two spaces\n\n\nprint(f(1))\n```\n\n"));
    CHECK(has(t, "Name | Qty\napple | 3\n\n"));
    CHECK(has(t, "Line one\nline two\n\nIt’s “quoted” — ok 😀 don't"));
    CHECK_EQ_INT(d.text_len, strlen(d.text));
    html_doc_clear(&d);
    /* code inside a list item and a quote keeps the prefix on each line */
    t = ex("<ul><li>item<pre>a\n  b</pre></li></ul><blockquote><pre>x\ny</pre></blockquote>", HTML_ALL, &d);
    CHECK(has(t, "- item\n\n  ```\n  a\n    b\n  ```"));
    CHECK(has(t, "> ```\n> x\n> y\n> ```"));
    html_doc_clear(&d);
    /* syntax-highlighted code: spans inside pre are still verbatim text */
    t = ex("<div class='highlight'><pre><span class='k'>int</span> <span>x</span> =   1;</pre></div>", HTML_ALL, &d);
    CHECK(has(t, "```\nint x =   1;\n```"));
    html_doc_clear(&d);
}

static void test_boilerplate(void) {
    html_doc d;
    const char *t = ex("<html><head><title>T</title><style>p{color:red}</style><script>var leak='SCRIPT';</script></head><body>"
                       "<nav>NAVTEXT <a href='/'>Home</a></nav><header class='site-header'>HEADERTEXT</header>"
                       "<p>Kept paragraph one.</p><noscript>NOSCRIPT</noscript><template>TEMPLATE</template>"
                       "<svg><text>SVGTEXT</text></svg><iframe src='x'>IFRAME</iframe>"
                       "<form><label>FORMTEXT</label><input value='x'><button>BUTTON</button></form>"
                       "<div class='share-buttons'>SHARETEXT</div><div class='newsletter-signup'>NEWSLETTER</div>"
                       "<div id='cookie-banner'>COOKIETEXT</div><section class='comments'>COMMENTTEXT</section>"
                       "<div class='related-posts'>RELATEDTEXT</div><div class='subscribe-box'>SUBSCRIBETEXT</div>"
                       "<div hidden>HIDDEN1</div><div aria-hidden='true'>HIDDEN2</div><div style='display: none'>HIDDEN3</div>"
                       "<div class='ad-slot'>ADTEXT</div><div role='navigation'>ROLENAV</div>"
                       "<p>Kept paragraph two.</p><aside>ASIDETEXT</aside><footer>FOOTERTEXT</footer></body></html>",
                       HTML_ALL, &d);
    CHECK(has(t, "Kept paragraph one.\n\nKept paragraph two."));
    const char *gone[] = {"SCRIPT", "color", "NAVTEXT", "Home", "HEADERTEXT", "NOSCRIPT", "TEMPLATE", "SVGTEXT",
                          "IFRAME", "FORMTEXT", "BUTTON", "SHARETEXT", "NEWSLETTER", "COOKIETEXT", "COMMENTTEXT",
                          "RELATEDTEXT", "SUBSCRIBETEXT", "HIDDEN1", "HIDDEN2", "HIDDEN3", "ADTEXT", "ROLENAV",
                          "ASIDETEXT", "FOOTERTEXT", "T\n"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) CHECK(lacks(t, gone[i]));
    html_doc_clear(&d);
    /* "header" as a word in a class is boilerplate, "headers" or "reader" inside a word is not */
    t = ex("<p class='reader-view'>Reader text.</p><p class='ad'>x</p><p class='shadow'>Shadow text.</p>", HTML_ALL, &d);
    CHECK(has(t, "Reader text.\n\nShadow text."));
    html_doc_clear(&d);
    /* class and id values longer than the hint buffer (fuzz_html found the overflow) */
    char page[1400];
    memset(page, 'x', sizeof page);
    memcpy(page, "<p class='", 10);
    memcpy(page + 520, "' id='", 6);
    memcpy(page + 1300, "'>Long attributes.</p>", 23);
    t = ex(page, HTML_ALL, &d);
    CHECK_EQ_STR(t, "Long attributes.");
    html_doc_clear(&d);
}

static void test_entities(void) {
    html_doc d;
    const char *t = ex("<p>a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &#x1F600; &eacute;&nbsp;f &copy; &bogus; &amp</p>",
                       HTML_ALL, &d);
    CHECK_EQ_STR(t, "a & b <c> \"d\" 'e' 😀 é f © &bogus; &");
    html_doc_clear(&d);
    /* NBSP runs collapse like spaces; other whitespace collapses too */
    t = ex("<p>x&nbsp;&nbsp;\t\n y</p>", HTML_ALL, &d);
    CHECK_EQ_STR(t, "x y");
    html_doc_clear(&d);
}

static void test_broken_markup(void) {
    html_doc d;
    /* unclosed paragraphs and list items, misnested inline tags, a stray end tag */
    const char *t = ex("<p>one<p>two <b>bold <i>both</b> italic</i></div><ul><li>a<li>b</ul>", HTML_ALL, &d);
    CHECK_EQ_STR(t, "one\n\ntwo bold both italic\n\n- a\n- b");
    html_doc_clear(&d);
    /* an unterminated comment swallows the rest, as in a browser */
    t = ex("<p>before</p><!-- never closed <p>after</p>", HTML_ALL, &d);
    CHECK_EQ_STR(t, "before");
    html_doc_clear(&d);
    /* invalid UTF-8 becomes U+FFFD; the output is valid UTF-8 */
    t = ex("<p>caf\xE9 na\xC3 \xFF ok</p>", HTML_ALL, &d);
    CHECK(tw_utf8_valid(t, strlen(t)));
    CHECK(has(t, "caf\xEF\xBF\xBD"));
    CHECK(has(t, "ok"));
    html_doc_clear(&d);
    /* empty input and whitespace-only input: OK with empty text and metadata */
    CHECK(html_extract("", 0, HTML_MAIN, &d) == TW_OK);
    CHECK_EQ_STR(d.text, "");
    CHECK_EQ_STR(d.title, "");
    CHECK_EQ_STR(d.author, "");
    html_doc_clear(&d);
    CHECK(html_extract(NULL, 0, HTML_MAIN, &d) == TW_OK);
    html_doc_clear(&d);
    /* plain text without tags is a paragraph */
    t = ex("just   some text", HTML_MAIN, &d);
    CHECK_EQ_STR(t, "just some text");
    html_doc_clear(&d);
    /* binary input: a NUL in the first 4 KiB */
    static const char bin[] = "<p>x</p>\0\x01\x02";
    CHECK(html_extract(bin, sizeof bin - 1, HTML_MAIN, &d) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "NUL") != NULL);
    CHECK(d.text == NULL);
    /* a NUL further in is text the parser drops */
    char big[6000];
    memset(big, 'a', sizeof big);
    memcpy(big, "<p>", 3);
    big[5000] = 0;
    CHECK(html_extract(big, sizeof big, HTML_ALL, &d) == TW_OK);
    CHECK(d.text_len > 5000);
    html_doc_clear(&d);
}

static void test_deep_nesting(void) {
    html_doc d;
    size_t n = 5000;
    char *s = tw_malloc(n * 5 + 16);
    for (size_t i = 0; i < n; i++) memcpy(s + i * 5, "<div>", 5);
    memcpy(s + n * 5, "deep", 5);
    /* 5000 levels: refused (gumbo's memory grows with the square of the depth) */
    CHECK(html_extract(s, strlen(s), HTML_MAIN, &d) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "nested") != NULL);
    /* 1000 levels: parsed, the text comes out flat past the render depth */
    memmove(s + 1000 * 5, s + n * 5, 5);
    CHECK(html_extract(s, strlen(s), HTML_ALL, &d) == TW_OK);
    CHECK_EQ_STR(d.text, "deep");
    html_doc_clear(&d);
    /* many sibling paragraphs (unclosed <p>) are not deep */
    for (size_t i = 0; i < n; i++) memcpy(s + i * 5, "<p>x ", 5);
    s[n * 5] = 0;
    CHECK(html_extract(s, strlen(s), HTML_ALL, &d) == TW_OK);
    html_doc_clear(&d);
    tw_free(s);
}

static const char *const ARTICLE_P =
    "<p>The committee met on Tuesday to discuss the budget, and after a long debate, it agreed to fund the "
    "new library wing. Members said the decision was overdue; the old building had been crowded for years.</p>";

static void test_main_block(void) {
    html_doc d;
    tw_sb sb;
    tw_sb_init(&sb);
    /* the article element wins over a sidebar and a link list */
    tw_sb_puts(&sb, "<body><div class='sidebar-x'><ul><li><a href='1'>Link one</a></li><li><a href='2'>Link two</a></li></ul></div>"
                    "<article><h1>Budget news</h1>");
    for (int i = 0; i < 4; i++) tw_sb_puts(&sb, ARTICLE_P);
    tw_sb_puts(&sb, "<ul class='x'><li><a href='/a'>Related story one here</a></li><li><a href='/b'>Related story two</a></li></ul>"
                    "</article><div>Footer-ish words without hints.</div></body>");
    const char *t = ex(tw_sb_str(&sb), HTML_MAIN, &d);
    CHECK(has(t, "The committee met"));
    CHECK(lacks(t, "Link one"));
    CHECK(lacks(t, "Related story")); /* a link-heavy list inside the main block */
    CHECK(lacks(t, "Footer-ish"));
    CHECK(lacks(t, "Budget news")); /* the title heading is metadata */
    CHECK_EQ_STR(d.title, "Budget news");
    html_doc_clear(&d);
    /* HTML_ALL keeps the heading and the unhinted footer text */
    t = ex(tw_sb_str(&sb), HTML_ALL, &d);
    CHECK(has(t, "# Budget news"));
    CHECK(has(t, "Footer-ish words"));
    html_doc_clear(&d);
    /* no semantic tags: the density score finds the text block among link blocks */
    tw_sb_clear(&sb);
    tw_sb_puts(&sb, "<body><div class='a1'>");
    for (int i = 0; i < 12; i++) tw_sb_printf(&sb, "<div><a href='/%d'>Category number %d</a></div>", i, i);
    tw_sb_puts(&sb, "</div><div class='a2'><div class='a3'>");
    for (int i = 0; i < 4; i++) tw_sb_puts(&sb, ARTICLE_P);
    tw_sb_puts(&sb, "</div></div><div class='a4'><p>Short note.</p></div></body>");
    t = ex(tw_sb_str(&sb), HTML_MAIN, &d);
    CHECK(has(t, "The committee met"));
    CHECK(lacks(t, "Category number"));
    CHECK(lacks(t, "Short note"));
    html_doc_clear(&d);
    /* paragraphs split over sibling containers are gathered */
    tw_sb_clear(&sb);
    tw_sb_puts(&sb, "<body><div class='nav-like'><a href='/'>Home</a> <a href='/b'>Blog</a></div><div class='wrap'>");
    for (int i = 0; i < 3; i++) {
        tw_sb_puts(&sb, "<div class='chunk'>");
        tw_sb_puts(&sb, ARTICLE_P);
        tw_sb_printf(&sb, "<p>Part %d has its own sentence, with a comma, and an ending.</p></div>", i);
    }
    tw_sb_puts(&sb, "</div></body>");
    t = ex(tw_sb_str(&sb), HTML_MAIN, &d);
    CHECK(has(t, "Part 0 has"));
    CHECK(has(t, "Part 2 has"));
    CHECK(lacks(t, "Home"));
    html_doc_clear(&d);
    /* a small <article> (a teaser) is not plausible: density decides */
    tw_sb_clear(&sb);
    tw_sb_puts(&sb, "<body><article><a href='/x'>Teaser headline</a></article><div id='story'>");
    for (int i = 0; i < 3; i++) tw_sb_puts(&sb, ARTICLE_P);
    tw_sb_puts(&sb, "</div></body>");
    t = ex(tw_sb_str(&sb), HTML_MAIN, &d);
    CHECK(has(t, "The committee met"));
    CHECK(lacks(t, "Teaser"));
    html_doc_clear(&d);
    tw_sb_free(&sb);
}

static void test_metadata(void) {
    html_doc d;
    /* everything from meta tags */
    ex("<html lang='de-CH'><head><title>Tag title | Site</title><meta property='og:title' content='OG title'>"
       "<meta name='author' content='Meta Author'><meta property='article:author' content='Article Author'>"
       "<meta property='article:published_time' content='2024-01-02T03:04:05Z'>"
       "<link rel='canonical' href='https://example.org/canon'><meta property='og:url' content='https://example.org/og'>"
       "</head><body><article><h1>H1 title</h1><p>text</p></article></body></html>",
       HTML_MAIN, &d);
    CHECK_EQ_STR(d.title, "OG title");
    CHECK_EQ_STR(d.author, "Meta Author");
    CHECK_EQ_STR(d.published_at, "2024-01-02T03:04:05Z");
    CHECK_EQ_STR(d.canonical_url, "https://example.org/canon");
    CHECK_EQ_STR(d.lang, "de-CH");
    html_doc_clear(&d);
    /* fallbacks: h1 of the main block, article:author (a URL is not a name), og:url, <time> */
    ex("<html><head><title>Tag title</title><meta property='article:author' content='https://fb.example/x'>"
       "<meta property='og:url' content='https://example.org/og'></head><body><article><h1>H1 title</h1>"
       "<p>By <a rel='author' href='/a'>Rel Author</a> on <time datetime='2023-05-06'>May 6</time></p></article></body></html>",
       HTML_MAIN, &d);
    CHECK_EQ_STR(d.title, "H1 title");
    CHECK_EQ_STR(d.author, "Rel Author");
    CHECK_EQ_STR(d.published_at, "2023-05-06");
    CHECK_EQ_STR(d.canonical_url, "https://example.org/og");
    CHECK_EQ_STR(d.lang, "");
    html_doc_clear(&d);
    /* JSON-LD (in an @graph, author as an array of objects); <title> as the last resort,
     * whitespace collapsed */
    ex("<head><title>\n  Only   the tag\n</title><script type='application/ld+json'>{\"@graph\":[{\"@type\":\"WebSite\"},"
       "{\"@type\":\"Article\",\"datePublished\":\"2022-12-31\",\"author\":[{\"name\":\"LD Author\"}]}]}</script>"
       "<script type='application/ld+json'>{ broken json</script></head><body><p>x</p></body>",
       HTML_MAIN, &d);
    CHECK_EQ_STR(d.title, "Only the tag");
    CHECK_EQ_STR(d.author, "LD Author");
    CHECK_EQ_STR(d.published_at, "2022-12-31");
    html_doc_clear(&d);
    /* JSON-LD author as a plain string; itemprop datePublished */
    ex("<script type='application/ld+json'>{\"datePublished\":\"2021-01-01\",\"author\":\"Plain\"}</script>"
       "<span itemprop='datePublished' content='2020-02-02'></span><p>x</p>",
       HTML_MAIN, &d);
    CHECK_EQ_STR(d.author, "Plain");
    CHECK_EQ_STR(d.published_at, "2020-02-02"); /* page metadata before JSON-LD */
    html_doc_clear(&d);
}

/* Every allocation of a realistic extraction fails once in turn: the result is TW_OK or
 * TW_ERR_NOMEM, never a crash, and nothing leaks. */
static void test_alloc_failures(void) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_puts(&sb, "<html lang='en'><head><title>T</title><meta name='author' content='A'>"
                    "<script type='application/ld+json'>{\"datePublished\":\"2024\"}</script></head><body><article><h1>T</h1>");
    for (int i = 0; i < 3; i++) tw_sb_puts(&sb, ARTICLE_P);
    tw_sb_puts(&sb, "<ul><li>a</li></ul><pre>code</pre></article></body></html>");
    char *page = tw_sb_take(&sb);
    size_t base = tw_mem_get_stats().current_bytes;
    int ok = 0, nomem = 0;
    for (uint64_t k = 1; k < 400; k++) {
        html_doc d;
        tw_mem_fail_after(k);
        tw_status s = html_extract(page, strlen(page), HTML_MAIN, &d);
        tw_mem_fail_after(0);
        CHECK(s == TW_OK || s == TW_ERR_NOMEM);
        if (s == TW_OK) {
            ok++;
            html_doc_clear(&d);
        } else {
            nomem++;
            CHECK(d.text == NULL);
        }
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, base);
    }
    CHECK(ok > 0 && nomem > 0);
    tw_free(page);
}

int main(void) {
    RUN(test_structures);
    RUN(test_boilerplate);
    RUN(test_entities);
    RUN(test_broken_markup);
    RUN(test_deep_nesting);
    RUN(test_main_block);
    RUN(test_metadata);
    RUN(test_alloc_failures);
    TEST_DONE();
}
