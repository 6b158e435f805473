/* fuzz_wh_source.c: what `twin source add` parses from the command line (warehouse.h):
 * wh_interval_parse, wh_platform_guess and wh_platform_parse on arbitrary text. Any crash or
 * out-of-bounds read is a bug; so is an accepted interval outside [1 s, 3660 d], one that does
 * not read back the same in seconds, a platform out of range, or a refusal without a message. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pipelines/warehouse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = tw_strndup((const char *)data, size); /* stops at a NUL byte, as argv would */
    if (!s) return 0;
    int64_t secs = -1;
    if (wh_interval_parse(s, &secs) == TW_OK) {
        TW_ASSERT(secs >= 1 && secs <= 3660LL * 86400);
        char back[32];
        snprintf(back, sizeof back, "%lld", (long long)secs);
        int64_t again = -1;
        TW_ASSERT(wh_interval_parse(back, &again) == TW_OK && again == secs);
    } else {
        TW_ASSERT(secs == -1 && tw_errmsg()[0] != 0);
    }
    int p = wh_platform_guess(s);
    TW_ASSERT(p >= -1 && p < WH_PLATFORM_COUNT);
    int q = wh_platform_parse(s);
    TW_ASSERT(q >= -1 && q < WH_PLATFORM_COUNT);
    if (q >= 0) TW_ASSERT(strlen(wh_platform_name((wh_platform)q)) == strlen(s));
    tw_free(s);
    return 0;
}
