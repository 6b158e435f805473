/* feed.h: RSS 2.0 and Atom feeds, read by a small strict XML scanner (no DTDs, no external
 * entities: nothing in a feed can make it fetch or expand anything).
 *
 *   feed_parse(xml, len, &f)   the feed's title/link and its items
 *   feed_free(&f)
 *   feed_date_iso(in, out)     RFC 822 (pubDate) or RFC 3339 dates -> "YYYY-MM-DDTHH:MM:SSZ"
 *
 * What the scanner accepts: one root element <rss> (items under <channel>), <feed> (Atom,
 * <entry>) or <rdf:RDF> (RSS 1.0, <item>); a prolog of <?xml ..?>, comments and one
 * <!DOCTYPE ...> without an internal subset; elements with quoted attributes; text, CDATA
 * sections, comments and processing instructions inside. Refused with TW_ERR_FORMAT and the
 * byte offset: end tags that do not match, unterminated tags / comments / CDATA, text or a
 * second element after the root, nesting deeper than FEED_MAX_DEPTH, NUL bytes, a DOCTYPE with
 * an internal subset ('['). Entities: the five XML ones and numeric references are decoded;
 * other "&name;" forms (HTML entities some feeds use) are kept as written, so the HTML parser
 * downstream decodes them. Invalid UTF-8 and invalid character references become U+FFFD.
 *
 * Items (element names matched with their namespace prefix where they have one):
 *   guid       RSS <guid>, Atom <id>; else the link
 *   link       RSS <link> text; Atom <link href> with rel "alternate" or no rel
 *   title      <title>
 *   published  <pubDate>, Atom <published>, <dc:date>, else Atom <updated>; as written
 *   updated    Atom <updated> (also as <atom:updated> in an RSS item, as Medium writes it):
 *              when the item was last edited; as written
 *   content    <content:encoded>, else Atom <content>, else <description> / <summary>: the
 *              decoded text, i.e. HTML markup for HTML content; Atom type="xhtml" content is
 *              kept as its inner markup
 *
 * Thread safety: reentrant.
 */
#ifndef TWIN_FEED_H
#define TWIN_FEED_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FEED_MAX_DEPTH 64
#define FEED_MAX_ITEMS 100000

typedef enum { FEED_RSS = 0, FEED_ATOM, FEED_RDF } feed_kind;

/* One item; every string is NUL-terminated valid UTF-8, "" when the feed does not say.
 * Strings live in the feed's arena. */
typedef struct {
    const char *guid;
    const char *link;
    const char *title;
    const char *published;
    const char *updated;
    const char *content;
    size_t content_len;
} feed_item;

typedef struct {
    feed_kind kind;
    const char *title; /* the channel's / feed's own title */
    const char *link;  /* the channel's / feed's own link */
    feed_item *items;  /* (n_items,) in document order (newest first for most feeds) */
    size_t n_items;
    tw_arena *arena;   /* owns everything above; feed_free releases it */
} feed;

/* Parses len bytes of xml into *out (zeroed first). On failure *out holds nothing to free and
 * the message names the byte offset and what was wrong ("feed: byte 120: </item> closes
 * <title>"). TW_ERR_NOMEM when memory ran out. */
tw_status feed_parse(const char *xml, size_t len, feed *out);
void feed_free(feed *f); /* NULL-safe; the struct may be reused */

/* Normalises a date to "YYYY-MM-DDTHH:MM:SSZ" (UTC) in out (at least 21 bytes): RFC 822 /
 * 2822 ("Tue, 05 Mar 2024 09:00:00 GMT", "+0100", "EST", 2-digit years), RFC 3339 / ISO 8601
 * ("2024-03-05T09:00:00.000+01:00", "2024-03-05" gives "2024-03-05"). Returns 1 on success,
 * 0 when in is not such a date (out is then ""). */
int feed_date_iso(const char *in, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
