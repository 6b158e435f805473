/* robots.h: robots.txt (RFC 9309) parsed for one product token and matched against paths.
 * Pure: no I/O; http.c fetches the file and asks this module.
 *
 *   robots_parse(text, len, "twin", &r)   the rules of the group that applies to "twin"
 *   robots_allowed(r, "/path?query")      1 allowed, 0 disallowed
 *   robots_crawl_delay(r)                 the group's Crawl-delay in seconds, or -1
 *   robots_free(r)
 *
 * What the parser does (RFC 9309 section 2):
 *   - lines "key: value" with case-insensitive keys user-agent, allow, disallow, crawl-delay
 *     (not in the RFC, read because sites use it); other keys (sitemap, ...) and lines without
 *     a colon are ignored; '#' starts a comment; CR, LF and CRLF end lines; a UTF-8 BOM is
 *     skipped; only the first ROBOTS_MAX_BYTES (500 KiB) are parsed, the rest is ignored;
 *   - consecutive user-agent lines open one group; a user-agent line after a rule opens the
 *     next; rules before any user-agent line belong to no group;
 *   - the group is the one naming the product token (case-insensitive; a value's leading run
 *     of letters, '_' and '-' is its token, so "Twin/1.0" names "twin"), else the "*" group;
 *     several groups naming the same token are merged; with neither, everything is allowed;
 *   - matching: the most specific (longest, in octets after normalisation) rule matching the
 *     path wins; on a tie allow wins; no match allows; "/robots.txt" is always allowed;
 *     '*' matches any run of characters and a final '$' anchors the end; empty rules match
 *     nothing;
 *   - normalisation, of patterns and paths alike, so that both sides compare in one form: %XX
 *     of a printable ASCII character other than '%', '*' and '$' is decoded (RFC 9309 2.2.2's
 *     table: "%62%61%7A" matches "baz", "https://" matches "https%3A%2F%2F"), other %XX are
 *     upper-cased, bytes outside printable ASCII are percent-encoded ("ツ" matches
 *     "%E3%83%84"); a literal '*' or '$' in a path (and a '$' that is not last in a pattern)
 *     becomes %2A / %24, so "%2A" in a rule matches a '*' in a URL (2.2.3).
 *
 * Thread safety: a parsed robots_rules is read-only: robots_allowed and robots_crawl_delay may
 * run on one from many threads at once.
 */
#ifndef TWIN_ROBOTS_H
#define TWIN_ROBOTS_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ROBOTS_MAX_BYTES (500u * 1024u) /* RFC 9309 2.5: parse at least 500 KiB */

typedef struct robots_rules robots_rules;

/* Parses text[0..len) (need not be NUL-terminated; any bytes) for the product token `product`
 * (e.g. "twin"; letters, '_' and '-'). On TW_OK *out holds the applicable rules (robots_free).
 * Never fails on content: malformed lines are skipped. TW_ERR_ARG for a NULL argument,
 * TW_ERR_NOMEM when memory runs out. */
tw_status robots_parse(const char *text, size_t len, const char *product, robots_rules **out);

/* Rules that allow everything (allow = 1) or disallow everything but /robots.txt (allow = 0):
 * what a robots.txt answering 4xx, resp. 5xx or nothing, means (RFC 9309 2.3.1.3, 2.3.1.4). */
tw_status robots_uniform(int allow, robots_rules **out);

/* Is path allowed? path is the URL's path with its query ("/a/b?x=1"), as sent on the wire
 * (percent-encoded or not); "" counts as "/". 1 allowed, 0 disallowed, -1 when memory ran out
 * (message set). */
int robots_allowed(const robots_rules *r, const char *path);

/* The applicable group's Crawl-delay in seconds (the first valid one, >= 0), -1 when none. */
double robots_crawl_delay(const robots_rules *r);

/* Rules in the applicable group (for tests and logs). */
size_t robots_rule_count(const robots_rules *r);

void robots_free(robots_rules *r); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif

#endif
