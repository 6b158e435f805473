/* tok_wordpiece.c: BERT WordPiece, as HF tokenizers' BertNormalizer + BertPreTokenizer +
 * WordPiece model do it (what BertTokenizerFast runs for uncased BERT).
 *
 * Normaliser (per code point, in HF's order):
 *   clean text:  drop NUL, U+FFFD and "control" characters (general category Cc, Cf or Co,
 *                except \t \n \r); whitespace (Rust's char::is_whitespace) becomes a space;
 *   CJK:         ideographs (the CJK blocks of the original BERT code) get a space either side;
 *   strip accents (default: when lower-casing): canonical decomposition (NFD, with canonical
 *                reordering of combining marks), then drop nonspacing marks (Mn);
 *   lower-case:  full lower-case mapping (U+0130 becomes "i" + U+0307, the one unconditional
 *                multi-character mapping; no final-sigma rule, as HF).
 * Pre-tokenizer: split on whitespace (dropped) and punctuation (kept, one character a word):
 *   ASCII 33-47, 58-64, 91-96, 123-126 and every Unicode P* category, judged on the
 *   normalised character (so U+1FEF, which decomposes to '`', is punctuation).
 * Model: greedy longest-match-first over each word; the first piece is looked up as is, the
 *   later ones with the continuation prefix ("##"); a word with no segmentation, or with more
 *   than max_input_chars_per_word characters, becomes one unknown token.
 *
 * Vocabulary conventions, chosen at init by looking at the vocabulary:
 *   HF (vocab.txt, tokenizer.json): "the" starts a word, "##ing" continues one;
 *   llama.cpp's BERT GGUF: its converter rewrites "the" as "▁the" (U+2581) and "##ing" as
 *   "ing", and keeps bracketed specials ("[CLS]") as they are.
 * Both become two maps (word-initial piece -> id, continuation piece -> id) keyed by the piece
 * text without any marker, so encoding looks up substrings of the word in place.
 *
 * Invalid UTF-8 bytes stay in their word as raw bytes; no vocabulary entry can contain them,
 * so the word becomes the unknown token.
 *
 * Speed: normalisation streams over the text with an ASCII table for the common case; the
 * current word lives in a per-call buffer of max_input_chars_per_word characters (on the
 * stack for the usual 100); nothing is allocated per character or per word.
 *
 * utf8proc provides the Unicode tables (categories, combining classes, canonical
 * decompositions, lower-case mappings); this file is where WordPiece's normaliser wraps it.
 */
#include "tokenizer_impl.h"

#include <string.h>
#include <utf8proc.h>

typedef struct {
    int lowercase, strip_accents, chinese;
    int phantom;   /* llama.cpp GGUF convention (see above) */
    int max_chars; /* max_input_chars_per_word */
    tok_map first; /* word-initial piece text -> id */
    tok_map cont;  /* continuation piece text (marker removed) -> id */
    uint32_t max_first, max_cont; /* longest key of each map, bytes */
} tok_wp;

/* Class of an ASCII byte after cleaning and lower-casing (neither changes the class). */
enum { WP_WORD = 0, WP_SPACE, WP_PUNCT, WP_DROP };

static uint8_t wp_ascii_class(uint8_t c) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') return WP_SPACE;
    if (c < 32 || c == 127) return WP_DROP; /* Cc, and \v \f are removed before whitespace */
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return WP_PUNCT;
    return WP_WORD;
}

/* Rust's char::is_whitespace (Unicode White_Space), which HF uses throughout. */
static int wp_is_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int wp_is_punct(uint32_t c) {
    if (c < 0x80) return wp_ascii_class((uint8_t)c) == WP_PUNCT;
    return tok_unicode_class(c) == TOK_UC_PUNCT;
}

/* HF's BertNormalizer is_control: Cc, Cf, Co (surrogates cannot occur in decoded text);
 * \t \n \r count as whitespace instead. */
static int wp_is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CO;
}

/* The CJK ranges of BERT's _is_chinese_char (with HF's 0x2B920 start, as in its Rust code). */
static int wp_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Pending combining marks awaiting canonical reordering. With accents stripped only marks
 * that are not Mn land here (a handful of Mc with a nonzero class), so this never fills in
 * real text; if it does, the run is written out as it stands. */
#define WP_RUN_MAX 32

typedef struct {
    const tw_tokenizer *t;
    const tok_wp *wp;
    tw_tokens *out;
    char *buf;     /* the current word, UTF-8, (4 * max_chars) bytes */
    uint32_t *bnd; /* (max_chars + 1) byte offsets of the word's characters */
    int n_chars;   /* characters in the word, counted past max_chars too */
    uint32_t run_cp[WP_RUN_MAX];
    uint8_t run_ccc[WP_RUN_MAX];
    int n_run;
    tw_status status;
} wp_state;

/* Segments the current word into out and empties it. */
static void wp_word_end(wp_state *st) {
    int n = st->n_chars;
    if (n == 0 || st->status != TW_OK) {
        st->n_chars = 0;
        return;
    }
    st->n_chars = 0;
    const tok_wp *wp = st->wp;
    tw_tokens *out = st->out;
    size_t saved = out->n;
    if (n <= wp->max_chars) {
        const uint32_t *bnd = st->bnd;
        int s = 0;
        while (s < n) {
            const tok_map *m = s == 0 ? &wp->first : &wp->cont;
            uint32_t max_len = s == 0 ? wp->max_first : wp->max_cont;
            int e = n;
            while (e > s && bnd[e] - bnd[s] > max_len) e--;
            int32_t id = -1;
            for (; e > s; e--) {
                id = tok_map_get(m, st->buf + bnd[s], bnd[e] - bnd[s]);
                if (id >= 0) break;
            }
            if (id < 0) break;
            st->status = tw_tokens_push(out, id);
            if (st->status != TW_OK) return;
            s = e;
        }
        if (s == n) return;
        out->n = saved; /* no segmentation: the word is one unknown token */
    }
    if (st->t->unk < 0) {
        st->status = tw_error(TW_ERR_FORMAT, "wordpiece tokenizer: a word has no segmentation "
                                             "and the vocabulary has no unknown token");
        return;
    }
    st->status = tw_tokens_push(out, st->t->unk);
}

/* Appends bytes that form one character of the word (counted even past the limit, where the
 * word is already bound to be unknown and its text no longer matters). */
static inline void wp_word_add(wp_state *st, const char *s, int n) {
    int i = st->n_chars;
    if (i >= st->wp->max_chars) {
        st->n_chars = st->wp->max_chars + 1; /* over the limit; the count stops here */
        return;
    }
    st->n_chars = i + 1;
    uint32_t off = st->bnd[i];
    memcpy(st->buf + off, s, (size_t)n);
    st->bnd[i + 1] = off + (uint32_t)n;
}

/* A normalised character: whitespace ends the word, punctuation is a word of its own. */
static void wp_classify(wp_state *st, uint32_t c) {
    if (wp_is_space(c)) {
        wp_word_end(st);
        return;
    }
    char enc[4];
    int n = tw_utf8_encode(c, enc);
    if (n == 0) return; /* not reachable: decoded text has no surrogates */
    if (wp_is_punct(c)) {
        wp_word_end(st);
        wp_word_add(st, enc, n);
        wp_word_end(st);
        return;
    }
    wp_word_add(st, enc, n);
}

/* A character after canonical ordering: drop marks, lower-case, classify. */
static void wp_post(wp_state *st, uint32_t c) {
    const tok_wp *wp = st->wp;
    if (wp->strip_accents && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN)
        return;
    if (wp->lowercase) {
        if (c == 0x130) { /* LATIN CAPITAL LETTER I WITH DOT ABOVE: "i" + COMBINING DOT */
            wp_classify(st, 'i');
            wp_classify(st, 0x307);
            return;
        }
        c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    wp_classify(st, c);
}

static void wp_run_flush(wp_state *st) {
    for (int i = 0; i < st->n_run; i++) wp_post(st, st->run_cp[i]);
    st->n_run = 0;
}

/* One character of the NFD stream: starters go straight on (after the pending marks); marks
 * are kept sorted by combining class, stably, until the next starter. */
static void wp_nfd_put(wp_state *st, uint32_t c) {
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)c);
    uint8_t ccc = (uint8_t)p->combining_class;
    if (ccc == 0) {
        wp_run_flush(st);
        wp_post(st, c);
        return;
    }
    /* Dropped anyway, and dropping it does not change the order of the rest. */
    if (st->wp->strip_accents && p->category == UTF8PROC_CATEGORY_MN) return;
    if (st->n_run == WP_RUN_MAX) wp_run_flush(st);
    int i = st->n_run++;
    while (i > 0 && st->run_ccc[i - 1] > ccc) {
        st->run_cp[i] = st->run_cp[i - 1];
        st->run_ccc[i] = st->run_ccc[i - 1];
        i--;
    }
    st->run_cp[i] = c;
    st->run_ccc[i] = ccc;
}

/* A cleaned character (not whitespace, not control): NFD when stripping accents. */
static void wp_norm(wp_state *st, uint32_t c) {
    if (!st->wp->strip_accents) {
        wp_post(st, c);
        return;
    }
    utf8proc_int32_t d[16];
    int boundclass = 0;
    utf8proc_ssize_t n =
        utf8proc_decompose_char((utf8proc_int32_t)c, d, 16, UTF8PROC_DECOMPOSE, &boundclass);
    if (n <= 0 || n > 16) { /* not reachable for a valid code point; keep it as it is */
        wp_nfd_put(st, c);
        return;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++) wp_nfd_put(st, (uint32_t)d[i]);
}

/* A space of the cleaned text: the marks before it are complete, and the word ends. */
static inline void wp_space(wp_state *st) {
    if (st->n_run) wp_run_flush(st);
    wp_word_end(st);
}

/* Word buffers up to this many characters live on the stack. */
#define WP_STACK_CHARS 256

tw_status tok_wordpiece_encode(const tw_tokenizer *t, const char *text, size_t len,
                               tw_tokens *out) {
    const tok_wp *wp = t->wordpiece;
    if (!wp) return tw_error(TW_ERR_ARG, "wordpiece tokenizer: not initialised");
    char stack_buf[WP_STACK_CHARS * 4];
    uint32_t stack_bnd[WP_STACK_CHARS + 1];
    wp_state st;
    memset(&st, 0, sizeof st);
    st.t = t;
    st.wp = wp;
    st.out = out;
    st.buf = stack_buf;
    st.bnd = stack_bnd;
    void *heap = NULL;
    if (wp->max_chars > WP_STACK_CHARS) {
        size_t mc = (size_t)wp->max_chars;
        heap = tw_malloc(mc * 4 + (mc + 1) * sizeof(uint32_t));
        if (!heap) return tw_error_wrap("wordpiece tokenizer: word buffer");
        st.bnd = heap;
        st.buf = (char *)(st.bnd + mc + 1);
    }
    st.bnd[0] = 0;

    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len && st.status == TW_OK) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            switch (wp_ascii_class(b)) {
            case WP_WORD:
                if (st.n_run) wp_run_flush(&st);
                if (wp->lowercase && b >= 'A' && b <= 'Z') b = (uint8_t)(b + 32);
                wp_word_add(&st, (const char *)&b, 1);
                break;
            case WP_SPACE:
                wp_space(&st);
                break;
            case WP_PUNCT:
                if (st.n_run) wp_run_flush(&st);
                wp_word_end(&st);
                wp_word_add(&st, (const char *)&b, 1);
                wp_word_end(&st);
                break;
            default: /* WP_DROP */
                break;
            }
            continue;
        }
        uint32_t c;
        int n = tw_utf8_decode(s + i, len - i, &c);
        if (c == TW_UTF8_INVALID) {
            /* Kept as a raw byte: the word cannot match and becomes unknown. */
            if (st.n_run) wp_run_flush(&st);
            wp_word_add(&st, (const char *)s + i, 1);
            i++;
            continue;
        }
        i += (size_t)n;
        if (c == 0xFFFD || wp_is_control(c)) continue;
        if (wp_is_space(c)) {
            wp_space(&st);
            continue;
        }
        if (wp->chinese && wp_is_cjk(c)) {
            wp_space(&st);
            wp_norm(&st, c);
            wp_space(&st);
            continue;
        }
        wp_norm(&st, c);
    }
    if (st.status == TW_OK) wp_space(&st);
    tw_free(heap);
    return st.status;
}

void tok_wordpiece_free(tw_tokenizer *t) {
    if (!t || !t->wordpiece) return;
    tok_wp *wp = t->wordpiece;
    tok_map_free(&wp->first);
    tok_map_free(&wp->cont);
    tw_free(wp);
    t->wordpiece = NULL;
}

static int wp_has_prefix(const tok_entry *e, const char *p, size_t n) {
    return n > 0 && e->len >= n && memcmp(e->text, p, n) == 0;
}

tw_status tok_wordpiece_init(tw_tokenizer *t, int lowercase, int strip_accents,
                             int tokenize_chinese_chars, const char *continuing_prefix,
                             int max_input_chars_per_word) {
    static const char phantom_mark[] = "\xE2\x96\x81"; /* U+2581 */
    if (max_input_chars_per_word <= 0)
        return tw_error(TW_ERR_ARG, "wordpiece tokenizer: max_input_chars_per_word %d is not "
                                    "positive", max_input_chars_per_word);
    const char *prefix = continuing_prefix ? continuing_prefix : "##";
    size_t plen = strlen(prefix);
    tok_wp *wp = tw_calloc(1, sizeof *wp);
    if (!wp) return tw_error_wrap("wordpiece tokenizer");
    wp->lowercase = lowercase != 0;
    wp->strip_accents = strip_accents < 0 ? wp->lowercase : strip_accents != 0;
    wp->chinese = tokenize_chinese_chars != 0;
    wp->max_chars = max_input_chars_per_word;

    /* The GGUF convention: nothing carries the continuation prefix, word starts carry ▁. */
    int32_t n_prefixed = 0, n_marked = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        n_prefixed += wp_has_prefix(&t->vocab[id], prefix, plen);
        n_marked += wp_has_prefix(&t->vocab[id], phantom_mark, 3);
    }
    wp->phantom = n_prefixed == 0 && n_marked > 0;

    tw_status st = tok_map_init(&wp->first, (uint32_t)t->n_vocab);
    if (st == TW_OK) st = tok_map_init(&wp->cont, (uint32_t)t->n_vocab);
    for (int32_t id = 0; id < t->n_vocab && st == TW_OK; id++) {
        const tok_entry *e = &t->vocab[id];
        int to_first, to_cont;
        size_t skip = 0;
        if (wp->phantom) {
            to_first = wp_has_prefix(e, phantom_mark, 3);
            to_cont = !to_first;
            if (to_first) skip = 3;
        } else if (plen == 0) {
            to_first = to_cont = 1;
        } else {
            to_cont = wp_has_prefix(e, prefix, plen);
            to_first = !to_cont;
            if (to_cont) skip = plen;
        }
        uint32_t klen = e->len - (uint32_t)skip;
        if (klen == 0) continue;
        if (to_first) {
            st = tok_map_put(&wp->first, e->text + skip, klen, id);
            if (klen > wp->max_first) wp->max_first = klen;
        }
        if (to_cont && st == TW_OK) {
            st = tok_map_put(&wp->cont, e->text + skip, klen, id);
            if (klen > wp->max_cont) wp->max_cont = klen;
        }
    }
    if (st != TW_OK) { /* the tokenizer keeps its earlier settings, if any */
        tok_map_free(&wp->first);
        tok_map_free(&wp->cont);
        tw_free(wp);
        return tw_error_wrap("wordpiece tokenizer: vocabulary maps");
    }
    tok_wordpiece_free(t);
    t->wordpiece = wp;
    return TW_OK;
}
