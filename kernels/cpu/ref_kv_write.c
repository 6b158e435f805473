/* ref_kv_write.c: the reference of TW_OP_KV_WRITE (kernels.h): a copy (F32 caches) or a
 * round-to-nearest-even conversion (F16 caches, tw_f32_to_f16), so bit-exact everywhere. */
#include "cpu_kernels.h"

void tw_ref_kv_write(void *k_cache, void *v_cache, tw_dtype ct, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tok, int64_t n_kv_head, int64_t head_dim) {
    int64_t row = n_kv_head * head_dim;
    for (int64_t t = 0; t < n_tok; t++) {
        int64_t dst = (int64_t)slots[t] * row;
        for (int64_t i = 0; i < row; i++) {
            if (ct == TW_DTYPE_F16) {
                ((uint16_t *)k_cache)[dst + i] = tw_f32_to_f16(k[t * row + i]);
                ((uint16_t *)v_cache)[dst + i] = tw_f32_to_f16(v[t * row + i]);
            } else {
                ((float *)k_cache)[dst + i] = k[t * row + i];
                ((float *)v_cache)[dst + i] = v[t * row + i];
            }
        }
    }
}
