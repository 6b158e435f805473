/* ref_add.c: the reference of TW_OP_ADD (kernels.h), the specification the other add kernels
 * are tested against.
 *
 * The sum of two fp32 values is formed in fp64 and rounded once to fp32. fp64 carries
 * 53 >= 2*24 + 2 bits, so this double rounding gives the correctly rounded fp32 sum
 * (Figueroa, "When is double rounding innocuous?", 1995): every correct kernel matches the
 * reference bit for bit. */
#include "cpu_kernels.h"

void tw_ref_add_f32(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((double)a[i] + (double)b[i]);
}
