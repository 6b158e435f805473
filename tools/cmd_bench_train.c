/* cmd_bench_train.c: twin bench train: LoRA training throughput and memory of the llama
 * training step (engine/train.h) on a real model, for each way of holding the frozen base,
 * beside an anchor measured in the same run.
 *
 *   twin bench train [-m MODEL] [--seq 512] [--rank 16] [--steps 3] [--recompute]
 *                    [--modes f32,native,nf4]
 *
 * Modes (the seven projections of every layer; embeddings, head and norms stay as stored):
 *   f32     dequantized to F32 in memory after loading (tw_model_proj_convert): LoRA on a
 *           full-precision base;
 *   native  the GGUF's own type (Q4_1 for SmolLM2), dequantized block by block in the matmuls:
 *           QLoRA on the GGUF quant;
 *   nf4     re-quantized to NF4 with double quantization (QLoRA's format, engine/nf4.h),
 *           dequantized chunk by chunk in the matmuls.
 * Each mode runs in its own child process (fork), so that its peak resident memory
 * (getrusage ru_maxrss of the child) is its own: the mmap'd file pages it touched, the base
 * in its type, activations, adapter state and scratch.
 *
 * One optimizer step = forward over one sequence of --seq tokens (random ids from a fixed
 * seed; loss on every token), the fused LM head + cross-entropy with its gradient, the
 * backward through every layer (LoRA r on all seven projections, the base frozen), the
 * download of the gradients for the global norm, and AdamW. Reported per mode: tokens/s, the
 * forward and backward shares, the process CPU seconds per step (steadier than wall time on a
 * busy machine), model GFLOP/s (counted below), peak RSS, the bytes of the
 * seven projections in the mode's type and of all weights, and the conversion time.
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
 * (T x n_embd times n_embd x n_ff) at the same thread count, measured in the parent after the
 * modes; the ratio says what fraction of the machine's sgemm rate each training step reaches. */
#include "cli.h"
#include "gguf.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"
#include "train.h"
#include "train_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* CPU seconds of the whole process (all threads): on a busy machine wall time measures the
 * load as much as the code, CPU time much less so. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    fprintf(out, "usage: twin bench train [-m MODEL] [--seq 512] [--rank 16] [--steps 3] [--recompute]\n"
                 "                        [--modes f32,native,nf4]\n\n"
                 "LoRA training tokens/s and peak memory of one sequence of --seq tokens per step\n"
                 "(LoRA on all seven projections of every layer, the base frozen), for each way of\n"
                 "holding the base: f32 (dequantized), native (the GGUF's quant type), nf4 (QLoRA's\n"
                 "NF4 with double quantization); each mode in its own process. Beside them, the\n"
                 "machine's OpenBLAS sgemm rate at the same thread count.\n"
                 "MODEL defaults to smollm2-135m (twin model fetch smollm2-135m).\n");
}

enum { MODE_F32 = 0, MODE_NATIVE, MODE_NF4, N_MODES };
static const char *const mode_names[N_MODES] = {"f32", "native", "nf4"};
static const char *const mode_labels[N_MODES] = {"f32 LoRA (base f32)", "QLoRA native (GGUF type)",
                                                 "QLoRA nf4 (double quant)"};

/* What a mode's child sends back through its pipe. */
typedef struct {
    int ok;
    double step_s, fwd_s, bwd_s, gflops, loss, convert_s, cpu_s;
    double weight_bytes, base_bytes, act_bytes, lora_bytes, peak_rss;
    int n_layer, n_embd, n_ff, n_vocab;
    char arch[16];
    char err[256];
} mode_result;

/* Bytes of the seven projections as the GGUF stores them (0 for an HF folder: not counted). */
static double proj_bytes_in_file(const char *path) {
    static const char *const sfx[7] = {".attn_q.weight", ".attn_k.weight", ".attn_v.weight",
                                       ".attn_output.weight", ".ffn_gate.weight",
                                       ".ffn_up.weight", ".ffn_down.weight"};
    gguf_file *f = gguf_open(path);
    if (!f) {
        tw_error_clear();
        return 0;
    }
    double sum = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        for (int j = 0; j < 7; j++) {
            size_t n = strlen(sfx[j]);
            if (t->name.len > n && !memcmp(t->name.ptr + t->name.len - n, sfx[j], n) &&
                !memcmp(t->name.ptr, "blk.", 4))
                sum += (double)t->nbytes;
        }
    }
    gguf_close(f);
    return sum;
}

/* One mode, run in the child: fills *r (r->ok = 0 and r->err on failure). */
static void run_mode(int mode, const char *path, long seq, long rank, long steps, int recompute,
                     double proj_native, mode_result *r) {
    memset(r, 0, sizeof *r);
    tw_backend *be = NULL;
    tw_model *m = NULL;
    lora_set *s = NULL;
    trainer *t = NULL;
    int32_t *arr = NULL;
    float *grad = NULL;
    lora_base base;
    if (tw_backend_open("cpu", &be) || tw_model_load(path, be, NULL, &m)) goto fail;
    double w0 = (double)tw_model_weight_bytes(m), t0c = now_s();
    if (mode != MODE_NATIVE &&
        tw_model_proj_convert(m, mode == MODE_NF4 ? TW_DTYPE_NF4 : TW_DTYPE_F32))
        goto fail;
    r->convert_s = now_s() - t0c;
    r->weight_bytes = (double)tw_model_weight_bytes(m);
    r->base_bytes = proj_native + r->weight_bytes - w0;
    if (lora_base_from_model(m, &base)) goto fail;
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = (int32_t)rank;
    cfg.alpha = 2.0f * (float)rank;
    cfg.dropout = 0;
    cfg.targets = LORA_ALL_MODULES;
    trainer_opts to = {seq, recompute};
    if (lora_set_new(be, &base, &cfg, &s) || trainer_new(m, s, &to, &t)) goto fail;
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    r->n_layer = hp->n_layer, r->n_embd = hp->n_embd, r->n_ff = hp->n_ff, r->n_vocab = hp->n_vocab;
    snprintf(r->arch, sizeof r->arch, "%s", tw_model_arch_name(m));
    const int64_t T = seq, d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kvd = (int64_t)hp->n_kv_head * hp->head_dim, ff = hp->n_ff, V = hp->n_vocab;
    const int64_t P = (int64_t)hp->n_layer * (2 * d * qd + 2 * d * kvd + 3 * d * ff);
    double flops = 4.0 * (double)T * (double)P + 4.0 * (double)T * (double)V * (double)d +
                   7.0 * (double)T * (double)T * (double)qd * (double)hp->n_layer;
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        flops += 6.0 * (double)T * (double)a->rank * (double)(a->in + a->out);
    }
    /* one sequence: random ids, loss on every next token (the same in every mode) */
    arr = malloc((size_t)T * 4 * sizeof *arr);
    grad = malloc(lora_set_n_floats(s) * sizeof *grad);
    if (!arr || !grad) {
        tw_error(TW_ERR_NOMEM, "out of memory");
        goto fail;
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
    double t_fwd = 0, t_bwd = 0, t_opt = 0, c_steps = 0;
    for (long it = 0; it <= steps; it++) { /* step 0 warms up */
        double c0 = cpu_s(), t0 = now_s();
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
        if (st) goto fail;
        if (it > 0) {
            c_steps += cpu_s() - c0;
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_opt += t3 - t2;
        }
    }
    {
        /* the loss of the last step's forward, as a sanity figure (random tokens: about
         * log(V) or above; NF4 moves it a little from the others) */
        float *tl = malloc((size_t)T * sizeof *tl);
        if (tl && trainer_forward(t, &b) == TW_OK && trainer_loss(t, NULL, tl) == TW_OK) {
            for (int64_t i = 0; i < T; i++) r->loss += tl[i];
            r->loss /= (double)(T - 1);
        }
        free(tl);
    }
    r->step_s = (t_fwd + t_bwd + t_opt) / (double)steps;
    r->fwd_s = t_fwd / (double)steps;
    r->bwd_s = t_bwd / (double)steps;
    r->cpu_s = c_steps / (double)steps;
    r->gflops = flops / r->step_s * 1e-9;
    r->act_bytes = (double)trainer_act_bytes(t);
    r->lora_bytes = (double)lora_set_n_floats(s) * 4 * LORA_N_REGIONS;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->peak_rss = (double)ru.ru_maxrss * 1024.0;
    r->ok = 1;
    goto done;
fail:
    snprintf(r->err, sizeof r->err, "%s", tw_errmsg());
done:
    free(arr);
    free(grad);
    trainer_free(t);
    lora_set_free(s);
    tw_model_free(m);
    tw_backend_free(be);
}

/* Runs one mode in a child process; its result in *r. */
static void fork_mode(int mode, const char *path, long seq, long rank, long steps, int recompute,
                      double proj_native, mode_result *r) {
    memset(r, 0, sizeof *r);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->err, sizeof r->err, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
        close(fd[0]), close(fd[1]);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        mode_result res;
        run_mode(mode, path, seq, rank, steps, recompute, proj_native, &res);
        ssize_t w = write(fd[1], &res, sizeof res);
        _exit(w == (ssize_t)sizeof res ? 0 : 1);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fd[0], (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof *r) {
        memset(r, 0, sizeof *r);
        snprintf(r->err, sizeof r->err, "the child process ended without a result (status %d)",
                 status);
    }
}

int cmd_bench_train(int argc, char **argv) {
    const char *model = "smollm2-135m", *modes = "f32,native,nf4";
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
        } else if (cli_opt(argc, argv, &i, "--modes", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench train", "--modes needs a value");
            modes = v;
        } else if (cli_flag(argv, i, "--recompute")) {
            recompute = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench train", "unexpected argument '%s'", argv[i]);
        }
    }
    /* --modes: a comma-separated subset of f32, native, nf4, run in the order given */
    int order[N_MODES * 4], n_order = 0;
    for (const char *p = modes; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int found = -1;
        for (int k = 0; k < N_MODES; k++)
            if (strlen(mode_names[k]) == n && !strncmp(p, mode_names[k], n)) found = k;
        if (found < 0 || n_order == N_MODES * 4)
            return cli_fail(CLI_USAGE, "bench train", "--modes '%s': expected a comma-separated "
                            "list of f32, native, nf4", modes);
        order[n_order++] = found;
        p = e ? e + 1 : p + n;
    }
    if (n_order == 0)
        return cli_fail(CLI_USAGE, "bench train", "--modes is empty: expected f32, native, nf4");
    char *path = cli_resolve_model("bench train", model);
    if (!path) return CLI_ERR;
    /* The parent loads nothing and starts no OpenMP team before the children fork (a GNU
     * OpenMP team does not survive fork); the model's figures come from the children. */
    int rc = CLI_OK;
    double proj_native = proj_bytes_in_file(path);
    const int threads = tw_threads_get();
    printf("twin bench train: %s, seq %ld, LoRA r %ld on all 7 projections, %s\n", path, seq,
           rank, recompute ? "recompute" : "activations kept");
    bench_print_machine(threads);
    printf("\n%-26s %9s %8s %8s %8s %8s %8s %9s %9s %9s %7s %7s\n", "mode", "tokens/s", "step s",
           "fwd s", "bwd s", "cpu s", "GFLOP/s", "peak MiB", "base MiB", "wts MiB", "conv s",
           "loss");
    mode_result res[N_MODES * 4];
    for (int i = 0; i < n_order; i++) {
        mode_result *r = &res[i];
        fork_mode(order[i], path, seq, rank, steps, recompute, proj_native, r);
        if (!r->ok) {
            printf("%-26s failed: %s\n", mode_labels[order[i]], r->err);
            rc = CLI_ERR;
            continue;
        }
        printf("%-26s %9.1f %8.3f %8.3f %8.3f %8.3f %8.2f %9.0f %9.1f %9.1f %7.2f %7.3f\n",
               mode_labels[order[i]], (double)seq / r->step_s, r->step_s, r->fwd_s, r->bwd_s,
               r->cpu_s, r->gflops, r->peak_rss / 1048576.0, r->base_bytes / 1048576.0,
               r->weight_bytes / 1048576.0, r->convert_s, r->loss);
        fflush(stdout);
    }
    int first = -1;
    for (int i = 0; i < n_order && first < 0; i++)
        if (res[i].ok) first = i;
    if (first >= 0)
        printf("  model: %s, %d layers, d %d, n_ff %d, vocab %d\n", res[first].arch,
               res[first].n_layer, res[first].n_embd, res[first].n_ff, res[first].n_vocab);
    for (int i = 0; i < n_order; i++)
        if (res[i].ok) {
            printf("  cpu s = process CPU seconds per step (all threads; on a busy machine the "
                   "steadier figure); tokens per CPU second: see each row's seq / cpu s\n");
            printf("  activations %.1f MiB, adapter state (param, grad, 2 moments) %.1f MiB; base "
                   "MiB = the seven projections in the mode's type (the rest of the weights: "
                   "embeddings, head, norms, as stored)\n", res[i].act_bytes / 1048576.0,
                   res[i].lora_bytes / 1048576.0);
            break;
        }
    double blas = first >= 0 ? sgemm_rate(seq, res[first].n_ff, res[first].n_embd, threads) : 0;
    if (blas > 0) {
        printf("anchor: OpenBLAS sgemm %ldx%dx%d f32 at %d threads: %.2f GFLOP/s\n", seq,
               res[first].n_ff, res[first].n_embd, threads, blas);
        for (int i = 0; i < n_order; i++)
            if (res[i].ok)
                printf("ratio: %s training step / sgemm = %.2fx\n", mode_names[order[i]],
                       res[i].gflops / blas);
    }
    printf("anchor: PyTorch + PEFT not measured: torch is not installed (the PyPI wheel brings "
           "several GB of CUDA libraries)\n");
    tw_free(path);
    return rc;
}
