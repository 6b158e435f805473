/* feed.c: RSS 2.0 / RSS 1.0 / Atom items from a strict, minimal XML scanner (feed.h).
 *
 * The scanner walks the bytes once, keeping a stack of open element names. It is not a
 * general XML parser: it knows only what feeds need, and refuses what it does not understand
 * rather than guessing (a feed that is not well-formed here is reported, not half-read).
 * Fields of an item are captured from its direct children; the text of a captured element is
 * everything inside it (nested markup's text included), entities decoded, CDATA verbatim. */
#include "feed.h"

#include <string.h>

/* Which item (or channel) field an element fills, and how strongly: a field keeps the value of
 * the highest-priority element that gave one (content:encoded beats description, whatever
 * their order in the item). */
typedef enum {
    F_NONE = -1, F_GUID = 0, F_LINK, F_TITLE, F_PUBLISHED, F_UPDATED, F_CONTENT, F_COUNT
} field_id;

typedef struct {
    const char *v[F_COUNT];
    size_t len[F_COUNT];
    int prio[F_COUNT];
} fields;

typedef struct {
    const char *name; /* points into the input */
    size_t len;
} open_elem;

typedef struct {
    const char *p;
    size_t n, i;
    feed *f;
    open_elem stack[FEED_MAX_DEPTH];
    int depth;       /* open elements */
    int root_done;   /* the root element was closed */
    int seen_root;
    int channel_depth; /* depth of the channel's children (RSS: 2, Atom: 1); 0: none yet */
    int item_depth;  /* depth of the open item's children; 0 when not in an item */
    fields item, chan;
    /* the element whose text is being captured (0: none) */
    int cap_depth;   /* its children's depth, i.e. its own depth + 1 */
    field_id cap_field;
    int cap_prio;
    int cap_raw;     /* Atom xhtml content: keep the inner markup */
    size_t cap_raw_start;
    fields *cap_into;
    tw_sb cap;
    feed_item *items; /* growing array (tw_realloc), copied into the arena at the end */
    size_t n_items, cap_items;
} scan;

static tw_status fail_at(const scan *s, size_t at, const char *what) {
    return tw_error(TW_ERR_FORMAT, "feed: byte %zu: %s", at, what);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int is_name_char(unsigned char c) {
    return !(is_ws((char)c) || c == '/' || c == '>' || c == '=' || c == '<' || c == '"' ||
             c == '\'' || c == '&' || c == 0);
}

static int is_name_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}

/* name without its namespace prefix */
static void local_name(const char *name, size_t len, const char **ln, size_t *ll) {
    const char *colon = memchr(name, ':', len);
    if (colon) {
        *ln = colon + 1;
        *ll = len - (size_t)(colon + 1 - name);
    } else {
        *ln = name;
        *ll = len;
    }
}

static int name_is(const char *name, size_t len, const char *want) {
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* Appends bytes as valid UTF-8: invalid sequences and C0 controls other than tab, newline and
 * carriage return become U+FFFD. */
static void put_utf8(tw_sb *sb, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x80) run++;
        if (run > i) {
            tw_sb_append(sb, s + i, run - i);
            i = run;
            continue;
        }
        uint32_t cp;
        int k = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == TW_UTF8_INVALID || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r'))
            tw_sb_append(sb, "\xEF\xBF\xBD", 3);
        else
            tw_sb_append(sb, s + i, (size_t)k);
        i += (size_t)k;
    }
}

/* Appends text with the XML entities decoded (see feed.h for what is kept as written). */
static void put_text(tw_sb *sb, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - s) : n;
        put_utf8(sb, s + i, end - i);
        i = end;
        if (!amp) break;
        /* an entity is at most "&#x10FFFF;" or a short name: look for ';' within 12 bytes */
        size_t semi = i + 1;
        while (semi < n && semi - i <= 12 && s[semi] != ';' && s[semi] != '&' && !is_ws(s[semi]))
            semi++;
        if (semi >= n || s[semi] != ';') {
            tw_sb_putc(sb, '&');
            i++;
            continue;
        }
        const char *e = s + i + 1;
        size_t el = semi - i - 1;
        char out[4];
        int ol = -1;
        if (name_is(e, el, "lt")) out[0] = '<', ol = 1;
        else if (name_is(e, el, "gt")) out[0] = '>', ol = 1;
        else if (name_is(e, el, "amp")) out[0] = '&', ol = 1;
        else if (name_is(e, el, "quot")) out[0] = '"', ol = 1;
        else if (name_is(e, el, "apos")) out[0] = '\'', ol = 1;
        else if (el >= 2 && e[0] == '#') {
            uint32_t cp = 0;
            int hex = e[1] == 'x' || e[1] == 'X';
            size_t j = hex ? 2 : 1;
            int ok = j < el;
            for (; ok && j < el; j++) {
                char c = e[j];
                uint32_t d;
                if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
                else if (hex && c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
                else if (hex && c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
                else { ok = 0; break; }
                cp = cp * (hex ? 16u : 10u) + d;
                if (cp > 0x10FFFF) cp = 0x110000; /* stays invalid, no overflow */
            }
            if (ok) {
                int bad = cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
                          (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r');
                ol = tw_utf8_encode(bad ? 0xFFFD : cp, out);
            }
        }
        if (ol > 0) {
            tw_sb_append(sb, out, (size_t)ol);
            i = semi + 1;
        } else { /* unknown: kept as written for the HTML parser */
            tw_sb_putc(sb, '&');
            i++;
        }
    }
}

/* Stores the captured text in its field when it beats what the field has. */
static tw_status cap_finish(scan *s) {
    fields *into = s->cap_into;
    field_id fid = s->cap_field;
    s->cap_depth = 0;
    if (s->cap.failed) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
    if (!into || s->cap_prio <= into->prio[fid]) return TW_OK;
    const char *t = tw_sb_str(&s->cap);
    size_t len = s->cap.len;
    while (len && is_ws(*t)) t++, len--;
    while (len && is_ws(t[len - 1])) len--;
    if (!len) return TW_OK; /* an empty element gives nothing: a lower one may */
    char *v = tw_arena_strndup(s->f->arena, t, len);
    if (!v) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
    into->v[fid] = v;
    into->len[fid] = len;
    into->prio[fid] = s->cap_prio;
    return TW_OK;
}

/* The field (and its priority) an element named name fills in an item / the channel. */
static field_id field_of(const char *name, size_t len, int in_item, int *prio) {
    const char *ln;
    size_t ll;
    local_name(name, len, &ln, &ll);
    int prefixed = ln != name;
    /* prefixed names count only for the namespaces feeds use for these fields */
    int atomish = !prefixed || (len > 5 && memcmp(name, "atom:", 5) == 0);
    *prio = 1;
    if (atomish && name_is(ln, ll, "title")) return F_TITLE;
    if (atomish && name_is(ln, ll, "link")) return *prio = 2, F_LINK;
    if (!in_item) return F_NONE;
    if (atomish && (name_is(ln, ll, "guid") || name_is(ln, ll, "id"))) return F_GUID;
    if (atomish && (name_is(ln, ll, "pubDate") || name_is(ln, ll, "published")))
        return *prio = 3, F_PUBLISHED;
    if (name_is(name, len, "dc:date")) return *prio = 2, F_PUBLISHED;
    if (atomish && name_is(ln, ll, "updated")) return F_UPDATED;
    if (name_is(name, len, "content:encoded")) return *prio = 3, F_CONTENT;
    if (atomish && name_is(ln, ll, "content")) return *prio = 2, F_CONTENT;
    if (atomish && (name_is(ln, ll, "description") || name_is(ln, ll, "summary")))
        return F_CONTENT;
    return F_NONE;
}

static tw_status item_finish(scan *s) {
    fields *it = &s->item;
    if (s->n_items >= FEED_MAX_ITEMS) return fail_at(s, s->i, "more than FEED_MAX_ITEMS items");
    if (s->n_items == s->cap_items) {
        size_t nc = s->cap_items ? s->cap_items * 2 : 16;
        feed_item *ni = tw_realloc(s->items, nc * sizeof *ni);
        if (!ni) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
        s->items = ni;
        s->cap_items = nc;
    }
    feed_item *o = &s->items[s->n_items++];
    o->guid = it->v[F_GUID] ? it->v[F_GUID] : it->v[F_LINK] ? it->v[F_LINK] : "";
    o->link = it->v[F_LINK] ? it->v[F_LINK] : "";
    o->title = it->v[F_TITLE] ? it->v[F_TITLE] : "";
    o->updated = it->v[F_UPDATED] ? it->v[F_UPDATED] : "";
    o->published = it->v[F_PUBLISHED] ? it->v[F_PUBLISHED] : o->updated;
    o->content = it->v[F_CONTENT] ? it->v[F_CONTENT] : "";
    o->content_len = it->v[F_CONTENT] ? it->len[F_CONTENT] : 0;
    memset(it, 0, sizeof *it);
    return TW_OK;
}

/* An attribute value of the start tag being read: the attributes the scanner uses. */
typedef struct {
    tw_sb rel, href, type;
    int has_rel;
} attrs;

/* Reads the start tag at s->i (just after '<'): name, attributes, and whether it closes
 * itself. Leaves s->i after '>'. */
static tw_status read_start_tag(scan *s, const char **name, size_t *nlen, int *empty, attrs *at) {
    size_t tag_at = s->i - 1;
    size_t b = s->i;
    if (b >= s->n || !is_name_start((unsigned char)s->p[b])) return fail_at(s, tag_at, "bad tag name");
    while (s->i < s->n && is_name_char((unsigned char)s->p[s->i])) s->i++;
    *name = s->p + b;
    *nlen = s->i - b;
    *empty = 0;
    for (;;) {
        size_t ws0 = s->i;
        while (s->i < s->n && is_ws(s->p[s->i])) s->i++;
        if (s->i >= s->n) return fail_at(s, tag_at, "unterminated start tag");
        char c = s->p[s->i];
        if (c == '>') {
            s->i++;
            return TW_OK;
        }
        if (c == '/') {
            if (s->i + 1 < s->n && s->p[s->i + 1] == '>') {
                s->i += 2;
                *empty = 1;
                return TW_OK;
            }
            return fail_at(s, s->i, "'/' inside a start tag");
        }
        if (s->i == ws0) return fail_at(s, s->i, "attribute without space before it");
        if (!is_name_start((unsigned char)c)) return fail_at(s, s->i, "bad attribute name");
        size_t ab = s->i;
        while (s->i < s->n && is_name_char((unsigned char)s->p[s->i])) s->i++;
        const char *an = s->p + ab;
        size_t al = s->i - ab;
        while (s->i < s->n && is_ws(s->p[s->i])) s->i++;
        if (s->i >= s->n || s->p[s->i] != '=') return fail_at(s, s->i, "attribute without '='");
        s->i++;
        while (s->i < s->n && is_ws(s->p[s->i])) s->i++;
        if (s->i >= s->n || (s->p[s->i] != '"' && s->p[s->i] != '\''))
            return fail_at(s, s->i, "attribute value not quoted");
        char q = s->p[s->i++];
        size_t vb = s->i;
        while (s->i < s->n && s->p[s->i] != q && s->p[s->i] != '<') s->i++;
        if (s->i >= s->n || s->p[s->i] != q) return fail_at(s, vb - 1, "unterminated attribute value");
        size_t vl = s->i - vb;
        s->i++;
        tw_sb *dst = NULL;
        if (name_is(an, al, "rel")) dst = &at->rel, at->has_rel = 1;
        else if (name_is(an, al, "href")) dst = &at->href;
        else if (name_is(an, al, "type")) dst = &at->type;
        if (dst) {
            tw_sb_clear(dst);
            put_text(dst, s->p + vb, vl);
            if (dst->failed) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
        }
    }
}

/* Atom <link href=..> gives the item's / channel's link when rel is absent or "alternate". */
static tw_status atom_link(scan *s, fields *into, const attrs *at) {
    if (!into || !at->href.len || (at->has_rel && strcmp(tw_sb_str(&at->rel), "alternate") != 0))
        return TW_OK;
    if (into->prio[F_LINK] >= 1) return TW_OK;
    char *v = tw_arena_strndup(s->f->arena, tw_sb_str(&at->href), at->href.len);
    if (!v) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
    into->v[F_LINK] = v;
    into->len[F_LINK] = at->href.len;
    into->prio[F_LINK] = 1;
    return TW_OK;
}

static tw_status on_start(scan *s, const char *name, size_t nlen, int empty, const attrs *at,
                          size_t tag_at) {
    const char *ln;
    size_t ll;
    local_name(name, nlen, &ln, &ll);
    int d = s->depth; /* this element's depth */
    if (d == 0) {
        if (s->seen_root) return fail_at(s, tag_at, "a second root element");
        s->seen_root = 1;
        if (name_is(name, nlen, "rss")) s->f->kind = FEED_RSS;
        else if (name_is(ln, ll, "feed")) s->f->kind = FEED_ATOM, s->channel_depth = 1;
        else if (name_is(ln, ll, "RDF")) s->f->kind = FEED_RDF;
        else return fail_at(s, tag_at, "root element is not rss, feed (Atom) or rdf:RDF");
    } else if (d == 1 && s->f->kind != FEED_ATOM && name_is(ln, ll, "channel")) {
        s->channel_depth = 2;
    }
    if (s->cap_depth) {
        /* inside a captured element: nested markup contributes its text only */
    } else if (!s->item_depth && d >= 1 && (name_is(ln, ll, "item") || name_is(ln, ll, "entry"))) {
        if (empty) return item_finish(s);
        s->item_depth = d + 1;
    } else {
        fields *into = NULL;
        int in_item = 0;
        if (s->item_depth && d == s->item_depth) into = &s->item, in_item = 1;
        else if (!s->item_depth && s->channel_depth && d == s->channel_depth) into = &s->chan;
        int prio;
        field_id fid = into ? field_of(name, nlen, in_item, &prio) : F_NONE;
        if (fid == F_LINK && at->href.len) {
            tw_status st = atom_link(s, into, at); /* Atom: the link is an attribute */
            if (st) return st;
        } else if (fid != F_NONE && !empty) {
            s->cap_depth = d + 1;
            s->cap_field = fid;
            s->cap_prio = prio;
            s->cap_into = into;
            s->cap_raw = fid == F_CONTENT && !strcmp(tw_sb_str(&at->type), "xhtml");
            s->cap_raw_start = s->i;
            tw_sb_clear(&s->cap);
        }
    }
    if (!empty) {
        if (s->depth >= FEED_MAX_DEPTH) return fail_at(s, tag_at, "nesting deeper than FEED_MAX_DEPTH");
        s->stack[s->depth].name = name;
        s->stack[s->depth].len = nlen;
        s->depth++;
    } else if (d == 0) {
        s->root_done = 1;
    }
    return TW_OK;
}

static tw_status on_end(scan *s, size_t tag_at) {
    size_t b = s->i;
    while (s->i < s->n && is_name_char((unsigned char)s->p[s->i])) s->i++;
    const char *name = s->p + b;
    size_t nlen = s->i - b;
    while (s->i < s->n && is_ws(s->p[s->i])) s->i++;
    if (s->i >= s->n || s->p[s->i] != '>') return fail_at(s, tag_at, "unterminated end tag");
    s->i++;
    if (!s->depth) return fail_at(s, tag_at, "end tag without a start tag");
    open_elem *top = &s->stack[s->depth - 1];
    if (top->len != nlen || memcmp(top->name, name, nlen) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "</%.*s> closes <%.*s>", (int)(nlen > 40 ? 40 : nlen), name,
                 (int)(top->len > 40 ? 40 : top->len), top->name);
        return fail_at(s, tag_at, msg);
    }
    s->depth--;
    int d = s->depth; /* the closed element's depth */
    if (s->cap_depth && d + 1 == s->cap_depth) {
        if (s->cap_raw) {
            tw_sb_clear(&s->cap);
            put_utf8(&s->cap, s->p + s->cap_raw_start, tag_at - s->cap_raw_start);
        }
        tw_status st = cap_finish(s);
        if (st) return st;
    } else if (s->item_depth && d + 1 == s->item_depth) {
        s->item_depth = 0;
        tw_status st = item_finish(s);
        if (st) return st;
    }
    if (d == 0) s->root_done = 1;
    return TW_OK;
}

static tw_status scan_all(scan *s) {
    attrs at;
    tw_sb_init(&at.rel);
    tw_sb_init(&at.href);
    tw_sb_init(&at.type);
    tw_status st = TW_OK;
    while (s->i < s->n && !st) {
        const char *lt = memchr(s->p + s->i, '<', s->n - s->i);
        size_t end = lt ? (size_t)(lt - s->p) : s->n;
        if (end > s->i) { /* text */
            if (!s->depth) {
                for (size_t k = s->i; k < end; k++)
                    if (!is_ws(s->p[k])) {
                        st = fail_at(s, k, s->seen_root ? "text after the root element"
                                                        : "text before the root element");
                        break;
                    }
            } else if (s->cap_depth && !s->cap_raw) {
                put_text(&s->cap, s->p + s->i, end - s->i);
            }
            s->i = end;
            continue;
        }
        size_t tag_at = s->i;
        const char *rest = s->p + s->i;
        size_t left = s->n - s->i;
        if (left >= 4 && !memcmp(rest, "<!--", 4)) {
            const char *e = memmem(rest + 4, left - 4, "-->", 3);
            if (!e) { st = fail_at(s, tag_at, "unterminated comment"); break; }
            s->i = (size_t)(e - s->p) + 3;
        } else if (left >= 9 && !memcmp(rest, "<![CDATA[", 9)) {
            const char *e = memmem(rest + 9, left - 9, "]]>", 3);
            if (!e) { st = fail_at(s, tag_at, "unterminated CDATA section"); break; }
            if (!s->depth) { st = fail_at(s, tag_at, "CDATA outside the root element"); break; }
            if (s->cap_depth && !s->cap_raw) put_utf8(&s->cap, rest + 9, (size_t)(e - rest - 9));
            s->i = (size_t)(e - s->p) + 3;
        } else if (left >= 2 && rest[1] == '?') {
            const char *e = memmem(rest + 2, left - 2, "?>", 2);
            if (!e) { st = fail_at(s, tag_at, "unterminated processing instruction"); break; }
            s->i = (size_t)(e - s->p) + 2;
        } else if (left >= 9 && !memcmp(rest, "<!DOCTYPE", 9)) {
            if (s->seen_root) { st = fail_at(s, tag_at, "DOCTYPE after the root element"); break; }
            size_t k = s->i + 9;
            while (k < s->n && s->p[k] != '>' && s->p[k] != '[') k++;
            if (k >= s->n) { st = fail_at(s, tag_at, "unterminated DOCTYPE"); break; }
            if (s->p[k] == '[') { st = fail_at(s, k, "DOCTYPE with an internal subset (entities are not expanded)"); break; }
            s->i = k + 1;
        } else if (left >= 2 && rest[1] == '!') {
            st = fail_at(s, tag_at, "unknown markup declaration");
        } else if (left >= 2 && rest[1] == '/') {
            s->i += 2;
            st = on_end(s, tag_at);
        } else {
            if (s->root_done) { st = fail_at(s, tag_at, "an element after the root element"); break; }
            const char *name = NULL;
            size_t nlen = 0;
            int empty = 0;
            s->i++;
            at.has_rel = 0;
            tw_sb_clear(&at.rel);
            tw_sb_clear(&at.href);
            tw_sb_clear(&at.type);
            st = read_start_tag(s, &name, &nlen, &empty, &at);
            if (!st) st = on_start(s, name, nlen, empty, &at, tag_at);
        }
    }
    if (!st && s->depth) {
        const open_elem *top = &s->stack[s->depth - 1];
        char msg[96];
        snprintf(msg, sizeof msg, "end of input inside <%.*s>", (int)(top->len > 40 ? 40 : top->len),
                 top->name);
        st = fail_at(s, s->n, msg);
    }
    if (!st && !s->seen_root) st = fail_at(s, s->n, "no root element (not a feed)");
    tw_sb_free(&at.rel);
    tw_sb_free(&at.href);
    tw_sb_free(&at.type);
    return st;
}

tw_status feed_parse(const char *xml, size_t len, feed *out) {
    if (!out) return tw_error(TW_ERR_ARG, "feed_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!xml && len) return tw_error(TW_ERR_ARG, "feed_parse: xml is NULL");
    if (len && memchr(xml, 0, len))
        return tw_error(TW_ERR_FORMAT, "feed: byte %zu: NUL byte (not a text feed)",
                        (size_t)((const char *)memchr(xml, 0, len) - xml));
    scan *s = tw_calloc(1, sizeof *s);
    if (!s) return tw_error(TW_ERR_NOMEM, "feed: out of memory");
    s->p = xml ? xml : "";
    s->n = len;
    s->f = out;
    tw_sb_init(&s->cap);
    out->arena = tw_arena_new(0);
    tw_status st = out->arena ? TW_OK : tw_error(TW_ERR_NOMEM, "feed: out of memory");
    if (!st) {
        /* skip a UTF-8 byte order mark */
        if (len >= 3 && !memcmp(xml, "\xEF\xBB\xBF", 3)) s->i = 3;
        st = scan_all(s);
    }
    if (!st && s->n_items) {
        out->items = tw_arena_alloc(out->arena, s->n_items * sizeof *out->items, _Alignof(feed_item));
        if (!out->items) st = tw_error(TW_ERR_NOMEM, "feed: out of memory");
        else memcpy(out->items, s->items, s->n_items * sizeof *out->items);
        out->n_items = s->n_items;
    }
    if (!st) {
        out->title = s->chan.v[F_TITLE] ? s->chan.v[F_TITLE] : "";
        out->link = s->chan.v[F_LINK] ? s->chan.v[F_LINK] : "";
    }
    tw_free(s->items);
    tw_sb_free(&s->cap);
    tw_free(s);
    if (st) feed_free(out);
    return st;
}

void feed_free(feed *f) {
    if (!f) return;
    tw_arena_free(f->arena);
    memset(f, 0, sizeof *f);
}

/* ---- dates ----------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, int m, int d) { /* proleptic Gregorian, 1970-01-01 = 0 */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

/* Reads exactly k digits at *p. */
static int digits(const char **p, int k, int *out) {
    int v = 0;
    for (int i = 0; i < k; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (c - '0');
    }
    *p += k;
    *out = v;
    return 1;
}

static int emit(int64_t y, int mo, int d, int h, int mi, int sec, int off_min, char *out, size_t cap) {
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return 0;
    if (sec == 60) sec = 59; /* a leap second: the next second would change the date's day */
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off_min * 60;
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t rem = t - days * 86400;
    civil_from_days(days, &y, &mo, &d);
    if (y < 1000 || y > 9999) return 0;
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, mo, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
    return 1;
}

/* "Z", "+hh:mm", "+hhmm", "+hh", or one of RFC 822's zone names; minutes east of UTC. */
static int zone(const char *p, int *off) {
    static const struct { const char *n; int h; } names[] = {
        {"GMT", 0}, {"UT", 0}, {"UTC", 0}, {"Z", 0}, {"EST", -5}, {"EDT", -4}, {"CST", -6},
        {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
    while (*p == ' ') p++;
    if (!*p) return *off = 0, 1; /* no zone: UTC (RFC 822 says "local", which we cannot know) */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(p, names[i].n)) return *off = names[i].h * 60, 1;
    if (*p != '+' && *p != '-') return 0;
    int sign = *p == '-' ? -1 : 1, h, m = 0;
    p++;
    if (!digits(&p, 2, &h)) return 0;
    if (*p == ':') p++;
    if (*p && !digits(&p, 2, &m)) return 0;
    while (*p == ' ') p++;
    if (*p || h > 23 || m > 59) return 0;
    *off = sign * (h * 60 + m);
    return 1;
}

int feed_date_iso(const char *in, char *out, size_t cap) {
    if (!out || cap < 21) return 0;
    out[0] = 0;
    if (!in) return 0;
    while (is_ws(*in)) in++;
    char buf[64];
    size_t n = strlen(in);
    while (n && is_ws(in[n - 1])) n--;
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, in, n);
    buf[n] = 0;
    const char *p = buf;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    if (digits(&p, 4, &y) && *p == '-') { /* RFC 3339 */
        p++;
        if (!digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d)) return 0;
        if (!*p) {
            if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || y < 1000) return 0;
            snprintf(out, cap, "%04d-%02d-%02d", y, mo, d);
            return 1;
        }
        if (*p != 'T' && *p != 't' && *p != ' ') return 0;
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi)) return 0;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec)) return 0;
            if (*p == '.') {
                p++;
                if (*p < '0' || *p > '9') return 0;
                while (*p >= '0' && *p <= '9') p++;
            }
        }
        if (*p == 'z') p = "Z";
        if (!zone(p, &off)) return 0; /* no zone: taken as UTC */
        return emit(y, mo, d, h, mi, sec, off, out, cap) || (*out = 0, 0);
    }
    /* RFC 822: [Day,] DD Mon YYYY HH:MM[:SS] [zone] */
    p = buf;
    const char *comma = strchr(p, ',');
    if (comma) p = comma + 1;
    while (*p == ' ') p++;
    int dl = (p[0] >= '0' && p[0] <= '9') + (p[0] && p[1] >= '0' && p[1] <= '9');
    if (!dl || !digits(&p, dl, &d) || *p++ != ' ') return 0;
    while (*p == ' ') p++;
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    char mname[4] = {0};
    for (int i = 0; i < 3; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c < 'a' || c > 'z') return 0;
        mname[i] = c;
    }
    const char *mm = strstr(months, mname);
    if (!mm || (mm - months) % 3) return 0;
    mo = (int)(mm - months) / 3 + 1;
    p += 3;
    while (*p >= 'a' && *p <= 'z') p++; /* "March" */
    if (*p++ != ' ') return 0;
    while (*p == ' ') p++;
    int yl = 0;
    while (p[yl] >= '0' && p[yl] <= '9') yl++;
    if ((yl != 4 && yl != 2) || !digits(&p, yl, &y)) return 0;
    if (yl == 2) y += y < 50 ? 2000 : 1900; /* RFC 2822 4.3 */
    if (*p == ' ') {
        while (*p == ' ') p++;
        int hl = (p[0] >= '0' && p[0] <= '9') + (p[0] && p[1] >= '0' && p[1] <= '9');
        if (!hl || !digits(&p, hl, &h) || *p++ != ':' || !digits(&p, 2, &mi)) return 0;
        if (*p == ':' && (p++, !digits(&p, 2, &sec))) return 0;
        if (*p && *p != ' ') return 0;
        if (!zone(p, &off)) return 0;
    } else if (*p) {
        return 0;
    }
    return emit(y, mo, d, h, mi, sec, off, out, cap) || (*out = 0, 0);
}
