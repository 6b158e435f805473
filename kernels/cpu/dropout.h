/* dropout.h: the CPU kernels of TW_OP_DROPOUT (kernels.h): the optimized one (dropout.c,
 * OpenMP over rows) and the reference (ref_dropout.c, one plain loop that forms the mask bits
 * from the counters written out again, as the op's specification). Both are bit-exact: the
 * mask is integer arithmetic and the kept value is one fp32 product.
 *   y, x: (rows, n); y may alias x; key, row0, p as tw_op_dropout (checked by backend.c). */
#ifndef TWIN_CPU_DROPOUT_H
#define TWIN_CPU_DROPOUT_H

#include <stdint.h>

void tw_ref_dropout_f32(float *y, const float *x, int64_t rows, int64_t n, float p, uint64_t key,
                        int64_t row0);
void tw_cpu_dropout_f32(float *y, const float *x, int64_t rows, int64_t n, float p, uint64_t key,
                        int64_t row0);

#endif
