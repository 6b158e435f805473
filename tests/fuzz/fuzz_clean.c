/* fuzz_clean.c: clean_text, clean_document (every content type) and the MinHash signature on
 * arbitrary bytes. Checks: valid UTF-8 out, clean_text is idempotent (cleaning clean text
 * changes nothing), no control characters other than \n and \t, no 3 newlines in a row outside
 * fences, a signature is the same twice and similar to itself. */
#include <stdint.h>
#include <string.h>

#include "pipelines/clean.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    tw_sb a, b;
    tw_sb_init(&a);
    tw_sb_init(&b);
    if (clean_text(in, size, &a) == TW_OK) {
        const char *t = tw_sb_str(&a);
        TW_ASSERT(tw_utf8_valid(t, a.len));
        for (size_t i = 0; i < a.len; i++) {
            unsigned char c = (unsigned char)t[i];
            TW_ASSERT(c >= 0x20 || c == '\n' || c == '\t');
        }
        TW_ASSERT(a.len == 0 || (t[0] != '\n' && t[a.len - 1] != '\n'));
        TW_ASSERT(clean_text(t, a.len, &b) == TW_OK);
        TW_ASSERT(b.len == a.len && memcmp(tw_sb_str(&b), t, a.len) == 0);
    }
    static const char *const types[] = {"html", "html_fragment", "markdown", "text", "code"};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        tw_sb_clear(&b);
        tw_status s = clean_document(types[k], in, size, &b);
        if (s == TW_OK) TW_ASSERT(tw_utf8_valid(tw_sb_str(&b), b.len));
        else TW_ASSERT(tw_errmsg()[0] != 0);
    }
    dedup_sig x, y;
    dedup_signature(in, size, &x);
    dedup_signature(in, size, &y);
    TW_ASSERT(memcmp(&x, &y, sizeof x) == 0);
    TW_ASSERT(x.n_shingles == 0 ? dedup_similarity(&x, &y) == 0.0 : dedup_similarity(&x, &y) == 1.0);
    tw_sb_free(&a);
    tw_sb_free(&b);
    return 0;
}
