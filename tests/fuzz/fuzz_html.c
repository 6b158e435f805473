/* fuzz_html.c: html_extract (pipelines/html.h) on arbitrary bytes, in both modes. Any crash,
 * out-of-bounds access or leak is a bug; errors are expected (binary input, hostile nesting)
 * and must say why. A success gives valid UTF-8 text of the stated length and non-NULL
 * metadata strings. */
#include <stdint.h>
#include <string.h>

#include "pipelines/html.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int mode = 0; mode < 2; mode++) {
        html_doc d;
        tw_status s = html_extract((const char *)data, size, mode ? HTML_ALL : HTML_MAIN, &d);
        if (s != TW_OK) {
            TW_ASSERT(s == TW_ERR_FORMAT || s == TW_ERR_NOMEM);
            TW_ASSERT(tw_errmsg()[0] != 0 && d.text == NULL);
            continue;
        }
        TW_ASSERT(d.text && d.title && d.author && d.published_at && d.canonical_url && d.lang);
        TW_ASSERT(strlen(d.text) == d.text_len);
        TW_ASSERT(tw_utf8_valid(d.text, d.text_len));
        html_doc_clear(&d);
    }
    return 0;
}
