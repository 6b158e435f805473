/* clean.c: clean.h: text normalisation, clean_document by content type, and MinHash + LSH
 * near-duplicate detection.
 *
 * clean_text runs in three passes over the text:
 *   1. decode: invalid UTF-8 -> U+FFFD (one per maximal ill-formed subpart, as Unicode's
 *      "best practice" and the WHATWG decoder do), \r\n and \r -> \n, control characters other
 *      than \n and \t dropped, and byte-order marks (U+FEFF, wherever they are: a leading one
 *      left after a dropped blank line would otherwise make cleaning not idempotent);
 *   2. NFC (utf8proc), line by line, and only for lines that hold a code point for which NFC
 *      can differ (most lines are ASCII plus typographic punctuation: they are copied);
 *   3. whitespace: runs of spaces/tabs after a line's first non-blank character -> one space,
 *      trailing blanks dropped, at most one blank line in a row, no blank lines at either end;
 *      lines between ``` fences are copied verbatim.
 * A line's leading indentation is kept (nested Markdown lists need it): "inside a line" in
 * clean.h means after its first non-blank character.
 */
#include "clean.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "html.h"

/* ---- pass 1: UTF-8 repair, newlines, control characters ----------------------------------- */

/* Length of the valid sequence at s (1..4), or -(length of the maximal ill-formed subpart) when
 * it is invalid (Unicode 15, 3.9, U+FFFD substitution of maximal subparts). */
static int utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F; /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F; /* <= U+10FFFF */
    else return -1;                          /* 80..C1, F5..FF: never valid */
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        uint8_t b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -i;
    }
    return need + 1;
}

/* Appends the repaired text with \r\n -> \n; convert_cr: a lone \r -> \n too; strip_ctl: C0
 * and C1 controls other than \n and \t dropped (DEL too), and U+FEFF. */
static void decode_pass(const char *in, size_t len, int strip_ctl, int convert_cr, tw_sb *out) {
    const uint8_t *s = (const uint8_t *)in;
    size_t i = 0, run = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x7F) {
            i++;
            continue;
        }
        if (c < 0x80) {
            if (c == '\n' || c == '\t' || (c != '\r' && !strip_ctl)) {
                i++;
                continue;
            }
            if (c == '\r' && !convert_cr && !(i + 1 < len && s[i + 1] == '\n')) {
                i++; /* a lone \r kept (code) */
                continue;
            }
            tw_sb_append(out, in + run, i - run);
            if (c == '\r' && convert_cr && !(i + 1 < len && s[i + 1] == '\n')) tw_sb_putc(out, '\n');
            run = ++i; /* \r of \r\n, or a control character: dropped */
            continue;
        }
        int l = utf8_seq(s + i, len - i);
        if (l > 0) {
            if (strip_ctl && ((l == 2 && c == 0xC2 && s[i + 1] < 0xA0) || /* C1 controls U+0080..U+009F */
                              (l == 3 && c == 0xEF && s[i + 1] == 0xBB && s[i + 2] == 0xBF))) { /* U+FEFF */
                tw_sb_append(out, in + run, i - run);
                run = i += (size_t)l;
                continue;
            }
            i += (size_t)l;
            continue;
        }
        tw_sb_append(out, in + run, i - run);
        tw_sb_puts(out, "\xEF\xBF\xBD");
        run = i += (size_t)-l;
    }
    tw_sb_append(out, in + run, i - run);
}

/* ---- pass 2: NFC ------------------------------------------------------------------------- */

/* Code points for which NFC is the identity whatever surrounds them: below U+0300 (no
 * combining marks, no composition exclusions or singletons start before U+0340), and the
 * typographic punctuation, currency, arrows and emoji ranges, which have no canonical
 * decomposition and combine with nothing. */
static int nfc_inert(uint32_t cp) {
    return cp < 0x300 || (cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E) ||
           (cp >= 0x20A0 && cp <= 0x20C0) || (cp >= 0x2190 && cp <= 0x21FF) ||
           (cp >= 0x2500 && cp <= 0x27BF) || (cp >= 0x1F300 && cp <= 0x1FAFF);
}

/* NFC of one line of valid UTF-8 (no \n inside), appended to out. */
static tw_status nfc_line(const char *s, size_t n, tw_sb *out) {
    utf8proc_int32_t stackbuf[512];
    utf8proc_int32_t *buf = stackbuf;
    utf8proc_ssize_t cap = (utf8proc_ssize_t)(sizeof stackbuf / sizeof stackbuf[0]);
    int opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    for (;;) {
        utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, buf, cap,
                                                (utf8proc_option_t)opts);
        if (r < 0) { /* cannot happen on repaired input: copy it unchanged */
            if (buf != stackbuf) tw_free(buf);
            tw_sb_append(out, s, n);
            return TW_OK;
        }
        if (r <= cap) {
            r = utf8proc_normalize_utf32(buf, r, (utf8proc_option_t)opts);
            if (r >= 0) {
                char enc[4];
                for (utf8proc_ssize_t k = 0; k < r; k++) {
                    int l = tw_utf8_encode((uint32_t)buf[k], enc);
                    tw_sb_append(out, enc, (size_t)l);
                }
            } else {
                tw_sb_append(out, s, n);
            }
            if (buf != stackbuf) tw_free(buf);
            return out->failed ? TW_ERR_NOMEM : TW_OK;
        }
        if (buf != stackbuf) tw_free(buf);
        cap = r;
        buf = tw_malloc((size_t)cap * sizeof *buf);
        if (!buf) return TW_ERR_NOMEM;
    }
}

static tw_status nfc_pass(const char *s, size_t n, tw_sb *out) {
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        int inert = 1;
        while (e < n && s[e] != '\n') {
            if ((uint8_t)s[e] < 0x80) {
                e++;
                continue;
            }
            uint32_t cp;
            int l = tw_utf8_decode((const uint8_t *)s + e, n - e, &cp);
            if (inert && !nfc_inert(cp)) inert = 0;
            e += (size_t)l;
        }
        if (inert) {
            tw_sb_append(out, s + i, e - i);
        } else if (nfc_line(s + i, e - i, out) != TW_OK) {
            return TW_ERR_NOMEM;
        }
        if (e < n) tw_sb_putc(out, '\n');
        i = e + 1;
    }
    return out->failed ? TW_ERR_NOMEM : TW_OK;
}

/* ---- pass 3: whitespace ------------------------------------------------------------------ */

/* Is the line a ``` fence (up to three spaces of indentation first)? */
static int is_fence(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && i < 3 && s[i] == ' ') i++;
    return n - i >= 3 && s[i] == '`' && s[i + 1] == '`' && s[i + 2] == '`';
}

static void space_pass(const char *s, size_t n, tw_sb *out) {
    int in_fence = 0;
    size_t blank_run = 0; /* blank lines held back until a non-blank line follows */
    int any = 0;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        const char *line = s + i;
        size_t ll = e - i;
        int fence = is_fence(line, ll);
        if (in_fence && !fence) { /* verbatim, blank lines included */
            if (ll == 0) {
                /* Counted, and written (all of them) only when a line follows inside the
                 * fence or closes it: an unclosed fence at the end of the text must not leave
                 * trailing newlines (the text never starts or ends with one). */
                if (any) blank_run++;
            } else {
                for (; blank_run; blank_run--) tw_sb_putc(out, '\n');
                if (any) tw_sb_putc(out, '\n');
                tw_sb_append(out, line, ll);
                any = 1;
            }
        } else {
            size_t end = ll;
            while (end && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
            if (!end) {
                if (any) blank_run = 1;
            } else {
                if (any) tw_sb_putc(out, '\n');
                /* outside a fence blank lines collapse to one; the blank lines that end a
                 * fenced block are kept, all of them, before its closing fence */
                if (in_fence) for (; blank_run; blank_run--) tw_sb_putc(out, '\n');
                if (blank_run) tw_sb_putc(out, '\n');
                blank_run = 0;
                size_t k = 0;
                while (k < end && (line[k] == ' ' || line[k] == '\t')) k++;
                tw_sb_append(out, line, k); /* indentation kept */
                while (k < end) {
                    size_t r = k;
                    while (r < end && line[r] != ' ' && line[r] != '\t') r++;
                    tw_sb_append(out, line + k, r - k);
                    if (r < end) tw_sb_putc(out, ' ');
                    while (r < end && (line[r] == ' ' || line[r] == '\t')) r++;
                    k = r;
                }
                any = 1;
            }
            if (fence) in_fence = !in_fence;
        }
        i = e + 1;
    }
}

tw_status clean_text(const char *in, size_t len, tw_sb *out) {
    if (!in) len = 0;
    tw_sb a, b;
    tw_sb_init(&a);
    tw_sb_init(&b);
    decode_pass(in ? in : "", len, 1, 1, &a);
    tw_status st = a.failed ? TW_ERR_NOMEM : nfc_pass(a.buf ? a.buf : "", a.len, &b);
    if (st == TW_OK) {
        space_pass(b.buf ? b.buf : "", b.len, out);
        if (out->failed) st = TW_ERR_NOMEM;
    }
    tw_sb_free(&a);
    tw_sb_free(&b);
    if (st != TW_OK) return tw_error(TW_ERR_NOMEM, "clean_text: no memory for %zu bytes", len);
    return TW_OK;
}

/* ---- clean_document ---------------------------------------------------------------------- */

/* Length of a YAML front matter block at the start of s ("---" line ... "---" or "..." line),
 * 0 when there is none or it is not closed. */
static size_t front_matter_len(const char *s, size_t n) {
    size_t i = 0;
    if (n >= 3 && (uint8_t)s[0] == 0xEF && (uint8_t)s[1] == 0xBB && (uint8_t)s[2] == 0xBF) i = 3;
    if (n - i < 4 || strncmp(s + i, "---", 3) != 0) return 0;
    size_t j = i + 3;
    while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
    if (j < n && s[j] == '\r') j++;
    if (j >= n || s[j] != '\n') return 0;
    j++;
    while (j < n) {
        size_t e = j;
        while (e < n && s[e] != '\n') e++;
        size_t le = e;
        while (le > j && (s[le - 1] == '\r' || s[le - 1] == ' ' || s[le - 1] == '\t')) le--;
        if (le - j == 3 && (!strncmp(s + j, "---", 3) || !strncmp(s + j, "...", 3))) return e < n ? e + 1 : e;
        j = e + 1;
    }
    return 0;
}

tw_status clean_document(const char *content_type, const char *raw, size_t len, tw_sb *out) {
    if (!content_type) return tw_error(TW_ERR_ARG, "clean_document: content type is NULL");
    if (!raw) len = 0;
    if (!strcmp(content_type, "html") || !strcmp(content_type, "html_fragment")) {
        html_doc d;
        tw_status st = html_extract(raw ? raw : "", len, content_type[4] ? HTML_ALL : HTML_MAIN, &d);
        if (st != TW_OK) return tw_error_wrap("clean_document (%s)", content_type);
        st = clean_text(d.text, d.text_len, out);
        html_doc_clear(&d);
        return st;
    }
    if (!strcmp(content_type, "markdown")) {
        size_t fm = front_matter_len(raw ? raw : "", len);
        return clean_text(raw ? raw + fm : "", len - fm, out);
    }
    if (!strcmp(content_type, "text")) return clean_text(raw, len, out);
    if (!strcmp(content_type, "code")) {
        decode_pass(raw ? raw : "", len, 0, 0, out);
        /* \r\n -> \n only: a lone \r in code is kept */
        if (out->failed) return tw_error(TW_ERR_NOMEM, "clean_document: no memory for %zu bytes", len);
        return TW_OK;
    }
    return tw_error(TW_ERR_ARG,
                    "clean_document: unknown content type '%s' (html, html_fragment, markdown, text, code)",
                    content_type);
}

/* ---- MinHash ----------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The 128 hash functions: h_i(x) = (a_i * x + b_i) >> 32 over 64-bit words with odd a_i
 * (multiply-shift, a universal family); a_i and b_i from a fixed seed, so signatures are the
 * same on every machine and run. Derived on every call (cheap) to keep no global state. */
static void dedup_coeffs(uint64_t a[DEDUP_NUM_HASHES], uint64_t b[DEDUP_NUM_HASHES]) {
    uint64_t seed = 0x7477696E2D6D6821ull; /* "twin-mh!" */
    for (int i = 0; i < DEDUP_NUM_HASHES; i++) {
        a[i] = splitmix64(&seed) | 1u;
        b[i] = splitmix64(&seed);
    }
}

/* Next word of text from *pos: lower-cased, punctuation stripped, as a 64-bit FNV-1a hash.
 * Returns 0 at the end. Words are runs of non-space characters; a run of punctuation only is
 * not a word. */
static int next_word(const char *s, size_t n, size_t *pos, uint64_t *h) {
    size_t i = *pos;
    while (i < n) {
        /* skip whitespace */
        while (i < n && ((uint8_t)s[i] <= ' ')) i++;
        if (i >= n) break;
        uint64_t x = 0xCBF29CE484222325ull;
        int letters = 0;
        while (i < n && (uint8_t)s[i] > ' ') {
            uint8_t c = (uint8_t)s[i];
            uint32_t cp;
            int l;
            if (c < 0x80) {
                l = 1;
                cp = c;
            } else {
                l = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
                if (cp == TW_UTF8_INVALID) cp = 0xFFFD;
            }
            i += (size_t)l;
            if (cp < 0x80) {
                if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
                } else if (cp >= 'A' && cp <= 'Z') {
                    cp += 32;
                } else {
                    continue; /* ASCII punctuation and symbols */
                }
            } else {
                if (cp == 0xA0 || cp == 0x3000 || (cp >= 0x2000 && cp <= 0x200A)) break; /* spaces */
                utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
                if (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO) continue;
                cp = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            }
            for (int k = 0; k < 4; k++) {
                x ^= (cp >> (8 * k)) & 0xFF;
                x *= 0x100000001B3ull;
            }
            letters++;
        }
        if (letters) {
            *pos = i;
            *h = x;
            return 1;
        }
    }
    *pos = n;
    return 0;
}

void dedup_signature(const char *text, size_t len, dedup_sig *out) {
    uint64_t a[DEDUP_NUM_HASHES], b[DEDUP_NUM_HASHES];
    dedup_coeffs(a, b);
    for (int i = 0; i < DEDUP_NUM_HASHES; i++) out->h[i] = UINT32_MAX;
    out->n_shingles = 0;
    if (!text) return;
    uint64_t win[DEDUP_SHINGLE_WORDS];
    size_t pos = 0;
    int64_t nw = 0;
    uint64_t w;
    while (next_word(text, len, &pos, &w)) {
        win[nw % DEDUP_SHINGLE_WORDS] = w;
        nw++;
        if (nw < DEDUP_SHINGLE_WORDS) continue;
        /* the shingle's 64-bit hash: the five word hashes in order, mixed */
        uint64_t sh = 0x6A09E667F3BCC908ull;
        for (int k = 0; k < DEDUP_SHINGLE_WORDS; k++) {
            uint64_t v = win[(nw - DEDUP_SHINGLE_WORDS + k) % DEDUP_SHINGLE_WORDS];
            sh ^= v + 0x9E3779B97F4A7C15ull + (sh << 6) + (sh >> 2);
            uint64_t m = sh;
            sh = splitmix64(&m);
        }
        for (int i = 0; i < DEDUP_NUM_HASHES; i++) {
            uint32_t v = (uint32_t)((a[i] * sh + b[i]) >> 32);
            if (v < out->h[i]) out->h[i] = v;
        }
        if (out->n_shingles < INT32_MAX) out->n_shingles++;
    }
}

double dedup_similarity(const dedup_sig *x, const dedup_sig *y) {
    if (!x || !y || x->n_shingles <= 0 || y->n_shingles <= 0) return 0.0;
    int eq = 0;
    for (int i = 0; i < DEDUP_NUM_HASHES; i++) eq += x->h[i] == y->h[i];
    return (double)eq / DEDUP_NUM_HASHES;
}

/* ---- LSH index --------------------------------------------------------------------------- */

#define DEDUP_ROWS (DEDUP_NUM_HASHES / DEDUP_BANDS)

typedef struct {
    uint64_t key; /* band number and its rows, hashed */
    int32_t doc;
    int32_t next; /* next entry in the bucket, -1 at the end */
} dedup_entry;

struct dedup_index {
    dedup_sig *sigs; /* (n_docs) */
    int64_t *ids;    /* (n_docs) */
    int32_t n_docs, cap_docs;
    dedup_entry *entries; /* (n_entries) */
    int32_t n_entries, cap_entries;
    int32_t *buckets; /* (n_buckets), heads of entry chains, -1 empty */
    uint32_t n_buckets;  /* a power of two */
};

static uint64_t band_key(const dedup_sig *s, int band) {
    uint64_t x = 0x243F6A8885A308D3ull ^ (uint64_t)band;
    for (int r = 0; r < DEDUP_ROWS; r++) {
        x ^= s->h[band * DEDUP_ROWS + r];
        uint64_t m = x;
        x = splitmix64(&m);
    }
    return x;
}

tw_status dedup_index_new(dedup_index **out) {
    if (!out) return tw_error(TW_ERR_ARG, "dedup_index_new: out is NULL");
    *out = NULL;
    dedup_index *ix = tw_calloc(1, sizeof *ix);
    if (!ix) return tw_error(TW_ERR_NOMEM, "dedup_index_new: no memory");
    ix->n_buckets = 1024;
    ix->buckets = tw_malloc(ix->n_buckets * sizeof *ix->buckets);
    if (!ix->buckets) {
        tw_free(ix);
        return tw_error(TW_ERR_NOMEM, "dedup_index_new: no memory");
    }
    memset(ix->buckets, 0xFF, ix->n_buckets * sizeof *ix->buckets);
    *out = ix;
    return TW_OK;
}

void dedup_index_free(dedup_index *ix) {
    if (!ix) return;
    tw_free(ix->sigs);
    tw_free(ix->ids);
    tw_free(ix->entries);
    tw_free(ix->buckets);
    tw_free(ix);
}

static tw_status dedup_rehash(dedup_index *ix, uint32_t n_buckets) {
    int32_t *b = tw_malloc(n_buckets * sizeof *b);
    if (!b) return TW_ERR_NOMEM;
    memset(b, 0xFF, n_buckets * sizeof *b);
    for (int32_t e = 0; e < ix->n_entries; e++) {
        uint32_t k = (uint32_t)ix->entries[e].key & (n_buckets - 1);
        ix->entries[e].next = b[k];
        b[k] = e;
    }
    tw_free(ix->buckets);
    ix->buckets = b;
    ix->n_buckets = n_buckets;
    return TW_OK;
}

tw_status dedup_index_add(dedup_index *ix, int64_t id, const dedup_sig *s) {
    if (!ix || !s) return tw_error(TW_ERR_ARG, "dedup_index_add: NULL argument");
    if (id == 0) return tw_error(TW_ERR_ARG, "dedup_index_add: id 0 is reserved (\"no match\")");
    if (ix->n_docs == INT32_MAX - 1 || ix->n_entries > INT32_MAX - DEDUP_BANDS)
        return tw_error(TW_ERR_ARG, "dedup_index_add: index full (%d documents)", ix->n_docs);
    if (ix->n_docs == ix->cap_docs) {
        int32_t cap = ix->cap_docs ? (ix->cap_docs > INT32_MAX / 4 ? INT32_MAX - 1 : ix->cap_docs * 2) : 64;
        dedup_sig *ns = tw_realloc(ix->sigs, (size_t)cap * sizeof *ns);
        if (!ns) return tw_error(TW_ERR_NOMEM, "dedup_index_add: no memory for %d documents", cap);
        ix->sigs = ns;
        int64_t *ni = tw_realloc(ix->ids, (size_t)cap * sizeof *ni);
        if (!ni) return tw_error(TW_ERR_NOMEM, "dedup_index_add: no memory for %d documents", cap);
        ix->ids = ni;
        ix->cap_docs = cap;
    }
    int32_t d = ix->n_docs;
    ix->sigs[d] = *s;
    ix->ids[d] = id;
    ix->n_docs++;
    if (s->n_shingles <= 0) return TW_OK; /* too short: never matched, never a candidate */
    if (ix->n_entries + DEDUP_BANDS > ix->cap_entries) {
        int32_t cap = ix->cap_entries ? ix->cap_entries * 2 : 1024;
        dedup_entry *ne = tw_realloc(ix->entries, (size_t)cap * sizeof *ne);
        if (!ne) {
            ix->n_docs--;
            return tw_error(TW_ERR_NOMEM, "dedup_index_add: no memory for %d band entries", cap);
        }
        ix->entries = ne;
        ix->cap_entries = cap;
    }
    if ((uint32_t)(ix->n_entries + DEDUP_BANDS) > ix->n_buckets && ix->n_buckets < (1u << 30)) {
        if (dedup_rehash(ix, ix->n_buckets * 4) != TW_OK) {
            ix->n_docs--;
            return tw_error(TW_ERR_NOMEM, "dedup_index_add: no memory for the band table");
        }
    }
    for (int band = 0; band < DEDUP_BANDS; band++) {
        dedup_entry *e = &ix->entries[ix->n_entries];
        e->key = band_key(s, band);
        e->doc = d;
        uint32_t k = (uint32_t)e->key & (ix->n_buckets - 1);
        e->next = ix->buckets[k];
        ix->buckets[k] = ix->n_entries++;
    }
    return TW_OK;
}

tw_status dedup_index_query(const dedup_index *ix, const dedup_sig *s, double threshold, int64_t *id, double *sim) {
    if (!ix || !s || !id || !sim) return tw_error(TW_ERR_ARG, "dedup_index_query: NULL argument");
    *id = 0;
    *sim = 0;
    if (s->n_shingles <= 0) return TW_OK;
    int32_t best = -1;
    double best_sim = 0;
    for (int band = 0; band < DEDUP_BANDS; band++) {
        uint64_t key = band_key(s, band);
        for (int32_t e = ix->buckets[(uint32_t)key & (ix->n_buckets - 1)]; e >= 0; e = ix->entries[e].next) {
            const dedup_entry *en = &ix->entries[e];
            if (en->key != key) continue;
            /* candidates are confirmed on the full signature; ties go to the earliest added */
            double v = dedup_similarity(s, &ix->sigs[en->doc]);
            if (v >= threshold && (best < 0 || v > best_sim || (v == best_sim && en->doc < best))) {
                best = en->doc;
                best_sim = v;
            }
        }
    }
    if (best >= 0) {
        *id = ix->ids[best];
        *sim = best_sim;
    }
    return TW_OK;
}

/* ---- extraction quality ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The words of s as sorted hashes (tw_free), their count in *n; NULL with *n = 0 on no memory. */
static uint64_t *word_bag(const char *s, size_t len, size_t *n) {
    size_t cap = 256, k = 0, pos = 0;
    uint64_t *v = tw_malloc(cap * sizeof *v), w;
    *n = 0;
    if (!v) return NULL;
    while (s && next_word(s, len, &pos, &w)) {
        if (k == cap) {
            uint64_t *nv = tw_realloc(v, cap * 2 * sizeof *v);
            if (!nv) {
                tw_free(v);
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = w;
    }
    qsort(v, k, sizeof *v, cmp_u64);
    *n = k;
    return v;
}

double clean_word_f1(const char *got, size_t got_len, const char *want, size_t want_len) {
    size_t ng, nw;
    uint64_t *g = word_bag(got, got_len, &ng), *w = word_bag(want, want_len, &nw);
    double f1 = 0;
    if (g && w) {
        if (!ng && !nw) {
            f1 = 1.0;
        } else if (ng && nw) {
            size_t i = 0, j = 0, common = 0;
            while (i < ng && j < nw) {
                if (g[i] == w[j]) common++, i++, j++;
                else if (g[i] < w[j]) i++;
                else j++;
            }
            double p = (double)common / (double)ng, r = (double)common / (double)nw;
            f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        }
    }
    tw_free(g);
    tw_free(w);
    return f1;
}
