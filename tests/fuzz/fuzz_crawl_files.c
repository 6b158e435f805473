/* fuzz_crawl_files.c: the file crawlers' small parsers (pipelines/crawl_files.h) on arbitrary
 * bytes: base64 decoding (the GitHub contents API's "content"), Markdown titles (front matter,
 * headings, fences), and the name rules and URL escaping on the bytes taken as a path. A
 * decode must fit the bound of 3 bytes per 4 characters and re-decode from its own encoding;
 * a title is a non-empty part of the input. Any crash, out-of-bounds access or leak is a bug. */
#include <stdint.h>
#include <string.h>

#include "pipelines/crawl_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    char *out = NULL;
    size_t len = 0;
    if (crawl_base64_decode(in, size, &out, &len) == TW_OK) {
        TW_ASSERT(out && out[len] == 0 && len <= size / 4 * 3 + 2);
        tw_free(out);
    } else {
        TW_ASSERT(out == NULL && len == 0 && tw_errmsg()[0] != 0);
    }
    for (int md = 0; md < 2; md++) {
        char *t = crawl_text_title(in, size, md);
        if (t) {
            size_t tl = strlen(t);
            TW_ASSERT(md == 1 && tl > 0 && tl <= size);
            tw_free(t);
        }
    }
    /* The bytes as a path (up to the first NUL, as a C string would be). */
    char *path = tw_strndup(in, size);
    if (!path) return 0;
    crawl_file_kind_t k;
    int keep = crawl_file_kind(path, &k);
    TW_ASSERT(keep ? k.content_type && k.language : !k.content_type && !k.language);
    char buf[96];
    size_t folder = 0;
    const char *why = crawl_github_skip_reason(path, (int64_t)size * 1000, 4096, buf, sizeof buf,
                                               &folder);
    TW_ASSERT(!why || (why == buf && strlen(buf) < sizeof buf));
    TW_ASSERT(folder <= strlen(path) && (!folder || why));
    char *esc = crawl_url_escape(path, (int)(size & 1));
    if (esc) {
        TW_ASSERT(strlen(esc) <= 3 * strlen(path));
        TW_ASSERT(!strpbrk(esc, " ?#\"<>"));
        tw_free(esc);
    }
    tw_free(path);
    return 0;
}
