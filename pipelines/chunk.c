/* chunk.c: cleaned text -> chunks sized in tokens (chunk.h).
 *
 * Two passes over the text.
 *
 * 1. Parse into atoms: the smallest pieces a chunk is made of, each with its bytes (trimmed of
 *    ASCII whitespace) and its token count, measured once by encoding the atom alone. Atoms
 *    are sentences (prose), lines (code), heading lines, and, only for a sentence or line that
 *    alone is over max_tokens, its words, and for a word still over the limit, runs of whole
 *    UTF-8 characters. Atoms nest in three levels of groups, each carrying the sum of its
 *    units' counts:
 *      level 0  block:     a paragraph, a ``` fenced block, a heading line, a code block
 *                          (CHUNK_CODE: lines between blank lines)
 *      level 1  sub-block: a part of a fenced block between blank lines (else = the block)
 *      level 2  unit:      one sentence or line (its atoms are its words when it is too long)
 *
 * 2. Pack greedily, walking the atoms once: at the first atom of a group, the largest group
 *    starting there that fits the space left in the open chunk is appended whole; a group
 *    that does not fit there but fits an empty chunk closes the open one (so paragraphs and
 *    code blocks are not cut when they need not be); a group larger than a chunk is entered
 *    and its parts are packed the same way. A heading closes the open chunk and starts the
 *    next. A new chunk starts with the trailing whole sentences of the previous one that fit
 *    in min(overlap_tokens, room left by what comes next), never across a heading.
 *
 * Token counts of the pieces are estimates of the count of the chunk (WordPiece counts add
 * up exactly when pieces are cut at whitespace; byte-level BPE and SentencePiece need not),
 * so each chunk is encoded once more when it is closed: that count is the one stored, and a
 * chunk over the limit gives back its overlap, then its last atoms, to the next chunk, until
 * it fits. The whole text is thus encoded about twice, and each piece of it once more only
 * when it is too long to be an atom: linear in the text.
 *
 * One limit case is not split: a single character whose tokens alone exceed max_tokens (no
 * tokenizer twin loads has one: at most 4 tokens per code point, and max_tokens >= 8). Such a
 * character becomes a chunk of its own rather than being cut inside its UTF-8 bytes.
 */
#include "chunk.h"

#include <string.h>

#define CK_MIN_MAX_TOKENS 8  /* >= 2 x the 4 tokens a code point may take (byte-level BPE) */
#define CK_LEVELS 3
#define CK_HEADING_MAX 200   /* bytes of a heading label kept (a chunk label, not the text) */
#define CK_ABBREV_MAX 32     /* a word longer than this before a '.' is no abbreviation */

typedef enum { CK_SENT = 0, CK_PART, CK_LINE, CK_HEAD } ck_type;

typedef struct {
    size_t start, end;   /* bytes [start, end) of the text, no ASCII whitespace at either end */
    int32_t ntok;        /* tokens of those bytes encoded alone */
    uint8_t type;        /* ck_type; only CK_SENT atoms make overlaps */
    uint8_t code;        /* a line of code or a piece of one */
    uint8_t section;     /* the first atom of a heading: a chunk starts here, no overlap */
    int32_t head;        /* index in ck_state.heads of the heading above; -1 none */
    size_t g[CK_LEVELS]; /* its group at each level */
} ck_atom;

typedef struct {
    size_t first, end; /* atoms [first, end) */
    int64_t ntok;      /* sum of its units' counts (saturating) */
} ck_group;

typedef struct {
    size_t start, len; /* heading label bytes in the text */
} ck_head;

typedef struct {
    const tw_tokenizer *tok;
    const char *text;
    size_t len;
    int32_t max_tok, ov_tok;
    chunk_kind kind;
    tw_tokens ids; /* scratch for counting */

    ck_atom *atoms;
    size_t n_atoms, cap_atoms;
    ck_group *groups[CK_LEVELS];
    size_t n_groups[CK_LEVELS], cap_groups[CK_LEVELS];
    ck_head *heads;
    size_t n_heads, cap_heads;
    int32_t cur_head;

    chunk_span *spans;
    size_t n_spans, cap_spans;
} ck_state;

/* Grows *p (elements of size sz) to hold at least need. */
static tw_status ck_grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return TW_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = tw_realloc(*p, c * sz);
    if (!q) return tw_error(TW_ERR_NOMEM, "chunk: out of memory (%zu pieces)", need);
    *p = q;
    *cap = c;
    return TW_OK;
}

static int ck_is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Tokens of text[a, b) without special tokens. */
static tw_status ck_count(ck_state *s, size_t a, size_t b, int32_t *n) {
    s->ids.n = 0;
    *n = 0;
    if (b <= a) return TW_OK;
    tw_status st = tw_tokenizer_encode(s->tok, s->text + a, b - a, 0, &s->ids);
    if (st != TW_OK) return tw_error_wrap("chunk: counting tokens at byte %zu", a);
    *n = s->ids.n > (size_t)INT32_MAX ? INT32_MAX : (int32_t)s->ids.n;
    return TW_OK;
}

/* ---- pass 1: atoms and groups ---------------------------------------------------------- */

/* Opens a new group at `level` and at every level below it (a block opens a sub-block). */
static tw_status ck_group_open(ck_state *s, int level) {
    for (int l = level; l < CK_LEVELS; l++) {
        tw_status st = ck_grow((void **)&s->groups[l], &s->cap_groups[l], s->n_groups[l] + 1,
                               sizeof(ck_group));
        if (st != TW_OK) return st;
        s->groups[l][s->n_groups[l]++] = (ck_group){s->n_atoms, s->n_atoms, 0};
    }
    return TW_OK;
}

static tw_status ck_atom_push(ck_state *s, size_t a, size_t b, int32_t ntok, ck_type type,
                              int code) {
    tw_status st = ck_grow((void **)&s->atoms, &s->cap_atoms, s->n_atoms + 1, sizeof(ck_atom));
    if (st != TW_OK) return st;
    ck_atom *at = &s->atoms[s->n_atoms];
    *at = (ck_atom){a, b, ntok, (uint8_t)type, (uint8_t)(code != 0), 0, s->cur_head, {0, 0, 0}};
    for (int l = 0; l < CK_LEVELS; l++) {
        TW_ASSERT(s->n_groups[l] > 0);
        at->g[l] = s->n_groups[l] - 1;
        s->groups[l][at->g[l]].end = s->n_atoms + 1;
    }
    s->n_atoms++;
    return TW_OK;
}

/* A word over the limit: runs of whole characters, each counted alone. The run length starts
 * at max_tok / 4 characters (at most 4 tokens each in any tokenizer twin loads, so a run
 * fits); a run that still does not fit is cut into single characters. */
static tw_status ck_split_chars(ck_state *s, size_t a, size_t b, ck_type type, int code) {
    const uint8_t *t = (const uint8_t *)s->text;
    size_t per_run = (size_t)(s->max_tok / 4);
    while (a < b) {
        size_t e = a;
        for (size_t k = 0; k < per_run && e < b; k++) {
            uint32_t cp;
            e += (size_t)tw_utf8_decode(t + e, b - e, &cp);
        }
        int32_t n;
        tw_status st = ck_count(s, a, e, &n);
        if (st != TW_OK) return st;
        if (n <= s->max_tok) {
            st = ck_atom_push(s, a, e, n, type, code);
            if (st != TW_OK) return st;
        } else {
            for (size_t c = a; c < e;) {
                uint32_t cp;
                size_t ce = c + (size_t)tw_utf8_decode(t + c, e - c, &cp);
                st = ck_count(s, c, ce, &n);
                if (st == TW_OK) st = ck_atom_push(s, c, ce, n, type, code);
                if (st != TW_OK) return st;
                c = ce;
            }
        }
        a = e;
    }
    return TW_OK;
}

/* One unit (a sentence, a line of code, a heading line): trimmed, counted once, and, when over
 * the limit, cut into words (then characters). Returns the index of its first atom in *first
 * (n_atoms when it was all whitespace). */
static tw_status ck_unit_add(ck_state *s, size_t a, size_t b, ck_type type, int code,
                             size_t *first) {
    const unsigned char *t = (const unsigned char *)s->text;
    while (a < b && ck_is_space(t[a])) a++;
    while (b > a && ck_is_space(t[b - 1])) b--;
    if (first) *first = s->n_atoms;
    if (a >= b) return TW_OK;
    tw_status st = ck_group_open(s, 2);
    if (st != TW_OK) return st;
    int32_t n;
    st = ck_count(s, a, b, &n);
    if (st != TW_OK) return st;
    for (int l = 0; l < CK_LEVELS; l++) {
        ck_group *g = &s->groups[l][s->n_groups[l] - 1];
        g->ntok = g->ntok > INT64_MAX - n ? INT64_MAX : g->ntok + n;
    }
    if (n <= s->max_tok) return ck_atom_push(s, a, b, n, type, code);
    ck_type part = type == CK_SENT ? CK_PART : type; /* a piece of a sentence makes no overlap */
    for (size_t w = a; w < b;) {
        while (w < b && ck_is_space(t[w])) w++;
        size_t we = w;
        while (we < b && !ck_is_space(t[we])) we++;
        if (we == w) break;
        st = ck_count(s, w, we, &n);
        if (st != TW_OK) return st;
        st = n <= s->max_tok ? ck_atom_push(s, w, we, n, part, code)
                             : ck_split_chars(s, w, we, part, code);
        if (st != TW_OK) return st;
        w = we;
    }
    return TW_OK;
}

/* Words before which a '.' does not end a sentence (compared lower-cased, without the dot).
 * Dotted ones (e.g., i.e., U.S.) are caught by the initials rule in ck_period_ends. */
static const char *const ck_abbrevs[] = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "cf", "fig", "figs", "no",
    "nos", "vol", "vols", "approx", "dept", "est", "inc", "ltd", "co", "corp", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt", "gen", "gov",
    "sen", "rep", "rev", "capt", "col", "lt", "sgt", "ed", "eds", "pp", "ch", "sec", "eq",
    "al", "ca", "resp", "viz", NULL};

static int ck_is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int ck_is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static int ck_is_alpha(unsigned char c) { return ck_is_upper(c) || ck_is_lower(c); }
static int ck_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Whether a '.' at text[dot] (the terminators running to j, then whitespace) ends the sentence
 * that started at sent. Not after an abbreviation, initials (U.S., e.g., J.), a list number at
 * the sentence start ("1."), nor when the next word starts with a lower-case letter. */
static int ck_period_ends(const ck_state *s, size_t sent, size_t dot, size_t j, size_t pe) {
    const unsigned char *t = (const unsigned char *)s->text;
    size_t k = j;
    while (k < pe && ck_is_space(t[k])) k++;
    if (k < pe && ck_is_lower(t[k])) return 0;
    if (j - dot > 1) return 1; /* "..." before a capital: an ellipsis ending the sentence */
    size_t w = dot;
    while (w > sent && !ck_is_space(t[w - 1]) && dot - w <= CK_ABBREV_MAX) w--;
    if (dot - w > CK_ABBREV_MAX) return 1;
    while (w < dot && (t[w] == '(' || t[w] == '[' || t[w] == '"' || t[w] == '\'')) w++;
    size_t n = dot - w;
    if (n == 0) return 1;
    if (n == 1 && ck_is_upper(t[w])) return 0; /* an initial */
    int digits = 1, dotted = 0, run = 0, initials = 1;
    for (size_t i = w; i < dot; i++) {
        if (!ck_is_digit(t[i])) digits = 0;
        if (t[i] == '.') {
            dotted = 1;
            if (run == 0) initials = 0;
            run = 0;
        } else if (ck_is_alpha(t[i]) && run < 2) {
            run++;
        } else {
            initials = 0;
        }
    }
    if (digits && w == sent) return 0;     /* "1. First item" */
    if (dotted && initials && run) return 0; /* U.S. e.g. i.e. a.m. Ph.D. */
    char low[CK_ABBREV_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = t[w + i];
        low[i] = (char)(ck_is_upper(c) ? c - 'A' + 'a' : c);
    }
    low[n] = 0;
    for (int i = 0; ck_abbrevs[i]; i++)
        if (!strcmp(low, ck_abbrevs[i])) return 0;
    return 1;
}

/* Length of a closing quote or bracket at text[i] (may follow a sentence's terminator), 0 when
 * none: ) ] } " ' ” ’ » 」 』 ）. */
static size_t ck_closer(const unsigned char *t, size_t i, size_t pe) {
    unsigned char c = t[i];
    if (c == ')' || c == ']' || c == '}' || c == '"' || c == '\'') return 1;
    if (c == 0xC2 && i + 1 < pe && t[i + 1] == 0xBB) return 2;
    if (i + 2 < pe) {
        if (c == 0xE2 && t[i + 1] == 0x80 && (t[i + 2] == 0x9D || t[i + 2] == 0x99)) return 3;
        if (c == 0xE3 && t[i + 1] == 0x80 && (t[i + 2] == 0x8D || t[i + 2] == 0x8F)) return 3;
        if (c == 0xEF && t[i + 1] == 0xBC && t[i + 2] == 0x89) return 3;
    }
    return 0;
}

/* Length of a terminator at text[i]: . ! ? (1), … (3), or a CJK full stop 。！？ (3, with
 * *cjk set: it ends a sentence without a following space). 0 when none. */
static size_t ck_terminator(const unsigned char *t, size_t i, size_t pe, int *cjk) {
    unsigned char c = t[i];
    *cjk = 0;
    if (c == '.' || c == '!' || c == '?') return 1;
    if (i + 2 < pe) {
        if (c == 0xE2 && t[i + 1] == 0x80 && t[i + 2] == 0xA6) return 3;
        if ((c == 0xE3 && t[i + 1] == 0x80 && t[i + 2] == 0x82) ||
            (c == 0xEF && t[i + 1] == 0xBC && (t[i + 2] == 0x81 || t[i + 2] == 0x9F))) {
            *cjk = 1;
            return 3;
        }
    }
    return 0;
}

/* Whether the line starting at text[i] is a list item, a quote or a table row: its line break
 * then ends a sentence even without a full stop. */
static int ck_item_line(const unsigned char *t, size_t i, size_t pe) {
    while (i < pe && (t[i] == ' ' || t[i] == '\t')) i++;
    if (i >= pe) return 0;
    unsigned char c = t[i];
    if (c == '>' || c == '|') return 1;
    if ((c == '-' || c == '*' || c == '+') && i + 1 < pe && t[i + 1] == ' ') return 1;
    if (c == 0xE2 && i + 2 < pe && t[i + 1] == 0x80 && t[i + 2] == 0xA2) return 1; /* • */
    size_t d = 0;
    while (i + d < pe && d < 4 && ck_is_digit(t[i + d])) d++;
    return d > 0 && d < 4 && i + d + 1 < pe && (t[i + d] == '.' || t[i + d] == ')') &&
           t[i + d + 1] == ' ';
}

/* A paragraph [pa, pe): a block of sentences. */
static tw_status ck_paragraph(ck_state *s, size_t pa, size_t pe) {
    const unsigned char *t = (const unsigned char *)s->text;
    tw_status st = ck_group_open(s, 0);
    size_t sent = pa;
    for (size_t i = pa; i < pe && st == TW_OK;) {
        size_t end_at = 0;
        int cjk;
        size_t tl = ck_terminator(t, i, pe, &cjk);
        if (t[i] == '\n') {
            if (ck_item_line(t, i + 1, pe)) end_at = i;
            i++;
        } else if (tl) {
            int only_dots = 1; /* '.' and '…' only: the abbreviation rules apply */
            size_t j = i;
            int any_cjk = 0;
            while (j < pe && (tl = ck_terminator(t, j, pe, &cjk)) > 0) {
                if (t[j] == '!' || t[j] == '?' || cjk) only_dots = 0;
                any_cjk |= cjk;
                j += tl;
            }
            size_t cl;
            while (j < pe && (cl = ck_closer(t, j, pe)) > 0) j += cl;
            if (any_cjk || j == pe || ck_is_space(t[j]))
                if (!only_dots || ck_period_ends(s, sent, i, j, pe)) end_at = j;
            i = j;
        } else {
            i++;
        }
        if (end_at) {
            st = ck_unit_add(s, sent, end_at, CK_SENT, 0, NULL);
            sent = end_at;
        }
    }
    if (st == TW_OK) st = ck_unit_add(s, sent, pe, CK_SENT, 0, NULL);
    return st;
}

static int ck_blank(const unsigned char *t, size_t a, size_t b) {
    for (; a < b; a++)
        if (!ck_is_space(t[a])) return 0;
    return 1;
}

static int ck_fence(const unsigned char *t, size_t a, size_t b) {
    while (a < b && (t[a] == ' ' || t[a] == '\t')) a++;
    return b - a >= 3 && t[a] == '`' && t[a + 1] == '`' && t[a + 2] == '`';
}

/* "# Title" .. "###### Title" at the start of a line: the label's bytes, else 0. */
static int ck_heading(const unsigned char *t, size_t a, size_t b, ck_head *h) {
    size_t i = a;
    while (i < b && t[i] == '#' && i - a < 6) i++;
    if (i == a || i >= b || (t[i] != ' ' && t[i] != '\t')) return 0;
    while (i < b && ck_is_space(t[i])) i++;
    size_t e = b;
    while (e > i && ck_is_space(t[e - 1])) e--;
    if (e == i) return 0; /* "#" alone labels nothing */
    if (e - i > CK_HEADING_MAX) { /* cut at a character boundary */
        e = i + CK_HEADING_MAX;
        while (e > i && (t[e] & 0xC0) == 0x80) e--;
    }
    h->start = i;
    h->len = e - i;
    return 1;
}

static tw_status ck_parse_prose(ck_state *s) {
    const unsigned char *t = (const unsigned char *)s->text;
    size_t pa = SIZE_MAX, pe = 0;
    int in_fence = 0;
    tw_status st = TW_OK;
    for (size_t i = 0; i < s->len && st == TW_OK;) {
        const unsigned char *nl = memchr(t + i, '\n', s->len - i);
        size_t le = nl ? (size_t)(nl - t) : s->len;
        int blank = ck_blank(t, i, le);
        ck_head h;
        if (in_fence) {
            if (ck_fence(t, i, le)) {
                st = ck_unit_add(s, i, le, CK_LINE, 1, NULL);
                in_fence = 0;
            } else if (blank) {
                st = ck_group_open(s, 1);
            } else {
                st = ck_unit_add(s, i, le, CK_LINE, 1, NULL);
            }
        } else if (ck_fence(t, i, le) || ck_heading(t, i, le, &h)) {
            if (pa != SIZE_MAX) st = ck_paragraph(s, pa, pe);
            pa = SIZE_MAX;
            if (st == TW_OK) st = ck_group_open(s, 0);
            if (st != TW_OK) break;
            if (ck_fence(t, i, le)) {
                in_fence = 1;
                st = ck_unit_add(s, i, le, CK_LINE, 1, NULL);
            } else {
                st = ck_grow((void **)&s->heads, &s->cap_heads, s->n_heads + 1, sizeof(ck_head));
                if (st != TW_OK) break;
                s->heads[s->n_heads] = h;
                s->cur_head = (int32_t)s->n_heads++;
                size_t first;
                st = ck_unit_add(s, i, le, CK_HEAD, 0, &first);
                if (st == TW_OK && first < s->n_atoms) s->atoms[first].section = 1;
            }
        } else if (blank) {
            if (pa != SIZE_MAX) st = ck_paragraph(s, pa, pe);
            pa = SIZE_MAX;
        } else {
            if (pa == SIZE_MAX) pa = i;
            pe = le;
        }
        i = nl ? le + 1 : s->len;
    }
    if (st == TW_OK && pa != SIZE_MAX) st = ck_paragraph(s, pa, pe);
    return st;
}

/* CHUNK_CODE: blocks of lines between blank lines. */
static tw_status ck_parse_code(ck_state *s) {
    const unsigned char *t = (const unsigned char *)s->text;
    tw_status st = ck_group_open(s, 0);
    int fresh = 1; /* the open block has no line yet */
    for (size_t i = 0; i < s->len && st == TW_OK;) {
        const unsigned char *nl = memchr(t + i, '\n', s->len - i);
        size_t le = nl ? (size_t)(nl - t) : s->len;
        if (ck_blank(t, i, le)) {
            if (!fresh) st = ck_group_open(s, 0);
            fresh = 1;
        } else {
            st = ck_unit_add(s, i, le, CK_LINE, 1, NULL);
            fresh = 0;
        }
        i = nl ? le + 1 : s->len;
    }
    return st;
}

/* ---- pass 2: packing -------------------------------------------------------------------- */

typedef struct {
    int open;
    size_t cs, ce;  /* atoms of the open chunk */
    size_t n_ov;    /* the first n_ov of them repeat the end of the previous chunk */
    int64_t est;    /* estimated tokens: the overlap's exact count + the new atoms' counts */
    int head_only;  /* the new atoms so far are a heading only */
    int prev_ok;    /* the previous chunk may give an overlap */
    size_t ps, pe;  /* its atoms */
} ck_pack;

/* Opens a chunk whose first new atom is i and whose first piece needs `need` tokens: the
 * overlap is the longest run of whole sentences ending the previous chunk (which ended just
 * before i) that fits in min(overlap_tokens, max_tokens - need), by an exact count. */
static tw_status ck_open(ck_state *s, ck_pack *p, size_t i, int64_t need) {
    p->open = 1;
    p->cs = p->ce = i;
    p->n_ov = 0;
    p->est = 0;
    p->head_only = 1;
    int64_t budget = s->max_tok - need;
    if (budget > s->ov_tok) budget = s->ov_tok;
    if (budget <= 0 || !p->prev_ok || p->pe != i) return TW_OK;
    size_t k = i;
    int64_t sum = 0;
    while (k > p->ps + 1 && s->atoms[k - 1].type == CK_SENT &&
           sum + s->atoms[k - 1].ntok <= budget) {
        sum += s->atoms[k - 1].ntok;
        k--;
    }
    for (; k < i; k++) {
        int32_t exact;
        tw_status st = ck_count(s, s->atoms[k].start, s->atoms[i - 1].end, &exact);
        if (st != TW_OK) return st;
        if (exact <= budget) {
            p->cs = k;
            p->n_ov = i - k;
            p->est = exact;
            break;
        }
    }
    return TW_OK;
}

static void ck_append(ck_state *s, ck_pack *p, size_t a, size_t b) {
    for (size_t k = a; k < b; k++) {
        p->est += s->atoms[k].ntok;
        if (s->atoms[k].type != CK_HEAD) p->head_only = 0;
    }
    p->ce = b;
}

/* Closes the open chunk: counts it exactly, gives back its overlap then its last atoms while
 * it is over the limit, and emits it. *resume is the first atom not in it. */
static tw_status ck_flush(ck_state *s, ck_pack *p, size_t *resume) {
    TW_ASSERT(p->open && p->ce > p->cs + p->n_ov);
    int32_t exact;
    for (;;) {
        tw_status st = ck_count(s, s->atoms[p->cs].start, s->atoms[p->ce - 1].end, &exact);
        if (st != TW_OK) return st;
        if (exact <= s->max_tok) break;
        if (p->n_ov) {
            p->cs++;
            p->n_ov--;
        } else if (p->ce - p->cs > 1) {
            p->ce--;
        } else {
            break; /* one character over the limit: see the top of this file */
        }
    }
    tw_status st = ck_grow((void **)&s->spans, &s->cap_spans, s->n_spans + 1, sizeof(chunk_span));
    if (st != TW_OK) return st;
    const ck_atom *first = &s->atoms[p->cs + p->n_ov];
    int all_code = 1;
    for (size_t k = p->cs + p->n_ov; k < p->ce && all_code; k++) all_code = s->atoms[k].code;
    char *heading = NULL;
    if (first->head >= 0) {
        const ck_head *h = &s->heads[first->head];
        heading = tw_strndup(s->text + h->start, h->len);
        if (!heading) return tw_error(TW_ERR_NOMEM, "chunk: out of memory (heading)");
    }
    s->spans[s->n_spans++] = (chunk_span){
        s->atoms[p->cs].start, s->atoms[p->ce - 1].end, exact,
        s->kind == CHUNK_CODE || all_code ? CHUNK_CODE : CHUNK_PROSE, heading};
    p->open = 0;
    p->prev_ok = 1;
    p->ps = p->cs;
    p->pe = p->ce;
    *resume = p->ce;
    return TW_OK;
}

static tw_status ck_pack_all(ck_state *s) {
    ck_pack p = {0};
    size_t i = 0;
    tw_status st = TW_OK;
    while (st == TW_OK && (i < s->n_atoms || p.open)) {
        if (i >= s->n_atoms) {
            st = ck_flush(s, &p, &i);
            continue;
        }
        const ck_atom *a = &s->atoms[i];
        if (a->section) {
            if (p.open) {
                st = ck_flush(s, &p, &i);
                continue;
            }
            p.prev_ok = 0;
        }
        int placed = 0;
        for (int l = 0; l < CK_LEVELS && !placed; l++) {
            const ck_group *g = &s->groups[l][a->g[l]];
            if (g->first != i) continue;
            if (!p.open) {
                if (g->ntok <= s->max_tok) {
                    st = ck_open(s, &p, i, g->ntok);
                    ck_append(s, &p, i, g->end);
                    i = g->end;
                    placed = 1;
                }
            } else if (p.est + g->ntok <= s->max_tok) {
                ck_append(s, &p, i, g->end);
                i = g->end;
                placed = 1;
            } else if (g->ntok <= s->max_tok && !p.head_only) {
                st = ck_flush(s, &p, &i); /* it fits an empty chunk: do not cut it */
                placed = 1;
            }
        }
        if (placed) continue;
        if (!p.open) {
            st = ck_open(s, &p, i, a->ntok);
            ck_append(s, &p, i, i + 1);
            i++;
        } else if (p.est + a->ntok <= s->max_tok) {
            ck_append(s, &p, i, i + 1);
            i++;
        } else {
            st = ck_flush(s, &p, &i);
        }
    }
    return st;
}

/* ---- public ------------------------------------------------------------------------------ */

void chunk_opts_default(chunk_opts *o) {
    o->max_tokens = 254;
    o->overlap_tokens = 32;
}

void chunk_spans_free(chunk_span *spans, size_t n) {
    if (!spans) return;
    for (size_t i = 0; i < n; i++) tw_free(spans[i].heading);
    tw_free(spans);
}

tw_status chunk_text(const tw_tokenizer *tok, const char *text, size_t len, chunk_kind kind,
                     const chunk_opts *o, chunk_span **out, size_t *n) {
    if (!out || !n) return tw_error(TW_ERR_ARG, "chunk: out and n are required");
    *out = NULL;
    *n = 0;
    if (!tok) return tw_error(TW_ERR_ARG, "chunk: no tokenizer");
    if (!text && len) return tw_error(TW_ERR_ARG, "chunk: text is NULL with length %zu", len);
    if (kind != CHUNK_PROSE && kind != CHUNK_CODE)
        return tw_error(TW_ERR_ARG, "chunk: kind %d is neither prose nor code", (int)kind);
    chunk_opts def;
    if (!o) {
        chunk_opts_default(&def);
        o = &def;
    }
    if (o->max_tokens < CK_MIN_MAX_TOKENS)
        return tw_error(TW_ERR_ARG, "chunk: max_tokens %d: must be at least %d", o->max_tokens,
                        CK_MIN_MAX_TOKENS);
    if (o->overlap_tokens < 0 || o->overlap_tokens >= o->max_tokens / 2)
        return tw_error(TW_ERR_ARG,
                        "chunk: overlap_tokens %d: must be at least 0 and under max_tokens / 2 "
                        "(%d)",
                        o->overlap_tokens, o->max_tokens / 2);

    ck_state s;
    memset(&s, 0, sizeof s);
    s.tok = tok;
    s.text = text;
    s.len = len;
    s.max_tok = o->max_tokens;
    s.ov_tok = o->overlap_tokens;
    s.kind = kind;
    s.cur_head = -1;
    tw_tokens_init(&s.ids);
    tw_status st = kind == CHUNK_CODE ? ck_parse_code(&s) : ck_parse_prose(&s);
    if (st == TW_OK) st = ck_pack_all(&s);
    tw_tokens_free(&s.ids);
    tw_free(s.atoms);
    for (int l = 0; l < CK_LEVELS; l++) tw_free(s.groups[l]);
    tw_free(s.heads);
    if (st != TW_OK) {
        chunk_spans_free(s.spans, s.n_spans);
        return st;
    }
    *out = s.spans;
    *n = s.n_spans;
    return TW_OK;
}
