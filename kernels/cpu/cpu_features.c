/* cpu_features.c: which SIMD extensions this CPU (and its OS) supports, for kernel dispatch
 * and `twin info` (kernels.h). The compiler's own detection (__builtin_cpu_supports) also
 * checks that the OS saves the wide registers, so a "yes" here means the variant can run. */
#include "cpu_kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* TWIN_CPU_PORTABLE=1 in the environment switches every SIMD variant off (read once per
 * process: a one-time init), so that a whole program can be checked on the portable kernels
 * (STYLE.md: every optimization can be switched off for testing). */
static pthread_once_t portable_once = PTHREAD_ONCE_INIT;
static int portable_forced;

static void portable_init(void) {
    const char *e = getenv("TWIN_CPU_PORTABLE");
    portable_forced = e && *e && strcmp(e, "0") != 0;
}

int tw_cpu_has_avx2_fma(void) {
    pthread_once(&portable_once, portable_init);
    tw_cpu_features f = tw_cpu_features_get();
    return f.avx2 && f.fma && !portable_forced;
}
