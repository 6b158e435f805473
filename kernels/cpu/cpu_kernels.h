/* cpu_kernels.h: private to kernels/ and its tests: the CPU kernels on plain host pointers.
 *
 * For every op there is
 *   tw_ref_<op>_f32        the naive reference (ref_<op>.c): fp64 accumulation, one thread,
 *                          written for clarity; it is the op's specification;
 *   tw_cpu_<op>_f32        the optimized kernel the CPU backend runs: picks the best variant
 *                          this machine supports, OpenMP over rows (tw_threads_get() threads);
 *   tw_cpu_<op>_f32_<isa>  each variant on its own (portable C, avx2 = AVX2+FMA), one thread,
 *                          so the tests check every variant whatever the dispatcher picks.
 * All have the same arguments. Shapes as in kernels.h; arguments are not checked here
 * (backend.c checks them). Thread-safe: they write only their outputs.
 */
#ifndef TWIN_CPU_KERNELS_H
#define TWIN_CPU_KERNELS_H

#include <stdint.h>

#include "kernels.h"

/* 1 when the AVX2+FMA variants can run on this machine. */
int tw_cpu_has_avx2_fma(void);

/* y = a + b.   y, a, b: (n); y may alias a or b. */
void tw_ref_add_f32(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32_portable(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32_avx2(float *y, const float *a, const float *b, int64_t n);

/* y[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w.   y, x: (rows, n), w: (n); y may alias x. */
void tw_ref_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps);
void tw_cpu_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps);
void tw_cpu_rmsnorm_f32_portable(float *y, const float *x, const float *w, int64_t rows,
                                 int64_t n, float eps);
void tw_cpu_rmsnorm_f32_avx2(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                             float eps);

#endif
