/* cmd_bench.c: twin bench <what>: benchmarks that print our figure beside an anchor's,
 * measured in the same run on the same input and thread count, and the machine.
 *
 *   twin bench tokenize [-m MODEL ...] [--text FILE] [--size MB] [--repeat N]
 *       twin's tokenizer vs HF tokenizers (bench/bench_tokenize_hf.py, run as a subprocess
 *       when `python3 -c "import tokenizers"` works) on a mixed text, one thread.
 */
#include "cli.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the machine ------------------------------------------------------------------------- */

void bench_print_machine(int threads_used) {
    char model[256] = "unknown CPU";
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp) {
        char line[512];
        while (fgets(line, sizeof line, fp)) {
            if (strncmp(line, "model name", 10) == 0) {
                const char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t') c++;
                    snprintf(model, sizeof model, "%s", c);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        }
        fclose(fp);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %s, threads=%d (of %ld online)\n", model, threads_used, online);
}

/* ---- a mixed text, made deterministically -------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng64;

static uint64_t rng_next(rng64 *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* A uniform pick in [0, n); skewed picks favour the front of a list (rough Zipf). */
static size_t rng_pick(rng64 *r, size_t n) { return (size_t)(rng_next(r) % n); }
static size_t rng_skew(rng64 *r, size_t n) {
    double u = (double)(rng_next(r) >> 11) / 9007199254740992.0;
    return (size_t)(u * u * u * (double)n);
}

static const char *const bench_words[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "it", "for", "was", "on", "are", "as",
    "with", "his", "they", "I", "at", "be", "this", "have", "from", "or", "one", "had", "by",
    "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other",
    "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number",
    "no", "way", "could", "people", "my", "than", "first", "water", "been", "call", "who",
    "oil", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made", "may",
    "part", "model", "twin", "writing", "person", "style", "essay", "training", "adapter",
    "tokenizer", "inference", "retrieval", "vector", "index", "dataset", "evaluation", "GPU",
    "kernel", "memory", "latency", "throughput", "Medium", "Substack", "GitHub", "LinkedIn",
    "Python", "C11", "CUDA", "quantization", "embedding", "transformer", "attention",
    "gradient", "optimizer", "checkpoint", "pipeline", "warehouse", "crawler", "document",
    "paragraph", "sentence", "rhythm", "metaphor", "unexpected", "particular", "however",
    "therefore", "nevertheless", "meanwhile", "Pneumonoultramicroscopic", "HTTPServer",
    "camelCase", "snake_case", "e-mail", "well-known", "state-of-the-art"};
static const char *const bench_contractions[] = {
    "don't", "it's", "we'll", "they're", "I'm", "you've", "she'd", "can't", "won't",
    "isn't", "that's", "there's", "let's", "DON'T", "We'Re", "y'all", "rock'n'roll"};
static const char *const bench_foreign[] = {
    "Führer café naïve résumé façade", "Привет, как дела? Всё хорошо.",
    "Ελληνικά γράμματα και λέξεις", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
    "สวัสดีชาวโลก", "你好，世界！我想在apple工作1314151天～", "日本語のテキスト、カタカナ、ひらがな。",
    "안녕하세요 세계", "Cửa Việt Đà Nẵng", "Straße Größe Übung", "İstanbul Kraków Øresund",
    "🚀 (normal) 😶‍🌫️ ✅ 👩🏽‍💻 🇫🇷🇯🇵 ❤️ 🦙.cpp", "½ ¼ ¾ x² y³ ①②③ Ⅻ ٣٤٥",
    "«guillemets» „quotes“ “curly” ‘single’ — – …"};
static const char *const bench_code[] = {
    "static int add(int a, int b) {\n    return a + b; // sum\n}\n",
    "for (size_t i = 0; i < n; i++) {\n\tout[i] = in[i] * scale + bias[i % 64];\n}\n",
    "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "{\"id\": 12345, \"name\": \"twin\", \"tags\": [\"llm\", \"c11\"], \"ok\": true, \"pi\": 3.14159}\n",
    "if err != nil {\n\t\treturn fmt.Errorf(\"open %s: %w\", path, err)\n\t}\n",
    "SELECT id, title FROM documents WHERE author = ? AND published_at > '2024-01-01';\n",
    "    <div class=\"post\"><a href=\"https://example.com/p?id=42&ref=rss\">Read more</a></div>\n",
    "$ cmake -S . -B build -DTWIN_CUDA=OFF && cmake --build build -j2\n"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void bench_sentence(rng64 *r, tw_sb *sb) {
    int n = 5 + (int)rng_pick(r, 16);
    for (int w = 0; w < n; w++) {
        if (w) tw_sb_putc(sb, rng_pick(r, 200) == 0 ? '\t' : ' ');
        if (w && rng_pick(r, 60) == 0) tw_sb_putc(sb, ' '); /* a double space now and then */
        size_t k = rng_pick(r, 100);
        if (k < 6) tw_sb_puts(sb, bench_contractions[rng_pick(r, N_OF(bench_contractions))]);
        else if (k < 11) tw_sb_printf(sb, "%llu", (unsigned long long)(rng_next(r) % 100000000ull) >> rng_pick(r, 26));
        else if (k < 12) tw_sb_printf(sb, "%d.%02d", (int)rng_pick(r, 1000), (int)rng_pick(r, 100));
        else {
            const char *word = bench_words[rng_skew(r, N_OF(bench_words))];
            if (w == 0 && word[0] >= 'a' && word[0] <= 'z') {
                tw_sb_putc(sb, (char)(word[0] - 32));
                tw_sb_puts(sb, word + 1);
            } else {
                tw_sb_puts(sb, word);
            }
        }
        if (w + 1 < n && rng_pick(r, 12) == 0) tw_sb_putc(sb, rng_pick(r, 4) ? ',' : ';');
    }
    static const char ends[] = "...!?.:";
    tw_sb_putc(sb, ends[rng_skew(r, sizeof ends - 1)]);
}

/* The separator of documents in a bench text (ASCII record separator); not tokenized. */
#define BENCH_DOC_SEP '\x1e'

/* About size bytes of documents (1-8 KB each: prose, code, other scripts and whitespace),
 * separated by BENCH_DOC_SEP; valid UTF-8. */
static char *bench_text(size_t size, size_t *len) {
    rng64 r = {0x9E3779B97F4A7C15ull};
    tw_sb sb;
    tw_sb_init(&sb);
    size_t doc_end = 1000 + rng_pick(&r, 7000);
    while (sb.len < size && !sb.failed) {
        if (sb.len >= doc_end) {
            tw_sb_putc(&sb, BENCH_DOC_SEP);
            doc_end = sb.len + 1000 + rng_pick(&r, 7000);
        }
        size_t k = rng_pick(&r, 20);
        if (k < 2) {
            tw_sb_puts(&sb, bench_code[rng_pick(&r, N_OF(bench_code))]);
            tw_sb_putc(&sb, '\n');
        } else if (k < 4) {
            tw_sb_puts(&sb, bench_foreign[rng_pick(&r, N_OF(bench_foreign))]);
            tw_sb_puts(&sb, rng_pick(&r, 2) ? "\n" : " ");
        } else {
            int ns = 2 + (int)rng_pick(&r, 5);
            for (int s = 0; s < ns; s++) {
                if (s) tw_sb_putc(&sb, ' ');
                bench_sentence(&r, &sb);
            }
            tw_sb_puts(&sb, rng_pick(&r, 8) ? "\n\n" : "  \n");
        }
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        return NULL;
    }
    *len = sb.len;
    return tw_sb_take(&sb);
}

/* ---- the anchor -------------------------------------------------------------------------- */

/* Appends s in single quotes for sh. */
static void sh_quote(tw_sb *sb, const char *s) {
    tw_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') tw_sb_puts(sb, "'\\''");
        else tw_sb_putc(sb, *s);
    }
    tw_sb_putc(sb, '\'');
}

/* bench/bench_tokenize_hf.py: under $TWIN_SRC, else beside this source file's folder. */
static char *anchor_script(void) { return cli_source_path("bench/bench_tokenize_hf.py"); }

static const char *python_cmd(void) {
    const char *p = getenv("TWIN_PYTHON");
    return p && *p ? p : "python3";
}

/* Why the anchor cannot run, or NULL when it can. */
static const char *anchor_missing(const char *script) {
    if (!script) return "bench/bench_tokenize_hf.py not found (set TWIN_SRC to the source tree)";
    tw_sb cmd;
    tw_sb_init(&cmd);
    sh_quote(&cmd, python_cmd());
    tw_sb_puts(&cmd, " -c 'import tokenizers' >/dev/null 2>&1");
    int rc = system(tw_sb_str(&cmd));
    tw_sb_free(&cmd);
    if (rc != 0)
        return "`python3 -c \"import tokenizers\"` failed: pip install tokenizers (and gguf for "
               "GGUF models), or point TWIN_PYTHON at a Python that has them";
    return NULL;
}

/* Runs the anchor; fills its MB/s, token count and ids hash. 0 on success. */
static int anchor_run(const char *script, const char *model_path, const char *text_path, int repeat,
                      double *mbs, long *tokens, char sha[65], tw_sb *err) {
    tw_sb cmd;
    tw_sb_init(&cmd);
    sh_quote(&cmd, python_cmd());
    tw_sb_putc(&cmd, ' ');
    sh_quote(&cmd, script);
    size_t pl = strlen(model_path);
    int gguf = pl > 5 && strcmp(model_path + pl - 5, ".gguf") == 0;
    tw_sb_puts(&cmd, gguf ? " --gguf " : " --hf ");
    sh_quote(&cmd, model_path);
    tw_sb_puts(&cmd, " --text ");
    sh_quote(&cmd, text_path);
    tw_sb_printf(&cmd, " --repeat %d 2>&1", repeat);
    FILE *p = popen(tw_sb_str(&cmd), "r");
    tw_sb_free(&cmd);
    if (!p) {
        tw_sb_puts(err, "could not start python");
        return -1;
    }
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "hf-tokenizers MB/s=%lf seconds=%*f tokens=%ld ids_sha256=%64s", mbs, tokens,
                   sha) == 3)
            found = 1;
        else if (err->len < 400)
            tw_sb_puts(err, line);
    }
    int rc = pclose(p);
    return found && rc == 0 ? 0 : -1;
}

/* ---- twin bench tokenize ----------------------------------------------------------------- */

static void tokenize_usage(FILE *out) {
    fprintf(out,
            "usage: twin bench tokenize [-m MODEL ...] [--text FILE] [--size MB] [--repeat N]\n\n"
            "Tokenizes a mixed text (prose, contractions, numbers, code, other scripts, emoji,\n"
            "whitespace runs; made deterministically, --size MB, default 10, as documents of\n"
            "1-8 KB) with twin and with HF tokenizers (bench/bench_tokenize_hf.py, when\n"
            "`python3 -c \"import tokenizers\"` works; TWIN_PYTHON picks another Python): one\n"
            "thread each, one encode call per document (HF: encode_batch with parallelism off),\n"
            "best of N runs (default 3), no special tokens added or parsed. --text FILE takes\n"
            "a UTF-8 file instead; its documents are separated by the byte 0x1E, if any.\n"
            "Default models: smollm2-135m and minilm-l6.\n\n"
            "prints per model: twin MB/s=..., hf-tokenizers MB/s=..., ratio=... (twin / HF),\n"
            "whether both gave the same ids, and the machine.\n");
}

static int bench_tokenize(int argc, char **argv) {
    const char *models[16];
    int n_models = 0;
    const char *text_file = NULL;
    long size_mb = 10, repeat = 3;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            tokenize_usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench tokenize", "-m needs a model");
            if (n_models == 16) return cli_fail(CLI_USAGE, "bench tokenize", "at most 16 models");
            models[n_models++] = v;
        } else if (cli_opt(argc, argv, &i, "--text", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench tokenize", "--text needs a file");
            text_file = v;
        } else if (cli_opt(argc, argv, &i, "--size", &v)) {
            if (cli_parse_int("bench tokenize", "--size", v, 1, 1024, &size_mb)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat", &v)) {
            if (cli_parse_int("bench tokenize", "--repeat", v, 1, 100, &repeat)) return CLI_USAGE;
        } else {
            return cli_fail(CLI_USAGE, "bench tokenize", "unknown argument '%s'", argv[i]);
        }
    }
    if (!n_models) {
        models[n_models++] = "smollm2-135m";
        models[n_models++] = "minilm-l6";
    }

    /* The text, in a file the anchor reads too. */
    char *text = NULL;
    size_t len = 0;
    char tmp_path[512] = "";
    if (text_file) {
        if (tw_file_read(text_file, &text, &len) != TW_OK) return cli_fail_status("bench tokenize");
        if (!tw_utf8_valid(text, len)) {
            tw_free(text);
            return cli_fail(CLI_ERR, "bench tokenize", "%s: not UTF-8 (HF tokenizers takes text)", text_file);
        }
    } else {
        text = bench_text((size_t)size_mb * 1000000u, &len);
        if (!text) return cli_fail(CLI_ERR, "bench tokenize", "no memory for the text");
        const char *td = getenv("TMPDIR");
        snprintf(tmp_path, sizeof tmp_path, "%s/twin-bench-tokenize-%ld.txt", td && *td ? td : "/tmp",
                 (long)getpid());
        if (tw_file_write_atomic(tmp_path, text, len) != TW_OK) {
            tw_free(text);
            return cli_fail_status("bench tokenize");
        }
        text_file = tmp_path;
    }
    /* documents: the pieces between separators, each one encode call on both sides */
    size_t n_docs = 1;
    for (size_t i = 0; i < len; i++) n_docs += text[i] == BENCH_DOC_SEP;
    size_t *doc_off = tw_malloc(n_docs * sizeof *doc_off), *doc_len = tw_malloc(n_docs * sizeof *doc_len);
    if (!doc_off || !doc_len) {
        tw_free(doc_off);
        tw_free(doc_len);
        tw_free(text);
        if (tmp_path[0]) unlink(tmp_path);
        return cli_fail(CLI_ERR, "bench tokenize", "no memory");
    }
    size_t doc_bytes = 0, nd = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == BENCH_DOC_SEP) {
            doc_off[nd] = start;
            doc_len[nd] = i - start;
            doc_bytes += i - start;
            nd++;
            start = i + 1;
        }
    }
    printf("text: %.2f MB in %zu documents (%s)\n", (double)doc_bytes / 1e6, n_docs,
           tmp_path[0] ? "generated mixed text" : text_file);

    char *script = anchor_script();
    const char *missing = anchor_missing(script);
    if (missing) printf("hf-tokenizers: anchor missing: %s\n", missing);

    int rc = CLI_OK, ran = 0;
    for (int m = 0; m < n_models; m++) {
        char *path = cli_resolve_model("bench tokenize", models[m]);
        if (!path) {
            rc = CLI_ERR;
            continue;
        }
        tw_tokenizer *t = tw_tokenizer_load(path);
        if (!t) {
            rc = cli_fail(CLI_ERR, "bench tokenize", "%s", tw_errmsg());
            tw_free(path);
            continue;
        }
        static const char *kinds[] = {"BPE", "SPM", "WordPiece"};
        printf("model: %s (%s%s%s, %d tokens)\n", models[m], kinds[tw_tokenizer_kind(t)],
               *tw_tokenizer_pre_name(t) ? ", pre " : "", tw_tokenizer_pre_name(t),
               tw_tokenizer_n_vocab(t));
        tw_tokens ids;
        tw_tokens_init(&ids);
        double best = 1e30;
        tw_status st = TW_OK;
        for (long r = 0; r < repeat && st == TW_OK; r++) {
            ids.n = 0;
            double t0 = tw_now_s();
            for (size_t d = 0; d < n_docs && st == TW_OK; d++)
                st = tw_tokenizer_encode(t, text + doc_off[d], doc_len[d], 0, &ids);
            double dt = tw_now_s() - t0;
            if (dt < best) best = dt;
        }
        if (st != TW_OK) {
            rc = cli_fail(CLI_ERR, "bench tokenize", "%s: %s", models[m], tw_errmsg());
        } else {
            double ours = (double)doc_bytes / best / 1e6;
            printf("twin MB/s=%.3f seconds=%.4f tokens=%zu\n", ours, best, ids.n);
            /* the ids as little-endian int32, hashed like the anchor does */
            uint8_t *le = tw_malloc(ids.n * 4 + 1);
            char sha[65] = "";
            if (le) {
                for (size_t i = 0; i < ids.n; i++) {
                    uint32_t v = (uint32_t)ids.ids[i];
                    le[4 * i] = (uint8_t)v, le[4 * i + 1] = (uint8_t)(v >> 8);
                    le[4 * i + 2] = (uint8_t)(v >> 16), le[4 * i + 3] = (uint8_t)(v >> 24);
                }
                uint8_t d[32];
                tw_sha256(le, ids.n * 4, d);
                tw_hex(d, 32, sha);
                tw_free(le);
            }
            if (!missing) {
                double hf = 0;
                long hf_tokens = 0;
                char hf_sha[65] = "";
                tw_sb err;
                tw_sb_init(&err);
                if (anchor_run(script, path, text_file, (int)repeat, &hf, &hf_tokens, hf_sha, &err) == 0) {
                    printf("hf-tokenizers MB/s=%.3f tokens=%ld same_ids=%s\n", hf, hf_tokens,
                           strcmp(sha, hf_sha) == 0 ? "yes" : "NO");
                    printf("ratio=%.2f\n", ours / hf);
                } else {
                    printf("hf-tokenizers: anchor failed: %s\n", err.len ? tw_sb_str(&err) : "no result line");
                }
                tw_sb_free(&err);
            }
            ran++;
        }
        tw_tokens_free(&ids);
        tw_tokenizer_free(t);
        tw_free(path);
    }
    bench_print_machine(1);
    if (tmp_path[0]) unlink(tmp_path);
    tw_free(doc_off);
    tw_free(doc_len);
    tw_free(script);
    tw_free(text);
    return ran ? rc : CLI_ERR;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    cli_fn fn;
} benches[] = {
    {"tokenize", bench_tokenize},
    {"infer", cmd_bench_infer},
    {"clean", cmd_bench_clean},
    {"embed", cmd_bench_embed},
    {"hnsw", cmd_bench_hnsw},
    {"crawl", cmd_bench_crawl},
    {"train", cmd_bench_train},
};

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: twin bench <what> [options]   (twin bench <what> --help)\n\nwhat:\n");
        for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) fprintf(out, "  %s\n", benches[i].name);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        if (strcmp(argv[1], benches[i].name) == 0) return benches[i].fn(argc - 1, argv + 1);
    return cli_fail(CLI_USAGE, "bench", "unknown benchmark '%s' (twin bench --help)", argv[1]);
}
