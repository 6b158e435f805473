/* fuzz_robots.c: robots_parse on arbitrary bytes, then robots_allowed on paths taken from the
 * same bytes (every line, percent-escapes and wildcards included). Checks the contract: parsing
 * never fails on content, answers are 0 or 1, and /robots.txt is always allowed. */
#include "pipelines/robots.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    robots_rules *r = NULL;
    TW_ASSERT(robots_parse((const char *)data, size, "twin", &r) == TW_OK);
    TW_ASSERT(robots_allowed(r, "/robots.txt") == 1);
    double d = robots_crawl_delay(r);
    TW_ASSERT(d == -1 || d >= 0);
    /* up to 32 lines of the input as paths */
    char path[512];
    size_t i = 0;
    for (int k = 0; k < 32 && i < size; k++) {
        size_t n = 0;
        path[n++] = '/';
        while (i < size && data[i] != '\n' && n + 1 < sizeof path) {
            path[n++] = data[i] ? (char)data[i] : '0';
            i++;
        }
        while (i < size && data[i] != '\n') i++;
        i++;
        path[n] = 0;
        int a = robots_allowed(r, path);
        TW_ASSERT(a == 0 || a == 1);
    }
    robots_free(r);
    return 0;
}
