/* ref_get_rows.c: the reference of TW_OP_GET_ROWS (kernels.h): each row is dequantized by
 * tw_dequantize_row (quant.h), which is bit-exact with ggml's reference dequantizers. */
#include "cpu_kernels.h"

void tw_ref_get_rows(float *y, const void *table, tw_dtype t, const int32_t *ids, int64_t n_ids,
                     int64_t n) {
    size_t rb = tw_dtype_row_bytes(t, n);
    for (int64_t i = 0; i < n_ids; i++) {
        tw_status st = tw_dequantize_row(t, (const char *)table + (size_t)ids[i] * rb, y + i * n, n);
        TW_ASSERT(st == TW_OK); /* the type and n were checked by backend.c */
    }
}
