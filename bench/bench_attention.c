/* bench_attention.c: the CPU paged attention (TW_OP_ATTENTION, kernels/cpu/attention.c) on
 * SmolLM2-135M's heads (9 query heads, 3 kv heads, head_dim 64, pages of 16), at 1 and 2
 * threads (or --threads LIST).
 *
 *   bench_attention [--prompt 512] [--ctx 512] [--batch 8] [--threads 1,2] [--types f16,f32]
 *                   [--layers 1]
 *
 * Cases: "prefill" (one sequence, --prompt tokens at positions 0.., one call: a prompt chunk)
 * and "decode" (--batch sequences of --ctx tokens each, one new token each: a decode step).
 * For each, the tiled kernel (what tw_cpu_attention runs) beside the untiled AVX2 kernel
 * (TW_ATTN_PER_TOKEN: one token at a time, the kernel before the tiles) measured in the same
 * run, as a ratio (untiled / tiled time: > 1 is a gain); both give the same bits (checked
 * here too, memcmp). Times: the best of 9 trials of at least 3 calls and ~0.1 s each (the
 * machine is shared: the minimum is the least disturbed one), and the process CPU time per
 * call and thread of that trial (on a busy machine the steadier figure at one thread).
 * --layers N: N sets of caches, called in turn as a model's layers are (SmolLM2 has 30): then
 * a decode step's K/V rows come from memory, as in `twin bench infer`, not from the CPU's caches.
 * The anchor for the whole model is `twin bench infer` (llama.cpp); this one isolates the op.
 * Exit status 0; 1 when the two kernels differ; 2 on bad usage. */
#include "core.h"
#include "cpu/cpu_kernels.h"
#include "kernels.h"

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
        fprintf(stderr, "bench_attention: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One attention problem: caches, block tables, queries. */
#define MAX_LAYERS 64

typedef struct {
    tw_attn_shape sh;
    void *kc, *vc;              /* the current layer's caches */
    void *kcl[MAX_LAYERS], *vcl[MAX_LAYERS];
    int n_layers, cur;
    int32_t *bt, *seq, *pos;
    float *q, *out;
} problem;

/* n_seq sequences of len tokens each (pages dealt out in a shuffled order); the last n_new
 * tokens of each are the queries. */
static problem problem_make(tw_dtype ct, int64_t n_seq, int64_t len, int64_t n_new, int n_layers) {
    problem p;
    p.n_layers = n_layers, p.cur = 0;
    const int64_t ps = 16, nh = 9, nkv = 3, d = 64;
    int64_t mb = (len + ps - 1) / ps, n_pages = n_seq * mb, n_slots = n_pages * ps, row = nkv * d;
    p.sh = (tw_attn_shape){mb, ps, n_seq * n_new, nh, nkv, d, 0.125f, ct};
    size_t esz = ct == TW_DTYPE_F16 ? 2 : 4;
    float *k = xmalloc((size_t)row * sizeof(float)), *v = xmalloc((size_t)row * sizeof(float));
    int32_t *slot = xmalloc(sizeof(int32_t));
    for (int l = 0; l < n_layers; l++) {
        p.kcl[l] = xmalloc((size_t)(n_slots * row) * esz);
        p.vcl[l] = xmalloc((size_t)(n_slots * row) * esz);
        for (int64_t sl = 0; sl < n_slots; sl++) {
            for (int64_t i = 0; i < row; i++) k[i] = frand(), v[i] = frand();
            slot[0] = (int32_t)sl;
            tw_cpu_kv_write(p.kcl[l], p.vcl[l], ct, k, v, slot, 1, nkv, d);
        }
    }
    p.kc = p.kcl[0], p.vc = p.vcl[0];
    tw_free(k), tw_free(v), tw_free(slot);
    p.bt = xmalloc((size_t)n_pages * sizeof(int32_t));
    for (int64_t i = 0; i < n_pages; i++) p.bt[i] = (int32_t)i;
    for (int64_t i = n_pages - 1; i > 0; i--) {
        int64_t j = (int64_t)((frand() + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
        int32_t t = p.bt[i];
        p.bt[i] = p.bt[j], p.bt[j] = t;
    }
    int64_t nt = n_seq * n_new;
    p.seq = xmalloc((size_t)nt * sizeof(int32_t));
    p.pos = xmalloc((size_t)nt * sizeof(int32_t));
    for (int64_t s = 0; s < n_seq; s++)
        for (int64_t i = 0; i < n_new; i++) {
            p.seq[s * n_new + i] = (int32_t)s;
            p.pos[s * n_new + i] = (int32_t)(len - n_new + i);
        }
    p.q = xmalloc((size_t)(nt * nh * d) * sizeof(float));
    p.out = xmalloc((size_t)(nt * nh * d) * sizeof(float));
    for (int64_t i = 0; i < nt * nh * d; i++) p.q[i] = 2.0f * frand();
    return p;
}

static void problem_free(problem *p) {
    for (int l = 0; l < p->n_layers; l++) tw_free(p->kcl[l]), tw_free(p->vcl[l]);
    tw_free(p->bt), tw_free(p->seq), tw_free(p->pos);
    tw_free(p->q), tw_free(p->out);
}

/* One call on the next layer's caches (a model's forward visits its layers in turn: with
 * --layers 30 a decode step's K/V come from memory, not from the caches of the CPU). */
static void run(problem *p, int variant) {
    p->cur = (p->cur + 1) % p->n_layers;
    p->kc = p->kcl[p->cur], p->vc = p->vcl[p->cur];
    tw_cpu_attention_variant(p->out, p->q, p->kc, p->vc, p->bt, p->seq, p->pos, &p->sh, variant);
}

/* One call on layer 0's caches: the outputs the two variants are compared on. */
static void run_first(problem *p, int variant) {
    p->cur = p->n_layers - 1;
    run(p, variant);
}

/* Best wall seconds per call over 9 trials; *cpu_s: that trial's CPU seconds per call. */
static double time_variant(problem *p, int variant, double *cpu_s) {
    run(p, variant);
    double best = 1e30, best_cpu = 1e30;
    for (int trial = 0; trial < 9; trial++) {
        int runs = 0;
        double t0 = tw_now_s(), c0 = cpu_now_s(), t;
        do {
            run(p, variant);
            runs++;
        } while ((t = tw_now_s() - t0) < 0.1 || runs < 3);
        if (t / runs < best) best = t / runs, best_cpu = (cpu_now_s() - c0) / runs;
    }
    *cpu_s = best_cpu;
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

int main(int argc, char **argv) {
    int64_t prompt = 512, ctx = 512, batch = 8, ths[8] = {1, 2};
    int n_th = 2, do_f16 = 1, do_f32 = 1, n_layers = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_attention: %s needs a value (--help: see the file's head)\n", a);
            return 2;
        }
        if (!strcmp(a, "--prompt")) prompt = atoll(v);
        else if (!strcmp(a, "--ctx")) ctx = atoll(v);
        else if (!strcmp(a, "--batch")) batch = atoll(v);
        else if (!strcmp(a, "--layers")) n_layers = atoi(v);
        else if (!strcmp(a, "--threads")) n_th = parse_list(v, ths, 8);
        else if (!strcmp(a, "--types")) do_f16 = strstr(v, "f16") != NULL, do_f32 = strstr(v, "f32") != NULL;
        else {
            fprintf(stderr, "bench_attention: unknown option %s\n", a);
            return 2;
        }
    }
    if (prompt < 1 || ctx < 1 || batch < 1 || n_th < 1 || n_layers < 1 || n_layers > MAX_LAYERS ||
        (!do_f16 && !do_f32)) {
        fprintf(stderr, "bench_attention: --prompt, --ctx, --batch, --threads must be >= 1, --layers 1..%d, "
                        "--types f16 and/or f32\n", MAX_LAYERS);
        return 2;
    }
    if (!tw_cpu_has_avx2_fma()) printf("note: no AVX2 here: both variants run the portable kernel\n");
    printf("%-8s %-4s %-22s %3s %12s %12s %12s %12s %8s\n", "case", "kv", "shape", "thr", "tiled ms",
           "(cpu/thr)", "per-tok ms", "(cpu/thr)", "gain");
    int bad = 0;
    for (int ty = 0; ty < 2; ty++) {
        if ((ty == 0 && !do_f16) || (ty == 1 && !do_f32)) continue;
        tw_dtype ct = ty == 0 ? TW_DTYPE_F16 : TW_DTYPE_F32;
        for (int c = 0; c < 2; c++) {
            problem p = c == 0 ? problem_make(ct, 1, prompt, prompt, n_layers)
                               : problem_make(ct, batch, ctx, 1, n_layers);
            char shape[64];
            snprintf(shape, sizeof shape, c == 0 ? "%lld tokens" : "%lld x 1 at %lld",
                     (long long)(c == 0 ? prompt : batch), (long long)ctx);
            size_t ob = (size_t)(p.sh.n_tok * p.sh.n_head * p.sh.head_dim) * sizeof(float);
            float *keep = xmalloc(ob);
            for (int ti = 0; ti < n_th; ti++) {
                tw_threads_set((int)ths[ti]);
                double ct1, ct2;
                double t1 = time_variant(&p, TW_ATTN_DISPATCH, &ct1);
                run_first(&p, TW_ATTN_DISPATCH);
                memcpy(keep, p.out, ob);
                double t2 = time_variant(&p, TW_ATTN_PER_TOKEN, &ct2);
                run_first(&p, TW_ATTN_PER_TOKEN);
                if (memcmp(keep, p.out, ob) != 0) {
                    fprintf(stderr, "bench_attention: the tiled and per-token kernels differ (%s %s)\n",
                            c == 0 ? "prefill" : "decode", tw_dtype_name(ct));
                    bad = 1;
                }
                printf("%-8s %-4s %-22s %3lld %12.3f %12.3f %12.3f %12.3f %7.2fx\n",
                       c == 0 ? "prefill" : "decode", tw_dtype_name(ct), shape, (long long)ths[ti],
                       1e3 * t1, 1e3 * ct1 / (double)ths[ti], 1e3 * t2, 1e3 * ct2 / (double)ths[ti], t2 / t1);
                fflush(stdout);
            }
            tw_free(keep);
            problem_free(&p);
        }
    }
    return bad;
}
