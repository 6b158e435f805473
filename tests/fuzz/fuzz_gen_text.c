/* fuzz_gen_text.c: the text release of a generation request (tw_gen_text, generate.h) on
 * arbitrary bytes in arbitrary pieces with arbitrary stop strings. Input: one byte k (k % 4
 * stop strings), then per stop string a length byte (1 + L % 8) and its bytes, then the text,
 * pushed in pieces of 1 + (byte % 5) bytes. Checked on every input:
 *   - every release is valid UTF-8;
 *   - nothing is released after a stop string;
 *   - it stops at the first push after which a stop string occurs in the bytes pushed so far,
 *     and what was released is those bytes up to the earliest occurrence among them (a longer
 *     stop string that would have started earlier but was not complete yet does not count:
 *     streaming cannot wait for it), every byte that does not begin a whole character replaced
 *     by U+FFFD (when the stop strings are valid UTF-8: a stop string that starts with a
 *     continuation byte may cut a character, and then only validity is promised). */
#include <stdint.h>
#include <string.h>

#include "generate.h"

/* The earliest occurrence of any stop string in s[0..n), or n. */
static size_t first_stop(const char *s, size_t n, const char *const *sp, size_t n_stop) {
    size_t cut = n;
    for (size_t k = 0; k < n_stop; k++) {
        const char *hit = n ? memmem(s, n, sp[k], strlen(sp[k])) : NULL;
        if (hit && (size_t)(hit - s) < cut) cut = (size_t)(hit - s);
    }
    return cut;
}

/* The promised release of text[0..n): per-byte U+FFFD for what does not decode. */
static void reference(const char *s, size_t n, tw_sb *out) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == TW_UTF8_INVALID) {
            tw_sb_append(out, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            tw_sb_append(out, s + i, (size_t)l);
            i += (size_t)l;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t pos = 1, n_stop = data[0] % 4;
    char stops[3][9];
    const char *sp[3];
    int stops_utf8 = 1;
    for (size_t k = 0; k < n_stop; k++) {
        if (pos >= size) return 0;
        size_t l = 1 + data[pos++] % 8;
        if (pos + l > size) return 0;
        memcpy(stops[k], data + pos, l);
        stops[k][l] = 0;
        pos += l;
        if (strlen(stops[k]) == 0) return 0; /* a NUL first byte: an empty C string */
        if (!tw_utf8_valid(stops[k], strlen(stops[k]))) stops_utf8 = 0;
        sp[k] = stops[k];
    }
    const char *text = (const char *)data + pos;
    size_t n = size - pos;

    tw_gen_text t;
    if (tw_gen_text_init(&t, sp, n_stop) != TW_OK) return 0;
    tw_sb all, piece;
    tw_sb_init(&all);
    tw_sb_init(&piece);
    int stopped = 0;
    size_t cut = n; /* where the stream must stop: set at the first push that completes one */
    for (size_t i = 0; i < n;) {
        size_t c = 1 + (uint8_t)text[i] % 5;
        if (c > n - i) c = n - i;
        tw_sb_clear(&piece);
        int was = stopped;
        TW_ASSERT(tw_gen_text_push(&t, text + i, c, &piece, &stopped) == TW_OK);
        TW_ASSERT(tw_utf8_valid(tw_sb_str(&piece), piece.len));
        if (was) TW_ASSERT(piece.len == 0 && stopped);
        tw_sb_append(&all, tw_sb_str(&piece), piece.len);
        i += c;
        if (!was && first_stop(text, i, sp, n_stop) < i) cut = first_stop(text, i, sp, n_stop);
        TW_ASSERT(stopped == (cut < n || first_stop(text, i, sp, n_stop) < i));
    }
    tw_sb_clear(&piece);
    TW_ASSERT(tw_gen_text_flush(&t, &piece) == TW_OK);
    TW_ASSERT(tw_utf8_valid(tw_sb_str(&piece), piece.len));
    if (stopped) TW_ASSERT(piece.len == 0);
    tw_sb_append(&all, tw_sb_str(&piece), piece.len);

    TW_ASSERT(stopped == (first_stop(text, n, sp, n_stop) < n));
    if (stops_utf8) {
        tw_sb want;
        tw_sb_init(&want);
        reference(text, cut, &want);
        TW_ASSERT(want.len == all.len && memcmp(tw_sb_str(&want), tw_sb_str(&all), all.len) == 0);
        tw_sb_free(&want);
    }
    tw_sb_free(&all);
    tw_sb_free(&piece);
    tw_gen_text_free(&t);
    return 0;
}
