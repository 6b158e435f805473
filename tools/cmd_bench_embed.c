/* cmd_bench_embed.c: twin bench embed [-m MODEL] [--texts N] [--threads-list 1,2] [--no-anchor]
 *
 * Sentences per second of twin's encoder (encoder.h) beside onnxruntime's on the same texts
 * and thread count, each measured in the same run (bench/bench_embed_ort.py: the ONNX graph of
 * tools/gen_embed_golden.py with ORT's optimisations on), the ratio, the machine, and a
 * correctness line: the largest 1 - cosine between the two implementations' vectors.
 *
 * Texts: N (default 2000) of mixed length made deterministically from the 200 fixture texts
 * of tests/data/embed/minilm-l6.golden.json (short, long past max_seq_length, code, other
 * scripts, emoji, empty): text i is a prefix of fixture i % 200 cut at a pseudo-random word
 * boundary, so lengths spread from empty to truncated. Both sides tokenize inside the timed
 * span; each side gets one warm-up call first.
 */
#include "cli.h"
#include "encoder.h"
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin bench embed [-m MODEL] [--texts N] [--threads-list 1,2] [--no-anchor]\n\n"
            "Sentences/s of twin's sentence encoder beside onnxruntime's (bench/bench_embed_ort.py,\n"
            "run when `python3 -c \"import onnx, onnxruntime, tokenizers\"` works; TWIN_PYTHON\n"
            "picks another Python) on the same N texts of mixed length at each thread count,\n"
            "the ratio, and the largest 1 - cosine between the two sides' vectors.\n\n"
            "options:\n"
            "  -m MODEL          the encoder (default minilm-l6, from `twin model fetch`); the\n"
            "                    anchor needs an HF folder\n"
            "  --texts N         number of texts (default 2000)\n"
            "  --threads-list L  comma-separated thread counts (default 1,2)\n"
            "  --no-anchor       twin's figures only\n\n"
            "lines: \"twin threads=T texts=N tokens=K seconds=S sentences/s=R cpu_seconds=C\",\n"
            "the same starting with \"onnxruntime\", then \"ratio threads=T twin/onnxruntime=X\"\n"
            "(wall time), \"cpu_ratio threads=T twin/onnxruntime=Y\" (their CPU seconds over\n"
            "ours: steadier on a busy machine) and \"correctness max_1-cos=D mean_cos=C\".\n");
}

/* CPU seconds of this process (all its threads): on a busy machine wall time measures the
 * load as much as the code; CPU time does not (threads spinning while they wait do count). */
static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: deterministic text cuts. */
static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* n texts (heap strings in *out, tw_free each and the array) from the fixture texts. */
static int make_texts(int n, char ***out) {
    char *path = cli_source_path("tests/data/embed/minilm-l6.golden.json");
    if (!path) return cli_fail(CLI_ERR, "bench embed", "tests/data/embed/minilm-l6.golden.json not found (set TWIN_SRC to the source tree)");
    tw_json *doc = tw_json_parse_file(path);
    tw_free(path);
    if (!doc) return cli_fail_status("bench embed");
    tw_json *cases = tw_json_get(doc, "cases");
    int nf = (int)tw_json_size(cases);
    const char **fix = tw_calloc((size_t)(nf > 0 ? nf : 1), sizeof *fix);
    char **t = tw_calloc((size_t)n, sizeof *t);
    int k = 0, rc = CLI_OK;
    for (tw_json *c = tw_json_first(cases); c && fix; c = tw_json_next(c)) fix[k++] = tw_json_get_str(c, "text", "");
    if (!fix || !t || nf == 0) rc = cli_fail(CLI_ERR, "bench embed", "no fixture texts (or out of memory)");
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n && rc == CLI_OK; i++) {
        const char *f = fix[i % nf];
        size_t len = strlen(f);
        /* cut at a word boundary after a uniform fraction of the text (the first lap whole) */
        size_t cut = i < nf ? len : (size_t)((double)(rnd(&s) >> 11) / 9007199254740992.0 * (double)len);
        while (cut < len && f[cut] != ' ') cut++;
        if (!(t[i] = tw_strndup(f, cut))) rc = cli_fail(CLI_ERR, "bench embed", "out of memory");
        for (char *p = t[i]; p && *p; p++) /* the anchor reads one text per line */
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    tw_free(fix);
    tw_json_free(doc);
    if (rc != CLI_OK) {
        for (int i = 0; t && i < n; i++) tw_free(t[i]);
        tw_free(t);
        return rc;
    }
    *out = t;
    return CLI_OK;
}

static void sh_quote(tw_sb *sb, const char *s) {
    tw_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') tw_sb_puts(sb, "'\\''");
        else tw_sb_putc(sb, *s);
    }
    tw_sb_putc(sb, '\'');
}

static const char *python_cmd(void) {
    const char *p = getenv("TWIN_PYTHON");
    return p && *p ? p : "python3";
}

/* Runs the anchor at `threads`; fills *sps and the vectors (n, dim) read from its output
 * file. 0 on success; otherwise err says why. */
static int anchor_run(const char *script, const char *model, const char *texts_path,
                      const char *vec_path, int threads, int n, int dim, double *sps,
                      double *cpu_s, float *vecs, tw_sb *err) {
    tw_sb cmd;
    tw_sb_init(&cmd);
    sh_quote(&cmd, python_cmd());
    tw_sb_putc(&cmd, ' ');
    sh_quote(&cmd, script);
    tw_sb_puts(&cmd, " --model ");
    sh_quote(&cmd, model);
    tw_sb_puts(&cmd, " --texts ");
    sh_quote(&cmd, texts_path);
    tw_sb_puts(&cmd, " --out ");
    sh_quote(&cmd, vec_path);
    tw_sb_printf(&cmd, " --threads %d 2>&1", threads);
    FILE *p = popen(tw_sb_str(&cmd), "r");
    tw_sb_free(&cmd);
    if (!p) {
        tw_sb_puts(err, "could not start python");
        return -1;
    }
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "onnxruntime ", 12) && strstr(line, "sentences/s=")) {
            found = sscanf(strstr(line, "sentences/s="), "sentences/s=%lf", sps) == 1;
            *cpu_s = 0;
            if (strstr(line, "cpu_seconds=")) sscanf(strstr(line, "cpu_seconds="), "cpu_seconds=%lf", cpu_s);
            fputs(line, stdout);
        } else if (err->len < 600) {
            tw_sb_puts(err, line);
        }
    }
    int rc = pclose(p);
    if (!found || rc != 0) return -1;
    char *bytes = NULL;
    size_t len = 0;
    if (tw_file_read(vec_path, &bytes, &len) != TW_OK || len != (size_t)n * (size_t)dim * 4) {
        tw_sb_printf(err, "%s: expected %d x %d f32 vectors", vec_path, n, dim);
        tw_free(bytes);
        return -1;
    }
    memcpy(vecs, bytes, len);
    tw_free(bytes);
    return 0;
}

int cmd_bench_embed(int argc, char **argv) {
    const char *model = "minilm-l6", *tlist = "1,2";
    long n_texts = 2000;
    int no_anchor = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench embed", "-m needs a model");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--texts", &v)) {
            if (cli_parse_int("bench embed", "--texts", v, 1, 1000000, &n_texts)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--threads-list", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench embed", "--threads-list needs a list such as 1,2");
            tlist = v;
        } else if (cli_flag(argv, i, "--no-anchor")) {
            no_anchor = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench embed", "unknown argument '%s' (see twin bench embed --help)", argv[i]);
        }
    }
    int threads[16], n_th = 0;
    for (const char *s = tlist; *s;) {
        char *end;
        long t = strtol(s, &end, 10);
        if (end == s || t < 1 || t > 4096 || n_th == 16 || (*end && *end != ','))
            return cli_fail(CLI_USAGE, "bench embed", "--threads-list '%s': expected numbers 1..4096 separated by commas", tlist);
        threads[n_th++] = (int)t;
        s = *end ? end + 1 : end;
    }
    if (n_th == 0) return cli_fail(CLI_USAGE, "bench embed", "--threads-list is empty");
    char *path = cli_resolve_model("bench embed", model);
    if (!path) return CLI_ERR;
    const int n = (int)n_texts;
    char **texts = NULL;
    int rc = make_texts(n, &texts);
    if (rc != CLI_OK) {
        tw_free(path);
        return rc;
    }
    tw_backend *be = NULL;
    tw_encoder *e = NULL;
    float *ours = NULL, *theirs = NULL;
    char texts_path[] = "/tmp/twin-bench-embed-XXXXXX", vec_path[64] = "";
    int tfd = -1;
    if (tw_backend_open("cpu", &be) != TW_OK || tw_encoder_load(path, be, &e) != TW_OK) {
        rc = cli_fail_status("bench embed");
        goto done;
    }
    const int dim = tw_encoder_dim(e);
    ours = tw_malloc((size_t)n * (size_t)dim * sizeof *ours);
    theirs = tw_malloc((size_t)n * (size_t)dim * sizeof *theirs);
    if (!ours || !theirs) {
        rc = cli_fail(CLI_ERR, "bench embed", "out of memory");
        goto done;
    }
    /* the anchor: can it run, and the texts as JSON lines for it */
    char *script = no_anchor ? NULL : cli_source_path("bench/bench_embed_ort.py");
    const char *why = no_anchor ? "--no-anchor" : NULL;
    if (!no_anchor && !script) why = "bench/bench_embed_ort.py not found (set TWIN_SRC to the source tree)";
    if (!why && !tw_is_dir(path)) why = "the anchor needs an HF folder (config.json + model.safetensors)";
    if (!why) {
        tw_sb c;
        tw_sb_init(&c);
        sh_quote(&c, python_cmd());
        tw_sb_puts(&c, " -c 'import onnx, onnxruntime, tokenizers, numpy' >/dev/null 2>&1");
        if (system(tw_sb_str(&c)) != 0)
            why = "`python3 -c \"import onnx, onnxruntime, tokenizers\"` failed: pip install onnx "
                  "onnxruntime tokenizers, or point TWIN_PYTHON at a Python that has them";
        tw_sb_free(&c);
    }
    if (!why) {
        tfd = mkstemp(texts_path);
        tw_sb js;
        tw_sb_init(&js);
        for (int i = 0; i < n; i++) {
            tw_sb_json_str(&js, texts[i], strlen(texts[i]));
            tw_sb_putc(&js, '\n');
        }
        snprintf(vec_path, sizeof vec_path, "%s.vec", texts_path);
        if (tfd < 0 || js.failed || write(tfd, js.buf, js.len) != (ssize_t)js.len)
            why = "could not write the texts for the anchor to /tmp";
        tw_sb_free(&js);
    }
    bench_print_machine(threads[n_th - 1]);
    printf("model: %s (%s), dim %d, max_tokens %d; %d texts\n", tw_encoder_id(e), path, dim,
           (int)tw_encoder_max_tokens(e), n);
    if (why) printf("onnxruntime: not run: %s\n", why);
    double worst = 0, cos_sum = 0;
    int compared = 0;
    for (int k = 0; k < n_th && rc == CLI_OK; k++) {
        tw_threads_set(threads[k]);
        int32_t n_trunc = 0;
        tw_log_level lv = tw_log_get_level();
        tw_log_set_level(TW_LOG_ERROR); /* the truncation warning once below, not per call */
        tw_status st = tw_encoder_embed(e, (const char *const *)texts, NULL, n < 8 ? n : 8, ours, NULL);
        double t0 = tw_now_s(), c0 = cpu_now_s();
        if (st == TW_OK) st = tw_encoder_embed(e, (const char *const *)texts, NULL, n, ours, &n_trunc);
        double dt = tw_now_s() - t0, dc = cpu_now_s() - c0;
        tw_log_set_level(lv);
        if (st != TW_OK) {
            rc = cli_fail_status("bench embed");
            break;
        }
        long ntok = 0;
        const tw_tokenizer *tok = tw_encoder_tokenizer(e);
        tw_tokens ids;
        tw_tokens_init(&ids);
        for (int i = 0; i < n; i++) {
            ids.n = 0;
            if (tw_tokenizer_encode(tok, texts[i], strlen(texts[i]), 0, &ids) == TW_OK)
                ntok += (long)(ids.n + 2 < (size_t)tw_encoder_max_tokens(e) ? ids.n + 2 : (size_t)tw_encoder_max_tokens(e));
        }
        tw_tokens_free(&ids);
        double ours_sps = n / dt;
        printf("twin threads=%d texts=%d tokens=%ld seconds=%.4f sentences/s=%.2f cpu_seconds=%.4f "
               "(truncated %d)\n", threads[k], n, ntok, dt, ours_sps, dc, (int)n_trunc);
        fflush(stdout);
        if (why) continue;
        double theirs_sps = 0, theirs_cpu = 0;
        tw_sb err;
        tw_sb_init(&err);
        if (anchor_run(script, path, texts_path, vec_path, threads[k], n, dim, &theirs_sps, &theirs_cpu, theirs,
                       &err)) {
            printf("onnxruntime threads=%d: failed: %s\n", threads[k], tw_sb_str(&err));
            tw_sb_free(&err);
            continue;
        }
        tw_sb_free(&err);
        printf("ratio threads=%d twin/onnxruntime=%.3f\n", threads[k], ours_sps / theirs_sps);
        if (theirs_cpu > 0 && dc > 0)
            printf("cpu_ratio threads=%d twin/onnxruntime=%.3f\n", threads[k], theirs_cpu / dc);
        for (int i = 0; i < n; i++) {
            double ab = 0, aa = 0, bb = 0;
            const float *a = ours + (size_t)i * dim, *b = theirs + (size_t)i * dim;
            for (int j = 0; j < dim; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
            double c = ab / (sqrt(aa * bb) + 1e-30);
            if (1 - c > worst) worst = 1 - c;
            cos_sum += c;
            compared++;
        }
        fflush(stdout);
    }
    if (compared) printf("correctness max_1-cos=%.3g mean_cos=%.7f (%d vectors vs onnxruntime)\n",
                         worst, cos_sum / compared, compared);
    tw_free(script);
done:
    if (tfd >= 0) {
        close(tfd);
        unlink(texts_path);
        if (vec_path[0]) unlink(vec_path);
    }
    tw_free(ours);
    tw_free(theirs);
    tw_encoder_free(e);
    tw_backend_free(be);
    for (int i = 0; i < n; i++) tw_free(texts[i]);
    tw_free(texts);
    tw_free(path);
    return rc;
}
