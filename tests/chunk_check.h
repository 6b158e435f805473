/* chunk_check.h: the promises of chunk.h checked on one result, shared by test_chunk.c and
 * fuzz_chunk.c, and the tiny WordPiece tokenizer both run. Header-only (static functions):
 * include it once per program. */
#ifndef TWIN_TEST_CHUNK_CHECK_H
#define TWIN_TEST_CHUNK_CHECK_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipelines/chunk.h"

static int chunk_check_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Tokens of text[a, b) encoded without special tokens; -1 on a tokenizer error. */
static long chunk_check_count(const tw_tokenizer *tok, const char *text, size_t a, size_t b) {
    tw_tokens ids;
    tw_tokens_init(&ids);
    long n = tw_tokenizer_encode(tok, text + a, b - a, 0, &ids) == TW_OK ? (long)ids.n : -1;
    tw_tokens_free(&ids);
    return n;
}

/* Checks spans[0..n) of text against chunk.h for options o. Returns 0 when every promise
 * holds, else 1 with a description in msg:
 *   - no chunk for an empty or all-whitespace text, some chunk otherwise;
 *   - each chunk: 0 <= start < end <= len, no whitespace at either end, whole UTF-8 characters
 *     (when the text is valid UTF-8), a known kind, a heading that is a string or NULL;
 *   - n_tokens equals a fresh count of the chunk's bytes and is at most max_tokens;
 *   - order: starts and ends strictly increasing;
 *   - coverage: every byte that is not whitespace is in some chunk (the tail included);
 *   - overlap: a chunk starting inside the previous one repeats at most overlap_tokens
 *     tokens of it (a fresh count of the repeated bytes), and none does when it is 0. */
static int chunk_check_spans(const tw_tokenizer *tok, const char *text, size_t len,
                             const chunk_opts *o, const chunk_span *sp, size_t n, char *msg,
                             size_t cap) {
    const unsigned char *t = (const unsigned char *)text;
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++) blank = chunk_check_space(t[i]);
    if (blank != (n == 0)) {
        snprintf(msg, cap, "%zu chunks for a text that is %s", n, blank ? "blank" : "not blank");
        return 1;
    }
    int utf8 = tw_utf8_valid(text, len);
    size_t covered = 0; /* bytes [0, covered) are whitespace or in a chunk */
    for (size_t i = 0; i < n; i++) {
        const chunk_span *s = &sp[i];
        if (!(s->start < s->end && s->end <= len)) {
            snprintf(msg, cap, "chunk %zu: bad range [%zu, %zu) of %zu", i, s->start, s->end, len);
            return 1;
        }
        if (chunk_check_space(t[s->start]) || chunk_check_space(t[s->end - 1])) {
            snprintf(msg, cap, "chunk %zu [%zu, %zu): whitespace at an end", i, s->start, s->end);
            return 1;
        }
        if (utf8 && ((t[s->start] & 0xC0) == 0x80 || (s->end < len && (t[s->end] & 0xC0) == 0x80))) {
            snprintf(msg, cap, "chunk %zu [%zu, %zu): cuts a UTF-8 character", i, s->start, s->end);
            return 1;
        }
        if (s->kind != CHUNK_PROSE && s->kind != CHUNK_CODE) {
            snprintf(msg, cap, "chunk %zu: kind %d", i, (int)s->kind);
            return 1;
        }
        if (s->heading && strlen(s->heading) > 4096) {
            snprintf(msg, cap, "chunk %zu: heading of %zu bytes", i, strlen(s->heading));
            return 1;
        }
        long fresh = chunk_check_count(tok, text, s->start, s->end);
        if (fresh != s->n_tokens || fresh > o->max_tokens) {
            snprintf(msg, cap, "chunk %zu [%zu, %zu): n_tokens %d, fresh count %ld, max %d", i,
                     s->start, s->end, s->n_tokens, fresh, o->max_tokens);
            return 1;
        }
        if (i > 0) {
            const chunk_span *p = &sp[i - 1];
            if (!(s->start > p->start && s->end > p->end)) {
                snprintf(msg, cap, "chunk %zu [%zu, %zu) not after chunk %zu [%zu, %zu)", i,
                         s->start, s->end, i - 1, p->start, p->end);
                return 1;
            }
            if (s->start < p->end) {
                long ov = chunk_check_count(tok, text, s->start, p->end);
                if (o->overlap_tokens == 0 || ov > o->overlap_tokens) {
                    snprintf(msg, cap, "chunk %zu repeats %ld tokens of chunk %zu (limit %d)", i,
                             ov, i - 1, o->overlap_tokens);
                    return 1;
                }
            }
        }
        for (size_t k = covered; k < s->start; k++)
            if (!chunk_check_space(t[k])) {
                snprintf(msg, cap, "byte %zu (0x%02x) is in no chunk", k, t[k]);
                return 1;
            }
        if (s->end > covered) covered = s->end;
    }
    for (size_t k = covered; k < len; k++)
        if (!chunk_check_space(t[k])) {
            snprintf(msg, cap, "byte %zu (0x%02x) after the last chunk is in none", k, t[k]);
            return 1;
        }
    return 0;
}

/* A tokenizer.json with a tiny WordPiece vocabulary: specials, a-z and ##a-##z, digits,
 * punctuation, and a few whole words (so that some words are one token and others many),
 * written into tmpdir, loaded and removed. Aborts when it cannot be loaded. */
static tw_tokenizer *chunk_check_tiny_wordpiece(const char *tmpdir) {
    static const char *const words[] = {"the", "and", "of", "to", "in", "is", "it", "that",
                                        "we", "he", "she", "was", "for", "on", "with", NULL};
    tw_sb j;
    tw_sb_init(&j);
    tw_sb_puts(&j, "{\"version\":\"1.0\",\"added_tokens\":["
                   "{\"id\":0,\"content\":\"[PAD]\",\"special\":true},"
                   "{\"id\":1,\"content\":\"[UNK]\",\"special\":true},"
                   "{\"id\":2,\"content\":\"[CLS]\",\"special\":true},"
                   "{\"id\":3,\"content\":\"[SEP]\",\"special\":true}],"
                   "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,"
                   "\"handle_chinese_chars\":true,\"strip_accents\":null,\"lowercase\":true},"
                   "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"post_processor\":null,"
                   "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
                   "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                   "\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":100,"
                   "\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3");
    int id = 4;
    for (char c = 'a'; c <= 'z'; c++) tw_sb_printf(&j, ",\"%c\":%d,\"##%c\":%d", c, id, c, id + 1), id += 2;
    for (char c = '0'; c <= '9'; c++) tw_sb_printf(&j, ",\"%c\":%d,\"##%c\":%d", c, id, c, id + 1), id += 2;
    const char *punct = ".,!?;:'()-#`{}=*/<>[]+_|&%$@~^";
    for (const char *p = punct; *p; p++) tw_sb_printf(&j, ",\"%c\":%d", *p, id++);
    tw_sb_printf(&j, ",\"\\\"\":%d,\"\\\\\":%d", id, id + 1);
    id += 2;
    for (int i = 0; words[i]; i++) tw_sb_printf(&j, ",\"%s\":%d", words[i], id++);
    tw_sb_puts(&j, "}}}");
    tw_sb path;
    tw_sb_init(&path);
    tw_sb_printf(&path, "%s/tokenizer.json", tmpdir);
    TW_ASSERT(!j.failed && tw_file_write_atomic(tw_sb_str(&path), j.buf, j.len) == TW_OK);
    tw_tokenizer *t = tw_tokenizer_load(tw_sb_str(&path));
    if (!t) fprintf(stderr, "tiny WordPiece: %s\n", tw_errmsg());
    TW_ASSERT(t);
    unlink(tw_sb_str(&path));
    tw_sb_free(&path);
    tw_sb_free(&j);
    return t;
}

#endif
