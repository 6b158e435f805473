/* crawl_url.c: the URL helpers of crawl_impl.h (joining, canonical form, trimming). */
#include <string.h>
#include <strings.h>

#include "crawl_impl.h"

/* Length of the "scheme:" prefix of u (the ':' included), 0 when u has none. */
static size_t scheme_len(const char *u) {
    size_t i = 0;
    if (!((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z'))) return 0;
    while (u[i] && u[i] != ':' && u[i] != '/' && u[i] != '?' && u[i] != '#') {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
        i++;
    }
    return u[i] == ':' ? i + 1 : 0;
}

/* End of the "scheme://authority" part of u. */
static size_t origin_len(const char *u) {
    size_t i = scheme_len(u);
    if (u[i] == '/' && u[i + 1] == '/') {
        i += 2;
        while (u[i] && u[i] != '/' && u[i] != '?' && u[i] != '#') i++;
    }
    return i;
}

/* Appends path (n bytes, starting with '/') to sb with "." and ".." segments removed
 * (RFC 3986 5.2.4). */
static void put_path(tw_sb *sb, const char *path, size_t n) {
    size_t base = sb->len;
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && path[j] != '/') j++;
        const char *seg = path + i + 1; /* after the '/' */
        size_t sl = j - i - 1;
        int last = j >= n;
        if (sl == 1 && seg[0] == '.') {
            if (last) tw_sb_putc(sb, '/');
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            while (sb->len > base && sb->buf[sb->len - 1] != '/') sb->len--;
            if (sb->len > base) sb->len--; /* the '/' before the removed segment */
            sb->buf[sb->len] = 0;
            if (last) tw_sb_putc(sb, '/');
        } else {
            tw_sb_append(sb, path + i, j - i);
        }
        i = j;
    }
    if (sb->len == base) tw_sb_putc(sb, '/');
}

char *crawl_url_join(const char *base, const char *rel) {
    if (!base) base = "";
    if (!rel) rel = "";
    if (scheme_len(rel)) return tw_strdup(rel);
    tw_sb sb;
    tw_sb_init(&sb);
    size_t bs = scheme_len(base), bo = origin_len(base);
    size_t bq = bo + strcspn(base + bo, "?#"); /* end of base's path */
    size_t bf = bo + strcspn(base + bo, "#");  /* end of base's query */
    if (rel[0] == '/' && rel[1] == '/') {
        tw_sb_append(&sb, base, bs);
        tw_sb_puts(&sb, rel);
    } else if (rel[0] == '/') {
        tw_sb_append(&sb, base, bo);
        size_t rp = strcspn(rel, "?#");
        put_path(&sb, rel, rp);
        tw_sb_puts(&sb, rel + rp);
    } else if (rel[0] == '?') {
        tw_sb_append(&sb, base, bq);
        tw_sb_puts(&sb, rel);
    } else if (rel[0] == '#' || rel[0] == 0) {
        tw_sb_append(&sb, base, bf);
        tw_sb_puts(&sb, rel);
    } else {
        tw_sb_append(&sb, base, bo);
        /* the base's path up to its last '/', then rel's path */
        tw_sb merged;
        tw_sb_init(&merged);
        const char *bp = base + bo;
        size_t bpl = bq - bo;
        size_t cut = bpl;
        while (cut && bp[cut - 1] != '/') cut--;
        if (!cut) tw_sb_putc(&merged, '/');
        tw_sb_append(&merged, bp, cut);
        size_t rp = strcspn(rel, "?#");
        tw_sb_append(&merged, rel, rp);
        put_path(&sb, tw_sb_str(&merged), merged.len);
        tw_sb_puts(&sb, rel + rp);
        if (merged.failed) sb.failed = 1;
        tw_sb_free(&merged);
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "crawl_url_join: out of memory");
        return NULL;
    }
    if (!sb.len) tw_sb_puts(&sb, "");
    return tw_sb_take(&sb);
}

static int tracking_param(const char *k, size_t n) {
    static const char *const names[] = {"source", "ref", "fbclid", "gclid", "mc_cid", "mc_eid",
                                        "sk", "ref_src", "triedRedirect"};
    if (n >= 4 && !memcmp(k, "utm_", 4)) return 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], k, n)) return 1;
    return 0;
}

char *crawl_url_canonical(const char *url) {
    if (!url) url = "";
    size_t f = strcspn(url, "#");
    size_t q = strcspn(url, "?#");
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_append(&sb, url, q);
    if (q < f) { /* a query */
        const char *p = url + q + 1, *end = url + f;
        int kept = 0;
        while (p <= end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *pe = amp ? amp : end;
            size_t kl = strcspn(p, "=&#");
            if (kl > (size_t)(pe - p)) kl = (size_t)(pe - p);
            if (pe > p && !tracking_param(p, kl)) {
                tw_sb_putc(&sb, kept ? '&' : '?');
                tw_sb_append(&sb, p, (size_t)(pe - p));
                kept = 1;
            }
            if (!amp) break;
            p = amp + 1;
        }
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "crawl_url_canonical: out of memory");
        return NULL;
    }
    if (!sb.len) tw_sb_puts(&sb, "");
    return tw_sb_take(&sb);
}

char *crawl_url_trim(const char *base) {
    if (!base) base = "";
    size_t n = strlen(base);
    size_t keep = origin_len(base);
    while (n > keep && base[n - 1] == '/') n--;
    char *r = tw_strndup(base, n);
    if (!r) tw_error(TW_ERR_NOMEM, "crawl_url_trim: out of memory");
    return r;
}

/* Here rather than in crawl_medium.c so that it links without the crawler (unit tests). */
char *crawl_medium_feed_url(const char *profile) {
    char *base = crawl_url_trim(profile);
    if (!base) return NULL;
    const char *hs = strstr(base, "://");
    const char *host = hs ? hs + 3 : base;
    size_t hl = strcspn(host, "/?#");
    tw_sb sb;
    tw_sb_init(&sb);
    int medium = (hl == 10 && !strncasecmp(host, "medium.com", 10)) ||
                 (hl == 14 && !strncasecmp(host, "www.medium.com", 14));
    if (medium && host[hl] == '/' && host[hl + 1] == '@') {
        tw_sb_append(&sb, base, (size_t)(host + hl - base));
        tw_sb_puts(&sb, "/feed");
        tw_sb_puts(&sb, host + hl);
    } else {
        tw_sb_puts(&sb, base);
        tw_sb_puts(&sb, "/feed");
    }
    tw_free(base);
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "crawl: out of memory");
        return NULL;
    }
    return tw_sb_take(&sb);
}
