/* cpu_features.c: which SIMD extensions this CPU (and its OS) supports, for kernel dispatch
 * and `twin info` (kernels.h). The compiler's own detection (__builtin_cpu_supports) also
 * checks that the OS saves the wide registers, so a "yes" here means the variant can run. */
#include "cpu_kernels.h"

tw_cpu_features tw_cpu_features_get(void) {
    tw_cpu_features f = {0, 0, 0};
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init(); /* idempotent; needed only before constructors, cheap after */
    f.avx2 = __builtin_cpu_supports("avx2") != 0;
    f.fma = __builtin_cpu_supports("fma") != 0;
    f.avx512f = __builtin_cpu_supports("avx512f") != 0;
#endif
    return f;
}

int tw_cpu_has_avx2_fma(void) {
    tw_cpu_features f = tw_cpu_features_get();
    return f.avx2 && f.fma;
}
