/* get_rows.c: the optimized CPU kernel of TW_OP_GET_ROWS (kernels.h): the reference's
 * dequantizer (tw_dequantize_row, bit-exact) on each row, OpenMP over rows. A lookup touches
 * a few rows per token, so there is nothing more to gain here. */
#include "cpu_kernels.h"

void tw_cpu_get_rows(float *y, const void *table, tw_dtype t, const int32_t *ids, int64_t n_ids,
                     int64_t n) {
    size_t rb = tw_dtype_row_bytes(t, n);
    int par = n_ids > 1 && n_ids * n >= 65536;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (par)
    for (int64_t i = 0; i < n_ids; i++) {
        tw_status st = tw_dequantize_row(t, (const char *)table + (size_t)ids[i] * rb, y + i * n, n);
        TW_ASSERT(st == TW_OK); /* the type and n were checked by backend.c */
    }
}
