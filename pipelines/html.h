/* html.h: HTML to text that keeps the author's voice (the one file that uses gumbo, an HTML5
 * parser, so malformed markup is parsed the way browsers do).
 *
 *   html_extract(html, len, mode, &doc)   text + title, author, date, canonical URL, language
 *
 * The text is light Markdown so that chunking can see the structure: headings "# ..", list
 * items "- " / "1. ", block quotes "> ", code blocks fenced with ``` (their content verbatim,
 * whitespace kept), paragraphs separated by one blank line; inline markup (links, emphasis)
 * becomes its text. Dropped: script, style, noscript, template, svg, forms, iframes, nav,
 * header/footer/aside boilerplate, share/subscribe/cookie/comment boxes, "related posts".
 * HTML_MAIN picks the main content block (article/main/role=main when present and plausible,
 * else the block with the best text-density score: much text, few links, many sentences);
 * HTML_ALL keeps all visible text of a fragment (e.g. Substack's body_html) minus the same
 * boilerplate. Entities are decoded; the output is valid UTF-8 (invalid bytes in the input
 * become U+FFFD) but not yet NFC-normalised (clean.h does that).
 *
 * Thread safety: reentrant (no shared state).
 */
#ifndef TWIN_HTML_H
#define TWIN_HTML_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { HTML_MAIN = 0, HTML_ALL } html_mode;

/* Strings owned (html_doc_clear frees them); each is "" when the page does not say. */
typedef struct {
    char *text;          /* the extracted text, NUL-terminated */
    size_t text_len;
    char *title;         /* og:title, else <h1> of the main block, else <title> */
    char *author;        /* meta author / article:author / rel=author */
    char *published_at;  /* article:published_time, <time datetime>, JSON-LD datePublished;
                            ISO 8601 as given */
    char *canonical_url; /* <link rel=canonical> or og:url */
    char *lang;          /* <html lang> */
} html_doc;

void html_doc_clear(html_doc *d); /* NULL-safe; the struct may be reused */

/* Parses html (len bytes, any encoding label ignored: UTF-8 assumed, invalid bytes replaced)
 * and extracts as mode says. TW_ERR_NOMEM, or TW_ERR_FORMAT when the input is not text at all
 * (NUL bytes in the first 4 KiB). An empty page gives TW_OK with an empty text. */
tw_status html_extract(const char *html, size_t len, html_mode mode, html_doc *out);

#ifdef __cplusplus
}
#endif

#endif
