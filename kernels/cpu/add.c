/* add.c: the optimized CPU kernels of TW_OP_ADD (kernels.h): portable C, AVX2, OpenMP over
 * chunks. Every variant rounds each sum once, so all are bit-exact with the reference. */
#include "cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TW_X86 1
#endif

void tw_cpu_add_f32_portable(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

#ifdef TW_X86
__attribute__((target("avx2,fma"))) void tw_cpu_add_f32_avx2(float *y, const float *a,
                                                             const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) y[i] = a[i] + b[i];
}
#else
void tw_cpu_add_f32_avx2(float *y, const float *a, const float *b, int64_t n) {
    tw_cpu_add_f32_portable(y, a, b, n);
}
#endif

/* Elements per OpenMP chunk: large enough that a chunk costs more than handing it out. */
#define CHUNK 65536

void tw_cpu_add_f32(float *y, const float *a, const float *b, int64_t n) {
    void (*fn)(float *, const float *, const float *, int64_t) = tw_cpu_add_f32_portable;
#ifdef TW_X86
    if (tw_cpu_has_avx2_fma()) fn = tw_cpu_add_f32_avx2;
#endif
    int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(tw_threads_get()) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        fn(y + i0, a + i0, b + i0, len);
    }
}
