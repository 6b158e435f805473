/* twin.c: the twin program: global options, then one subcommand per job. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const cli_command commands[] = {
    {"model", cmd_model, "fetch and list models (model fetch smollm2-135m|minilm-l6|all)"},
    {"gguf", cmd_gguf, "inspect a GGUF file (gguf info FILE)"},
    {"tokenize", cmd_tokenize, "tokenize stdin with a model's tokenizer"},
    {"generate", cmd_generate, "generate text from a prompt (generate -m MODEL -p TEXT [--chat])"},
    {"chat", cmd_chat, "chat with a model on standard input (chat -m MODEL)"},
    {"quantize", cmd_quantize, "convert a GGUF model's weights (quantize IN OUT f16|q8_0|q4_1|...)"},
    {"bench", cmd_bench, "benchmarks against reference implementations (bench tokenize)"},
    {"info", cmd_info, "the build: version, backends, threads"},
    {"demo", cmd_demo, "the whole twin end to end on the embedded default"},
    {"embed", cmd_embed, "sentence embeddings as JSON (embed -m MODEL TEXT...|-)"},
    {"source", cmd_source, "add, list and remove the places an author writes (source add|ls|rm)"},
    {"search", cmd_search, "the chunks nearest to a query, with scores, titles and URLs (search QUERY)"},
    {"eval", cmd_eval, "evaluations: retrieval quality of the index (eval retrieval --pairs FILE)"},
    {"docs", cmd_docs, "list, show and export crawled documents (docs ls|show|export)"},
    {"clean", cmd_clean, "clean documents and mark duplicates (clean [--author A] [--all])"},
    {"chunk", cmd_chunk, "split cleaned documents into chunks for embedding (chunk [-m MODEL])"},
    {"crawl", cmd_crawl, "crawl sources into the warehouse (crawl [--author NAME] [--source ID])"},
    {"schedule", cmd_schedule, "the crawl daemon: each source at its interval (schedule run)"},
    {"merge", cmd_merge, "merge a LoRA adapter into its base GGUF (merge -m BASE --lora A -o OUT.gguf)"},
    {"train", cmd_train, "fine-tune LoRA adapters (train -m BASE --data FILE.jsonl [--dpo])"},
    {"runs", cmd_runs, "tracked training runs (runs ls|show RUN|compare RUN...|plot RUN... -o F.svg)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin [--workspace DIR] [--threads N] [--log-level L] [--log-json] <command> "
            "[args]\n"
            "       twin <command> --help\n"
            "       twin --version\n\n"
            "twin makes and serves an LLM twin: a model that writes like one person.\n\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nglobal options:\n"
            "  --workspace DIR   the workspace (default $TWIN_HOME, else ./twin-data)\n"
            "  --threads N       CPU threads (default $TWIN_THREADS, else all cores)\n"
            "  --log-level L     debug|info|warn|error|off (default $TWIN_LOG, else info)\n"
            "  --log-json        log lines as JSON objects (also TWIN_LOG_FORMAT=json)\n\n"
            "exit status: 0 success, 1 runtime error, 2 bad usage\n");
}

/* Takes the global options out of argv wherever they stand, so `twin tokenize --threads 2`
 * and `twin --threads 2 tokenize` mean the same. Returns -1 after printing a usage error. */
static int parse_globals(int *argc, char **argv) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *v;
        if (cli_opt(*argc, argv, &i, "--workspace", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "", "--workspace needs a folder"), -1;
            g_cli.workspace = v;
        } else if (cli_opt(*argc, argv, &i, "--threads", &v)) {
            long n;
            if (cli_parse_int("", "--threads", v, 1, 4096, &n)) return -1;
            g_cli.threads = (int)n;
        } else if (cli_opt(*argc, argv, &i, "--log-level", &v)) {
            tw_log_level lv;
            if (!v || tw_log_parse_level(v, &lv))
                return cli_fail(CLI_USAGE, "", "--log-level: expected debug|info|warn|error|off"), -1;
            tw_log_set_level(lv);
        } else if (cli_flag(argv, i, "--log-json")) {
            tw_log_set_json(1);
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv) {
    if (parse_globals(&argc, argv)) return CLI_USAGE;
    if (g_cli.threads) tw_threads_set(g_cli.threads);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd) || !strcmp(cmd, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("twin %s\n", TWIN_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "twin: unknown command '%s' (twin --help lists them)\n", cmd);
    return CLI_USAGE;
}
