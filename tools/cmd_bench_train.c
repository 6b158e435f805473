/* cmd_bench_train.c: twin bench train: LoRA training throughput and memory of the llama
 * training step (engine/train.h) on a real model, beside an anchor measured in the same run.
 *
 *   twin bench train [-m MODEL] [--seq 512] [--rank 16] [--steps 3] [--recompute]
 *
 * One optimizer step = forward over one sequence of --seq tokens (random ids from a fixed
 * seed; loss on every token), the fused LM head + cross-entropy with its gradient, the
 * backward through every layer (LoRA r on all seven projections, the base frozen in its
 * stored type: "native" QLoRA on a Q4_1 GGUF), the download of the gradients for the global
 * norm, and AdamW. Reported: tokens/s, the forward and backward shares, model GFLOP/s (counted
 * below), peak resident memory of the process, and the trainer's activation and adapter bytes.
 *
 * FLOPs per step of T tokens (multiply-add = 2): base matmuls 2*T*P forward + 2*T*P for dx
 * (P = matmul weights of all layers; no weight gradient: the base is frozen); LoRA 6*T*r*(in+out)
 * per adapter (forward 2, dA/dB/dLA/dx 4); LM head 2*T*V*d forward + 2*T*V*d for dh;
 * causal attention 2*T^2*qd forward and 5*T^2*qd backward (recomputed scores, dP, dV, dQ, dK)
 * per layer.
 *
 * Anchor: PyTorch + PEFT is not installed here (the default PyPI torch wheel pulls several GB
 * of CUDA libraries), so the anchor is this machine's measured f32 GEMM rate: OpenBLAS
 * cblas_sgemm (loaded with dlopen, not linked into twin) on the step's dominant shape
 * (T x n_embd times n_embd x n_ff) at the same thread count; the ratio says what fraction of
 * the machine's sgemm rate the whole training step reaches. NF4 QLoRA is reported as not
 * available: the op table has no NF4 matmul (engine/nf4.h is host-only). */
#include "cli.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"
#include "train.h"
#include "train_util.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);
typedef void (*set_threads_fn)(int);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* Best-of-3 GFLOP/s of OpenBLAS sgemm C (m, n) = A (m, k) . B (n, k)^T at `threads`; 0 when
 * OpenBLAS is not there (why is printed). */
static double sgemm_rate(int64_t m, int64_t n, int64_t k, int threads) {
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("anchor: OpenBLAS not found (%s): apt-get install libopenblas0\n", dlerror());
        return 0;
    }
    sgemm_fn gemm = (sgemm_fn)(uintptr_t)dlsym(h, "cblas_sgemm");
    set_threads_fn set = (set_threads_fn)(uintptr_t)dlsym(h, "openblas_set_num_threads");
    if (!gemm || !set) {
        printf("anchor: cblas_sgemm or openblas_set_num_threads missing\n");
        dlclose(h);
        return 0;
    }
    set(threads);
    float *a = malloc((size_t)(m * k) * 4), *b = malloc((size_t)(n * k) * 4), *c = malloc((size_t)(m * n) * 4);
    double best = 0;
    if (a && b && c) {
        for (int64_t i = 0; i < m * k; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (int64_t i = 0; i < n * k; i++) b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = now_s();
            gemm(ROW_MAJOR, NO_TRANS, TRANS, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b, (int)k, 0.0f, c, (int)n);
            double g = 2.0 * (double)m * (double)n * (double)k / (now_s() - t0) * 1e-9;
            if (rep > 0 && g > best) best = g; /* the first call warms up the threads */
        }
    }
    free(a);
    free(b);
    free(c);
    dlclose(h);
    return best;
}

static void usage(FILE *out) {
    fprintf(out, "usage: twin bench train [-m MODEL] [--seq 512] [--rank 16] [--steps 3] [--recompute]\n\n"
                 "LoRA training tokens/s and peak memory of one sequence of --seq tokens per step\n"
                 "(LoRA on all seven projections of every layer, the base frozen in its stored\n"
                 "type), beside the machine's OpenBLAS sgemm rate at the same thread count.\n"
                 "MODEL defaults to smollm2-135m (twin model fetch smollm2-135m).\n");
}

int cmd_bench_train(int argc, char **argv) {
    const char *model = "smollm2-135m";
    long seq = 512, rank = 16, steps = 3;
    int recompute = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (cli_opt(argc, argv, &i, "-m", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench train", "-m needs a value");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--seq", &v)) {
            if (!v || cli_parse_int("bench train", "--seq", v, 2, 1 << 16, &seq)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--rank", &v)) {
            if (!v || cli_parse_int("bench train", "--rank", v, 1, 1024, &rank)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--steps", &v)) {
            if (!v || cli_parse_int("bench train", "--steps", v, 1, 1000, &steps)) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--recompute")) {
            recompute = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench train", "unexpected argument '%s'", argv[i]);
        }
    }
    char *path = cli_resolve_model("bench train", model);
    if (!path) return CLI_ERR;
    int rc = CLI_OK;
    tw_backend *be = NULL;
    tw_model *m = NULL;
    lora_set *s = NULL;
    trainer *t = NULL;
    int32_t *arr = NULL;
    float *grad = NULL;
    lora_base base;
    if (tw_backend_open("cpu", &be) || tw_model_load(path, be, NULL, &m) ||
        lora_base_from_model(m, &base)) {
        rc = cli_fail_status("bench train");
        goto done;
    }
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = (int32_t)rank;
    cfg.alpha = 2.0f * (float)rank;
    cfg.dropout = 0;
    cfg.targets = LORA_ALL_MODULES;
    trainer_opts to = {seq, recompute};
    if (lora_set_new(be, &base, &cfg, &s) || trainer_new(m, s, &to, &t)) {
        rc = cli_fail_status("bench train");
        goto done;
    }
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    const int64_t T = seq, d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kvd = (int64_t)hp->n_kv_head * hp->head_dim, ff = hp->n_ff, V = hp->n_vocab;
    const int64_t P = (int64_t)hp->n_layer * (2 * d * qd + 2 * d * kvd + 3 * d * ff);
    double flops = 4.0 * (double)T * (double)P + 4.0 * (double)T * (double)V * (double)d +
                   7.0 * (double)T * (double)T * (double)qd * (double)hp->n_layer;
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        flops += 6.0 * (double)T * (double)a->rank * (double)(a->in + a->out);
    }
    /* one sequence: random ids, loss on every next token */
    arr = malloc((size_t)T * 4 * sizeof *arr);
    grad = malloc(lora_set_n_floats(s) * sizeof *grad);
    if (!arr || !grad) {
        rc = cli_fail(CLI_ERR, "bench train", "out of memory");
        goto done;
    }
    int32_t *tok = arr, *tgt = arr + T, *pos = arr + 2 * T, *seg = arr + 3 * T;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < T; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[i] = (int32_t)(x % (uint64_t)V);
        pos[i] = (int32_t)i;
        seg[i] = 0;
    }
    for (int64_t i = 0; i < T; i++) tgt[i] = i + 1 < T ? tok[i + 1] : -1;
    size_t ex[2] = {0, (size_t)T};
    trainer_batch b = {T, tok, tgt, pos, seg, 1, ex};
    float scale = 1.0f / (float)(T - 1);
    const int threads = tw_threads_get();
    printf("twin bench train: %s (%s, %d layers, d %d, vocab %d), seq %ld, LoRA r %ld on all 7 "
           "projections (%lld parameters), %s\n", path, tw_model_arch_name(m), (int)hp->n_layer,
           (int)d, (int)V, seq, rank, (long long)lora_set_n_params(s),
           recompute ? "recompute" : "activations kept");
    bench_print_machine(threads);
    double t_fwd = 0, t_bwd = 0, t_opt = 0, loss = 0;
    for (long it = 0; it <= steps; it++) { /* step 0 warms up */
        double t0 = now_s();
        tw_status st = lora_set_zero(s, LORA_GRAD);
        if (!st) st = trainer_forward(t, &b);
        if (!st) st = trainer_loss(t, &scale, NULL);
        double t1 = now_s();
        if (!st) st = trainer_backward(t);
        if (!st) st = tw_backend_sync(be);
        double t2 = now_s();
        if (!st) st = lora_set_download(s, LORA_GRAD, grad);
        double gn = train_grad_norm(grad, lora_set_n_floats(s));
        if (!st)
            st = tw_op_adamw(be, lora_set_ref(s, LORA_PARAM, 0), lora_set_ref(s, LORA_GRAD, 0),
                             lora_set_ref(s, LORA_ADAM_M, 0), lora_set_ref(s, LORA_ADAM_V, 0),
                             (int64_t)lora_set_n_floats(s), 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f,
                             (float)train_clip_scale(gn, 1.0), it + 1);
        if (!st) st = tw_backend_sync(be);
        double t3 = now_s();
        if (st) {
            rc = cli_fail_status("bench train");
            goto done;
        }
        if (it > 0) {
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_opt += t3 - t2;
        }
    }
    {
        /* the loss of the last step's forward, as a sanity figure (random tokens: about
         * log(V) or above) */
        float *tl = malloc((size_t)T * sizeof *tl);
        if (tl && trainer_forward(t, &b) == TW_OK && trainer_loss(t, NULL, tl) == TW_OK) {
            for (int64_t i = 0; i < T; i++) loss += tl[i];
            loss /= (double)(T - 1);
        }
        free(tl);
    }
    double step_s = (t_fwd + t_bwd + t_opt) / (double)steps;
    double tps = (double)T / step_s, gf = flops / step_s * 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak = (double)ru.ru_maxrss / 1024.0;
    size_t lora_bytes = lora_set_n_floats(s) * 4 * LORA_N_REGIONS;
    printf("\n%-28s %10s %9s %9s %9s %10s %12s\n", "mode", "tokens/s", "step s", "fwd s", "bwd s",
           "GFLOP/s", "peak RSS MiB");
    printf("%-28s %10.1f %9.3f %9.3f %9.3f %10.2f %12.0f\n", "native QLoRA (base q-type)", tps,
           step_s, t_fwd / (double)steps, t_bwd / (double)steps, gf, peak);
    printf("%-28s %10s\n", "NF4 QLoRA", "not available (no NF4 matmul in the op table)");
    printf("  model FLOPs per step %.2f GFLOP; activations %.1f MiB, adapter state (param, grad, 2 "
           "moments) %.1f MiB, weights %.1f MiB; loss on random tokens %.3f\n", flops * 1e-9,
           (double)trainer_act_bytes(t) / 1048576.0, (double)lora_bytes / 1048576.0,
           (double)tw_model_weight_bytes(m) / 1048576.0, loss);
    double blas = sgemm_rate(T, ff, d, threads);
    if (blas > 0)
        printf("anchor: OpenBLAS sgemm %lldx%lldx%lld f32 at %d threads: %.2f GFLOP/s; the training "
               "step reaches %.2fx of it\n", (long long)T, (long long)ff, (long long)d, threads, blas,
               gf / blas);
    printf("anchor: PyTorch + PEFT not measured: torch is not installed (the PyPI wheel brings "
           "several GB of CUDA libraries)\n");
done:
    free(arr);
    free(grad);
    trainer_free(t);
    lora_set_free(s);
    tw_model_free(m);
    tw_backend_free(be);
    tw_free(path);
    return rc;
}
