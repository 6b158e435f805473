/* cmd_bench_infer.c: twin bench infer: twin's prefill and decode speed beside llama.cpp's, on
 * the same GGUF files, thread counts and lengths, measured in the same run.
 *
 *   twin bench infer [-m MODEL ...] [-t 1,2] [--prompt 512] [--gen 128] [--batch 8]
 *                    [--batch-prompt 32] [--repeat 3] [--types q8_0,f16] [--no-anchor]
 *                    [--build-anchor]
 *
 * What is measured, on each side (llama.cpp's tests are what llama-bench and
 * llama-batched-bench run; twin's are written to match them):
 *   pp<P>   prefill: P random tokens in one forward (logits of the last), from an empty
 *           cache; tok/s = P / time. Mean and standard deviation over --repeat runs.
 *   tg<G>   decode: G single-token forwards from an empty cache (each with its logits; the
 *           next token is random, as llama-bench does, so no sampler is timed); tok/s = G /
 *           time.
 *   batched decode: B sequences, each first given a --batch-prompt token prompt (one forward
 *           for all of them, not timed), then G steps of one forward with one token of each
 *           sequence; aggregate tok/s = B * G / time. The same with 1 sequence gives the
 *           single-sequence rate of this pattern; their quotient is the batching gain.
 *           twin runs the two patterns alternately, --repeat times each (mean); llama.cpp's
 *           side is one llama-batched-bench -npp <bp> -ntg G -npl 1,B run (its S_TG).
 *   peak RSS: of the process that ran twin's tests (one child process per model, loading
 *           it once) and of llama-bench's process, from wait4(); twin's is set beside the
 *           budget file size + KV cache bytes + 64 MB.
 * Both use an f16 K/V cache and the CPU; llama.cpp's flash-attention setting is its default
 * (auto) and is printed. twin's tests run in a child (`twin bench infer --worker MODEL ...`,
 * not for users) so that each model's RSS is its own.
 *
 * Models: -m MODEL (any number, up to 8), else smollm2-135m (the Q4_1 file of `twin model
 * fetch`) and, for each of --types (default q8_0,f16; "none" for none), its conversion by
 * `twin quantize`, made once into <workspace>/cache/bench/.
 * The anchor: $TWIN_LLAMA_BIN (a folder with llama-bench and llama-batched-bench), else what
 * bench/llama_anchor.sh --print finds (built from the llama-cpp-python sdist into
 * <workspace>/cache); --build-anchor runs the build when it is missing (slow: tens of minutes
 * on two cores). Without an anchor twin's figures are printed alone, with the reason.
 * Threads: -t LIST, else the global --threads N, else 1 and all online cores.
 */
#include "cli.h"
#include "gguf.h"
#include "json.h"
#include "kernels.h"
#include "kv_cache.h"
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BI_MAX_MODELS 8
#define BI_MAX_THREADS 8
#define BI_MAX_REPEAT 100

typedef struct {
    int threads[BI_MAX_THREADS];
    int n_threads;
    long prompt, gen, batch, batch_prompt, repeat;
} bi_opts;

typedef struct {
    double avg, sd;
    int ok;
} bi_stat;

/* One side's (twin's or llama.cpp's) figures for one model. */
typedef struct {
    bi_stat pp[BI_MAX_THREADS], tg[BI_MAX_THREADS];
    bi_stat b1[BI_MAX_THREADS], bn[BI_MAX_THREADS]; /* batched pattern: 1 sequence, B sequences */
    long rss_kb;
    double kv_bytes, weight_bytes;
    int ran;
    char note[512]; /* why it did not run, or what it said */
} bi_side;

/* ---- statistics ----------------------------------------------------------------------- */

static bi_stat bi_stats(const double *v, int n) {
    bi_stat s = {0, 0, n > 0};
    for (int i = 0; i < n; i++) s.avg += v[i];
    if (n) s.avg /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.avg) * (v[i] - s.avg);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

/* ---- the worker: twin's side, in its own process ----------------------------------------- */

typedef struct {
    uint64_t s;
} bi_rng;

static int32_t bi_token(bi_rng *r, int32_t n_vocab) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (int32_t)(r->s % (uint64_t)n_vocab);
}

typedef struct {
    tw_model *m;
    tw_kv_cache *kv;
    int32_t n_vocab;
    int32_t *tok, *seq;
    uint8_t *want;
    float *logits;
    bi_rng rng;
} bi_work;

/* Prefill of n random tokens into a fresh sequence; seconds, or < 0 on error. */
static double bi_prefill(bi_work *w, int32_t n) {
    tw_kv_cache_clear(w->kv);
    int32_t s;
    if (tw_kv_seq_new(w->kv, &s) != TW_OK) return -1;
    for (int32_t i = 0; i < n; i++) {
        w->tok[i] = bi_token(&w->rng, w->n_vocab);
        w->seq[i] = s;
    }
    tw_batch b = {n, w->tok, NULL, w->seq, NULL};
    double t0 = tw_now_s();
    if (tw_model_forward(w->m, w->kv, &b, w->logits) != TW_OK) return -1;
    return tw_now_s() - t0;
}

/* n decode steps of one token from an empty sequence; seconds, or < 0 on error. */
static double bi_decode(bi_work *w, int32_t n) {
    tw_kv_cache_clear(w->kv);
    int32_t s;
    if (tw_kv_seq_new(w->kv, &s) != TW_OK) return -1;
    double t0 = tw_now_s();
    for (int32_t i = 0; i < n; i++) {
        w->tok[0] = bi_token(&w->rng, w->n_vocab);
        w->seq[0] = s;
        tw_batch b = {1, w->tok, NULL, w->seq, NULL};
        if (tw_model_forward(w->m, w->kv, &b, w->logits) != TW_OK) return -1;
    }
    return tw_now_s() - t0;
}

/* pl sequences with a bp-token prompt each (not timed), then n steps of pl tokens; seconds of
 * the steps, or < 0 on error. */
static double bi_batched(bi_work *w, int32_t pl, int32_t bp, int32_t n) {
    tw_kv_cache_clear(w->kv);
    int32_t ids[256];
    for (int32_t j = 0; j < pl; j++)
        if (tw_kv_seq_new(w->kv, &ids[j]) != TW_OK) return -1;
    int32_t k = 0;
    for (int32_t j = 0; j < pl; j++)
        for (int32_t i = 0; i < bp; i++, k++) {
            w->tok[k] = bi_token(&w->rng, w->n_vocab);
            w->seq[k] = ids[j];
            w->want[k] = i == bp - 1;
        }
    tw_batch pre = {k, w->tok, NULL, w->seq, w->want};
    if (k && tw_model_forward(w->m, w->kv, &pre, w->logits) != TW_OK) return -1;
    double t0 = tw_now_s();
    for (int32_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < pl; j++) {
            w->tok[j] = bi_token(&w->rng, w->n_vocab);
            w->seq[j] = ids[j];
            w->want[j] = 1;
        }
        tw_batch b = {pl, w->tok, NULL, w->seq, w->want};
        if (tw_model_forward(w->m, w->kv, &b, w->logits) != TW_OK) return -1;
    }
    return tw_now_s() - t0;
}

static int bi_worker(const char *path, const bi_opts *o) {
    tw_backend *be = NULL;
    tw_model *m = NULL;
    tw_kv_cache *kv = NULL;
    bi_work w = {0};
    int rc = CLI_ERR;
    if (tw_backend_open("cpu", &be) != TW_OK) goto fail;
    tw_model_params mp;
    tw_model_params_default(&mp);
    mp.max_batch_tokens = 512; /* llama-bench's n_ubatch */
    mp.max_logit_rows = (int32_t)o->batch;
    if (tw_model_load(path, be, &mp, &m) != TW_OK) goto fail;
    tw_kv_params kp;
    tw_kv_params_default(&kp);
    int32_t ps = kp.page_size ? kp.page_size : TW_KV_DEFAULT_PAGE_SIZE;
    /* pp and tg each start from an empty cache; the batched test holds B sequences */
    int32_t single = tw_kv_pages_for((int32_t)(o->prompt > o->gen ? o->prompt : o->gen), ps);
    int32_t multi = (int32_t)o->batch * tw_kv_pages_for((int32_t)(o->batch_prompt + o->gen), ps);
    kp.n_pages = single > multi ? single : multi;
    kp.max_seqs = (int32_t)o->batch + 1;
    if (tw_kv_cache_new_ex(m, &kp, &kv) != TW_OK) goto fail;
    w.m = m;
    w.kv = kv;
    w.n_vocab = tw_model_n_vocab(m);
    size_t n_tok = (size_t)(o->prompt > o->batch * o->batch_prompt ? o->prompt : o->batch * o->batch_prompt);
    if (n_tok < (size_t)o->batch) n_tok = (size_t)o->batch;
    w.tok = tw_malloc(n_tok * sizeof(int32_t));
    w.seq = tw_malloc(n_tok * sizeof(int32_t));
    w.want = tw_malloc(n_tok);
    w.logits = tw_malloc((size_t)o->batch * (size_t)w.n_vocab * sizeof(float));
    w.rng.s = 0x9E3779B97F4A7C15ull;
    if (!w.tok || !w.seq || !w.want || !w.logits) {
        tw_error(TW_ERR_NOMEM, "no memory for the batch");
        goto fail;
    }
    printf("worker kv_bytes=%zu weight_bytes=%zu\n", tw_kv_cache_bytes(m, &kp), tw_model_weight_bytes(m));
    fflush(stdout);

    /* warm-up (as llama-bench does): page in the weights, size the buffers */
    tw_threads_set(o->threads[o->n_threads - 1]);
    if (bi_prefill(&w, (int32_t)(o->prompt < 32 ? o->prompt : 32)) < 0 || bi_decode(&w, 1) < 0) goto fail;

    double v[BI_MAX_REPEAT];
    for (int ti = 0; ti < o->n_threads; ti++) {
        int t = o->threads[ti];
        tw_threads_set(t);
        for (long r = 0; r < o->repeat; r++) {
            double dt = bi_prefill(&w, (int32_t)o->prompt);
            if (dt < 0) goto fail;
            v[r] = (double)o->prompt / dt;
        }
        bi_stat s = bi_stats(v, (int)o->repeat);
        printf("worker threads=%d test=pp avg=%.4f sd=%.4f\n", t, s.avg, s.sd);
        for (long r = 0; r < o->repeat; r++) {
            double dt = bi_decode(&w, (int32_t)o->gen);
            if (dt < 0) goto fail;
            v[r] = (double)o->gen / dt;
        }
        s = bi_stats(v, (int)o->repeat);
        printf("worker threads=%d test=tg avg=%.4f sd=%.4f\n", t, s.avg, s.sd);
        /* the two batched patterns alternate, --repeat runs each, so that a slow spell of a
         * shared machine lands on both and their quotient (the batching gain) keeps steady */
        int32_t pls[2] = {1, (int32_t)o->batch};
        double vb[2][BI_MAX_REPEAT];
        for (long r = 0; r < o->repeat; r++)
            for (int k = 0; k < 2; k++) {
                double dt = bi_batched(&w, pls[k], (int32_t)o->batch_prompt, (int32_t)o->gen);
                if (dt < 0) goto fail;
                vb[k][r] = (double)pls[k] * (double)o->gen / dt;
            }
        for (int k = 0; k < 2; k++) {
            s = bi_stats(vb[k], (int)o->repeat);
            printf("worker threads=%d test=b%d avg=%.4f sd=%.4f\n", t, pls[k], s.avg, s.sd);
        }
        fflush(stdout);
    }
    rc = CLI_OK;
fail:
    if (rc != CLI_OK) printf("worker error: %s\n", *tw_errmsg() ? tw_errmsg() : "failed");
    tw_free(w.tok);
    tw_free(w.seq);
    tw_free(w.want);
    tw_free(w.logits);
    tw_kv_cache_free(kv);
    tw_model_free(m);
    tw_backend_free(be);
    return rc;
}

/* ---- child processes ----------------------------------------------------------------------- */

/* Runs argv[0] (a path) with argv, its stdout and stderr into out. Returns its exit status
 * (128 + signal when killed, -1 when it could not be started) and its peak RSS (KB). */
static int bi_spawn(char *const argv[], tw_sb *out, long *rss_kb) {
    int fd[2];
    *rss_kb = 0;
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        tw_sb_append(out, buf, (size_t)n);
    }
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) return -1;
    *rss_kb = ru.ru_maxrss;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last n bytes of s on one line (for a note). */
static void bi_tail(const char *s, char *note, size_t cap) {
    size_t len = strlen(s);
    const char *p = len > 300 ? s + len - 300 : s;
    size_t k = 0;
    for (; *p && k + 1 < cap; p++) note[k++] = *p == '\n' ? ' ' : *p;
    note[k] = 0;
}

static int bi_thread_index(const bi_opts *o, int t) {
    for (int i = 0; i < o->n_threads; i++)
        if (o->threads[i] == t) return i;
    return -1;
}

static void bi_run_twin(const char *self, const char *path, const bi_opts *o, const char *tlist, bi_side *s) {
    char prompt[24], gen[24], batch[24], bp[24], rep[24];
    snprintf(prompt, sizeof prompt, "%ld", o->prompt);
    snprintf(gen, sizeof gen, "%ld", o->gen);
    snprintf(batch, sizeof batch, "%ld", o->batch);
    snprintf(bp, sizeof bp, "%ld", o->batch_prompt);
    snprintf(rep, sizeof rep, "%ld", o->repeat);
    char *argv[] = {(char *)self, "bench", "infer", "--worker", (char *)path, "-t", (char *)tlist,
                    "--prompt", prompt, "--gen", gen, "--batch", batch, "--batch-prompt", bp,
                    "--repeat", rep, NULL};
    tw_sb out;
    tw_sb_init(&out);
    int rc = bi_spawn(argv, &out, &s->rss_kb);
    const char *line = tw_sb_str(&out);
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        int t;
        double avg, sd, a, b;
        char test[8];
        if (sscanf(line, "worker threads=%d test=%7s avg=%lf sd=%lf", &t, test, &avg, &sd) == 4) {
            int ti = bi_thread_index(o, t);
            bi_stat st = {avg, sd, 1};
            if (ti >= 0) {
                if (!strcmp(test, "pp")) s->pp[ti] = st;
                else if (!strcmp(test, "tg")) s->tg[ti] = st;
                else if (!strcmp(test, "b1")) s->b1[ti] = st;
                else s->bn[ti] = st;
            }
        } else if (sscanf(line, "worker kv_bytes=%lf weight_bytes=%lf", &a, &b) == 2) {
            s->kv_bytes = a;
            s->weight_bytes = b;
        } else if (!strncmp(line, "worker error: ", 14)) {
            size_t n = nl ? (size_t)(nl - line - 14) : strlen(line + 14);
            snprintf(s->note, sizeof s->note, "%.*s", (int)n, line + 14);
        }
        line = nl ? nl + 1 : NULL;
    }
    s->ran = rc == 0;
    if (rc != 0 && !s->note[0]) bi_tail(tw_sb_str(&out), s->note, sizeof s->note);
    tw_sb_free(&out);
}

/* llama-bench -o jsonl and llama-batched-bench --output-format jsonl: one JSON object per
 * line. Also records the anchor's flash-attention setting and build once. */
static void bi_run_llama(const char *bin, const char *path, const bi_opts *o, const char *tlist, bi_side *s,
                         char *desc, size_t desc_cap) {
    char exe[1024], prompt[24], gen[24], rep[24];
    snprintf(exe, sizeof exe, "%s/llama-bench", bin);
    snprintf(prompt, sizeof prompt, "%ld", o->prompt);
    snprintf(gen, sizeof gen, "%ld", o->gen);
    snprintf(rep, sizeof rep, "%ld", o->repeat);
    char *argv[] = {exe, "-m", (char *)path, "-t", (char *)tlist, "-p", prompt, "-n", gen, "-r", rep,
                    "-o", "jsonl", NULL};
    tw_sb out;
    tw_sb_init(&out);
    int rc = bi_spawn(argv, &out, &s->rss_kb);
    const char *line = tw_sb_str(&out);
    int got = 0;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (line[0] == '{') {
            tw_json *j = tw_json_parse(line, n, "llama-bench output");
            if (j) {
                int ti = bi_thread_index(o, (int)tw_json_get_num(j, "n_threads", -1));
                bi_stat st = {tw_json_get_num(j, "avg_ts", 0), tw_json_get_num(j, "stddev_ts", 0), 1};
                long np = (long)tw_json_get_num(j, "n_prompt", -1), ng = (long)tw_json_get_num(j, "n_gen", -1);
                if (ti >= 0 && np == o->prompt && ng == 0) {
                    s->pp[ti] = st;
                    got++;
                }
                if (ti >= 0 && np == 0 && ng == o->gen) {
                    s->tg[ti] = st;
                    got++;
                }
                if (desc && !desc[0]) {
                    const tw_json *fa = tw_json_get(j, "flash_attn");
                    char fa_s[32];
                    if (tw_json_is_string(fa)) snprintf(fa_s, sizeof fa_s, "%s", tw_json_str(fa));
                    else if (tw_json_is_bool(fa)) snprintf(fa_s, sizeof fa_s, "%s", tw_json_bool(fa, 0) ? "on" : "off");
                    else { /* llama_flash_attn_type: -1 auto (on where the backend has it), 0, 1 */
                        double v = tw_json_num(fa, -2);
                        snprintf(fa_s, sizeof fa_s, "%s", v == -1 ? "auto" : v == 0 ? "off" : v == 1 ? "on" : "?");
                    }
                    snprintf(desc, desc_cap, "build %s (%s), backend %s, flash_attn %s, K/V %s/%s",
                             tw_json_get_str(j, "build_commit", "?"),
                             tw_json_get_str(j, "cpu_info", "?"), tw_json_get_str(j, "backends", "?"),
                             fa_s, tw_json_get_str(j, "type_k", "?"), tw_json_get_str(j, "type_v", "?"));
                }
                tw_json_free(j);
            } else {
                tw_error_clear();
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    s->ran = rc == 0 && got > 0;
    if (!s->ran) bi_tail(tw_sb_str(&out), s->note, sizeof s->note);
    tw_sb_free(&out);

    /* batched decode, one run per thread count */
    snprintf(exe, sizeof exe, "%s/llama-batched-bench", bin);
    if (access(exe, X_OK) != 0) return;
    for (int ti = 0; ti < o->n_threads; ti++) {
        char t[16], ctx[24], bp[24], npl[40];
        snprintf(t, sizeof t, "%d", o->threads[ti]);
        snprintf(ctx, sizeof ctx, "%ld", o->batch * (o->batch_prompt + o->gen) + 16);
        snprintf(bp, sizeof bp, "%ld", o->batch_prompt);
        snprintf(npl, sizeof npl, "1,%ld", o->batch);
        char *bargv[] = {exe, "-m", (char *)path, "-c", ctx, "-b", "2048", "-ub", "512", "-npp", bp,
                         "-ntg", gen, "-npl", npl, "-t", t, "-tb", t, "--output-format", "jsonl", NULL};
        tw_sb bo;
        tw_sb_init(&bo);
        long rss = 0;
        bi_spawn(bargv, &bo, &rss);
        line = tw_sb_str(&bo);
        while (line && *line) {
            const char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            if (line[0] == '{') {
                tw_json *j = tw_json_parse(line, n, "llama-batched-bench output");
                if (j) {
                    long pl = (long)tw_json_get_num(j, "pl", -1);
                    bi_stat st = {tw_json_get_num(j, "speed_tg", 0), 0, 1};
                    if (pl == 1) s->b1[ti] = st;
                    if (pl == o->batch) s->bn[ti] = st;
                    tw_json_free(j);
                } else {
                    tw_error_clear();
                }
            }
            line = nl ? nl + 1 : NULL;
        }
        tw_sb_free(&bo);
    }
}

/* ---- the anchor's location ------------------------------------------------------------------ */

/* bench/llama_anchor.sh under $TWIN_SRC, else beside this source file's folder. */
static char *bi_anchor_script(void) { return cli_source_path("bench/llama_anchor.sh"); }

/* The folder with llama-bench, or NULL with the reason in why. build: run the build. */
static char *bi_anchor_bin(int build, char *why, size_t cap) {
    const char *env = getenv("TWIN_LLAMA_BIN");
    if (env && *env) {
        char p[1024];
        snprintf(p, sizeof p, "%s/llama-bench", env);
        if (access(p, X_OK) == 0) return tw_strdup(env);
        snprintf(why, cap, "TWIN_LLAMA_BIN=%s has no llama-bench", env);
        return NULL;
    }
    char *script = bi_anchor_script();
    if (!script) {
        snprintf(why, cap, "bench/llama_anchor.sh not found (set TWIN_SRC or TWIN_LLAMA_BIN)");
        return NULL;
    }
    char *ws = cli_workspace_path(NULL);
    if (ws) setenv("TWIN_HOME", ws, 1); /* the script's cache is in the same workspace */
    tw_free(ws);
    char *argv[] = {"/bin/bash", script, build ? NULL : "--print", NULL};
    tw_sb out;
    tw_sb_init(&out);
    long rss;
    if (build) fprintf(stderr, "twin bench infer: building llama.cpp (bench/llama_anchor.sh)...\n");
    int rc = bi_spawn(argv, &out, &rss);
    char *res = NULL;
    if (rc == 0) {
        /* the last non-empty line is the folder */
        const char *s = tw_sb_str(&out);
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) n--;
        size_t b = n;
        while (b && s[b - 1] != '\n') b--;
        res = tw_strndup(s + b, n - b);
    } else {
        snprintf(why, cap, "not built (bench/llama_anchor.sh builds llama.cpp from the llama-cpp-python "
                           "sdist; or twin bench infer --build-anchor, or set TWIN_LLAMA_BIN)");
        if (build) bi_tail(tw_sb_str(&out), why, cap);
    }
    tw_sb_free(&out);
    tw_free(script);
    return res;
}

/* ---- the default models -------------------------------------------------------------------- */

/* <workspace>/cache/bench/<stem>.<TYPE>.gguf made from src by `twin quantize` when missing. */
static char *bi_converted(const char *src, const char *type) {
    char *dir = cli_workspace_path("cache/bench");
    if (!dir || tw_mkdir_p(dir) != TW_OK) {
        tw_free(dir);
        cli_fail_status("bench infer");
        return NULL;
    }
    const char *base = strrchr(src, '/');
    base = base ? base + 1 : src;
    size_t stem = strlen(base);
    if (stem > 5 && !strcmp(base + stem - 5, ".gguf")) stem -= 5;
    const char *dot = memchr(base, '.', stem); /* SmolLM2-135M-Instruct.Q4_1 -> SmolLM2-135M-Instruct */
    if (dot) stem = (size_t)(dot - base);
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%.*s.%s.gguf", dir, (int)stem, base, type);
    tw_free(dir);
    char *out = tw_sb_take(&sb);
    struct stat a, b;
    if (out && (stat(out, &b) != 0 || (stat(src, &a) == 0 && a.st_mtime > b.st_mtime))) {
        char *qargv[] = {"quantize", (char *)src, out, (char *)type, NULL};
        if (cmd_quantize(4, qargv) != CLI_OK) {
            tw_free(out);
            return NULL;
        }
    }
    return out;
}

/* ---- the report ------------------------------------------------------------------------------ */

static void bi_cell(char *buf, size_t cap, bi_stat s) {
    if (!s.ok) snprintf(buf, cap, "-");
    else if (s.sd > 0) snprintf(buf, cap, "%.2f ± %.2f", s.avg, s.sd);
    else snprintf(buf, cap, "%.2f", s.avg);
}

static void bi_ratio(char *buf, size_t cap, bi_stat a, bi_stat b) {
    if (a.ok && b.ok && b.avg > 0) snprintf(buf, cap, "%.2f", a.avg / b.avg);
    else snprintf(buf, cap, "-");
}

static const char *bi_type_name(const char *path) {
    gguf_file *f = gguf_open(path);
    static char name[16];
    snprintf(name, sizeof name, "?");
    if (f) {
        /* the type of most of the weight bytes, as the file's "type" */
        uint64_t bytes[TW_DTYPE_COUNT] = {0};
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            if ((unsigned)t->type < TW_DTYPE_COUNT) bytes[t->type] += t->nbytes;
        }
        int best = 0;
        for (int t = 1; t < TW_DTYPE_COUNT; t++)
            if (bytes[t] > bytes[best]) best = t;
        if (tw_dtype_name((tw_dtype)best)) snprintf(name, sizeof name, "%s", tw_dtype_name((tw_dtype)best));
        gguf_close(f);
    } else {
        tw_error_clear();
    }
    return name;
}

static void bi_cpu_flags(void) {
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return;
    char line[8192];
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        static const char *const want[] = {"avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                           "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8"};
        printf("cpu flags:");
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            char pat[40];
            snprintf(pat, sizeof pat, " %s ", want[i]);
            line[strcspn(line, "\n")] = ' ';
            if (strstr(line, pat)) printf(" %s", want[i]);
        }
        printf("\n");
        break;
    }
    fclose(fp);
    double load[3];
    if (getloadavg(load, 3) == 3)
        printf("load average: %.2f %.2f %.2f (other processes on these cores slow both sides, and "
               "multi-thread runs most)\n", load[0], load[1], load[2]);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && psz > 0) printf("memory: %.1f GiB\n", (double)pages * (double)psz / (1024.0 * 1024.0 * 1024.0));
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin bench infer [-m MODEL ...] [-t 1,2] [--prompt 512] [--gen 128] [--batch 8]\n"
            "                        [--batch-prompt 32] [--repeat 3] [--types q8_0,f16]\n"
            "                        [--no-anchor] [--build-anchor]\n\n"
            "twin's prefill (pp: a --prompt token prompt in one forward) and decode (tg: --gen\n"
            "single-token steps) tok/s beside llama.cpp's llama-bench on the same file and\n"
            "threads; aggregate decode tok/s of --batch sequences stepped together (after a\n"
            "--batch-prompt token prompt each) beside one sequence, and beside\n"
            "llama-batched-bench; peak RSS of each side. Mean ± sd of --repeat runs.\n"
            "Default models: smollm2-135m and its --types conversions by twin quantize (made\n"
            "once into <workspace>/cache/bench). -t LIST: thread counts (else the global\n"
            "--threads N, else 1 and all cores). The anchor: $TWIN_LLAMA_BIN, else what\n"
            "bench/llama_anchor.sh built (--build-anchor builds it: slow), else twin alone.\n");
}

static int bi_parse_threads(const char *s, bi_opts *o) {
    o->n_threads = 0;
    while (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || (*end && *end != ',') || o->n_threads == BI_MAX_THREADS)
            return cli_fail(CLI_USAGE, "bench infer", "-t: '%s' is not a list like 1,2 (at most %d counts)", s,
                            BI_MAX_THREADS);
        o->threads[o->n_threads++] = (int)v;
        s = *end ? end + 1 : end;
    }
    if (!o->n_threads) return cli_fail(CLI_USAGE, "bench infer", "-t needs a list like 1,2");
    return 0;
}

int cmd_bench_infer(int argc, char **argv) {
    bi_opts o = {.prompt = 512, .gen = 128, .batch = 8, .batch_prompt = 32, .repeat = 3};
    const char *models[BI_MAX_MODELS];
    int n_models = 0, no_anchor = 0, build_anchor = 0;
    const char *worker = NULL, *types = "q8_0,f16", *tlist_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench infer", "-m needs a model");
            if (n_models == BI_MAX_MODELS) return cli_fail(CLI_USAGE, "bench infer", "at most %d models", BI_MAX_MODELS);
            models[n_models++] = v;
        } else if (cli_opt(argc, argv, &i, "-t", &v)) {
            if (bi_parse_threads(v, &o)) return CLI_USAGE;
            tlist_arg = v;
        } else if (cli_opt(argc, argv, &i, "--prompt", &v)) {
            if (cli_parse_int("bench infer", "--prompt", v, 1, 65536, &o.prompt)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--gen", &v)) {
            if (cli_parse_int("bench infer", "--gen", v, 1, 65536, &o.gen)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--batch", &v)) {
            if (cli_parse_int("bench infer", "--batch", v, 1, 256, &o.batch)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--batch-prompt", &v)) {
            if (cli_parse_int("bench infer", "--batch-prompt", v, 1, 4096, &o.batch_prompt)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat", &v)) {
            if (cli_parse_int("bench infer", "--repeat", v, 1, BI_MAX_REPEAT, &o.repeat)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--types", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench infer", "--types needs a list like q8_0,f16 (or none)");
            types = v;
        } else if (cli_opt(argc, argv, &i, "--worker", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench infer", "--worker needs a model");
            worker = v;
        } else if (cli_flag(argv, i, "--no-anchor")) {
            no_anchor = 1;
        } else if (cli_flag(argv, i, "--build-anchor")) {
            build_anchor = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench infer", "unknown argument '%s' (twin bench infer --help)", argv[i]);
        }
    }
    char tlist[128] = "";
    if (!tlist_arg) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = 0;
        if (g_cli.threads) {
            o.threads[o.n_threads++] = g_cli.threads;
        } else {
            o.threads[o.n_threads++] = 1;
            if (online > 1) o.threads[o.n_threads++] = (int)online;
        }
    }
    for (int i = 0; i < o.n_threads; i++)
        snprintf(tlist + strlen(tlist), sizeof tlist - strlen(tlist), "%s%d", i ? "," : "", o.threads[i]);
    if (worker) return bi_worker(worker, &o);

    /* models */
    char *paths[BI_MAX_MODELS] = {0};
    int n_paths = 0, rc = CLI_OK;
    if (n_models) {
        for (int i = 0; i < n_models; i++) {
            paths[n_paths] = cli_resolve_model("bench infer", models[i]);
            if (!paths[n_paths]) rc = CLI_ERR;
            else n_paths++;
        }
    } else {
        paths[n_paths] = cli_resolve_model("bench infer", "smollm2-135m");
        if (!paths[n_paths]) return CLI_ERR;
        n_paths++;
        if (strcmp(types, "none") != 0) {
            char tbuf[128];
            snprintf(tbuf, sizeof tbuf, "%s", types);
            for (char *tok = strtok(tbuf, ","); tok && n_paths < BI_MAX_MODELS; tok = strtok(NULL, ",")) {
                char *p = bi_converted(paths[0], tok);
                if (p) paths[n_paths++] = p;
                else rc = CLI_ERR;
            }
        }
    }
    if (!n_paths) return CLI_ERR;

    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        for (int i = 0; i < n_paths; i++) tw_free(paths[i]);
        return cli_fail(CLI_ERR, "bench infer", "cannot find the twin program (/proc/self/exe)");
    }
    self[sl] = 0;

    char why[512] = "";
    char *lbin = no_anchor ? NULL : bi_anchor_bin(build_anchor, why, sizeof why);
    if (no_anchor) snprintf(why, sizeof why, "--no-anchor");

    printf("twin bench infer: pp%ld = prefill of a %ld-token prompt, tg%ld = %ld decode steps; tok/s, mean ± sd "
           "of %ld runs; same GGUF file and threads on both sides\n",
           o.prompt, o.prompt, o.gen, o.gen, o.repeat);
    bench_print_machine(o.threads[o.n_threads - 1]);
    bi_cpu_flags();
    printf("threads: %s\n", tlist);
    char desc[512] = "";
    bi_side twin_s[BI_MAX_MODELS], llama_s[BI_MAX_MODELS];
    memset(twin_s, 0, sizeof twin_s);
    memset(llama_s, 0, sizeof llama_s);
    for (int i = 0; i < n_paths; i++) {
        fprintf(stderr, "twin bench infer: %s: twin...\n", paths[i]);
        bi_run_twin(self, paths[i], &o, tlist, &twin_s[i]);
        if (lbin) {
            fprintf(stderr, "twin bench infer: %s: llama.cpp...\n", paths[i]);
            bi_run_llama(lbin, paths[i], &o, tlist, &llama_s[i], desc, sizeof desc);
        }
    }
    if (lbin) printf("anchor: llama.cpp %s (%s)\n", desc[0] ? desc : "(no result)", lbin);
    else printf("anchor: llama.cpp missing: %s\n", why);

    printf("\n%-34s %-5s %8s %-6s %3s  %-18s %-18s %s\n", "model", "type", "MB", "test", "thr", "twin tok/s",
           "llama.cpp tok/s", "ratio");
    for (int i = 0; i < n_paths; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        struct stat st;
        double mb = stat(paths[i], &st) == 0 ? (double)st.st_size / 1e6 : 0;
        char type[16];
        snprintf(type, sizeof type, "%s", bi_type_name(paths[i]));
        for (int ti = 0; ti < o.n_threads; ti++) {
            for (int k = 0; k < 2; k++) {
                bi_stat a = k ? twin_s[i].tg[ti] : twin_s[i].pp[ti], b = k ? llama_s[i].tg[ti] : llama_s[i].pp[ti];
                char ca[40], cb[40], cr[16], test[24];
                bi_cell(ca, sizeof ca, a);
                bi_cell(cb, sizeof cb, b);
                bi_ratio(cr, sizeof cr, a, b);
                snprintf(test, sizeof test, "%s%ld", k ? "tg" : "pp", k ? o.gen : o.prompt);
                printf("%-34.34s %-5s %8.1f %-6s %3d  %-18s %-18s %s\n", base, type, mb, test, o.threads[ti], ca, cb, cr);
            }
        }
    }
    printf("\nbatched decode: %ld sequences stepped together after a %ld-token prompt each, %ld steps; "
           "aggregate tok/s, twin's the mean of %ld runs of each (llama.cpp: one llama-batched-bench run, its S_TG)\n",
           o.batch, o.batch_prompt, o.gen, o.repeat);
    printf("%-34s %3s  %-16s %-16s %-7s %-10s %-10s %-7s %s\n", "model", "thr", "twin 1", "twin B", "gain",
           "llama 1", "llama B", "gain", "ratio B");
    for (int i = 0; i < n_paths; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        for (int ti = 0; ti < o.n_threads; ti++) {
            char a1[24], an[24], g1[16], l1[24], ln[24], g2[16], r[16];
            bi_cell(a1, sizeof a1, twin_s[i].b1[ti]);
            bi_cell(an, sizeof an, twin_s[i].bn[ti]);
            bi_ratio(g1, sizeof g1, twin_s[i].bn[ti], twin_s[i].b1[ti]);
            bi_cell(l1, sizeof l1, llama_s[i].b1[ti]);
            bi_cell(ln, sizeof ln, llama_s[i].bn[ti]);
            bi_ratio(g2, sizeof g2, llama_s[i].bn[ti], llama_s[i].b1[ti]);
            bi_ratio(r, sizeof r, twin_s[i].bn[ti], llama_s[i].bn[ti]);
            printf("%-34.34s %3d  %-16s %-16s %-7s %-10s %-10s %-7s %s\n", base, o.threads[ti], a1, an, g1, l1, ln,
                   g2, r);
        }
    }
    printf("\npeak RSS (MB): twin's process beside its budget (file + KV cache + 64 MB), llama-bench's process\n");
    printf("%-34s %10s %10s %10s %8s %6s %12s\n", "model", "file", "KV cache", "budget", "twin", "ok", "llama-bench");
    for (int i = 0; i < n_paths; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        struct stat st;
        double file = stat(paths[i], &st) == 0 ? (double)st.st_size : 0;
        double budget = file + twin_s[i].kv_bytes + 64.0 * 1024 * 1024;
        double rss = (double)twin_s[i].rss_kb * 1024.0;
        char lr[24];
        if (llama_s[i].rss_kb) snprintf(lr, sizeof lr, "%.1f", (double)llama_s[i].rss_kb * 1024.0 / 1e6);
        else snprintf(lr, sizeof lr, "-");
        printf("%-34.34s %10.1f %10.1f %10.1f %8.1f %6s %12s\n", base, file / 1e6, twin_s[i].kv_bytes / 1e6,
               budget / 1e6, rss / 1e6, twin_s[i].ran ? (rss <= budget ? "yes" : "NO") : "-", lr);
    }
    for (int i = 0; i < n_paths; i++) {
        if (!twin_s[i].ran) {
            printf("twin failed on %s: %s\n", paths[i], twin_s[i].note[0] ? twin_s[i].note : "no result");
            rc = CLI_ERR;
        }
        if (lbin && !llama_s[i].ran)
            printf("llama.cpp failed on %s: %s\n", paths[i], llama_s[i].note[0] ? llama_s[i].note : "no result");
    }
    for (int i = 0; i < n_paths; i++) tw_free(paths[i]);
    tw_free(lbin);
    return rc;
}
