/* fuzz_checkpoint.c: ckpt_open_memory on arbitrary bytes, twice: as given (the checksum
 * rejects almost every mutation) and with the trailing sha256 recomputed, so the header and
 * blob checks behind it are reached. A checkpoint that opens must keep checkpoint.h's promises
 * (every blob inside the payload, names unique and findable); one that restores as a LoRA set
 * on a small base must have the set's sizes. Failures leave a one-line message naming it. */
#include "checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.twck"

static void check_one(const uint8_t *data, size_t size) {
    ckpt *c = NULL;
    if (ckpt_open_memory(data, size, NAME, &c)) {
        const char *msg = tw_errmsg();
        TW_ASSERT(tw_errcode() != TW_OK && c == NULL);
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(tw_errcode() == TW_ERR_NOMEM || strstr(msg, NAME) != NULL);
        return;
    }
    for (size_t i = 0; i < ckpt_n_blobs(c); i++) {
        const ckpt_blob *b = ckpt_blob_at(c, i);
        TW_ASSERT(ckpt_find_blob(c, b->name) == b);
        TW_ASSERT((const uint8_t *)b->data >= data && (const uint8_t *)b->data + b->nbytes <= data + size);
        uint8_t x = 0;
        for (size_t k = 0; k < b->nbytes; k++) x ^= ((const uint8_t *)b->data)[k];
        (void)x;
    }
    TW_ASSERT(ckpt_get_meta(c)->config_json != NULL);
    static tw_backend *be;
    if (!be && tw_backend_open("cpu", &be)) abort();
    lora_base base;
    memset(&base, 0, sizeof base);
    strcpy(base.arch, "llama");
    base.n_layer = 1, base.n_embd = 32, base.n_head = 2, base.n_kv_head = 1, base.head_dim = 16;
    base.n_ff = 48, base.qk_permuted = 1;
    lora_set *s = NULL;
    if (ckpt_restore_lora(c, be, &base, &s) == TW_OK) {
        TW_ASSERT(ckpt_find_blob(c, "lora.param")->nbytes == lora_set_n_floats(s) * sizeof(float));
        lora_set_free(s);
    } else {
        TW_ASSERT(s == NULL && strchr(tw_errmsg(), '\n') == NULL);
    }
    ckpt_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_one(data, size);
    if (size >= 64) {
        uint8_t *fixed = malloc(size);
        if (!fixed) return 0;
        memcpy(fixed, data, size);
        tw_sha256(fixed, size - 32, fixed + size - 32);
        check_one(fixed, size);
        free(fixed);
    }
    return 0;
}
