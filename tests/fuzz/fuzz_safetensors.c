/* fuzz_safetensors.c: st_open_memory on arbitrary bytes. A file that opens must satisfy every
 * promise safetensors.h makes (tensor data inside the buffer, sizes consistent, lookups find
 * each tensor and metadata key); a file that does not must leave a one-line message naming it.
 * Tensor bytes are read (and small float tensors converted) so ASan sees any bad pointer. */
#include "safetensors.h"

#include <stdint.h>
#include <string.h>

#define NAME "fuzz.safetensors"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = st_open_memory(data, size, NAME);
    if (!f) {
        const char *msg = tw_errmsg();
        TW_ASSERT(tw_errcode() != TW_OK);
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(tw_errcode() == TW_ERR_NOMEM || strstr(msg, NAME) != NULL);
        return 0;
    }
    TW_ASSERT(st_data_offset(f) <= size);
    const uint8_t *section = data + st_data_offset(f);
    uint64_t covered = 0;
    static float buf[4096];
    for (uint64_t i = 0; i < st_n_tensors(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        TW_ASSERT(st_find_tensor(f, t->name) == t);
        TW_ASSERT(t->offset == covered); /* data order, no gaps, no overlap */
        covered += t->nbytes;
        TW_ASSERT((const uint8_t *)t->data == section + t->offset);
        TW_ASSERT(t->offset + t->nbytes <= size - st_data_offset(f));
        TW_ASSERT((uint64_t)t->n_elements * st_dtype_size(t->st_type) == t->nbytes);
        TW_ASSERT(t->n_dims <= ST_MAX_DIMS && t->dtype == st_dtype_to_tw(t->st_type));
        uint8_t x = 0;
        for (uint64_t b = 0; b < t->nbytes; b++) x ^= ((const uint8_t *)t->data)[b];
        (void)x;
        if (t->n_elements <= (int64_t)(sizeof buf / sizeof *buf)) {
            tw_status rc = st_tensor_to_f32(t, buf);
            int is_float = t->st_type == ST_DTYPE_F32 || t->st_type == ST_DTYPE_F16 ||
                           t->st_type == ST_DTYPE_BF16;
            TW_ASSERT((rc == TW_OK) == is_float);
        }
    }
    TW_ASSERT(covered == size - st_data_offset(f));
    for (uint64_t i = 0; i < st_n_metadata(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        TW_ASSERT(st_metadata_get(f, k) == v);
    }
    st_close(f);
    return 0;
}
