/* fuzz_spm_wordpiece.c: tok_spm_encode and tok_wordpiece_encode on arbitrary bytes (invalid
 * UTF-8, controls, combining marks, anything) over small hand-built vocabularies.
 *
 * The first byte picks the settings (SPM: space prefix, byte fallback; WordPiece: lower-case,
 * strip accents, CJK splitting, a small or the usual word limit); the rest is the text.
 * Promises checked:
 *   both:      TW_OK, every id in range, the same ids on a second call;
 *   SPM:       with byte fallback, the pieces spell the text back byte for byte (U+2581 for
 *              each space, <0xNN> for bytes, the prefix removed), except that a U+2581 of
 *              the text itself reads back as a space, as in every SentencePiece model;
 *              without byte fallback, ids in range and no more tokens than escaped bytes;
 *   WordPiece: no more tokens than input bytes (canonical decomposition never yields more
 *              characters than the bytes it came from). */
#include "tokenizer_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SP "\xE2\x96\x81"

/* Built once per process; the fuzzer's input never changes them. */
static tw_tokenizer *spm_tok, *wp_tok;

static tw_tokenizer *make(const char *const *extra, int n_extra, int with_bytes) {
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    TW_ASSERT(t);
    int n = (with_bytes ? 256 : 0) + n_extra;
    t->arena = tw_arena_new(0);
    t->vocab = tw_calloc((size_t)n, sizeof(tok_entry));
    TW_ASSERT(t->arena && t->vocab && tok_map_init(&t->text_to_id, (uint32_t)n) == TW_OK);
    for (int i = 0; i < n; i++) {
        char name[8];
        const char *text = name;
        if (i < n_extra) {
            text = extra[i];
        } else {
            snprintf(name, sizeof name, "<0x%02X>", i - n_extra);
        }
        tok_entry *e = &t->vocab[i];
        e->len = (uint32_t)strlen(text);
        e->text = tw_arena_strndup(t->arena, text, e->len);
        e->score = -(float)((i * 7919) % 97) / 8.0f; /* varied, with ties */
        e->type = i < n_extra ? TW_TOKTYPE_NORMAL : TW_TOKTYPE_BYTE;
        TW_ASSERT(tok_map_put(&t->text_to_id, e->text, e->len, i) == TW_OK);
    }
    t->n_vocab = n;
    t->unk = 0;
    t->bos = t->eos = t->pad = t->sep = t->cls = t->eot = -1;
    return t;
}

static void setup(void) {
    static const char *const spm_words[] = {
        "<unk>", SP, SP SP, SP SP SP SP, "a", "b", "c", "e", "h", "t", "ab", "bc", "abc",
        SP "a", SP "ab", SP "the", "th", "he", "the", "\xC3\xA9", SP "\xC3\xA9",
        "\xE4\xB8\xAD", "\xE4\xB8\xAD\xE6\x96\x87", "\xF0\x9F\x98\x80", "\n", "\n\n", ".", ","};
    spm_tok = make(spm_words, (int)(sizeof spm_words / sizeof spm_words[0]), 1);
    spm_tok->kind = TW_TOK_SPM;
    TW_ASSERT(tok_spm_init(spm_tok) == TW_OK);

    static const char *const wp_words[] = {
        "[UNK]", "[CLS]", "a", "b", "c", "e", "h", "t", "##a", "##b", "##c", "##e", "##h", "##t",
        "the", "##the", "ab", "##bc", "cafe", "\xC3\xA9", "##\xC3\xA9", "i", "##\xCC\x87",
        "\xE4\xB8\xAD", "\xE6\x96\x87", "##\xE6\x96\x87", ",", ".", "!", "'", "$", "`",
        "\xE1\x84\x92", "##\xE1\x85\xA1", "##\xE1\x86\xAB"}; /* jamo of 한 */
    wp_tok = make(wp_words, (int)(sizeof wp_words / sizeof wp_words[0]), 0);
    wp_tok->kind = TW_TOK_WORDPIECE;
}

/* Rebuilds the text from SPM pieces; returns its length, or -1 when it does not fit. */
static long spm_spell(const tw_tokenizer *t, const tw_tokens *ids, char *out, size_t cap) {
    size_t w = 0;
    for (size_t i = 0; i < ids->n; i++) {
        const tok_entry *e = &t->vocab[ids->ids[i]];
        if (e->type == TW_TOKTYPE_BYTE) {
            unsigned v = 0;
            TW_ASSERT(sscanf(e->text, "<0x%2X>", &v) == 1);
            if (w + 1 > cap) return -1;
            out[w++] = (char)v;
            continue;
        }
        for (uint32_t j = 0; j < e->len;) {
            if (w + 1 > cap) return -1;
            if (j + 3 <= e->len && memcmp(e->text + j, SP, 3) == 0) {
                out[w++] = ' ';
                j += 3;
            } else {
                out[w++] = e->text[j++];
            }
        }
    }
    return (long)w;
}

static void check_ids(const tw_tokenizer *t, const tw_tokens *a, const tw_tokens *b) {
    TW_ASSERT(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        TW_ASSERT(a->ids[i] >= 0 && a->ids[i] < t->n_vocab);
        TW_ASSERT(a->ids[i] == b->ids[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!spm_tok) setup();
    if (size == 0) return 0;
    uint8_t cfg = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    tw_tokens a, b;
    tw_tokens_init(&a);
    tw_tokens_init(&b);

    spm_tok->add_space_prefix = cfg & 1;
    spm_tok->byte_fallback = (cfg >> 1) & 1;
    TW_ASSERT(tok_spm_encode(spm_tok, text, len, &a) == TW_OK);
    TW_ASSERT(tok_spm_encode(spm_tok, text, len, &b) == TW_OK);
    check_ids(spm_tok, &a, &b);
    if (spm_tok->byte_fallback) {
        size_t cap = len + 8;
        char *back = tw_malloc(cap), *want = tw_malloc(cap);
        TW_ASSERT(back && want);
        size_t wn = 0;
        if (spm_tok->add_space_prefix && len > 0) want[wn++] = ' ';
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && memcmp(text + i, SP, 3) == 0) {
                want[wn++] = ' ';
                i += 3;
            } else {
                want[wn++] = text[i++];
            }
        }
        long n = spm_spell(spm_tok, &a, back, cap);
        TW_ASSERT(n >= 0 && (size_t)n == wn && memcmp(back, want, wn) == 0);
        tw_free(back);
        tw_free(want);
    } else {
        TW_ASSERT(a.n <= 3 * len + 3);
    }

    a.n = b.n = 0;
    int lower = (cfg >> 2) & 1, chinese = (cfg >> 4) & 1;
    int strip = ((cfg >> 3) & 1) ? -1 : (int)((cfg >> 5) & 1);
    int max_chars = (cfg >> 6) & 1 ? 8 : 100;
    TW_ASSERT(tok_wordpiece_init(wp_tok, lower, strip, chinese, "##", max_chars) == TW_OK);
    TW_ASSERT(tok_wordpiece_encode(wp_tok, text, len, &a) == TW_OK);
    TW_ASSERT(tok_wordpiece_encode(wp_tok, text, len, &b) == TW_OK);
    check_ids(wp_tok, &a, &b);
    TW_ASSERT(a.n <= len);

    tw_tokens_free(&a);
    tw_tokens_free(&b);
    return 0;
}
