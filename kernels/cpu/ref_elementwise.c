/* ref_elementwise.c: the references of TW_OP_MUL and TW_OP_SCALE (kernels.h). As for add
 * (ref_add.c), the product of two fp32 values formed in fp64 is exact (48 bits) and rounds
 * once to fp32: every correct kernel matches these bit for bit. */
#include "cpu_kernels.h"

void tw_ref_mul_f32(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((double)a[i] * (double)b[i]);
}

void tw_ref_scale_f32(float *y, const float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((double)x[i] * (double)s);
}
