/* bench_train_ops.c: the training GEMMs of the CPU backend (kernels/cpu/train_gemm.c) and the
 * fused LM head + cross-entropy (train_ops.c) on the shapes of SmolLM2-135M, at 1 and 2
 * threads (or --threads LIST).
 *
 *   bench_train_ops [--threads 1,2] [--m 512] [--no-xent]
 *
 * Prints GFLOP/s (2 m k n / t) of
 *   MATMUL_DX  dx (m, k) = dy (m, n) . W (n, k), W in f32 and in q4_1 (SmolLM2's GGUF type: the
 *              QLoRA path, dequantized panel by panel) and q8_0;
 *   MATMUL_DW  dw (n, k) = dy^T (n, m) . x (m, k), f32;
 * for k, n in {576, 1536} and m = 512 tokens, beside two anchors measured in the same run:
 *   - the machine's single-precision peak: an FMA loop of independent AVX2 accumulators on
 *     every thread (2 x 8 flops per FMA), as "% of peak";
 *   - OpenBLAS sgemm on the same f32 operands and thread count, loaded at run time with dlopen
 *     (libopenblas.so.0; it is not linked into libtwin), as "x openblas" (ours / theirs).
 * XENT: 512 tokens, d = 576, the 49152-token vocabulary (q4_1 and f32 heads), forward and dh:
 * two GEMMs of 2 m d V flops each plus the softmax, in GFLOP/s of those 4 m d V flops.
 *
 * Exit status 0; 1 on a kernel error; 2 on bad usage. */
#include "core.h"
#include "cpu/cpu_kernels.h"
#include "kernels.h"
#include "quant.h"

#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_s = rng_s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_s >> 11) * 0x1.0p-52 - 1.0);
}

static void *xmalloc(size_t n) {
    void *p = tw_malloc(n);
    if (!p) {
        fprintf(stderr, "bench_train_ops: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *rand_floats(size_t n, float scale) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static void check(tw_status st) {
    if (st != TW_OK) {
        fprintf(stderr, "bench_train_ops: %s\n", tw_errmsg());
        exit(1);
    }
}

/* ---- the peak: independent FMAs on every thread ------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
/* Ten independent chains (more than FMA latency x FMA ports on current x86 cores), each a
 * named register. */
__attribute__((target("avx2,fma"))) static float fma_loop(int64_t iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
           a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
           a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
           a9 = _mm256_set1_ps(9);
    for (int64_t it = 0; it < iters; it++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c), a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c), a9 = _mm256_fmadd_ps(a9, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(a8, a9));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
#else
static float fma_loop(int64_t iters) {
    float a = 1;
    for (int64_t it = 0; it < iters; it++) a = a * 0.999999f + 1e-7f;
    return a;
}
#endif

/* GFLOP/s of nt threads each running the FMA loop: the best of many short runs (~5 ms each),
 * so that a slice of the machine free of other work is caught on a shared host. */
static double peak_gflops(int nt) {
    const int64_t iters = 1000000; /* 1 M x 10 FMAs x 16 flops = 0.16 GFLOP per thread */
    volatile float sink = 0;
    double best = 0;
    for (int rep = 0; rep < 60; rep++) {
        double t0 = tw_now_s();
#pragma omp parallel num_threads(nt)
        {
            float r = fma_loop(iters);
#pragma omp atomic
            sink += r;
        }
        double g = (double)nt * (double)iters * 10 * 16 / (tw_now_s() - t0) * 1e-9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}

/* ---- OpenBLAS through dlopen ---------------------------------------------------------------- */

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);
typedef void (*set_threads_fn)(int);
static sgemm_fn blas_sgemm;
static set_threads_fn blas_threads;
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };

static void blas_open(void) {
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("openblas: not found (%s); the ratios to it are left out\n", dlerror());
        return;
    }
    blas_sgemm = (sgemm_fn)(uintptr_t)dlsym(h, "cblas_sgemm");
    blas_threads = (set_threads_fn)(uintptr_t)dlsym(h, "openblas_set_num_threads");
    if (!blas_sgemm || !blas_threads) {
        printf("openblas: cblas_sgemm or openblas_set_num_threads missing\n");
        blas_sgemm = NULL;
    }
}

/* ---- timing --------------------------------------------------------------------------------- */

typedef struct {
    int kind; /* 0 dx, 1 dw, 2 blas dx, 3 blas dw, 4 xent */
    float *out, *dy, *x, *wf, *loss, *dh;
    const void *w;
    tw_dtype t;
    const int32_t *tgt;
    int64_t m, k, n, V;
} job;

static void job_run(const job *j) {
    switch (j->kind) {
    case 0: check(tw_cpu_matmul_dx(j->out, j->dy, j->w, j->t, j->m, j->k, j->n, 0)); break;
    case 1: check(tw_cpu_matmul_dw(j->out, NULL, j->dy, j->x, j->m, j->k, j->n, 0)); break;
    case 2: /* dx (m, k) = dy (m, n) . W (n, k) */
        blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->m, (int)j->k, (int)j->n, 1.0f,
                   j->dy, (int)j->n, j->wf, (int)j->k, 0.0f, j->out, (int)j->k);
        break;
    case 3: /* dw (n, k) = dy^T (n, m) . x (m, k) */
        blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)j->n, (int)j->k, (int)j->m, 1.0f,
                   j->dy, (int)j->n, j->x, (int)j->k, 0.0f, j->out, (int)j->k);
        break;
    default:
        check(tw_cpu_xent(j->loss, j->dh, NULL, j->x, j->w, j->t, j->tgt, j->m, j->k, j->V,
                          1.0f / (float)j->m));
    }
}

/* Seconds per call of a and of b (b may be NULL): calls alternate, a, b, a, b, ..., for ~min_s
 * seconds (at least 3 each) after a warm-up, and each keeps its best: on a shared host both
 * then see the same moments of load, so their ratio means more than either time. */
static void time_pair(const job *a, const job *b, double min_s, double *ta, double *tb) {
    job_run(a);
    if (b) job_run(b);
    double best[2] = {1e30, 1e30}, t_start = tw_now_s();
    for (int runs = 0; runs < 3 || tw_now_s() - t_start < min_s; runs++)
        for (int i = 0; i < (b ? 2 : 1); i++) {
            double t0 = tw_now_s();
            job_run(i ? b : a);
            double t = tw_now_s() - t0;
            if (t < best[i]) best[i] = t;
        }
    *ta = best[0];
    if (tb) *tb = best[1];
}

static void *quantized(tw_dtype t, const float *wf, int64_t rows, int64_t k) {
    size_t rb = tw_dtype_row_bytes(t, k);
    uint8_t *q = xmalloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) check(tw_quantize_row(t, wf + r * k, q + (size_t)r * rb, k));
    return q;
}

static const char *machine_name(char *buf, size_t n) {
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(buf, n, "%s", c + 2);
                buf[strcspn(buf, "\n")] = 0;
            }
            break;
        }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    int threads[8] = {1, 2}, n_threads = 2, xent = 1;
    int64_t m = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v) {
            n_threads = 0;
            for (char *s = (char *)v; *s && n_threads < 8;) {
                threads[n_threads++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
                else if (*s) break;
            }
            i++;
        } else if (!strcmp(a, "--m") && v) {
            m = strtoll(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--no-xent")) {
            xent = 0;
        } else {
            fprintf(stderr, "usage: bench_train_ops [--threads 1,2] [--m 512] [--no-xent]\n");
            return 2;
        }
    }
    if (m < 1 || n_threads < 1) {
        fprintf(stderr, "bench_train_ops: --m and --threads must be >= 1\n");
        return 2;
    }
    char name[256];
    tw_cpu_features f = tw_cpu_features_get();
    printf("machine: %s, %d cores online, avx2 %d fma %d avx512f %d; kernels %s\n",
           machine_name(name, sizeof name), omp_get_num_procs(), f.avx2, f.fma, f.avx512f,
           tw_cpu_has_avx2_fma() ? "avx2" : "portable");
    blas_open();

    const int64_t dims[2] = {576, 1536};
    const tw_dtype qtypes[3] = {TW_DTYPE_F32, TW_DTYPE_Q4_1, TW_DTYPE_Q8_0};
    for (int ti = 0; ti < n_threads; ti++) {
        int nt = threads[ti];
        tw_threads_set(nt);
        if (blas_threads) blas_threads(nt);
        double peak = peak_gflops(nt);
        printf("threads %d: peak (fma loop) %.1f GFLOP/s\n", nt, peak);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                int64_t k = dims[a], n = dims[b];
                float *dy = rand_floats((size_t)(m * n), 1), *x = rand_floats((size_t)(m * k), 1);
                float *wf = rand_floats((size_t)(n * k), 0.05f);
                float *out = xmalloc((size_t)(n > m ? n : m) * (size_t)k * sizeof(float));
                double flops = 2.0 * (double)m * (double)k * (double)n, ta, tb;
                job jb = {.kind = 2, .out = out, .dy = dy, .x = x, .wf = wf, .m = m, .k = k, .n = n};
                for (int q = 0; q < 3; q++) {
                    void *w = qtypes[q] == TW_DTYPE_F32 ? (void *)wf : quantized(qtypes[q], wf, n, k);
                    job j = {.kind = 0, .out = out, .dy = dy, .w = w, .t = qtypes[q], .m = m, .k = k, .n = n};
                    time_pair(&j, blas_sgemm ? &jb : NULL, 0.6, &ta, &tb);
                    double g = flops / ta * 1e-9;
                    printf("twin matmul_dx %-5s m=%lld k=%lld n=%lld threads=%d: %6.1f GFLOP/s  "
                           "%5.1f%% of peak", tw_dtype_name(qtypes[q]), (long long)m,
                           (long long)k, (long long)n, nt, g, 100 * g / peak);
                    if (blas_sgemm) printf("  openblas f32 %6.1f GFLOP/s  ratio %.2fx", flops / tb * 1e-9, tb / ta);
                    printf("\n");
                    if (w != wf) tw_free(w);
                }
                job j = {.kind = 1, .out = out, .dy = dy, .x = x, .m = m, .k = k, .n = n};
                jb.kind = 3;
                time_pair(&j, blas_sgemm ? &jb : NULL, 0.6, &ta, &tb);
                double g = flops / ta * 1e-9;
                printf("twin matmul_dw f32   m=%lld k=%lld n=%lld threads=%d: %6.1f GFLOP/s  "
                       "%5.1f%% of peak", (long long)m, (long long)k, (long long)n, nt, g,
                       100 * g / peak);
                if (blas_sgemm) printf("  openblas f32 %6.1f GFLOP/s  ratio %.2fx", flops / tb * 1e-9, tb / ta);
                printf("\n");
                tw_free(dy), tw_free(x), tw_free(wf), tw_free(out);
            }
        if (!xent) continue;
        int64_t d = 576, V = 49152;
        float *h = rand_floats((size_t)(m * d), 1), *wf = rand_floats((size_t)(V * d), 0.05f);
        float *loss = xmalloc((size_t)m * sizeof(float)), *dh = xmalloc((size_t)(m * d) * sizeof(float));
        int32_t *tgt = xmalloc((size_t)m * sizeof(int32_t));
        for (int64_t i = 0; i < m; i++) tgt[i] = (int32_t)((i * 7919) % V);
        for (int q = 0; q < 2; q++) {
            void *w = qtypes[q] == TW_DTYPE_F32 ? (void *)wf : quantized(qtypes[q], wf, V, d);
            job j = {.kind = 4, .x = h, .w = w, .t = qtypes[q], .loss = loss, .dh = dh, .tgt = tgt,
                     .m = m, .k = d, .V = V};
            double t;
            time_pair(&j, NULL, 0.5, &t, NULL);
            double g = 4.0 * (double)m * (double)d * (double)V / t * 1e-9;
            printf("twin xent %-5s n_tok=%lld d=%lld vocab=%lld threads=%d: %.3f s, %6.1f GFLOP/s "
                   "(logits + dh)  %5.1f%% of peak", tw_dtype_name(qtypes[q]), (long long)m,
                   (long long)d, (long long)V, nt, t, g, 100 * g / peak);
            if (blas_sgemm) {
                /* the anchor: the same two products as two sgemm calls over the whole (m, V)
                 * logits (what the fused op avoids holding), without the softmax */
                float *lg = xmalloc((size_t)(m * V) * sizeof(float));
                double t0 = 1e30;
                for (int rep = 0; rep < 2; rep++) {
                    double s = tw_now_s();
                    blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)V, (int)d, 1.0f,
                               h, (int)d, wf, (int)d, 0.0f, lg, (int)V);
                    blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d, (int)V,
                               1.0f, lg, (int)V, wf, (int)d, 0.0f, dh, (int)d);
                    double e = tw_now_s() - s;
                    if (e < t0) t0 = e;
                }
                printf("  openblas f32 2 x sgemm %.3f s  ratio %.2fx", t0, t0 / t);
                tw_free(lg);
            }
            printf("\n");
            if (w != wf) tw_free(w);
        }
        tw_free(h), tw_free(wf), tw_free(loss), tw_free(dh), tw_free(tgt);
    }
    return 0;
}
