/* bench_matmul.c: the CPU matmul kernels (TW_OP_MATMUL, kernels/cpu/matmul*.c) on the shapes
 * of SmolLM2-135M, at 1 and 2 threads (or --threads LIST).
 *
 *   bench_matmul [--types q4_1,q8_0,f16,...] [--m 1,8,512] [--threads 1,2] [--shapes all|head]
 *
 * For each weight type, shape (n_out x k) and number of activation rows m, prints the time
 * per call (the best of several short trials), the process CPU time per call and thread (on a
 * busy machine the steadier figure for comparing kernel variants at one thread), GFLOP/s (2 m k n_out / t) and the weight bytes per second (what bounds a matvec),
 * beside the anchor measured in the same run: the machine's read bandwidth (a vectorized sum
 * over 256 MiB with the same threads), as "% of read bw". A matvec (m = 1) cannot beat that
 * anchor once its weights come from memory; the small matrices fit in the caches and may.
 * Also prints the generic path (dequantize a row, fp32 dot) beside the specialized one, for
 * the record of why the specialized kernels exist.
 *
 * Inputs: random weights quantized with tw_quantize_row (seeded), random activations.
 * Exit status 0; 2 on bad usage. */
#include "core.h"
#include "cpu/cpu_kernels.h"
#include "kernels.h"
#include "quant.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_s = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_s = rng_s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_s >> 11) * 0x1.0p-52 - 1.0);
}

static void *xmalloc(size_t n) {
    void *p = tw_malloc(n);
    if (!p) {
        fprintf(stderr, "bench_matmul: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Seconds per call, the best of 15 trials of at least 3 calls and ~min_s/15 seconds each,
 * after one warm-up: the machine is shared, and the best trial is the one least disturbed by
 * others (a kernel cannot run faster than it can, so the minimum is the honest estimate).
 * Also the process CPU seconds per call of that best trial, divided by the thread count: on a
 * busy machine a one-thread kernel's CPU time is its time had it had the core to itself. */
typedef struct {
    float *y;
    const float *x;
    const void *w;
    tw_dtype t;
    int64_t m, k, n;
    int generic;
} mm_args;

static tw_status generic_matmul(const mm_args *a); /* below */

static tw_status call(const mm_args *a) {
    return a->generic ? generic_matmul(a) : tw_cpu_matmul(a->y, a->x, a->w, a->t, NULL, a->m, a->k, a->n);
}

static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_call(const mm_args *a, double min_s, double *cpu_s) {
    if (call(a) != TW_OK) {
        fprintf(stderr, "bench_matmul: %s\n", tw_errmsg());
        exit(1);
    }
    double best = 1e30, best_cpu = 1e30;
    for (int trial = 0; trial < 15; trial++) {
        int runs = 0;
        double t0 = tw_now_s(), c0 = cpu_now_s(), t;
        do {
            call(a);
            runs++;
            t = tw_now_s() - t0;
        } while (runs < 3 || t < min_s / 15);
        double c = (cpu_now_s() - c0) / runs / tw_threads_get();
        if (t / runs < best) best = t / runs;
        if (c < best_cpu) best_cpu = c;
    }
    *cpu_s = best_cpu;
    return best;
}

/* The generic path for comparison: the dispatcher's fallback is private to matmul.c, so this
 * runs it the way it works: dequantize each row (tw_dequantize_row) and dot in fp32. */
static tw_status generic_matmul(const mm_args *a) {
    size_t rb = tw_dtype_row_bytes(a->t, a->k);
    int nt = tw_threads_get();
    float *buf = xmalloc((size_t)nt * (size_t)a->k * sizeof(float));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t o = 0; o < a->n; o++) {
        float *wr = buf + (size_t)omp_get_thread_num() * (size_t)a->k;
        tw_dequantize_row(a->t, (const char *)a->w + (size_t)o * rb, wr, a->k);
        for (int64_t i = 0; i < a->m; i++) {
            const float *xr = a->x + i * a->k;
            float s = 0;
            for (int64_t j = 0; j < a->k; j++) s += wr[j] * xr[j];
            a->y[i * a->n + o] = s;
        }
    }
    tw_free(buf);
    return TW_OK;
}

/* GB/s of a plain read of n floats (the anchor). */
static double read_bw(const float *buf, int64_t n) {
    int nt = tw_threads_get();
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = tw_now_s(), sink = 0;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(+ : sink)
        for (int64_t c = 0; c < 64; c++) {
            int64_t i0 = n / 64 * c, i1 = n / 64 * (c + 1);
            float s[8] = {0};
            for (int64_t i = i0; i < i1; i += 8)
                for (int l = 0; l < 8; l++) s[l] += buf[i + l];
            sink += s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
        }
        double t = tw_now_s() - t0;
        if (sink == 12345.678) fprintf(stderr, " ");
        double bw = (double)n * 4 / t / 1e9;
        if (bw > best) best = bw;
    }
    return best;
}

static int parse_list(const char *s, int64_t *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static tw_dtype type_by_name(const char *s) {
    static const tw_dtype all[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                   TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(tw_dtype_name(all[i]), s) == 0) return all[i];
    return TW_DTYPE_COUNT;
}

int main(int argc, char **argv) {
    const char *types = "q4_1,q8_0,f16,f32", *shapes_opt = "all";
    int64_t ms[8] = {1, 8, 512}, ths[8] = {1, 2};
    int nm = 3, nth = 2, with_generic = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--types") == 0 && v) types = v, i++;
        else if (strcmp(a, "--m") == 0 && v && (nm = parse_list(v, ms, 8)) > 0) i++;
        else if (strcmp(a, "--threads") == 0 && v && (nth = parse_list(v, ths, 8)) > 0) i++;
        else if (strcmp(a, "--shapes") == 0 && v) shapes_opt = v, i++;
        else if (strcmp(a, "--no-generic") == 0) with_generic = 0;
        else {
            fprintf(stderr, "usage: bench_matmul [--types q4_1,q8_0,f16,f32] [--m 1,8,512] "
                            "[--threads 1,2] [--shapes all|head|small] [--no-generic]\n");
            return 2;
        }
    }
    /* SmolLM2-135M: q/o (576x576), k/v (192x576), gate/up (1536x576), down (576x1536), the
     * tied output head (49152x576). n_out x k. */
    static const int64_t all_shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    int s_lo = 0, s_hi = 5;
    if (strcmp(shapes_opt, "head") == 0) s_lo = 4;
    else if (strcmp(shapes_opt, "small") == 0) s_hi = 4;

    tw_cpu_features f = tw_cpu_features_get();
    printf("machine: avx2 %d, fma %d, avx512f %d; matmul kernels %s\n", f.avx2, f.fma, f.avx512f,
           tw_cpu_has_avx2_fma() ? "avx2" : "portable");
    int64_t nbw = (int64_t)64 << 20; /* 256 MiB of floats: past any L3 */
    float *bwbuf = xmalloc((size_t)nbw * sizeof(float));
    for (int64_t i = 0; i < nbw; i++) bwbuf[i] = (float)(i & 7);
    double bw[8];
    for (int ti = 0; ti < nth; ti++) {
        tw_threads_set((int)ths[ti]);
        bw[ti] = read_bw(bwbuf, nbw);
        printf("anchor: read bandwidth %.1f GB/s at %lld thread(s)\n", bw[ti], (long long)ths[ti]);
    }
    tw_free(bwbuf);
    printf("%-5s %-12s %4s %3s %10s %10s %9s %8s %9s %s\n", "type", "n_out x k", "m", "thr",
           "us/call", "cpu-us", "GFLOP/s", "GB/s(w)", "%read-bw", "path");

    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types);
    for (char *tn = strtok(tbuf, ","); tn; tn = strtok(NULL, ",")) {
        tw_dtype t = type_by_name(tn);
        if (t == TW_DTYPE_COUNT) {
            fprintf(stderr, "bench_matmul: --types: unknown type '%s'\n", tn);
            return 2;
        }
        for (int si = s_lo; si < s_hi; si++) {
            int64_t n = all_shapes[si][0], k = all_shapes[si][1];
            size_t rb = tw_dtype_row_bytes(t, k);
            uint8_t *w = xmalloc(rb * (size_t)n);
            float *row = xmalloc((size_t)k * sizeof(float));
            for (int64_t o = 0; o < n; o++) {
                for (int64_t j = 0; j < k; j++) row[j] = frand();
                if (tw_quantize_row(t, row, w + (size_t)o * rb, k) != TW_OK) {
                    fprintf(stderr, "bench_matmul: %s\n", tw_errmsg());
                    return 1;
                }
            }
            int64_t mmax = 0;
            for (int mi = 0; mi < nm; mi++) mmax = ms[mi] > mmax ? ms[mi] : mmax;
            float *x = xmalloc((size_t)(mmax * k) * sizeof(float));
            float *y = xmalloc((size_t)(mmax * n) * sizeof(float));
            for (int64_t j = 0; j < mmax * k; j++) x[j] = frand();
            for (int mi = 0; mi < nm; mi++) {
                for (int ti = 0; ti < nth; ti++) {
                    tw_threads_set((int)ths[ti]);
                    for (int g = 0; g <= with_generic; g++) {
                        /* The generic path is slow: only at m = 1 (and 8). */
                        if (g && ms[mi] > 8) continue;
                        mm_args a = {y, x, w, t, ms[mi], k, n, g};
                        double cpu;
                        double sec = time_call(&a, 0.3, &cpu);
                        double gf = 2.0 * (double)ms[mi] * (double)k * (double)n / sec / 1e9;
                        double gbs = (double)rb * (double)n / sec / 1e9;
                        char shape[32];
                        snprintf(shape, sizeof shape, "%lldx%lld", (long long)n, (long long)k);
                        printf("%-5s %-12s %4lld %3lld %10.1f %10.1f %9.2f %8.2f %8.0f%% %s\n", tn,
                               shape, (long long)ms[mi], (long long)ths[ti], sec * 1e6, cpu * 1e6, gf, gbs,
                               100 * gbs / bw[ti], g ? "generic" : "kernel");
                        fflush(stdout);
                    }
                }
            }
            tw_free(w), tw_free(row), tw_free(x), tw_free(y);
        }
    }
    return 0;
}
