/* pretok.c: the pre-tokenizers of byte-level BPE, written as hand-made scanners.
 *
 * Each family (GGUF tokenizer.ggml.pre) is a short list of steps, as in its tokenizer.json:
 * a step splits every piece that the previous step produced into matches and the text
 * between them (HF's Split behaviour "Isolated"). The steps reproduce the regexes that HF
 * tokenizers runs through Oniguruma, match for match, including the backtracking that
 * makes `\s+(?!\S)` leave the last space of a run to the word after it, the 1-3 digit
 * groups of llama3, the case-insensitive contractions of llama3/qwen2 and Ruby's `$`
 * (end of a line) in deepseek-llm's `\s+$`. No regex library is involved.
 *
 * Unicode categories (\p{L}, \p{N}, \p{P}) come from utf8proc (this file includes
 * <utf8proc.h>, which the architecture allows the tokenizer files). \s is Unicode
 * White_Space, which is what Oniguruma's \s matches (U+0009-U+000D, U+0085, Zs, Zl, Zp).
 *
 * Text that is not valid UTF-8 is scanned byte by byte: an invalid byte is one code point
 * of no category (neither letter, number, punctuation nor space), as U+FFFD would be, so
 * the pieces always concatenate back to the input.
 *
 * Thread-safe: no state outside the call.
 */
#include "tokenizer_impl.h"

#include <string.h>
#include <utf8proc.h>

/* ---- character classes ------------------------------------------------------------------ */

enum {
    CL_L = 1u << 0,  /* \p{L} */
    CL_N = 1u << 1,  /* \p{N} */
    CL_P = 1u << 2,  /* \p{P} */
    CL_WS = 1u << 3, /* \s */
    CL_AS = 1u << 4, /* ASCII symbols but the backquote: $ + < = > ^ | ~ */
    CL_BQ = 1u << 5, /* the backquote */
};
/* HF's Punctuation: Rust's is_ascii_punctuation (ASCII P and S) or \p{P}. */
#define CL_HF_PUNCT (CL_P | CL_AS | CL_BQ)
/* llama.cpp's default first step: [\p{P}\$\+<=>\^~\|] */
#define CL_LLAMACPP_PUNCT (CL_P | CL_AS)

/* Classes of the ASCII range, by hand from the Unicode tables (stable since 1.1). */
#define P_ CL_P
#define S_ CL_AS
#define L_ CL_L
#define N_ CL_N
#define W_ CL_WS
static const uint8_t ascii_cls[128] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  W_, W_, W_, W_, W_, 0,  0,  /* 0x00 \t \n \v \f \r */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    W_, P_, P_, P_, S_, P_, P_, P_, P_, P_, P_, S_, P_, P_, P_, P_, /*  !"#$%&'()*+,-./ */
    N_, N_, N_, N_, N_, N_, N_, N_, N_, N_, P_, P_, S_, S_, S_, P_, /* 0-9 :;<=>? */
    P_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, /* @A-O */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, P_, P_, P_, S_, P_, /* P-Z [\]^_ */
    CL_BQ, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, /* `a-o */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, P_, S_, P_, S_, 0,  /* p-z {|}~ DEL */
};
#undef P_
#undef S_
#undef L_
#undef N_
#undef W_

tok_uclass tok_unicode_class(uint32_t cp) {
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return TOK_UC_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return TOK_UC_NUMBER;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return TOK_UC_PUNCT;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return TOK_UC_SEPARATOR;
    default: return TOK_UC_OTHER;
    }
}

static unsigned cp_cls(uint32_t cp) {
    if (cp < 0x80) return ascii_cls[cp];
    if (cp == TW_UTF8_INVALID) return 0;
    if (cp == 0x85) return CL_WS;
    static const unsigned by_class[] = {
        [TOK_UC_OTHER] = 0, [TOK_UC_LETTER] = CL_L, [TOK_UC_NUMBER] = CL_N,
        [TOK_UC_PUNCT] = CL_P, [TOK_UC_SEPARATOR] = CL_WS};
    return by_class[tok_unicode_class(cp)];
}

/* ---- the GPT-2 byte alphabet ------------------------------------------------------------ */

/* Printable bytes (! to ~, ¡ to ¬, ® to ÿ) stand for themselves; the other 68 bytes take
 * the code points from U+0100 on, in byte order (GPT-2's bytes_to_unicode). */
uint32_t tok_byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100u + 33u + (uint32_t)(b - 0x7F);
    return 0x100u + 67u; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 0x100 && cp <= 0x120) return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}

/* ---- scanning ---------------------------------------------------------------------------- */

/* A piece being scanned. In byte-level mode every byte is one code point of the alphabet. */
typedef struct {
    const uint8_t *s;
    size_t n;
    int bl;
} scan;

/* The code point at i (< n) and its length in bytes. */
static inline size_t sc_cp(const scan *sc, size_t i, uint32_t *cp) {
    uint8_t b = sc->s[i];
    if (sc->bl) {
        *cp = tok_byte_to_cp(b);
        return 1;
    }
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    return (size_t)tw_utf8_decode(sc->s + i, sc->n - i, cp);
}

/* The class of the code point at i and its length; class 0 and length 0 past the end. */
static inline unsigned sc_cls(const scan *sc, size_t i, size_t *len) {
    if (i >= sc->n) {
        *len = 0;
        return 0;
    }
    uint8_t b = sc->s[i];
    if (b < 0x80 && !sc->bl) {
        *len = 1;
        return ascii_cls[b];
    }
    uint32_t cp;
    *len = sc_cp(sc, i, &cp);
    return cp_cls(cp);
}

/* The end of the run of code points from i whose class has a bit of `mask`. */
static inline size_t sc_run(const scan *sc, size_t i, unsigned mask) {
    size_t l;
    while (i < sc->n && (sc_cls(sc, i, &l) & mask)) i += l;
    return i;
}

/* The end of the run of code points from i that are neither letter, number nor space. */
static inline size_t sc_run_other(const scan *sc, size_t i) {
    size_t l;
    while (i < sc->n && !(sc_cls(sc, i, &l) & (CL_L | CL_N | CL_WS))) i += l;
    return i;
}

typedef struct {
    const tok_pretok *p;
    tok_emit_fn emit;
    void *ctx;
} pipe;

static tw_status stage_run(const pipe *pp, int k, const uint8_t *s, size_t n);

/* Hands a piece to step k (or to the caller when every step has run). */
static inline tw_status piece_out(const pipe *pp, int k, const uint8_t *s, size_t n) {
    if (n == 0) return TW_OK;
    if (k >= pp->p->n) return pp->emit(pp->ctx, (const char *)s, n);
    return stage_run(pp, k, s, n);
}

#define OUT(from, to)                                                                          \
    do {                                                                                       \
        tw_status st_ = piece_out(pp, k + 1, sc.s + (from), (to) - (from));                   \
        if (st_ != TW_OK) return st_;                                                          \
    } while (0)

/* Whitespace at i (class CL_WS): the `\s+(?!\S)|\s+` tail shared by GPT-2 and llama3.
 * Returns the end of the match. */
static size_t ws_tail(const scan *sc, size_t i) {
    size_t j = i, last = i, l;
    int count = 0;
    while (j < sc->n && (sc_cls(sc, j, &l) & CL_WS)) {
        last = j;
        j += l;
        count++;
    }
    if (j >= sc->n) return j;        /* \s+(?!\S) up to the end */
    if (count >= 2) return last;     /* \s+(?!\S): all but the last space before a non-space */
    return j;                        /* \s+ : a single space before a non-space */
}

static inline int is_contraction_ascii(uint8_t c1, uint8_t c2, int has_c2, int *len) {
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        *len = 2;
        return 1;
    }
    if (has_c2 && ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))) {
        *len = 3;
        return 1;
    }
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static tw_status stage_gpt2(const pipe *pp, int k, scan sc) {
    size_t i = 0, n = sc.n, l;
    while (i < n) {
        uint8_t c0 = sc.s[i];
        if (c0 == '\'' && i + 1 < n) {
            int len;
            if (is_contraction_ascii(sc.s[i + 1], i + 2 < n ? sc.s[i + 2] : 0, i + 2 < n, &len)) {
                OUT(i, i + (size_t)len);
                i += (size_t)len;
                continue;
            }
        }
        size_t at = i; /* where the class run starts (after an optional literal space) */
        unsigned c = sc_cls(&sc, i, &l);
        if (c0 == ' ' && i + 1 < n) {
            size_t l2;
            unsigned c2 = sc_cls(&sc, i + 1, &l2);
            if (!(c2 & CL_WS)) {
                at = i + 1;
                c = c2;
            }
        }
        size_t end;
        if (c & CL_L) {
            end = sc_run(&sc, at, CL_L);
        } else if (c & CL_N) {
            end = sc_run(&sc, at, CL_N);
        } else if (!(c & CL_WS)) {
            end = sc_run_other(&sc, at);
        } else {
            end = ws_tail(&sc, i);
        }
        OUT(i, end);
        i = end;
    }
    return TW_OK;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d): also matches U+017F (long s), which case-folds to s. */
static int contraction_ci(const scan *sc, size_t i, size_t *len) {
    if (sc->s[i] != '\'' || i + 1 >= sc->n) return 0;
    uint8_t c1 = sc->s[i + 1];
    if (c1 == 0xC5 && i + 2 < sc->n && sc->s[i + 2] == 0xBF && !sc->bl) { /* 'ſ */
        *len = 3;
        return 1;
    }
    c1 = (uint8_t)(c1 | 0x20);
    uint8_t c2 = i + 2 < sc->n ? (uint8_t)(sc->s[i + 2] | 0x20) : 0;
    int l;
    if (c1 >= 'a' && c1 <= 'z' && is_contraction_ascii(c1, c2, i + 2 < sc->n, &l)) {
        *len = (size_t)l;
        return 1;
    }
    return 0;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   with D = 3 (llama3) or 1 (qwen2). */
static tw_status stage_llama3(const pipe *pp, int k, scan sc, int max_digits) {
    size_t i = 0, n = sc.n, l;
    while (i < n) {
        size_t len;
        if (contraction_ci(&sc, i, &len)) {
            OUT(i, i + len);
            i += len;
            continue;
        }
        uint32_t cp0;
        sc_cp(&sc, i, &cp0);
        unsigned c = sc_cls(&sc, i, &l);
        size_t end;
        if (c & CL_L) { /* \p{L}+ with no leading character */
            end = sc_run(&sc, i, CL_L);
            OUT(i, end);
            i = end;
            continue;
        }
        if (!(c & CL_N) && cp0 != '\r' && cp0 != '\n') { /* [^\r\n\p{L}\p{N}]\p{L}+ */
            size_t l2;
            if (sc_cls(&sc, i + l, &l2) & CL_L) {
                end = sc_run(&sc, i + l, CL_L);
                OUT(i, end);
                i = end;
                continue;
            }
        }
        if (c & CL_N) {
            end = i;
            for (int d = 0; d < max_digits && end < n && (sc_cls(&sc, end, &l) & CL_N); d++) end += l;
            OUT(i, end);
            i = end;
            continue;
        }
        /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
        size_t at = i;
        unsigned co = c;
        if (cp0 == ' ' && i + 1 < n) {
            size_t l2;
            unsigned c2 = sc_cls(&sc, i + 1, &l2);
            if (!(c2 & (CL_WS | CL_L | CL_N))) {
                at = i + 1;
                co = c2;
            }
        }
        if (!(co & (CL_WS | CL_L | CL_N))) {
            end = sc_run_other(&sc, at);
            while (end < n && (sc.s[end] == '\r' || sc.s[end] == '\n')) end++;
            OUT(i, end);
            i = end;
            continue;
        }
        /* Whitespace: \s*[\r\n]+ ends after the last \r or \n of the run. */
        size_t j = i, nl_end = 0;
        while (j < n && (sc_cls(&sc, j, &l) & CL_WS)) {
            if (sc.s[j] == '\r' || sc.s[j] == '\n') nl_end = j + 1;
            j += l;
        }
        end = nl_end ? nl_end : ws_tail(&sc, i);
        OUT(i, end);
        i = end;
    }
    return TW_OK;
}

/* Isolates each code point (each = 1) or each run (each = 0) whose class meets `mask`. */
static tw_status stage_class_split(const pipe *pp, int k, scan sc, unsigned mask, int each) {
    size_t i = 0, gap = 0, n = sc.n, l;
    while (i < n) {
        if (sc_cls(&sc, i, &l) & mask) {
            size_t end = each ? i + l : sc_run(&sc, i, mask);
            OUT(gap, i);
            OUT(i, end);
            i = gap = end;
        } else {
            i += l;
        }
    }
    OUT(gap, n);
    return TW_OK;
}

/* [\r\n] */
static tw_status stage_newline(const pipe *pp, int k, scan sc) {
    size_t gap = 0;
    for (size_t i = 0; i < sc.n; i++) {
        if (sc.s[i] == '\r' || sc.s[i] == '\n') {
            OUT(gap, i);
            OUT(i, i + 1);
            gap = i + 1;
        }
    }
    OUT(gap, sc.n);
    return TW_OK;
}

/* deepseek-llm's letter class: the ranges of its tokenizer.json, in code point order. */
static const uint32_t dsllm_letters[][2] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
    {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
    {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static int in_ranges(uint32_t cp, const uint32_t (*r)[2], size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* deepseek-llm's punctuation class: [!-/:-~！-／：-～‘-‟　-。] */
static const uint32_t dsllm_punct[][2] = {{0x21, 0x2F},     {0x3A, 0x7E},     {0x2018, 0x201F},
                                          {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}};

/* [一-龥ࠀ-一가-퟿] */
static const uint32_t cjk_ranges[][2] = {{0x0800, 0x9FA5}, {0xAC00, 0xD7FF}};

#define N_RANGES(r) (sizeof(r) / sizeof((r)[0]))

typedef enum { SET_L, SET_P, SET_DSLLM_L, SET_DSLLM_P, SET_CJK } cset;

static inline int in_set(const scan *sc, size_t i, cset set, size_t *len) {
    if (i >= sc->n) {
        *len = 0;
        return 0;
    }
    uint32_t cp;
    *len = sc_cp(sc, i, &cp);
    switch (set) {
    case SET_L: return (cp_cls(cp) & CL_L) != 0;
    case SET_P: return (cp_cls(cp) & CL_P) != 0;
    case SET_DSLLM_L: return in_ranges(cp, dsllm_letters, N_RANGES(dsllm_letters));
    case SET_DSLLM_P: return in_ranges(cp, dsllm_punct, N_RANGES(dsllm_punct));
    case SET_CJK: return in_ranges(cp, cjk_ranges, N_RANGES(cjk_ranges));
    }
    return 0;
}

/* (\s?)X+ for a set X, isolated; opt_space says whether the \s? is there. */
static tw_status stage_set_run(const pipe *pp, int k, scan sc, cset set, int opt_space) {
    size_t i = 0, gap = 0, n = sc.n, l, l2;
    while (i < n) {
        size_t start = i, p = i;
        int ok = in_set(&sc, i, set, &l);
        if (!ok && opt_space && (sc_cls(&sc, i, &l2) & CL_WS) && in_set(&sc, i + l2, set, &l)) {
            p = i + l2;
            ok = 1;
        }
        if (ok) {
            while (in_set(&sc, p, set, &l)) p += l;
            OUT(gap, start);
            OUT(start, p);
            i = gap = p;
        } else {
            sc_cls(&sc, i, &l);
            i += l;
        }
    }
    OUT(gap, n);
    return TW_OK;
}

/* \s+$ with Ruby's $ (end of the piece or before a "\n"). */
static tw_status stage_trailing_ws(const pipe *pp, int k, scan sc) {
    size_t i = 0, gap = 0, n = sc.n, l;
    while (i < n) {
        if (!(sc_cls(&sc, i, &l) & CL_WS)) {
            i += l;
            continue;
        }
        size_t j = i, last_nl = 0;
        while (j < n && (sc_cls(&sc, j, &l) & CL_WS)) {
            if (sc.s[j] == '\n' && j > i) last_nl = j;
            j += l;
        }
        size_t end = j >= n ? n : last_nl;
        if (end > i) {
            OUT(gap, i);
            OUT(i, end);
            i = gap = end;
        } else {
            i = j; /* no later start inside this run can reach an end either */
        }
    }
    OUT(gap, n);
    return TW_OK;
}

/* [0-9][0-9][0-9] */
static tw_status stage_digits3(const pipe *pp, int k, scan sc) {
    size_t i = 0, gap = 0, n = sc.n;
#define ISD(x) ((x) >= '0' && (x) <= '9')
    while (i + 3 <= n) {
        if (ISD(sc.s[i]) && ISD(sc.s[i + 1]) && ISD(sc.s[i + 2])) {
            OUT(gap, i);
            OUT(i, i + 3);
            i = gap = i + 3;
        } else {
            i++;
        }
    }
#undef ISD
    OUT(gap, n);
    return TW_OK;
}

static tw_status stage_run(const pipe *pp, int k, const uint8_t *s, size_t n) {
    const tok_stage *st = &pp->p->st[k];
    scan sc = {s, n, st->bytelevel};
    switch ((tok_stage_kind)st->kind) {
    case TOK_ST_GPT2: return stage_gpt2(pp, k, sc);
    case TOK_ST_LLAMA3: return stage_llama3(pp, k, sc, 3);
    case TOK_ST_QWEN2: return stage_llama3(pp, k, sc, 1);
    case TOK_ST_DIGITS: return stage_class_split(pp, k, sc, CL_N, 1);
    case TOK_ST_DIGIT_RUNS: return stage_class_split(pp, k, sc, CL_N, 0);
    case TOK_ST_PUNCT: return stage_class_split(pp, k, sc, CL_HF_PUNCT, 1);
    case TOK_ST_PUNCT_RUNS: return stage_class_split(pp, k, sc, CL_HF_PUNCT, 0);
    case TOK_ST_LLAMACPP_PUNCT: return stage_class_split(pp, k, sc, CL_LLAMACPP_PUNCT, 0);
    case TOK_ST_NEWLINE: return stage_newline(pp, k, sc);
    case TOK_ST_SPACE_LETTERS: return stage_set_run(pp, k, sc, SET_L, 1);
    case TOK_ST_SPACE_PUNCT: return stage_set_run(pp, k, sc, SET_P, 1);
    case TOK_ST_CJK: return stage_set_run(pp, k, sc, SET_CJK, 0);
    case TOK_ST_DSLLM_LETTERS: return stage_set_run(pp, k, sc, SET_DSLLM_L, 1);
    case TOK_ST_DSLLM_PUNCT: return stage_set_run(pp, k, sc, SET_DSLLM_P, 1);
    case TOK_ST_TRAILING_WS: return stage_trailing_ws(pp, k, sc);
    case TOK_ST_DIGITS3: return stage_digits3(pp, k, sc);
    case TOK_ST_COUNT: break;
    }
    TW_ASSERT(!"unknown pre-tokenizer step");
    return TW_ERR_RUNTIME;
}

tw_status tok_pretokenize(const tok_pretok *p, const char *text, size_t len, tok_emit_fn emit,
                          void *ctx) {
    pipe pp = {p, emit, ctx};
    return piece_out(&pp, 0, (const uint8_t *)text, len);
}

/* ---- families ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    tok_pre pre;
} pre_names[] = {
    /* canonical names first (tok_pre_name returns the first entry of each family) */
    {"gpt2", TOK_PRE_GPT2},
    {"llama3", TOK_PRE_LLAMA3},
    {"smollm", TOK_PRE_SMOLLM},
    {"starcoder", TOK_PRE_STARCODER},
    {"qwen2", TOK_PRE_QWEN2},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM},
    {"falcon", TOK_PRE_FALCON},
    {"mpt", TOK_PRE_MPT},
    {"refact", TOK_PRE_REFACT},
    {"gpt-neox", TOK_PRE_GPT_NEOX},
    {"default", TOK_PRE_DEFAULT},
    {"custom", TOK_PRE_CUSTOM},
    /* aliases, as llama.cpp maps them */
    {"gpt-2", TOK_PRE_GPT2},
    {"phi-2", TOK_PRE_GPT2},
    {"jina-es", TOK_PRE_GPT2},
    {"jina-de", TOK_PRE_GPT2},
    {"jina-v1-en", TOK_PRE_GPT2},
    {"jina-v2-es", TOK_PRE_GPT2},
    {"jina-v2-de", TOK_PRE_GPT2},
    {"jina-v2-code", TOK_PRE_GPT2},
    {"roberta-bpe", TOK_PRE_GPT2},
    {"gigachat", TOK_PRE_GPT2},
    {"olmo", TOK_PRE_GPT2},
    {"jais", TOK_PRE_GPT2},
    {"exaone4", TOK_PRE_GPT2},
    {"llama-bpe", TOK_PRE_LLAMA3},
    {"llama-v3", TOK_PRE_LLAMA3},
    {"falcon3", TOK_PRE_LLAMA3},
    {"dbrx", TOK_PRE_LLAMA3},
    {"smaug-bpe", TOK_PRE_LLAMA3},
    {"codeshell", TOK_PRE_STARCODER},
    {"command-r", TOK_PRE_STARCODER},
    {"exaone", TOK_PRE_STARCODER},
    {"minerva-7b", TOK_PRE_STARCODER},
    {"stablelm2", TOK_PRE_QWEN2},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2},
    {"megrez", TOK_PRE_QWEN2},
};
#define N_PRE_NAMES (sizeof pre_names / sizeof pre_names[0])

int tok_pre_from_name(const char *name, tok_pre *out) {
    for (size_t i = 0; i < N_PRE_NAMES; i++) {
        if (strcmp(pre_names[i].name, name) == 0) {
            *out = pre_names[i].pre;
            return 0;
        }
    }
    return -1;
}

const char *tok_pre_name(tok_pre pre) {
    for (size_t i = 0; i < N_PRE_NAMES; i++)
        if (pre_names[i].pre == pre) return pre_names[i].name;
    return "";
}

static void add_step(tok_pretok *p, tok_stage_kind kind, int bytelevel) {
    TW_ASSERT(p->n < TOK_MAX_STAGES);
    p->st[p->n].kind = (uint8_t)kind;
    p->st[p->n].bytelevel = (uint8_t)bytelevel;
    p->n++;
}

/* The steps follow each family's tokenizer.json; ByteLevel(use_regex=true) is TOK_ST_GPT2,
 * and steps after it see the byte alphabet. */
void tok_pretok_for(tok_pre pre, tok_pretok *out) {
    memset(out, 0, sizeof *out);
    switch (pre) {
    case TOK_PRE_GPT2:
    case TOK_PRE_MPT:
    case TOK_PRE_GPT_NEOX: add_step(out, TOK_ST_GPT2, 0); break;
    case TOK_PRE_LLAMA3: add_step(out, TOK_ST_LLAMA3, 0); break;
    case TOK_PRE_QWEN2: add_step(out, TOK_ST_QWEN2, 0); break;
    case TOK_PRE_SMOLLM:
    case TOK_PRE_STARCODER:
    case TOK_PRE_REFACT:
        add_step(out, TOK_ST_DIGITS, 0);
        add_step(out, TOK_ST_GPT2, 0);
        break;
    case TOK_PRE_DEEPSEEK_CODER:
        add_step(out, TOK_ST_NEWLINE, 0);
        add_step(out, TOK_ST_SPACE_LETTERS, 0);
        add_step(out, TOK_ST_SPACE_PUNCT, 0);
        add_step(out, TOK_ST_CJK, 0);
        add_step(out, TOK_ST_DIGITS, 0);
        break;
    case TOK_PRE_DEEPSEEK_LLM:
        add_step(out, TOK_ST_NEWLINE, 0);
        add_step(out, TOK_ST_DSLLM_LETTERS, 0);
        add_step(out, TOK_ST_DSLLM_PUNCT, 0);
        add_step(out, TOK_ST_TRAILING_WS, 0);
        add_step(out, TOK_ST_CJK, 0);
        add_step(out, TOK_ST_DIGIT_RUNS, 0);
        break;
    case TOK_PRE_FALCON:
        add_step(out, TOK_ST_PUNCT_RUNS, 0);
        add_step(out, TOK_ST_GPT2, 0);
        add_step(out, TOK_ST_DIGIT_RUNS, 1);
        add_step(out, TOK_ST_DIGITS3, 1);
        break;
    case TOK_PRE_DEFAULT:
        /* llama.cpp's default: [\p{P}\$\+<=>\^~\|]+, the GPT-2 regex, \p{N}+,
         * [0-9][0-9][0-9], all on the raw text. */
        add_step(out, TOK_ST_LLAMACPP_PUNCT, 0);
        add_step(out, TOK_ST_GPT2, 0);
        add_step(out, TOK_ST_DIGIT_RUNS, 0);
        add_step(out, TOK_ST_DIGITS3, 0);
        break;
    case TOK_PRE_CUSTOM:
    case TOK_PRE_COUNT: break;
    }
}

tok_pre tok_pre_identify(const tok_pretok *p) {
    for (int f = 0; f < TOK_PRE_CUSTOM; f++) {
        tok_pretok q;
        tok_pretok_for((tok_pre)f, &q);
        if (q.n != p->n) continue;
        int same = 1;
        for (int i = 0; i < q.n && same; i++)
            same = q.st[i].kind == p->st[i].kind && q.st[i].bytelevel == p->st[i].bytelevel;
        if (same) return (tok_pre)f;
    }
    return TOK_PRE_CUSTOM;
}
