/* fuzz_hnsw_load.c: hnsw_load (pipelines/hnsw.h) on arbitrary bytes, written to a temporary
 * file. Each input is tried twice: as it is, and with its last 8 bytes replaced by the right
 * checksum, so that the checks behind the checksum (sections, links, ids, entry point) are
 * reached too. The checksum is computed here from the format's description in hnsw_io.c (an
 * independent implementation of it). A file that loads must behave: searches, an insert, a
 * removal and a save all work; a refusal must be one line naming the file.
 * Seeds (tests/fuzz/corpus/fuzz_hnsw_load/): small indexes saved by hnsw_save (f32 L2 with a
 * removal; int8 cosine with learned ranges and payloads; empty) and damaged copies. */
#include "pipelines/hnsw.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t word_mix(uint64_t h, uint64_t w) {
    h ^= w;
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 32);
}

static uint64_t checksum(const uint8_t *d, size_t n) {
    uint64_t h = 0x5457484E53573031ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, d + i, 8);
        h = word_mix(h, w);
    }
    if (i < n) {
        uint8_t last[8] = {0};
        memcpy(last, d + i, n - i);
        uint64_t w;
        memcpy(&w, last, 8);
        h = word_mix(h, w);
    }
    h = word_mix(h, (uint64_t)n);
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

static void try_load(const char *path, const uint8_t *data, size_t size) {
    /* size: the input's, also used to decide whether to save */
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    if (size) fwrite(data, 1, size, fp);
    fclose(fp);
    hnsw_index *ix = NULL;
    tw_status rc = hnsw_load(path, &ix);
    if (rc != TW_OK) {
        TW_ASSERT(ix == NULL);
        const char *msg = tw_errmsg();
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(rc == TW_ERR_NOMEM || strstr(msg, path) != NULL);
        return;
    }
    int32_t dim = hnsw_dim(ix);
    if (dim > 4096) {
        hnsw_free(ix);
        return;
    }
    float *q = malloc((size_t)dim * sizeof(float));
    for (int32_t i = 0; i < dim; i++) q[i] = (float)((i * 7) % 5) - 1.5f;
    hnsw_hit hits[8];
    int32_t n = -1;
    TW_ASSERT(hnsw_search(ix, q, 8, 16, NULL, hits, &n) == TW_OK);
    int64_t count = hnsw_count(ix);
    TW_ASSERT(n == (count < 8 ? count : 8));
    for (int32_t i = 0; i < n; i++) TW_ASSERT(hnsw_contains(ix, hits[i].id));
    hnsw_filter f;
    hnsw_filter_init(&f);
    f.platform = 1;
    TW_ASSERT(hnsw_search(ix, q, 8, 16, &f, hits, &n) == TW_OK);
    TW_ASSERT(hnsw_search_exact(ix, q, 8, NULL, hits, &n) == TW_OK);
    if (n > 0) TW_ASSERT(hnsw_remove(ix, hits[0].id) == TW_OK);
    TW_ASSERT(hnsw_add(ix, INT64_MAX, q, NULL) == TW_OK);
    TW_ASSERT(hnsw_search(ix, q, 1, 16, NULL, hits, &n) == TW_OK && n == 1);
    if (size <= 16384) { /* a save fsyncs: only for small inputs, to keep the smoke run short */
        char out[300];
        snprintf(out, sizeof out, "%s.out", path);
        TW_ASSERT(hnsw_save(ix, out) == TW_OK);
        unlink(out);
    }
    free(q);
    hnsw_free(ix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    /* thousands of files per run: a memory file system when there is one (creating files on
     * the build machine's disk takes milliseconds each) */
    const char *t = getenv("TMPDIR");
    if (!t || !*t) t = tw_is_dir("/dev/shm") ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/fuzz_hnsw_load.%ld.twhnsw", t, (long)getpid());
    try_load(path, data, size);
    if (size >= 16 && size < (64u << 20)) {
        uint8_t *fixed = malloc(size);
        memcpy(fixed, data, size);
        uint64_t h = checksum(fixed, size - 8);
        memcpy(fixed + size - 8, &h, 8);
        try_load(path, fixed, size);
        free(fixed);
    }
    unlink(path);
    return 0;
}
