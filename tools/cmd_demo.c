/* cmd_demo.c: twin demo, the whole twin end to end on the embedded default.
 *
 * It grows as the system lands. Today it covers the foundation: the compute backend that
 * `auto` picks, the two small models read from their files (GGUF header and metadata for
 * SmolLM2, config.json + safetensors for MiniLM), and each model's tokenizer on a sample of
 * the kind of writing a twin learns from, with a decode round trip. */
#include "cli.h"
#include "gguf.h"
#include "hfconfig.h"
#include "kernels.h"
#include "safetensors.h"
#include "tokenizer.h"

#include <string.h>

static const char *DEFAULT_TEXT =
    "I've been writing about ML systems for years: GPUs, data pipelines, and the odd "
    "late-night debugging session at 2:30am. Here's what I learned (the hard way) \xF0\x9F\x98\x85";

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin demo [--text TEXT]\n\n"
            "Runs the twin end to end on the embedded default (the CPU backend, or CUDA when a\n"
            "GPU is present; the small models of `twin model fetch`). Today: the backend, both\n"
            "models described from their files, and their tokenizers on a sample text.\n"
            "The models must be fetched first (tools/demo.sh does it): twin model fetch all\n\n"
            "options:\n"
            "  --text TEXT   the sample text to tokenize (default: a short paragraph)\n");
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

int cmd_demo(int argc, char **argv) {
    const char *text = DEFAULT_TEXT;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--text", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "demo", "--text needs a value");
            text = v;
        } else {
            return cli_fail(CLI_USAGE, "demo", "unknown argument '%s' (twin demo --help)", argv[i]);
        }
    }
    printf("twin %s demo\n", TWIN_VERSION);
    tw_backend *be = NULL;
    if (tw_backend_open("auto", &be)) return cli_fail_status("demo");
    printf("backend: %s, %d threads\n", tw_backend_name(be), tw_threads_get());
    tw_backend_free(be);
    printf("text: %s\n", text);

    int rc = demo_smollm(text);
    if (rc == CLI_OK) rc = demo_minilm(text);
    if (rc == CLI_OK)
        printf("\nnot yet part of the demo: generation, crawling, the index, training and "
               "serving (they land with the issues that build them)\n");
    return rc;
}
