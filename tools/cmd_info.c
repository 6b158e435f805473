/* cmd_info.c: twin info: what this build is and what it will run on: version, build type,
 * compiler, whether CUDA is compiled in, the backend "auto" picks (opening it logs the one
 * fallback line on stderr when there is no GPU), the CUDA devices, the CPU's SIMD features and
 * the thread count. Output: one "key: value" line each on stdout. */
#include "cli.h"
#include "kernels.h"

#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef TWIN_SANITIZERS
#define TWIN_SANITIZERS "none"
#endif
#ifndef TWIN_BUILD_TYPE
#define TWIN_BUILD_TYPE "unknown"
#endif

#if defined(__clang__)
#define TW_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define TW_COMPILER "gcc " __VERSION__
#else
#define TW_COMPILER "unknown"
#endif

static void usage(FILE *out) {
    fprintf(out, "usage: twin info\n\n"
                 "Prints the version, build type, compiler, whether CUDA is compiled in, the\n"
                 "backend that \"auto\" picks, the CUDA devices, the CPU features the kernels use\n"
                 "and the thread count (--threads / TWIN_THREADS).\n");
}

static double gib(size_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

static void print_devices(void) {
    int n = 0;
    if (tw_cuda_device_count(&n) != TW_OK) {
        printf("cuda devices: none (%s)\n", tw_errmsg());
        return;
    }
    printf("cuda devices: %d\n", n);
    for (int i = 0; i < n; i++) {
        tw_device_info d;
        if (tw_cuda_device_info(i, &d) != TW_OK) {
            printf("  cuda:%d: %s\n", i, tw_errmsg());
            continue;
        }
        printf("  cuda:%d: %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free), "
               "driver %d.%d, runtime %d.%d\n",
               i, d.name, d.cc_major, d.cc_minor, d.sm_count, gib(d.mem_total), gib(d.mem_free),
               d.driver_version / 1000, d.driver_version % 1000 / 10, d.runtime_version / 1000,
               d.runtime_version % 1000 / 10);
    }
}

int cmd_info(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        usage(stderr);
        return cli_fail(CLI_USAGE, "info", "unexpected argument '%s'", argv[i]);
    }

    printf("twin: %s\n", TWIN_VERSION);
    printf("build: %s\n", TWIN_BUILD_TYPE);
    printf("sanitizers: %s\n", TWIN_SANITIZERS); /* memory figures mean little under ASan */
    printf("compiler: %s\n", TW_COMPILER);
    printf("cuda compiled: %s (%s)\n", tw_cuda_compiled() ? "yes" : "no", tw_cuda_build_info());
    fflush(stdout); /* keep stdout and the fallback line on stderr in order on a terminal */

    tw_backend *be = NULL;
    if (tw_backend_open("auto", &be) != TW_OK) return cli_fail_status("info");
    printf("backend (auto): %s\n", tw_backend_name(be));
    tw_backend_free(be);
    print_devices();

    struct utsname u;
    const char *arch = uname(&u) == 0 ? u.machine : "unknown";
    tw_cpu_features f = tw_cpu_features_get();
    printf("cpu: %s, avx2 %s, fma %s, avx512f %s\n", arch, f.avx2 ? "yes" : "no",
           f.fma ? "yes" : "no", f.avx512f ? "yes" : "no");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("threads: %d (of %ld cores)\n", tw_threads_get(), cores);
    return CLI_OK;
}
