/* fuzz_ckpt_full.c: ckpt_restore_full (checkpoint.h) on arbitrary checkpoint bytes, as given
 * and with the trailing sha256 recomputed (so the "full" header's layout checks and the blob
 * checks behind the checksum are reached), against the full fine-tuning set of a micro llama
 * (1 layer, n_embd 8, written once from tiny_llama.h). A restore either succeeds, with blobs of
 * exactly the set's size, or fails with one line; the set stays usable either way.
 * TWIN_FUZZ_WRITE_SEED=PATH: also writes a valid checkpoint of that set to PATH (the seed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fullft.h"
#include "model.h"
#include "tiny_llama.h"

#define NAME "fuzz.twck"

static tw_backend *be;
static tw_model *model;
static fullft_set *set;

static void setup(void) {
    if (set) return;
    char dir[] = "/tmp/fuzz_ckpt_full.XXXXXX";
    if (!mkdtemp(dir)) abort();
    char path[128];
    snprintf(path, sizeof path, "%s/micro.gguf", dir);
    kin_rng rng = {42};
    if (tiny_llama_write_dims(path, TL_TIED, &rng, 8, 1, 1, 1, 8, 8)) abort();
    if (tw_backend_open("cpu", &be) || tw_model_load(path, be, NULL, &model) ||
        fullft_set_new(model, &set)) {
        fprintf(stderr, "fuzz_ckpt_full: %s\n", tw_errmsg());
        abort();
    }
    unlink(path);
    rmdir(dir);
    const char *seed = getenv("TWIN_FUZZ_WRITE_SEED");
    if (seed) {
        ckpt_meta meta = {3, 0, {0}, "", "{}"};
        char sd[] = "/tmp/fuzz_ckpt_full_seed.XXXXXX", *p = NULL;
        if (!mkdtemp(sd) || ckpt_save_full(sd, &meta, set, 1, &p)) abort();
        if (rename(p, seed)) abort();
        tw_free(p);
        rmdir(sd);
    }
}

static void check_one(const uint8_t *data, size_t size) {
    ckpt *c = NULL;
    if (ckpt_open_memory(data, size, NAME, &c)) return; /* fuzz_checkpoint covers ckpt_open */
    if (ckpt_restore_full(c, set) == TW_OK) {
        const ckpt_blob *b = ckpt_find_blob(c, "full.param");
        TW_ASSERT(b && b->nbytes == fullft_n_floats(set) * sizeof(float));
    } else {
        const char *msg = tw_errmsg();
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(tw_errcode() == TW_ERR_NOMEM || strstr(msg, NAME) != NULL);
    }
    TW_ASSERT(fullft_zero(set, FULLFT_GRAD) == TW_OK);
    ckpt_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
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
