/* robots.c: RFC 9309 robots.txt parsing and matching (contract in robots.h). */
#include "robots.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t off, len; /* the normalised pattern in robots_rules.pat */
    int allow;
    unsigned groups; /* RB_PRODUCT and/or RB_STAR: the groups the rule was read in */
} rb_rule;

enum { RB_PRODUCT = 1u, RB_STAR = 2u };

struct robots_rules {
    rb_rule *rules; /* (n) of the applicable group only, after robots_parse */
    size_t n;
    char *pat;      /* all patterns, back to back */
    double delay;   /* Crawl-delay in seconds, -1 when none */
    int uniform;    /* -1: use the rules; 0: disallow all; 1: allow all */
};

/* ---- normalisation ------------------------------------------------------------------------ */

static int rb_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void rb_put_pct(tw_sb *sb, unsigned v) {
    static const char hx[] = "0123456789ABCDEF";
    char b[3] = {'%', hx[(v >> 4) & 15], hx[v & 15]};
    tw_sb_append(sb, b, 3);
}

/* Appends s[0..n) normalised (robots.h) to sb. In a pattern '*' stays a wildcard and a last '$'
 * stays the end anchor; in a path both are literal and encoded. */
static void rb_normalise(tw_sb *sb, const char *s, size_t n, int pattern) {
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 1 < n ? rb_hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? rb_hexval((unsigned char)s[i + 2]) : -1;
            if (hi >= 0 && lo >= 0) {
                unsigned v = (unsigned)(hi * 16 + lo);
                if (v > 0x20 && v < 0x7F && v != '%' && v != '*' && v != '$') tw_sb_putc(sb, (char)v);
                else rb_put_pct(sb, v);
                i += 2;
            } else {
                rb_put_pct(sb, '%'); /* a stray '%' is the octet itself */
            }
        } else if (c <= 0x20 || c >= 0x7F) {
            rb_put_pct(sb, c);
        } else if (c == '*') {
            if (pattern) tw_sb_putc(sb, '*');
            else rb_put_pct(sb, c);
        } else if (c == '$') {
            if (pattern && i + 1 == n) tw_sb_putc(sb, '$');
            else rb_put_pct(sb, c);
        } else {
            tw_sb_putc(sb, (char)c);
        }
    }
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int rb_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int rb_key_is(const char *k, size_t kn, const char *name) {
    size_t n = strlen(name);
    if (kn != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (rb_lower((unsigned char)k[i]) != name[i]) return 0;
    return 1;
}

static int rb_space(int c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

/* The product token at the start of a user-agent value: its leading run of [A-Za-z_-]. */
static int rb_token_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}

typedef struct {
    rb_rule *rules;
    size_t n, cap;
    tw_sb pat;
    double delay[3]; /* by group bit: [RB_PRODUCT], [RB_STAR]; -1 when unset */
    int failed;
} rb_builder;

static void rb_add_rule(rb_builder *b, const char *v, size_t vn, int allow, unsigned groups) {
    if (!vn) return; /* an empty rule matches nothing (RFC 9309 2.2.2) */
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 16;
        rb_rule *nr = tw_realloc(b->rules, nc * sizeof *nr);
        if (!nr) {
            b->failed = 1;
            return;
        }
        b->rules = nr, b->cap = nc;
    }
    size_t off = b->pat.len;
    /* Patterns start with '/' or '*'; a bare "page.html" is read as "/page.html". */
    if (v[0] != '/' && v[0] != '*') tw_sb_putc(&b->pat, '/');
    rb_normalise(&b->pat, v, vn, 1);
    if (b->pat.failed) {
        b->failed = 1;
        return;
    }
    b->rules[b->n++] = (rb_rule){off, b->pat.len - off, allow, groups};
}

static void rb_set_delay(rb_builder *b, const char *v, size_t vn, unsigned groups) {
    char buf[64];
    if (!vn || vn >= sizeof buf) return;
    memcpy(buf, v, vn);
    buf[vn] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (end == buf || *end || !isfinite(d) || d < 0) return;
    for (unsigned g = RB_PRODUCT; g <= RB_STAR; g <<= 1)
        if ((groups & g) && b->delay[g] < 0) b->delay[g] = d;
}

tw_status robots_parse(const char *text, size_t len, const char *product, robots_rules **out) {
    if (out) *out = NULL;
    if ((!text && len) || !product || !out)
        return tw_error(TW_ERR_ARG, "robots_parse: NULL %s", !out ? "out" : !product ? "product" : "text");
    size_t plen = strlen(product);

    size_t end = len;
    if (end > ROBOTS_MAX_BYTES) {
        end = ROBOTS_MAX_BYTES; /* the rest is ignored, and so is a line cut at the limit */
        while (end > 0 && text[end - 1] != '\n' && text[end - 1] != '\r') end--;
    }
    size_t i = 0;
    if (end >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        i = 3;

    rb_builder b = {0};
    tw_sb_init(&b.pat);
    b.delay[RB_PRODUCT] = b.delay[RB_STAR] = -1;
    unsigned seen = 0;   /* groups that exist: RB_PRODUCT, RB_STAR */
    unsigned cur = 0;    /* the groups the current group belongs to */
    int in_agents = 0;   /* the previous key line was a user-agent line */
    int any_group = 0;

    while (i < end && !b.failed) {
        size_t ls = i;
        while (i < end && text[i] != '\n' && text[i] != '\r') i++;
        size_t le = i;
        if (i < end) i += (text[i] == '\r' && i + 1 < end && text[i + 1] == '\n') ? 2 : 1;
        /* comment, key, value */
        const char *hash = memchr(text + ls, '#', le - ls);
        if (hash) le = (size_t)(hash - text);
        const char *colon = memchr(text + ls, ':', le - ls);
        if (!colon) continue;
        size_t ks = ls, ke = (size_t)(colon - text);
        while (ks < ke && rb_space((unsigned char)text[ks])) ks++;
        while (ke > ks && rb_space((unsigned char)text[ke - 1])) ke--;
        size_t vs = (size_t)(colon - text) + 1, ve = le;
        while (vs < ve && rb_space((unsigned char)text[vs])) vs++;
        while (ve > vs && rb_space((unsigned char)text[ve - 1])) ve--;
        const char *k = text + ks, *v = text + vs;
        size_t kn = ke - ks, vn = ve - vs;

        if (rb_key_is(k, kn, "user-agent")) {
            if (!in_agents) cur = 0; /* a new group */
            in_agents = 1;
            any_group = 1;
            if (vn >= 1 && v[0] == '*' && (vn == 1 || rb_space((unsigned char)v[1]))) {
                cur |= RB_STAR;
                seen |= RB_STAR;
            } else {
                size_t t = 0;
                while (t < vn && rb_token_char((unsigned char)v[t])) t++;
                int match = t == plen && t > 0;
                for (size_t j = 0; match && j < t; j++)
                    if (rb_lower((unsigned char)v[j]) != rb_lower((unsigned char)product[j])) match = 0;
                if (match) {
                    cur |= RB_PRODUCT;
                    seen |= RB_PRODUCT;
                }
            }
        } else if (rb_key_is(k, kn, "allow") || rb_key_is(k, kn, "disallow")) {
            in_agents = 0;
            if (any_group && cur) rb_add_rule(&b, v, vn, kn == 5, cur);
        } else if (rb_key_is(k, kn, "crawl-delay")) {
            in_agents = 0;
            if (any_group && cur) rb_set_delay(&b, v, vn, cur);
        }
        /* other keys (sitemap, host, ...) neither add rules nor end a run of user-agents */
    }
    if (b.failed) {
        tw_free(b.rules);
        tw_sb_free(&b.pat);
        return tw_error(TW_ERR_NOMEM, "robots_parse: out of memory");
    }

    robots_rules *r = tw_calloc(1, sizeof *r);
    if (!r) {
        tw_free(b.rules);
        tw_sb_free(&b.pat);
        return tw_error(TW_ERR_NOMEM, "robots_parse: out of memory");
    }
    unsigned use = (seen & RB_PRODUCT) ? RB_PRODUCT : (seen & RB_STAR) ? RB_STAR : 0;
    size_t n = 0;
    for (size_t j = 0; j < b.n; j++)
        if (b.rules[j].groups & use) b.rules[n++] = b.rules[j];
    r->rules = b.rules;
    r->n = n;
    r->pat = b.pat.buf; /* NULL when there are no patterns at all */
    r->delay = use ? b.delay[use] : -1;
    r->uniform = use ? -1 : 1;
    *out = r;
    return TW_OK;
}

tw_status robots_uniform(int allow, robots_rules **out) {
    if (!out) return tw_error(TW_ERR_ARG, "robots_uniform: NULL out");
    robots_rules *r = tw_calloc(1, sizeof *r);
    if (!r) return tw_error(TW_ERR_NOMEM, "robots_uniform: out of memory");
    r->delay = -1;
    r->uniform = allow ? 1 : 0;
    *out = r;
    return TW_OK;
}

void robots_free(robots_rules *r) {
    if (!r) return;
    tw_free(r->rules);
    tw_free(r->pat);
    tw_free(r);
}

double robots_crawl_delay(const robots_rules *r) { return r ? r->delay : -1; }
size_t robots_rule_count(const robots_rules *r) { return r ? r->n : 0; }

/* ---- matching ----------------------------------------------------------------------------- */

/* Does pattern p[0..pn) (normalised: '*' wildcards, optional final '$') match the start of s
 * (all of s with '$')? Segments between wildcards are matched leftmost-first, which is exact
 * for a pattern that ends in an implicit '*' and, with '$', when the last segment is taken as a
 * suffix. Time O(pn * sn) at worst, no allocation. */
static int rb_match(const char *p, size_t pn, const char *s, size_t sn) {
    int anchored = pn > 0 && p[pn - 1] == '$';
    if (anchored) pn--;
    size_t pi = 0, si = 0;
    int first = 1;
    for (;;) {
        size_t e = pi;
        while (e < pn && p[e] != '*') e++;
        size_t seg = e - pi;
        int last = e == pn;
        if (first) {
            if (seg > sn || memcmp(p + pi, s, seg) != 0) return 0;
            si = seg;
            first = 0;
            if (last) return anchored ? si == sn : 1;
        } else if (last) {
            if (!anchored) return seg == 0 || memmem(s + si, sn - si, p + pi, seg) != NULL;
            return seg <= sn - si && memcmp(s + sn - seg, p + pi, seg) == 0;
        } else if (seg) {
            const char *f = memmem(s + si, sn - si, p + pi, seg);
            if (!f) return 0;
            si = (size_t)(f - s) + seg;
        }
        pi = e + 1;
    }
}

int robots_allowed(const robots_rules *r, const char *path) {
    if (!r || !path) {
        tw_error(TW_ERR_ARG, "robots_allowed: NULL %s", !r ? "rules" : "path");
        return -1;
    }
    if (!*path) path = "/";
    if (strcmp(path, "/robots.txt") == 0) return 1; /* RFC 9309 2.2.2: implicitly allowed */
    if (r->uniform >= 0) return r->uniform;
    if (!r->n) return 1;
    tw_sb np;
    tw_sb_init(&np);
    rb_normalise(&np, path, strlen(path), 0);
    if (np.failed) {
        tw_sb_free(&np);
        tw_error(TW_ERR_NOMEM, "robots_allowed: out of memory");
        return -1;
    }
    size_t best = 0;
    int best_allow = 1, matched = 0;
    for (size_t i = 0; i < r->n; i++) {
        const rb_rule *ru = &r->rules[i];
        if (matched && (ru->len < best || (ru->len == best && !ru->allow))) continue;
        if (!rb_match(r->pat + ru->off, ru->len, np.buf, np.len)) continue;
        if (!matched || ru->len > best || ru->allow) {
            best = ru->len;
            best_allow = ru->allow;
            matched = 1;
        }
    }
    tw_sb_free(&np);
    return best_allow;
}
