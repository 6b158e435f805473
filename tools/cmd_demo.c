/* cmd_demo.c: twin demo, the whole twin end to end on the embedded default.
 *
 * It grows as the system lands. Today: the compute backend that `auto` picks; the two small
 * models read from their files (GGUF for SmolLM2, config.json + safetensors for MiniLM) and
 * their tokenizers on a sample text; then the data and retrieval path on a corpus of 24
 * articles shipped in the source tree (tests/data/extract): a local source crawled into the
 * SQLite warehouse, cleaned, deduplicated, chunked and embedded into the HNSW index, searched,
 * and the best sources handed to SmolLM2 for an answer. The demo's warehouse and index live in
 * <workspace>/demo/ (models are shared with the workspace), so it never mixes with a user's
 * own data, and a second run finds everything unchanged. Each step is the same subcommand a
 * user runs, called in-process. */
#include "cli.h"
#include "retrieval_session.h"
#include "gguf.h"
#include "hfconfig.h"
#include "kernels.h"
#include "safetensors.h"
#include "tokenizer.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static const char *DEFAULT_TEXT =
    "I've been writing about ML systems for years: GPUs, data pipelines, and the odd "
    "late-night debugging session at 2:30am. Here's what I learned (the hard way) \xF0\x9F\x98\x85";

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin demo [--text TEXT] [--question Q] [--corpus DIR] [-n N]\n\n"
            "Runs the twin end to end on the embedded default (SQLite, twin's HNSW index, the\n"
            "CPU backend or CUDA when a GPU is present, the small models of `twin model fetch`):\n"
            "  1. both models described from their files, their tokenizers on a sample text;\n"
            "  2. a corpus (default: the 24 articles of the source tree's tests/data/extract)\n"
            "     added as a local source, crawled, cleaned, chunked (twin source/crawl/clean/\n"
            "     chunk) into <workspace>/demo/twin.db;\n"
            "  3. its chunks embedded into the vector index (twin embed);\n"
            "  4. a question searched (twin search) and answered by SmolLM2 from the sources\n"
            "     found (twin generate --chat).\n"
            "The models must be fetched first (tools/demo.sh does it): twin model fetch all\n\n"
            "options:\n"
            "  --text TEXT     the sample text to tokenize (default: a short paragraph)\n"
            "  --question Q    the question of step 4\n"
            "  --corpus DIR    a folder of .md/.txt/.html files instead of the default corpus\n"
            "  -n N            tokens of the answer (default 96)\n");
}

/* Prints ids and their decoded pieces for text, and checks that decoding gives text back
 * (for WordPiece, which lower-cases, only that decoding succeeds). */
static int demo_tokenize(const char *label, const tw_tokenizer *tok, const char *text,
                         unsigned flags) {
    tw_tokens ids;
    tw_tokens_init(&ids);
    double t0 = tw_now_s();
    if (tw_tokenizer_encode(tok, text, strlen(text), flags, &ids)) {
        tw_tokens_free(&ids);
        return cli_fail_status("demo");
    }
    double dt = tw_now_s() - t0;
    printf("  %s: %zu tokens in %.3f ms\n    ids:", label, ids.n, dt * 1e3);
    for (size_t i = 0; i < ids.n; i++) printf(" %d", ids.ids[i]);
    printf("\n    pieces:");
    tw_sb piece;
    tw_sb_init(&piece);
    for (size_t i = 0; i < ids.n; i++) {
        tw_sb_clear(&piece);
        if (tw_tokenizer_decode(tok, &ids.ids[i], 1, 0, &piece)) break;
        printf(" ");
        fflush(stdout);
        tw_sb q;
        tw_sb_init(&q);
        tw_sb_json_str(&q, tw_sb_str(&piece), piece.len);
        fputs(tw_sb_str(&q), stdout);
        tw_sb_free(&q);
    }
    printf("\n");
    tw_sb_free(&piece);
    tw_sb back;
    tw_sb_init(&back);
    int rc = CLI_OK;
    if (tw_tokenizer_decode(tok, ids.ids, ids.n, TW_TOK_SKIP_SPECIAL, &back)) {
        rc = cli_fail_status("demo");
    } else if (tw_tokenizer_kind(tok) != TW_TOK_WORDPIECE) {
        int same = back.len == strlen(text) && memcmp(tw_sb_str(&back), text, back.len) == 0;
        printf("    decode round trip: %s\n", same ? "identical" : "DIFFERENT");
        if (!same) rc = cli_fail(CLI_ERR, "demo", "%s: decode(encode(text)) != text", label);
    } else {
        printf("    decoded (normalised): %s\n", tw_sb_str(&back));
    }
    tw_sb_free(&back);
    tw_tokens_free(&ids);
    return rc;
}

static int demo_smollm(const char *text) {
    char *path = cli_resolve_model("demo", "smollm2-135m");
    if (!path) return CLI_ERR;
    gguf_file *f = gguf_open(path);
    if (!f) {
        tw_free(path);
        return cli_fail_status("demo");
    }
    char *name = gguf_get_strdup(f, "general.name");
    char *arch = gguf_get_strdup(f, "general.architecture");
    uint64_t layers = 0, d = 0, heads = 0, kv = 0, ctx = 0;
    if (arch) {
        char key[128];
        snprintf(key, sizeof key, "%s.block_count", arch);
        gguf_get_u64(f, key, &layers);
        snprintf(key, sizeof key, "%s.embedding_length", arch);
        gguf_get_u64(f, key, &d);
        snprintf(key, sizeof key, "%s.attention.head_count", arch);
        gguf_get_u64(f, key, &heads);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
        gguf_get_u64(f, key, &kv);
        snprintf(key, sizeof key, "%s.context_length", arch);
        gguf_get_u64(f, key, &ctx);
    }
    uint64_t params = 0, bytes = 0;
    int n_by_type[TW_DTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t n = 1;
        for (uint32_t k = 0; k < t->n_dims; k++) n *= (uint64_t)t->ne[k];
        params += n;
        bytes += t->nbytes;
        if ((unsigned)t->type < TW_DTYPE_COUNT) n_by_type[t->type]++;
    }
    printf("\nSmolLM2 (%s)\n", path);
    printf("  %s: %s, %llu layers, d_model %llu, %llu heads (%llu kv), context %llu\n",
           name ? name : "?", arch ? arch : "?", (unsigned long long)layers,
           (unsigned long long)d, (unsigned long long)heads, (unsigned long long)kv,
           (unsigned long long)ctx);
    printf("  GGUF v%u, %llu tensors, %.1fM parameters in %.1f MiB:", gguf_version(f),
           (unsigned long long)gguf_n_tensors(f), (double)params / 1e6,
           (double)bytes / (1024.0 * 1024.0));
    for (int t = 0; t < TW_DTYPE_COUNT; t++)
        if (n_by_type[t]) printf(" %d %s", n_by_type[t], tw_dtype_name((tw_dtype)t));
    printf("\n");
    tw_free(name);
    tw_free(arch);

    tw_tokenizer *tok = tw_tokenizer_from_gguf(f);
    gguf_close(f);
    tw_free(path);
    if (!tok) return cli_fail_status("demo");
    printf("  tokenizer: byte-level BPE, pre-tokenizer '%s', %d tokens\n",
           tw_tokenizer_pre_name(tok), tw_tokenizer_n_vocab(tok));
    int rc = demo_tokenize("tokenize", tok, text, 0);
    tw_tokenizer_free(tok);
    return rc;
}

static int demo_minilm(const char *text) {
    char *dir = cli_resolve_model("demo", "minilm-l6");
    if (!dir) return CLI_ERR;
    tw_sb p;
    tw_sb_init(&p);
    tw_sb_printf(&p, "%s/config.json", dir);
    hf_config cfg;
    if (hf_config_load(tw_sb_str(&p), &cfg)) {
        tw_sb_free(&p);
        tw_free(dir);
        return cli_fail_status("demo");
    }
    tw_sb_clear(&p);
    tw_sb_printf(&p, "%s/model.safetensors", dir);
    st_file *st = st_open(tw_sb_str(&p));
    tw_sb_free(&p);
    if (!st) {
        tw_free(dir);
        return cli_fail_status("demo");
    }
    uint64_t params = 0;
    for (uint64_t i = 0; i < st_n_tensors(st); i++) params += (uint64_t)st_tensor_at(st, i)->n_elements;
    printf("\nall-MiniLM-L6-v2 (%s)\n", dir);
    printf("  %s: %lld layers, hidden %lld, %lld heads, intermediate %lld, %s, max length %lld\n",
           cfg.model_type, (long long)cfg.n_layers, (long long)cfg.hidden_size,
           (long long)cfg.n_heads, (long long)cfg.intermediate_size, cfg.act_name,
           (long long)cfg.max_position_embeddings);
    printf("  safetensors: %llu tensors, %.1fM parameters\n",
           (unsigned long long)st_n_tensors(st), (double)params / 1e6);
    st_close(st);

    tw_tokenizer *tok = tw_tokenizer_load(dir);
    tw_free(dir);
    if (!tok) return cli_fail_status("demo");
    printf("  tokenizer: WordPiece, %d tokens\n", tw_tokenizer_n_vocab(tok));
    int rc = demo_tokenize("tokenize (with [CLS] ... [SEP])", tok, text, TW_TOK_ADD_SPECIAL);
    tw_tokenizer_free(tok);
    return rc;
}

/* Runs a subcommand in-process, as `twin <argv...>` would, after echoing it. */
static int run_step(int argc, char **argv, int (*fn)(int, char **)) {
    printf("\n$ twin");
    for (int i = 0; i < argc; i++) printf(strchr(argv[i], ' ') ? " \"%s\"" : " %s", argv[i]);
    printf("\n");
    fflush(stdout);
    int rc = fn(argc, argv);
    fflush(stdout);
    return rc;
}

/* <workspace>/demo with a models link to the workspace's models (made once). */
static int demo_workspace(char **out) {
    char *ws = cli_workspace_path(NULL);
    char *models = cli_workspace_path("models");
    char *demo = cli_workspace_path("demo");
    int rc = CLI_OK;
    if (!ws || !models || !demo) rc = cli_fail(CLI_ERR, "demo", "out of memory");
    if (!rc && tw_mkdir_p(demo)) rc = cli_fail_status("demo");
    if (!rc) {
        tw_sb link;
        tw_sb_init(&link);
        tw_sb_printf(&link, "%s/models", demo);
        if (!tw_path_exists(tw_sb_str(&link)) && symlink("../models", tw_sb_str(&link)) != 0)
            rc = cli_fail(CLI_ERR, "demo", "%s: cannot link the models: %s", tw_sb_str(&link),
                          strerror(errno));
        tw_sb_free(&link);
    }
    tw_free(ws);
    tw_free(models);
    if (rc) {
        tw_free(demo);
        return rc;
    }
    *out = demo;
    return CLI_OK;
}

/* Step 4: the sources for the question, and the prompt that hands them to the model. */
static int demo_sources(const char *question, tw_sb *prompt) {
    retrieval_session s;
    int rc = retrieval_session_open("demo", NULL, &s);
    if (rc) return rc;
    retrieval_hit *hits = NULL;
    int32_t n = 0;
    if (retrieval_search(s.r, s.db, question, 2, NULL, &hits, &n)) {
        retrieval_session_close(&s);
        return cli_fail_status("demo");
    }
    /* A 135M model follows this plain shape (notes, then the question) better than
     * instructions about sources; one note keeps the prompt short. */
    tw_sb_puts(prompt, "Here are my notes:\n\n");
    for (int32_t i = 0; i < n; i++) {
        printf("  source %d: %.4f  %s (%s)\n", i + 1, hits[i].score, hits[i].chunk.title,
               hits[i].chunk.url);
        if (i == 0) tw_sb_printf(prompt, "%s\n\n", hits[i].chunk.text);
    }
    tw_sb_printf(prompt, "Using my notes, answer: %s", question);
    retrieval_hits_free(hits, n);
    retrieval_session_close(&s);
    if (n == 0) return cli_fail(CLI_ERR, "demo", "the index returned no source for the question");
    return CLI_OK;
}

int cmd_demo(int argc, char **argv) {
    const char *text = DEFAULT_TEXT;
    const char *question = "How do I keep a sourdough starter alive, and what if it smells odd?";
    const char *corpus = NULL;
    const char *n_predict = "96";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--text", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "demo", "--text needs a value");
            text = v;
        } else if (cli_opt(argc, argv, &i, "--question", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, "demo", "--question needs a question");
            question = v;
        } else if (cli_opt(argc, argv, &i, "--corpus", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "demo", "--corpus needs a folder");
            corpus = v;
        } else if (cli_opt(argc, argv, &i, "-n", &v)) {
            long n;
            if (!v) return cli_fail(CLI_USAGE, "demo", "-n needs a number");
            int rc = cli_parse_int("demo", "-n", v, 1, 4096, &n);
            if (rc) return rc;
            n_predict = v;
        } else {
            return cli_fail(CLI_USAGE, "demo", "unknown argument '%s' (twin demo --help)", argv[i]);
        }
    }
    printf("twin %s demo\n", TWIN_VERSION);
    tw_backend *be = NULL;
    if (tw_backend_open("auto", &be)) return cli_fail_status("demo");
    printf("backend: %s, %d threads\n", tw_backend_name(be), tw_threads_get());
    tw_backend_free(be);
    printf("\n== 1. the models\ntext: %s\n", text);

    int rc = demo_smollm(text);
    if (rc == CLI_OK) rc = demo_minilm(text);
    if (rc != CLI_OK) return rc;

    char *src = corpus ? tw_strdup(corpus) : cli_source_path("tests/data/extract");
    if (!src || !tw_path_exists(src)) {
        tw_free(src);
        return cli_fail(CLI_ERR, "demo", "%s: the corpus folder is missing (give --corpus DIR)",
                        corpus ? corpus : "tests/data/extract");
    }
    char *demo_ws = NULL;
    rc = demo_workspace(&demo_ws);
    if (rc) {
        tw_free(src);
        return rc;
    }
    const char *saved_ws = g_cli.workspace;
    g_cli.workspace = demo_ws;
    printf("\n== 2. data: crawl, clean, chunk (warehouse %s/twin.db)\n", demo_ws);
    char *a_add[] = {"source", "add", "--author", "demo", "--platform", "local", src};
    char *a_crawl[] = {"crawl", "--author", "demo"};
    char *a_clean[] = {"clean", "--author", "demo"};
    char *a_chunk[] = {"chunk", "--author", "demo"};
    char *a_embed[] = {"embed"};
    char *a_search[] = {"search", (char *)question, "--k", "3"};
    rc = run_step(7, a_add, cmd_source);
    if (!rc) rc = run_step(3, a_crawl, cmd_crawl);
    if (!rc) rc = run_step(3, a_clean, cmd_clean);
    if (!rc) rc = run_step(3, a_chunk, cmd_chunk);
    if (!rc) {
        printf("\n== 3. the vector index\n");
        rc = run_step(1, a_embed, cmd_embed);
    }
    if (!rc) {
        printf("\n== 4. retrieval and an answer from the sources\n");
        rc = run_step(4, a_search, cmd_search);
    }
    tw_sb prompt;
    tw_sb_init(&prompt);
    if (!rc) {
        printf("\nthe best source goes into SmolLM2's prompt:\n");
        rc = demo_sources(question, &prompt);
    }
    if (!rc) {
        char *a_gen[] = {"generate", "-m", "smollm2-135m", "--chat", "--temp", "0", "-n",
                         (char *)n_predict, "-p", (char *)tw_sb_str(&prompt)};
        printf("\n$ twin generate -m smollm2-135m --chat --temp 0 -n %s -p \"Here are my notes: <source 1> Using my notes, answer: %s\"\n",
               n_predict, question);
        fflush(stdout);
        rc = cmd_generate(10, a_gen);
        fflush(stdout);
    }
    tw_sb_free(&prompt);
    g_cli.workspace = saved_ws;
    tw_free(demo_ws);
    tw_free(src);
    if (rc == CLI_OK)
        printf("\nnot yet part of the demo: datasets, training (LoRA/QLoRA SFT and DPO), evaluation "
               "gates and serving (they land with the issues that build them)\n");
    return rc;
}
