/* html.c: html.h over gumbo (the one file that includes gumbo.h).
 *
 * Three passes over the parsed tree:
 *   1. flatten: the tree becomes an array of nodes in document order, each with the index one
 *      past its last descendant, so that subtrees are ranges and statistics are summed without
 *      recursion (hostile pages can be thousands of levels deep);
 *   2. judge: visible text, link text and punctuation per element; boilerplate (nav, footer,
 *      share/subscribe/cookie/comment/related boxes, hidden elements) by tag, role and class/id;
 *      the main block (HTML_MAIN) by semantic tags, else by a text-density score;
 *   3. render: the chosen block as light Markdown (html.h).
 *
 * Gumbo's own memory goes through malloc, not tw_malloc: gumbo does not check allocation
 * results, so tw_malloc's fail-the-N-th hook must not reach it. Gumbo's memory grows with the
 * square of the nesting depth (10,000 nested <div> take 0.8 GB), so a lexical pre-scan refuses
 * pages nested deeper than HTML_MAX_DEPTH before gumbo sees them.
 */
#include "html.h"

#include <gumbo.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define HTML_MAX_DEPTH 1500   /* refused beyond (estimated by html_depth_estimate) */
#define HTML_RENDER_DEPTH 400 /* deeper content is rendered as plain inline text */

/* ---- nesting pre-scan -------------------------------------------------------------------- */

static int html_is_void(const char *t, size_t n) {
    static const char *const v[] = {"area", "base", "br", "col", "embed", "hr", "img", "input",
                                    "link", "meta", "param", "source", "track", "wbr", "keygen",
                                    "!doctype", "basefont", "bgsound", "frame", "image"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (strlen(v[i]) == n && strncmp(v[i], t, n) == 0) return 1;
    return 0;
}

/* Elements that a start tag of the same group closes implicitly (p after p, li after li, ...). */
static int html_autoclose_group(const char *t, size_t n) {
    if (n == 1 && t[0] == 'p') return 1;
    if (n == 2 && (!strncmp(t, "li", 2))) return 2;
    if (n == 2 && (!strncmp(t, "dt", 2) || !strncmp(t, "dd", 2))) return 3;
    if (n == 2 && (!strncmp(t, "td", 2) || !strncmp(t, "th", 2))) return 4;
    if (n == 2 && !strncmp(t, "tr", 2)) return 5;
    if (n == 6 && !strncmp(t, "option", 6)) return 6;
    return 0;
}

/* A cheap estimate of the deepest nesting gumbo will build: a stack of open tag names (start
 * tags push, end tags pop to their match, same-group start tags close the previous one). It
 * over-counts misnested inline tags, which is the safe side. */
static int html_depth_estimate(const char *s, size_t n) {
    enum { STK = HTML_MAX_DEPTH + 2 };
    uint32_t stack[STK]; /* hash of the name | group << 28 */
    int top = 0, max_depth = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '<') continue;
        size_t j = i + 1;
        int closing = 0;
        if (s[j] == '!' || s[j] == '?') { /* comments, doctype: skip to '>' */
            if (j + 2 < n && s[j + 1] == '-' && s[j + 2] == '-') {
                const char *e = NULL;
                for (size_t k = j + 3; k + 2 < n; k++)
                    if (s[k] == '-' && s[k + 1] == '-' && s[k + 2] == '>') {
                        e = s + k;
                        break;
                    }
                i = e ? (size_t)(e - s) + 2 : n;
            }
            continue;
        }
        if (s[j] == '/') closing = 1, j++;
        size_t t0 = j;
        char name[16];
        size_t nl = 0;
        while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                         (s[j] >= '0' && s[j] <= '9') || s[j] == '-')) {
            if (nl < sizeof name) name[nl] = (char)(s[j] | 0x20);
            nl++;
            j++;
        }
        if (j == t0) continue;
        if (nl > sizeof name) nl = sizeof name;
        /* raw-text elements: their content is not markup */
        if (!closing && ((nl == 6 && !strncmp(name, "script", 6)) || (nl == 5 && !strncmp(name, "style", 5)) ||
                         (nl == 8 && !strncmp(name, "textarea", 8)) || (nl == 5 && !strncmp(name, "title", 5)) ||
                         (nl == 3 && !strncmp(name, "xmp", 3)))) {
            /* find "</name" */
            size_t k = j;
            for (; k + nl + 1 < n; k++) {
                if (s[k] == '<' && s[k + 1] == '/') {
                    size_t m = 0;
                    while (m < nl && (s[k + 2 + m] | 0x20) == name[m]) m++;
                    if (m == nl) break;
                }
            }
            i = k;
            continue;
        }
        if (html_is_void(name, nl)) continue;
        uint32_t h = 2166136261u;
        for (size_t k = 0; k < nl; k++) h = (h ^ (uint8_t)name[k]) * 16777619u;
        h &= 0x0FFFFFFFu;
        int group = html_autoclose_group(name, nl);
        /* a self-closing start tag (<div/>) is still an open element in HTML, so not skipped */
        if (closing) {
            for (int k = top - 1; k >= 0 && k >= top - 64; k--)
                if ((stack[k] & 0x0FFFFFFFu) == h) {
                    top = k;
                    break;
                }
        } else {
            if (group) {
                for (int k = top - 1; k >= 0 && k >= top - 4; k--)
                    if ((int)(stack[k] >> 28) == group) {
                        top = k;
                        break;
                    }
            }
            if (top < STK) stack[top++] = h | ((uint32_t)group << 28);
            if (top > max_depth) max_depth = top;
            if (max_depth > HTML_MAX_DEPTH) return max_depth;
        }
    }
    return max_depth;
}

/* ---- the flattened tree ------------------------------------------------------------------ */

enum {
    HN_SKIP = 1,     /* never rendered or counted: script, style, hidden, ... */
    HN_BP = 2,       /* boilerplate: dropped with its subtree */
    HN_NEG = 4,      /* negative class/id/tag/role hint */
    HN_POS = 8,      /* positive class/id hint */
    HN_SEMANTIC = 16, /* article, main, role=main, itemprop=articleBody */
    HN_GOOD = 32,    /* this or a descendant is semantic/positive and not negative */
    HN_LINK = 64,    /* inside an <a> */
    HN_TIME = 128,   /* a <time> element is this or below it */
};

typedef struct {
    const GumboNode *g;
    int parent; /* -1 for the root */
    int end;    /* one past the last descendant */
    int depth;
    int flags;
    /* all visible text below (boilerplate included) and the text outside boilerplate */
    uint32_t text_all, text, link, punct, paras;
    float score; /* text-density score (HTML_MAIN fallback) */
} hnode;

typedef struct {
    hnode *n;
    int count, cap;
} htree;

static GumboTag hn_tag(const hnode *h) {
    return h->g->type == GUMBO_NODE_ELEMENT ? h->g->v.element.tag : GUMBO_TAG_UNKNOWN;
}

static const char *hn_attr(const hnode *h, const char *name) {
    if (h->g->type != GUMBO_NODE_ELEMENT) return NULL;
    const GumboAttribute *a = gumbo_get_attribute(&h->g->v.element.attributes, name);
    return a ? a->value : NULL;
}

static int ci_eq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
        if (x != y) return 0;
    }
    return *a == *b;
}

/* Does the space-separated list s (case-insensitive) contain the word w? */
static int ci_has_word(const char *s, const char *w) {
    size_t wl = strlen(w);
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == '\n') s++;
        size_t l = 0;
        while (s[l] && s[l] != ' ' && s[l] != '\t' && s[l] != '\n') l++;
        if (l == wl) {
            size_t i = 0;
            while (i < l && ((s[i] | 0x20) == (w[i] | 0x20))) i++;
            if (i == l) return 1;
        }
        s += l;
    }
    return 0;
}

static tw_status htree_push(htree *t, const GumboNode *g, int parent, int depth) {
    if (t->count == t->cap) {
        int cap = t->cap ? t->cap * 2 : 256;
        hnode *n = tw_realloc(t->n, (size_t)cap * sizeof *n);
        if (!n) return TW_ERR_NOMEM;
        t->n = n;
        t->cap = cap;
    }
    hnode *h = &t->n[t->count++];
    memset(h, 0, sizeof *h);
    h->g = g;
    h->parent = parent;
    h->depth = depth;
    return TW_OK;
}

/* Pre-order flattening with an explicit stack (no recursion). */
static tw_status htree_build(htree *t, const GumboNode *root) {
    typedef struct {
        int idx;
        unsigned next_child;
    } frame;
    frame *st = NULL;
    int sp = 0, scap = 0;
    tw_status s = htree_push(t, root, -1, 0);
    if (s) return s;
    scap = 64;
    st = tw_malloc((size_t)scap * sizeof *st);
    if (!st) return TW_ERR_NOMEM;
    st[sp++] = (frame){0, 0};
    while (sp > 0) {
        frame *f = &st[sp - 1];
        const GumboNode *g = t->n[f->idx].g;
        const GumboVector *ch = NULL;
        if (g->type == GUMBO_NODE_ELEMENT || g->type == GUMBO_NODE_TEMPLATE) ch = &g->v.element.children;
        else if (g->type == GUMBO_NODE_DOCUMENT) ch = &g->v.document.children;
        if (!ch || f->next_child >= ch->length) {
            t->n[f->idx].end = t->count;
            sp--;
            continue;
        }
        const GumboNode *c = ch->data[f->next_child++];
        if (c->type == GUMBO_NODE_COMMENT) continue;
        int parent = f->idx, depth = t->n[f->idx].depth + 1;
        if ((s = htree_push(t, c, parent, depth)) != TW_OK) break;
        if (c->type == GUMBO_NODE_ELEMENT || c->type == GUMBO_NODE_TEMPLATE) {
            if (sp == scap) {
                frame *ns = tw_realloc(st, (size_t)scap * 2 * sizeof *st);
                if (!ns) {
                    s = TW_ERR_NOMEM;
                    break;
                }
                st = ns;
                scap *= 2;
            }
            st[sp++] = (frame){t->count - 1, 0};
        } else {
            t->n[t->count - 1].end = t->count;
        }
    }
    tw_free(st);
    return s;
}

/* ---- classification ---------------------------------------------------------------------- */

static int tag_is_skipped(GumboTag tg) {
    switch (tg) {
    case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_TEMPLATE:
    case GUMBO_TAG_SVG: case GUMBO_TAG_MATH: case GUMBO_TAG_HEAD: case GUMBO_TAG_TITLE:
    case GUMBO_TAG_META: case GUMBO_TAG_LINK: case GUMBO_TAG_IFRAME: case GUMBO_TAG_OBJECT:
    case GUMBO_TAG_EMBED: case GUMBO_TAG_CANVAS: case GUMBO_TAG_BUTTON: case GUMBO_TAG_INPUT:
    case GUMBO_TAG_SELECT: case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_OPTION: case GUMBO_TAG_AUDIO:
    case GUMBO_TAG_VIDEO: case GUMBO_TAG_SOURCE: case GUMBO_TAG_TRACK: case GUMBO_TAG_IMG:
    case GUMBO_TAG_MAP: case GUMBO_TAG_AREA: case GUMBO_TAG_BASE:
    case GUMBO_TAG_FRAMESET: case GUMBO_TAG_FRAME: case GUMBO_TAG_NOFRAMES: case GUMBO_TAG_APPLET:
    case GUMBO_TAG_DATALIST: case GUMBO_TAG_KEYGEN: case GUMBO_TAG_PROGRESS: case GUMBO_TAG_METER:
    case GUMBO_TAG_RP: case GUMBO_TAG_RT:
        return 1;
    default:
        return 0;
    }
}

static int tag_is_block(GumboTag tg) {
    switch (tg) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_MAIN: case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_NAV: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4:
    case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_UL: case GUMBO_TAG_OL: case GUMBO_TAG_LI:
    case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_PRE: case GUMBO_TAG_TABLE: case GUMBO_TAG_TR: case GUMBO_TAG_TD: case GUMBO_TAG_TH:
    case GUMBO_TAG_THEAD: case GUMBO_TAG_TBODY: case GUMBO_TAG_TFOOT: case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_FIGURE: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_HR: case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_FORM: case GUMBO_TAG_FIELDSET: case GUMBO_TAG_DETAILS: case GUMBO_TAG_SUMMARY:
    case GUMBO_TAG_CENTER: case GUMBO_TAG_BODY: case GUMBO_TAG_HTML: case GUMBO_TAG_MENU:
    case GUMBO_TAG_HGROUP: case GUMBO_TAG_LISTING: case GUMBO_TAG_PLAINTEXT: case GUMBO_TAG_XMP:
        return 1;
    default:
        return 0;
    }
}

/* Hidden by attribute or inline style. */
static int hn_hidden(const hnode *h) {
    if (hn_attr(h, "hidden")) return 1;
    const char *ah = hn_attr(h, "aria-hidden");
    if (ah && ci_eq(ah, "true")) return 1;
    const char *st = hn_attr(h, "style");
    if (st) {
        char buf[128];
        size_t k = 0;
        for (const char *c = st; *c && k + 1 < sizeof buf; c++)
            if (*c != ' ' && *c != '\t' && *c != '\n') buf[k++] = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
        buf[k] = 0;
        if (strstr(buf, "display:none") || strstr(buf, "visibility:hidden")) return 1;
    }
    return 0;
}

/* Class/id hints: +1 positive, -1 negative, 0 none (negative wins over positive). */
static int hint_of(const char *cls, const char *id) {
    static const char *const neg_sub[] = {
        "comment", "sidebar", "share", "sharing", "social", "subscri", "newsletter", "cookie",
        "consent", "gdpr", "related", "recommend", "promo", "advert", "sponsor", "breadcrumb",
        "pagination", "pager", "popup", "modal", "signup", "sign-up", "disqus", "outbrain",
        "taboola", "screen-reader", "sr-only", "visually-hidden", "skip-link", "footer",
        "masthead", "navbar", "menu", "author-bio", "authorbio", "byline", "post-meta",
        "entry-meta", "article-meta", "postmeta", "tag-list", "taglist", "toolbar", "paywall",
        "read-next", "readnext", "more-stories", "trending", "most-popular", "follow", "clap",
        "reaction", "login", "cta", "site-header", "navigation", "author-card", "author-box",
        "post-nav", "jump-link", "footnote-back", "reading-time", "read-time", "readtime",
        "dateline", "timestamp", "post-date", "publish-date", "posted-on"};
    static const char *const neg_word[] = {"nav", "ad", "ads", "adsbygoogle", "banner", "meta",
                                           "widget", "tags", "header", "hidden", "aside", "top",
                                           "bottom", "extra", "utility", "print", "actions"};
    static const char *const pos_sub[] = {"article", "content", "entry", "post", "body", "main",
                                          "story", "text", "blog", "markup", "prose", "gh-"};
    char buf[512];
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *s = pass ? id : cls;
        if (!s) continue;
        for (; *s && k + 2 < sizeof buf; s++) buf[k++] = (char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s);
        if (k + 1 < sizeof buf) buf[k++] = ' '; /* long values are cut at 510 bytes */
    }
    buf[k] = 0;
    if (!k) return 0;
    for (size_t i = 0; i < sizeof neg_sub / sizeof neg_sub[0]; i++)
        if (strstr(buf, neg_sub[i])) return -1;
    /* words: split on anything that is not a letter or digit */
    for (const char *p = buf; *p;) {
        while (*p && !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) p++;
        const char *w = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) p++;
        size_t wl = (size_t)(p - w);
        for (size_t i = 0; wl && i < sizeof neg_word / sizeof neg_word[0]; i++)
            if (strlen(neg_word[i]) == wl && !strncmp(neg_word[i], w, wl)) return -1;
    }
    for (size_t i = 0; i < sizeof pos_sub / sizeof pos_sub[0]; i++)
        if (strstr(buf, pos_sub[i])) return 1;
    return 0;
}

static int role_is_boilerplate(const char *role) {
    static const char *const r[] = {"navigation", "banner", "contentinfo", "complementary",
                                    "search", "dialog", "alertdialog", "menu", "menubar",
                                    "toolbar", "button", "tablist", "alert"};
    if (!role) return 0;
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (ci_eq(role, r[i])) return 1;
    return 0;
}

/* Counts visible characters (whitespace runs count once) and sentence punctuation of a text. */
static void text_counts(const char *s, uint32_t *chars, uint32_t *punct) {
    uint32_t c = 0, p = 0;
    int ws = 1;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\f') {
            if (!ws) c++;
            ws = 1;
            continue;
        }
        ws = 0;
        if ((ch & 0xC0) != 0x80) c++;
        if (ch == '.' || ch == ',' || ch == '!' || ch == '?' || ch == ';' || ch == ':') p++;
    }
    *chars += c;
    *punct += p;
}

/* Flags, counts and boilerplate decisions for every node. */
static void htree_judge(htree *t, int body) {
    hnode *n = t->n;
    /* top-down: skip/link/hints */
    for (int i = 0; i < t->count; i++) {
        hnode *h = &n[i];
        if (h->parent >= 0) h->flags |= n[h->parent].flags & (HN_SKIP | HN_LINK);
        if (h->g->type != GUMBO_NODE_ELEMENT) continue;
        GumboTag tg = h->g->v.element.tag;
        if (tag_is_skipped(tg) || hn_hidden(h)) h->flags |= HN_SKIP;
        if (tg == GUMBO_TAG_A) h->flags |= HN_LINK;
        const char *role = hn_attr(h, "role");
        const char *itemprop = hn_attr(h, "itemprop");
        int hint = hint_of(hn_attr(h, "class"), hn_attr(h, "id"));
        if (tg == GUMBO_TAG_NAV || tg == GUMBO_TAG_ASIDE || tg == GUMBO_TAG_FOOTER ||
            tg == GUMBO_TAG_HEADER || tg == GUMBO_TAG_FORM || tg == GUMBO_TAG_MENU ||
            role_is_boilerplate(role))
            hint = -1;
        if (hint < 0) h->flags |= HN_NEG;
        else if (hint > 0) h->flags |= HN_POS;
        if (tg == GUMBO_TAG_ARTICLE || tg == GUMBO_TAG_MAIN || (role && (ci_eq(role, "main") || ci_eq(role, "article"))) ||
            (itemprop && ci_has_word(itemprop, "articleBody")))
            h->flags |= HN_SEMANTIC;
    }
    /* bottom-up: all text, and whether a good block lies below */
    for (int i = t->count - 1; i >= 0; i--) {
        hnode *h = &n[i];
        if (!(h->flags & HN_SKIP) && h->g->type == GUMBO_NODE_TEXT) text_counts(h->g->v.text.text, &h->text_all, &h->punct);
        if ((h->flags & (HN_SEMANTIC | HN_POS)) && !(h->flags & HN_NEG)) h->flags |= HN_GOOD;
        if (hn_tag(h) == GUMBO_TAG_TIME) h->flags |= HN_TIME;
        if (h->parent >= 0) {
            n[h->parent].flags |= h->flags & HN_TIME;
            n[h->parent].text_all += h->text_all;
            if ((h->flags & HN_GOOD) && !(n[h->parent].flags & HN_SKIP)) n[h->parent].flags |= HN_GOOD;
        }
    }
    /* boilerplate: negative hints, unless the element holds most of the page's text and a good
     * block (a wrapper with an unlucky class name, e.g. "content has-sidebar") */
    uint32_t total = n[body].text_all;
    for (int i = 0; i < t->count; i++) {
        hnode *h = &n[i];
        if (h->flags & HN_SKIP) continue;
        if (h->parent >= 0 && (n[h->parent].flags & HN_BP)) {
            h->flags |= HN_BP;
            continue;
        }
        if (!(h->flags & HN_NEG) || i == body) continue;
        int protect = (h->flags & HN_GOOD) && total && h->text_all * 10 >= total * 6;
        GumboTag tg = hn_tag(h);
        /* a <header>/<footer> inside a good block is that block's own header: title, byline,
         * tags; still dropped. */
        if (!protect || tg == GUMBO_TAG_NAV) h->flags |= HN_BP;
    }
    /* bottom-up again: text outside boilerplate, link text, punctuation, paragraphs */
    for (int i = t->count - 1; i >= 0; i--) {
        hnode *h = &n[i];
        if (h->flags & (HN_SKIP | HN_BP)) {
            h->text = h->link = h->paras = 0;
            h->punct = 0;
            continue;
        }
        if (h->g->type == GUMBO_NODE_TEXT) {
            h->text = h->text_all;
            if (h->flags & HN_LINK) h->link = h->text;
        }
        GumboTag tg = hn_tag(h);
        if ((tg == GUMBO_TAG_P || tg == GUMBO_TAG_PRE || tg == GUMBO_TAG_BLOCKQUOTE || tg == GUMBO_TAG_LI) && h->text >= 40)
            h->paras++;
        if (h->parent >= 0) {
            hnode *p = &n[h->parent];
            p->text += h->text;
            p->link += h->link;
            p->punct += h->punct;
            p->paras += h->paras;
        }
    }
}

/* ---- main block choice ------------------------------------------------------------------- */

static int is_descendant(const htree *t, int a, int anc) { return a > anc && a < t->n[anc].end; }

/* The text-density choice (readability's idea): each paragraph-like element scores by its
 * length and punctuation, and gives the score to its parent (full), grandparent (half) and
 * great-grandparent (a third); the best container, discounted by its link density and nudged
 * by class hints, wins. */
static int choose_by_density(htree *t, int body) {
    hnode *n = t->n;
    for (int i = body; i < n[body].end; i++) {
        hnode *h = &n[i];
        if (h->g->type != GUMBO_NODE_ELEMENT || (h->flags & (HN_SKIP | HN_BP))) continue;
        GumboTag tg = h->g->v.element.tag;
        int para = tg == GUMBO_TAG_P || tg == GUMBO_TAG_PRE;
        if (tg == GUMBO_TAG_DIV || tg == GUMBO_TAG_SECTION || tg == GUMBO_TAG_TD || tg == GUMBO_TAG_BLOCKQUOTE) {
            /* a container holding text directly, with no block children, reads as a paragraph;
             * one with paragraphs inside is scored through them (a layout cell is not one
             * long paragraph) */
            para = 1;
            for (int c = i + 1; c < h->end; c = n[c].end)
                if (n[c].g->type == GUMBO_NODE_ELEMENT && tag_is_block(n[c].g->v.element.tag)) {
                    para = 0;
                    break;
                }
        }
        if (!para || h->text < 25) continue;
        float s = 1.0f + (float)h->punct + (h->text / 100.0f > 3.0f ? 3.0f : h->text / 100.0f);
        float ld = h->text ? (float)h->link / (float)h->text : 0;
        s *= 1.0f - ld;
        int a = h->parent;
        for (int lvl = 1; lvl <= 3 && a >= 0 && a >= body; lvl++, a = n[a].parent) n[a].score += s / (float)lvl;
    }
    int best = -1;
    float best_s = 0;
    for (int i = body; i < n[body].end; i++) {
        hnode *h = &n[i];
        if (h->score <= 0 || (h->flags & (HN_SKIP | HN_BP))) continue;
        float ld = h->text ? (float)h->link / (float)h->text : 0;
        float s = h->score * (1.0f - ld);
        if (h->flags & HN_POS) s += 25;
        if (h->flags & HN_SEMANTIC) s += 25;
        if (h->flags & HN_NEG) s -= 25;
        h->score = s;
        if (best < 0 || s > best_s) best = i, best_s = s;
    }
    if (best < 0) return body;
    /* paragraphs split over sibling containers: move up while the parent holds clearly more
     * paragraph text without becoming link-heavy */
    while (best != body) {
        int p = n[best].parent;
        if (p < body) break;
        const hnode *bp = &n[best], *pp = &n[p];
        if (pp->paras >= bp->paras + 2 && pp->paras * 10 >= bp->paras * 13 && pp->link * 10 < pp->text * 3)
            best = p;
        else
            break;
    }
    return best;
}

static int choose_main(htree *t, int body) {
    hnode *n = t->n;
    uint32_t total = n[body].text;
    int biggest = -1;
    for (int i = body; i < n[body].end; i++) {
        hnode *h = &n[i];
        if (!(h->flags & HN_SEMANTIC) || (h->flags & (HN_SKIP | HN_BP))) continue;
        if (h->text < 200 || h->link * 10 >= h->text * 4 || h->text * 10 < total * 3) continue;
        if (biggest < 0 || h->text > n[biggest].text) biggest = i;
    }
    if (biggest >= 0) {
        /* the deepest plausible semantic block inside it that keeps most of its text */
        int pick = biggest;
        for (int i = biggest + 1; i < n[biggest].end; i++) {
            hnode *h = &n[i];
            if (!(h->flags & HN_SEMANTIC) || (h->flags & (HN_SKIP | HN_BP))) continue;
            if (h->text * 10 >= n[biggest].text * 6 && is_descendant(t, i, pick)) pick = i;
        }
        return pick;
    }
    return choose_by_density(t, body);
}

/* ---- rendering --------------------------------------------------------------------------- */

typedef struct {
    tw_sb *out;
    char prefix[256]; /* "> " per quote level, indentation of list continuation lines */
    size_t plen;
    const char *marker; /* pending list/heading marker for the next text */
    char marker_buf[32];
    int brk;     /* pending break: 1 newline, 2 blank line */
    int space;   /* pending inline space */
    int started; /* anything written */
    int in_cell; /* inside a table cell: blocks do not break lines */
    int fresh;   /* a marker is pending and nothing was written after it */
    size_t indent; /* prefix growth once the pending list marker is written */
    int quotes;    /* quote level of the last line written */
    int lists;     /* list nesting */
} hwriter;

static void wr_break(hwriter *w, int b) {
    if (w->in_cell) {
        w->space = 1;
        return;
    }
    if (w->fresh) return; /* the first block of a list item stays on the marker's line */
    if (b > w->brk) w->brk = b;
}

static void wr_line_start(hwriter *w) {
    if (w->started && w->brk) {
        tw_sb_putc(w->out, '\n');
        if (w->brk >= 2) {
            /* a blank line keeps the quote markers both of its neighbours have ("> " -> ">") */
            int k = 0, cur = 0;
            for (size_t i = 0; i < w->plen; i++) cur += w->prefix[i] == '>';
            for (; k < cur && k < w->quotes; k++) tw_sb_putc(w->out, '>');
            tw_sb_putc(w->out, '\n');
        }
    }
    tw_sb_append(w->out, w->prefix, w->plen);
    w->quotes = 0;
    for (size_t i = 0; i < w->plen; i++) w->quotes += w->prefix[i] == '>';
    if (w->marker) {
        tw_sb_puts(w->out, w->marker);
        w->marker = NULL;
        if (w->indent && w->plen + w->indent < sizeof w->prefix) {
            memset(w->prefix + w->plen, ' ', w->indent);
            w->plen += w->indent;
        }
        w->indent = 0;
    }
    w->brk = 0;
    w->space = 0;
    w->started = 1;
    w->fresh = 0;
}

/* Appends inline text, collapsing whitespace (NBSP counts as a space). */
static void wr_text(hwriter *w, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int ws = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == '\f';
        int nbsp = p[0] == 0xC2 && p[1] == 0xA0;
        if (ws || nbsp) {
            w->space = 1;
            p += nbsp ? 2 : 1;
            continue;
        }
        const unsigned char *q = p;
        while (*q && !(*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r' || *q == '\f' || (q[0] == 0xC2 && q[1] == 0xA0))) q++;
        if (w->brk || !w->started || w->marker) {
            wr_line_start(w);
        } else if (w->space) {
            tw_sb_putc(w->out, ' ');
        }
        w->space = 0;
        tw_sb_append(w->out, (const char *)p, (size_t)(q - p));
        p = q;
    }
}

static int wr_push(hwriter *w, const char *s) {
    size_t l = strlen(s);
    if (w->plen + l >= sizeof w->prefix) return 0;
    memcpy(w->prefix + w->plen, s, l);
    w->plen += l;
    return (int)l;
}

typedef struct {
    const htree *t;
    hwriter w;
    int skip_h1;       /* index of an <h1> that repeats the title, or -1 */
    int root;          /* the block being rendered */
    int main_mode;
} hrender;

static void render_node(hrender *r, int i);

static void render_children(hrender *r, int i) {
    const hnode *n = r->t->n;
    for (int c = i + 1; c < n[i].end; c = n[c].end) render_node(r, c);
}

/* Verbatim text of a subtree (pre blocks), br as newline, each line after the first prefixed. */
static void render_verbatim(hrender *r, int i, tw_sb *code) {
    const hnode *n = r->t->n;
    for (int c = i + 1; c < n[i].end; c++) {
        const hnode *h = &n[c];
        if (h->flags & HN_SKIP) {
            c = h->end - 1;
            continue;
        }
        if (h->g->type == GUMBO_NODE_TEXT || h->g->type == GUMBO_NODE_WHITESPACE || h->g->type == GUMBO_NODE_CDATA)
            tw_sb_puts(code, h->g->v.text.text);
        else if (hn_tag(h) == GUMBO_TAG_BR)
            tw_sb_putc(code, '\n');
    }
}

/* The language of a code block from class="language-x" / "lang-x" on pre or its code child. */
static void code_lang(const hrender *r, int i, char *out, size_t cap) {
    const hnode *n = r->t->n;
    out[0] = 0;
    for (int c = i; c < n[i].end && c <= i + 2; c++) {
        const char *cls = hn_attr(&n[c], "class");
        if (!cls) continue;
        const char *p = strstr(cls, "language-");
        size_t skip = 9;
        if (!p) p = strstr(cls, "lang-"), skip = 5;
        if (!p) continue;
        p += skip;
        size_t k = 0;
        while (p[k] && k + 1 < cap && ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z') ||
                                        (p[k] >= '0' && p[k] <= '9') || p[k] == '+' || p[k] == '#' || p[k] == '-'))
            k++;
        memcpy(out, p, k);
        out[k] = 0;
        return;
    }
}

static void render_pre(hrender *r, int i) {
    hwriter *w = &r->w;
    tw_sb code;
    tw_sb_init(&code);
    render_verbatim(r, i, &code);
    /* the HTML parser already drops one newline right after <pre>; trailing newlines go */
    size_t len = code.len;
    while (len && (code.buf[len - 1] == '\n' || code.buf[len - 1] == ' ' || code.buf[len - 1] == '\t')) len--;
    size_t start = 0;
    while (start < len && code.buf[start] == '\n') start++;
    if (len > start) {
        char lang[32];
        code_lang(r, i, lang, sizeof lang);
        wr_break(w, 2);
        w->fresh = 0;
        if (w->in_cell) {
            wr_text(w, code.buf + start);
        } else {
            wr_line_start(w);
            tw_sb_puts(w->out, "```");
            tw_sb_puts(w->out, lang);
            for (size_t k = start; k < len;) {
                size_t e = k;
                while (e < len && code.buf[e] != '\n') e++;
                tw_sb_putc(w->out, '\n');
                tw_sb_append(w->out, w->prefix, w->plen);
                tw_sb_append(w->out, code.buf + k, e - k);
                k = e + 1;
            }
            tw_sb_putc(w->out, '\n');
            tw_sb_append(w->out, w->prefix, w->plen);
            tw_sb_puts(w->out, "```");
            w->brk = 2;
        }
    }
    tw_sb_free(&code);
}

/* Plain text of a subtree, collapsed, for comparisons (title) and deep subtrees. */
static void subtree_text(const htree *t, int i, tw_sb *sb) {
    for (int c = i; c < t->n[i].end; c++) {
        const hnode *h = &t->n[c];
        if (h->flags & (HN_SKIP | HN_BP)) {
            c = h->end - 1;
            continue;
        }
        if (h->g->type == GUMBO_NODE_TEXT || h->g->type == GUMBO_NODE_CDATA) {
            tw_sb_puts(sb, h->g->v.text.text);
            tw_sb_putc(sb, ' ');
        } else if (h->g->type == GUMBO_NODE_ELEMENT && tag_is_block(h->g->v.element.tag)) {
            tw_sb_putc(sb, ' ');
        }
    }
}

/* A block that is mostly links (related posts, tag lists, "read next") inside the main block. */
static int link_heavy(const hnode *h) {
    if (!h->text || h->link * 2 < h->text) return 0;
    return h->text < 700;
}

static void render_node(hrender *r, int i) {
    const hnode *h = &r->t->n[i];
    hwriter *w = &r->w;
    if (h->flags & (HN_SKIP | HN_BP)) return;
    if (h->g->type == GUMBO_NODE_TEXT || h->g->type == GUMBO_NODE_CDATA) {
        wr_text(w, h->g->v.text.text);
        return;
    }
    if (h->g->type == GUMBO_NODE_WHITESPACE) {
        w->space = 1;
        return;
    }
    if (h->g->type != GUMBO_NODE_ELEMENT && h->g->type != GUMBO_NODE_DOCUMENT) return;
    if (h->depth > HTML_RENDER_DEPTH) { /* hostile depth: the text, flat */
        tw_sb sb;
        tw_sb_init(&sb);
        subtree_text(r->t, i, &sb);
        wr_text(w, tw_sb_str(&sb));
        tw_sb_free(&sb);
        return;
    }
    if (i == r->skip_h1) return;
    GumboTag tg = h->g->type == GUMBO_NODE_ELEMENT ? h->g->v.element.tag : GUMBO_TAG_HTML;
    if (r->main_mode && (tg == GUMBO_TAG_UL || tg == GUMBO_TAG_OL || tg == GUMBO_TAG_DIV || tg == GUMBO_TAG_SECTION ||
                         tg == GUMBO_TAG_TABLE || tg == GUMBO_TAG_DL || (tg == GUMBO_TAG_P && h->text < 120)) &&
        link_heavy(h))
        return;
    /* a short block around a <time> is a dateline or byline ("May 9 · 7 min read") */
    if (r->main_mode && (h->flags & HN_TIME) && h->text < 80 && i != r->root &&
        (tg == GUMBO_TAG_DIV || tg == GUMBO_TAG_SPAN || tg == GUMBO_TAG_SECTION || tg == GUMBO_TAG_HEADER ||
         tg == GUMBO_TAG_UL || tg == GUMBO_TAG_DL || tg == GUMBO_TAG_LI))
        return;
    size_t saved_plen = w->plen;
    switch (tg) {
    case GUMBO_TAG_BR:
        if (w->in_cell) w->space = 1;
        else if (w->started && !w->fresh && w->brk < 1) w->brk = 1;
        return;
    case GUMBO_TAG_HR:
        wr_break(w, 2);
        return;
    case GUMBO_TAG_PRE: case GUMBO_TAG_LISTING: case GUMBO_TAG_XMP: case GUMBO_TAG_PLAINTEXT:
        render_pre(r, i);
        return;
    case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: {
        if (!h->text) return;
        int level = tg == GUMBO_TAG_H1 ? 1 : tg == GUMBO_TAG_H2 ? 2 : tg == GUMBO_TAG_H3 ? 3 : tg == GUMBO_TAG_H4 ? 4 : tg == GUMBO_TAG_H5 ? 5 : 6;
        wr_break(w, 2);
        if (!w->in_cell) {
            memset(w->marker_buf, '#', (size_t)level);
            w->marker_buf[level] = ' ';
            w->marker_buf[level + 1] = 0;
            w->marker = w->marker_buf;
        }
        render_children(r, i);
        w->marker = NULL;
        wr_break(w, 2);
        return;
    }
    case GUMBO_TAG_UL: case GUMBO_TAG_OL: case GUMBO_TAG_MENU: {
        wr_break(w, w->lists ? 1 : 2);
        w->lists++;
        int ordered = tg == GUMBO_TAG_OL;
        long num = 1;
        const char *start = hn_attr(h, "start");
        if (ordered && start) {
            num = strtol(start, NULL, 10);
            if (num < 0 || num > 1000000) num = 1;
        }
        for (int c = i + 1; c < h->end; c = r->t->n[c].end) {
            const hnode *li = &r->t->n[c];
            if (li->g->type == GUMBO_NODE_ELEMENT && li->g->v.element.tag == GUMBO_TAG_LI) {
                if (li->flags & (HN_SKIP | HN_BP) || !li->text) continue;
                if (w->in_cell) {
                    render_children(r, c);
                    w->space = 1;
                    continue;
                }
                if (w->marker) wr_line_start(w); /* an outer item's marker, still unwritten */
                if (ordered) snprintf(w->marker_buf, sizeof w->marker_buf, "%ld. ", num++);
                else snprintf(w->marker_buf, sizeof w->marker_buf, "- ");
                w->fresh = 0;
                if (w->started) w->brk = w->brk > 1 ? w->brk : 1;
                size_t pl = w->plen;
                w->marker = w->marker_buf;
                w->indent = strlen(w->marker_buf); /* continuation lines sit under the text */
                w->fresh = 1;
                render_children(r, c);
                w->marker = NULL;
                w->indent = 0;
                w->fresh = 0;
                w->plen = pl;
                wr_break(w, 1);
            } else {
                render_node(r, c);
            }
        }
        w->plen = saved_plen;
        w->lists--;
        wr_break(w, w->lists ? 1 : 2);
        return;
    }
    case GUMBO_TAG_BLOCKQUOTE:
        wr_break(w, 2);
        if (w->in_cell) {
            render_children(r, i);
            return;
        }
        w->fresh = 0;
        wr_push(w, "> ");
        render_children(r, i);
        w->plen = saved_plen;
        wr_break(w, 2);
        return;
    case GUMBO_TAG_TABLE:
        wr_break(w, 2);
        render_children(r, i);
        wr_break(w, 2);
        return;
    case GUMBO_TAG_TR: {
        if (w->in_cell) {
            render_children(r, i);
            return;
        }
        wr_break(w, 1);
        int first = 1;
        for (int c = i + 1; c < h->end; c = r->t->n[c].end) {
            const hnode *cell = &r->t->n[c];
            GumboTag ct = hn_tag(cell);
            if ((ct == GUMBO_TAG_TD || ct == GUMBO_TAG_TH) && !(cell->flags & (HN_SKIP | HN_BP))) {
                if (!first) wr_text(w, " |");
                first = 0;
                w->space = 1;
                w->in_cell++;
                render_children(r, c);
                w->in_cell--;
            } else {
                render_node(r, c);
            }
        }
        wr_break(w, 1);
        return;
    }
    case GUMBO_TAG_LI: /* outside a list */
    case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_CAPTION:
        wr_break(w, 1);
        render_children(r, i);
        wr_break(w, 1);
        return;
    default:
        break;
    }
    if (h->g->type == GUMBO_NODE_ELEMENT && tag_is_block(tg)) {
        wr_break(w, 2);
        render_children(r, i);
        wr_break(w, 2);
    } else {
        render_children(r, i);
    }
}

/* ---- metadata ---------------------------------------------------------------------------- */

typedef struct {
    char *title_og, *title_tag, *author_meta, *author_article, *author_rel, *author_ld;
    char *date_meta, *date_ld, *date_time, *canonical, *og_url, *lang, *title_ld;
} hmeta;

static void meta_set(char **slot, const char *v) {
    if (*slot || !v) return;
    while (*v == ' ' || *v == '\n' || *v == '\t' || *v == '\r') v++;
    size_t l = strlen(v);
    while (l && (v[l - 1] == ' ' || v[l - 1] == '\n' || v[l - 1] == '\t' || v[l - 1] == '\r')) l--;
    if (!l) return;
    /* whitespace runs collapse, so a multi-line <title> reads as one line */
    char *s = tw_malloc(l + 1);
    if (!s) return;
    size_t k = 0;
    int ws = 0;
    for (size_t i = 0; i < l; i++) {
        char c = v[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            ws = 1;
            continue;
        }
        if (ws && k) s[k++] = ' ';
        ws = 0;
        s[k++] = c;
    }
    s[k] = 0;
    *slot = s;
}

static const char *ld_author(const tw_json *a) {
    if (!a) return NULL;
    if (tw_json_is_string(a)) return tw_json_str(a);
    if (tw_json_is_array(a)) return ld_author(tw_json_first(a));
    if (tw_json_is_object(a)) return tw_json_get_str(a, "name", NULL);
    return NULL;
}

/* Walks a JSON-LD value (object, array, @graph) for the article's fields. */
static void ld_walk(const tw_json *j, hmeta *m, int depth) {
    if (!j || depth > 8) return;
    if (tw_json_is_array(j)) {
        for (const tw_json *c = tw_json_first(j); c; c = tw_json_next(c)) ld_walk(c, m, depth + 1);
        return;
    }
    if (!tw_json_is_object(j)) return;
    const char *dp = tw_json_get_str(j, "datePublished", NULL);
    if (dp) {
        meta_set(&m->date_ld, dp);
        meta_set(&m->author_ld, ld_author(tw_json_get(j, "author")));
        meta_set(&m->title_ld, tw_json_get_str(j, "headline", NULL));
    }
    ld_walk(tw_json_get(j, "@graph"), m, depth + 1);
}

static void meta_collect(const htree *t, hmeta *m) {
    for (int i = 0; i < t->count; i++) {
        const hnode *h = &t->n[i];
        if (h->g->type != GUMBO_NODE_ELEMENT) continue;
        GumboTag tg = h->g->v.element.tag;
        if (tg == GUMBO_TAG_HTML) {
            meta_set(&m->lang, hn_attr(h, "lang"));
            if (!m->lang) meta_set(&m->lang, hn_attr(h, "xml:lang"));
        } else if (tg == GUMBO_TAG_TITLE && !m->title_tag) {
            tw_sb sb;
            tw_sb_init(&sb);
            for (int c = i + 1; c < h->end; c++)
                if (t->n[c].g->type == GUMBO_NODE_TEXT) tw_sb_puts(&sb, t->n[c].g->v.text.text);
            meta_set(&m->title_tag, tw_sb_str(&sb));
            tw_sb_free(&sb);
        } else if (tg == GUMBO_TAG_META) {
            const char *prop = hn_attr(h, "property"), *name = hn_attr(h, "name"), *ip = hn_attr(h, "itemprop");
            const char *content = hn_attr(h, "content");
            const char *key = prop ? prop : name ? name : ip;
            if (!key || !content) continue;
            if (ci_eq(key, "og:title")) meta_set(&m->title_og, content);
            else if (ci_eq(key, "author") || ci_eq(key, "dc.creator") || ci_eq(key, "sailthru.author") || ci_eq(key, "parsely-author"))
                meta_set(&m->author_meta, content);
            else if (ci_eq(key, "article:author")) meta_set(&m->author_article, content);
            else if (ci_eq(key, "article:published_time") || ci_eq(key, "datePublished") || ci_eq(key, "date") ||
                     ci_eq(key, "pubdate") || ci_eq(key, "publish-date") || ci_eq(key, "parsely-pub-date") ||
                     ci_eq(key, "dc.date") || ci_eq(key, "dc.date.issued") || ci_eq(key, "sailthru.date"))
                meta_set(&m->date_meta, content);
            else if (ci_eq(key, "og:url")) meta_set(&m->og_url, content);
        } else if (tg == GUMBO_TAG_LINK) {
            const char *rel = hn_attr(h, "rel");
            if (rel && ci_has_word(rel, "canonical")) meta_set(&m->canonical, hn_attr(h, "href"));
        } else if (tg == GUMBO_TAG_A || tg == GUMBO_TAG_SPAN) {
            const char *rel = hn_attr(h, "rel");
            if (tg == GUMBO_TAG_A && rel && ci_has_word(rel, "author") && !m->author_rel) {
                tw_sb sb;
                tw_sb_init(&sb);
                subtree_text(t, i, &sb);
                meta_set(&m->author_rel, tw_sb_str(&sb));
                tw_sb_free(&sb);
            }
        } else if (tg == GUMBO_TAG_TIME && !m->date_time && !(h->flags & HN_SKIP)) {
            meta_set(&m->date_time, hn_attr(h, "datetime"));
        } else if (tg == GUMBO_TAG_SCRIPT) {
            const char *type = hn_attr(h, "type");
            if (!type || !ci_eq(type, "application/ld+json") || h->end != i + 2) continue;
            const hnode *tx = &t->n[i + 1];
            if (tx->g->type != GUMBO_NODE_TEXT && tx->g->type != GUMBO_NODE_WHITESPACE) continue;
            const char *js = tx->g->v.text.text;
            tw_json *doc = tw_json_parse(js, strlen(js), "JSON-LD");
            if (doc) {
                ld_walk(doc, m, 0);
                tw_json_free(doc);
            }
            tw_error_clear();
        }
        if (tg != GUMBO_TAG_META && tg != GUMBO_TAG_TIME) {
            const char *ip = hn_attr(h, "itemprop");
            if (ip && ci_has_word(ip, "datePublished")) {
                const char *v = hn_attr(h, "datetime");
                if (!v) v = hn_attr(h, "content");
                meta_set(&m->date_meta, v);
            }
        }
    }
}

static void meta_free(hmeta *m) {
    char **f[] = {&m->title_og, &m->title_tag, &m->author_meta, &m->author_article, &m->author_rel, &m->author_ld,
                  &m->date_meta, &m->date_ld, &m->date_time, &m->canonical, &m->og_url, &m->lang, &m->title_ld};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        tw_free(*f[i]);
        *f[i] = NULL;
    }
}

/* The first of the candidates that is set, copied (or "" when none). */
static char *first_of(const char *a, const char *b, const char *c, const char *d) {
    const char *v = a ? a : b ? b : c ? c : d ? d : "";
    return tw_strdup(v);
}

static int starts_with_url(const char *s) { return s && (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)); }

/* ---- the entry point --------------------------------------------------------------------- */

void html_doc_clear(html_doc *d) {
    if (!d) return;
    tw_free(d->text);
    tw_free(d->title);
    tw_free(d->author);
    tw_free(d->published_at);
    tw_free(d->canonical_url);
    tw_free(d->lang);
    memset(d, 0, sizeof *d);
}

/* Copies s replacing invalid UTF-8 with U+FFFD (gumbo already does; this is the guarantee). */
static char *utf8_fixed(const char *s, size_t n) {
    if (tw_utf8_valid(s, n)) return tw_strndup(s, n);
    tw_sb sb;
    tw_sb_init(&sb);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == TW_UTF8_INVALID) tw_sb_puts(&sb, "\xEF\xBF\xBD");
        else tw_sb_append(&sb, s + i, (size_t)l);
        i += (size_t)l;
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        return NULL;
    }
    if (!sb.buf) return tw_strdup("");
    return tw_sb_take(&sb);
}

static int find_tag(const htree *t, int from, int to, GumboTag tg) {
    for (int i = from; i < to; i++) {
        const hnode *h = &t->n[i];
        if (h->flags & (HN_SKIP | HN_BP)) {
            i = h->end - 1;
            continue;
        }
        if (hn_tag(h) == tg) return i;
    }
    return -1;
}

/* Text equality ignoring case, whitespace and punctuation ("Hello, World" ~ "hello world"). */
static int loose_prefix(const char *a, const char *b) {
    /* 1 when a (the heading) equals b, or b starts with a followed by a separator */
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    for (;;) {
        while (*p && !(*p >= 0x80 || ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) && !(*p >= '0' && *p <= '9')) p++;
        while (*q && !(*q >= 0x80 || ((*q | 0x20) >= 'a' && (*q | 0x20) <= 'z')) && !(*q >= '0' && *q <= '9')) q++;
        if (!*p) return 1;
        if (!*q) return 0;
        unsigned char x = *p, y = *q;
        if (x < 0x80) x |= (x >= 'A' && x <= 'Z') ? 0x20 : 0;
        if (y < 0x80) y |= (y >= 'A' && y <= 'Z') ? 0x20 : 0;
        if (x != y) return 0;
        p++, q++;
    }
}

tw_status html_extract(const char *html, size_t len, html_mode mode, html_doc *out) {
    if (!out || (!html && len)) return tw_error(TW_ERR_ARG, "html_extract: NULL argument");
    memset(out, 0, sizeof *out);
    if (len && memchr(html, 0, len < 4096 ? len : 4096))
        return tw_error(TW_ERR_FORMAT, "html_extract: not text (a NUL byte in the first 4 KiB)");
    int depth = html_depth_estimate(html ? html : "", len);
    if (depth > HTML_MAX_DEPTH)
        return tw_error(TW_ERR_FORMAT, "html_extract: markup nested deeper than %d elements", HTML_MAX_DEPTH);
    GumboOutput *g = gumbo_parse_with_options(&kGumboDefaultOptions, html ? html : "", len);
    if (!g) return tw_error(TW_ERR_NOMEM, "html_extract: parser out of memory");
    htree t = {0};
    hmeta m = {0};
    tw_sb sb;
    tw_sb_init(&sb);
    tw_status st = htree_build(&t, g->document);
    if (st != TW_OK) {
        st = tw_error(TW_ERR_NOMEM, "html_extract: no memory for %d nodes", t.count);
        goto done;
    }
    int body = find_tag(&t, 0, t.count, GUMBO_TAG_BODY);
    if (body < 0) body = 0;
    htree_judge(&t, body);
    meta_collect(&t, &m);

    int root = mode == HTML_MAIN ? choose_main(&t, body) : body;
    hrender r = {.t = &t, .skip_h1 = -1, .root = root, .main_mode = mode == HTML_MAIN};
    r.w.out = &sb;
    /* the title: og:title, else the main block's <h1>, else <title> */
    int h1 = find_tag(&t, root, t.n[root].end, GUMBO_TAG_H1);
    if (h1 < 0 && root != body) { /* the heading may sit just above the block */
        int up = t.n[root].parent;
        if (up >= body) h1 = find_tag(&t, up, t.n[up].end, GUMBO_TAG_H1);
    }
    tw_sb h1_text;
    tw_sb_init(&h1_text);
    if (h1 >= 0) subtree_text(&t, h1, &h1_text);
    char *h1s = NULL;
    meta_set(&h1s, tw_sb_str(&h1_text));
    tw_sb_free(&h1_text);
    out->title = first_of(m.title_og, h1s, m.title_ld, m.title_tag);
    /* the main block's <h1> repeats the title: it is metadata, not text */
    if (mode == HTML_MAIN && h1 >= 0 && h1s && out->title &&
        (loose_prefix(h1s, out->title) || (m.title_tag && loose_prefix(h1s, m.title_tag))))
        r.skip_h1 = h1;
    tw_free(h1s);
    const char *art_author = starts_with_url(m.author_article) ? NULL : m.author_article;
    out->author = first_of(m.author_meta, art_author, m.author_ld, m.author_rel);
    out->published_at = first_of(m.date_meta, m.date_ld, m.date_time, NULL);
    out->canonical_url = first_of(m.canonical, m.og_url, NULL, NULL);
    out->lang = first_of(m.lang, NULL, NULL, NULL);

    render_node(&r, root);
    if (sb.failed || !out->title || !out->author || !out->published_at || !out->canonical_url || !out->lang) {
        st = tw_error(TW_ERR_NOMEM, "html_extract: no memory for the text");
        goto done;
    }
    out->text = utf8_fixed(sb.buf ? sb.buf : "", sb.len);
    if (!out->text) {
        st = tw_error(TW_ERR_NOMEM, "html_extract: no memory for the text");
        goto done;
    }
    out->text_len = strlen(out->text);
done:
    if (st != TW_OK) html_doc_clear(out);
    tw_sb_free(&sb);
    meta_free(&m);
    tw_free(t.n);
    gumbo_destroy_output(&kGumboDefaultOptions, g);
    return st;
}
