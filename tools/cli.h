/* cli.h: what the subcommands of the twin program share: the command table, option parsing
 * helpers, the workspace and model resolution. Only tools/ may exit(). */
#ifndef TWIN_CLI_H
#define TWIN_CLI_H

#include "core.h"

/* Exit statuses (ARCHITECTURE.md): 0 success, 1 runtime error, 2 bad usage. */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

/* A subcommand: argv[0] is its own name; returns the exit status. */
typedef int (*cli_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_fn fn;
    const char *summary; /* one line for `twin --help` */
} cli_command;

/* Global options parsed by main before the subcommand (they may also follow it). */
typedef struct {
    const char *workspace; /* --workspace, else $TWIN_HOME, else ./twin-data */
    int threads;           /* --threads (0: default) */
} cli_globals;
extern cli_globals g_cli;

/* Prints "twin <cmd>: <message>" to stderr; returns `code` for `return cli_fail(...)`. */
int cli_fail(int code, const char *cmd, const char *fmt, ...) TW_PRINTF(3, 4);
/* Prints the thread's last tw_error message as the one-line error; returns CLI_ERR. */
int cli_fail_status(const char *cmd);

/* Option helpers: is argv[*i] the option `name` (with a value in argv[*i+1], advanced)? */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
int cli_flag(char **argv, int i, const char *name);
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out);
int cli_is_help(const char *arg);

/* <workspace>/<sub> in a fresh heap string (tw_free). sub may be NULL. */
char *cli_workspace_path(const char *sub);

/* Resolves -m MODEL: an existing file or folder is taken as it is; otherwise a name from
 * `twin model fetch` (smollm2-135m, minilm-l6) under <workspace>/models/. Returns a heap
 * path (tw_free) or NULL after printing the error. */
char *cli_resolve_model(const char *cmd, const char *model);

/* A file of twin's source tree (e.g. "bench/llama_anchor.sh"): under $TWIN_SRC, else under the
 * checkout this program was built from. A heap path (tw_free), or NULL when it is absent. */
char *cli_source_path(const char *rel);

/* The subcommands. Each lives in tools/cmd_<name>.c. */
int cmd_model(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* twin bench infer (tools/cmd_bench_infer.c, dispatched by cmd_bench), and the machine line
 * that every benchmark prints (cmd_bench.c). */
int cmd_bench_infer(int argc, char **argv);
void bench_print_machine(int threads_used);
int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
/* The data pipeline (issue 4) and retrieval (issue 5). */
int cmd_source(int argc, char **argv);   /* tools/cmd_source.c: source add|ls|rm */
int cmd_crawl(int argc, char **argv);    /* tools/cmd_crawl.c */
int cmd_schedule(int argc, char **argv); /* tools/cmd_schedule.c: schedule run */
int cmd_clean(int argc, char **argv);    /* tools/cmd_clean.c */
int cmd_chunk(int argc, char **argv);    /* tools/cmd_chunk.c */
int cmd_docs(int argc, char **argv);     /* tools/cmd_docs.c: docs ls|show|export */
int cmd_embed(int argc, char **argv);    /* tools/cmd_embed.c */
int cmd_search(int argc, char **argv);   /* tools/cmd_search.c */
int cmd_eval(int argc, char **argv);     /* tools/cmd_eval.c: eval retrieval */
/* Training (issue 6). */
int cmd_merge(int argc, char **argv);    /* tools/cmd_merge.c: a LoRA merged into its base GGUF */
int cmd_runs(int argc, char **argv);     /* tools/cmd_runs.c: runs ls|show|compare|plot */
int cmd_train(int argc, char **argv);    /* tools/cmd_train.c: LoRA SFT / DPO */
/* Benchmarks dispatched by cmd_bench, each in tools/cmd_bench_<name>.c. */
int cmd_bench_embed(int argc, char **argv);
int cmd_bench_hnsw(int argc, char **argv);
int cmd_bench_clean(int argc, char **argv);  /* extraction F1 vs trafilatura + cleaning MB/s */
int cmd_bench_crawl(int argc, char **argv);  /* pages/s against a local server */
int cmd_bench_train(int argc, char **argv);  /* training tokens/s and memory vs an anchor */

#endif
