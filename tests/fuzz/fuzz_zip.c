/* fuzz_zip.c: the ZIP reader (engine/zip.h) on arbitrary bytes: open, list every member,
 * find it by name, check its name's safety and extract it to memory under a cap. Any crash,
 * out-of-bounds read, leak or allocation past the cap is a bug; errors are expected. */
#include <stdint.h>
#include <string.h>

#include "zip.h"

/* Small enough that a fuzz input cannot make the target allocate much, large enough that
 * the seeds' members extract fully. */
#define FUZZ_ZIP_CAP (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zip_archive *z = zip_open_memory(data, size, "fuzz.zip");
    if (!z) {
        TW_ASSERT(tw_errmsg()[0] != 0); /* a failure always says why */
        return 0;
    }
    size_t n = zip_count(z);
    for (size_t i = 0; i < n && i < 64; i++) {
        const char *name = zip_entry_name(z, i);
        size_t j;
        TW_ASSERT(name[0] != 0);
        TW_ASSERT(zip_find(z, name, &j) == TW_OK && j <= i);
        (void)zip_name_is_safe(name);
        (void)zip_entry_is_dir(z, i);
        (void)zip_entry_compressed_size(z, i);
        uint8_t *out = NULL;
        size_t len = 0;
        if (zip_extract_memory(z, i, FUZZ_ZIP_CAP, &out, &len) == TW_OK) {
            TW_ASSERT(len == zip_entry_size(z, i) && out[len] == 0);
            tw_free(out);
        } else {
            TW_ASSERT(out == NULL && tw_errmsg()[0] != 0);
        }
    }
    zip_close(z);
    return 0;
}
