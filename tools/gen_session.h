/* gen_session.h: what `twin generate` and `twin chat` share: their sampling and model options,
 * and a session (backend, model, KV cache, generation engine, chat template) built from them.
 * Only tools/ uses it. */
#ifndef TWIN_GEN_SESSION_H
#define TWIN_GEN_SESSION_H

#include "chat_template.h"
#include "cli.h"
#include "generate.h"
#include "kv_cache.h"
#include "lora.h"
#include "model.h"
#include "sampler.h"

#define GEN_MAX_STOPS 16

typedef struct {
    const char *model;         /* -m */
    const char *lora;          /* --lora ADAPTER (a PEFT folder or a GGUF LoRA), NULL: none */
    const char *backend;       /* --backend (default "auto") */
    const char *chat_template; /* --chat-template NAME, NULL: recognise the model's */
    const char *system;        /* --system TEXT, NULL: the template's default */
    tw_sampler_params sampling;
    int seed_set;
    long n_predict;            /* -n: tokens per answer; -1 until an end token / full context */
    long n_ctx;                /* --ctx-size; 0: min(model's training context, 4096) */
    long n_batch;              /* --batch-size: tokens per forward step; 0: 512 */
    const char *stops[GEN_MAX_STOPS];
    size_t n_stops;
    int ignore_eos;
} gen_opts;

/* Defaults: llama.cpp's sampling defaults, -n 256, no seed yet. */
void gen_opts_init(gen_opts *o, long n_predict);

/* Tries argv[*i] as one of the shared options (advancing *i past its value). Returns 1 when it
 * was one (then *rc is CLI_OK, or the exit status after printing a usage error), 0 when it
 * was not. */
int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc);

/* The option lines of the shared options for --help. */
void gen_opts_usage(FILE *out);

/* Checks the options after parsing and picks a seed when none was given. Returns CLI_OK or
 * the exit status after printing a one-line error. */
int gen_opts_finish(gen_opts *o, const char *cmd);

typedef struct {
    tw_backend *be;
    tw_model *m;
    lora_set *lora;         /* the --lora adapter attached to m, NULL when none */
    const tw_tokenizer *tok;
    tw_kv_cache *kv;
    tw_gen *g;
    tw_chat_template *tmpl; /* NULL when the session does not chat and the model has none */
    int32_t stop_tokens[2]; /* the template's end-of-turn token */
    size_t n_stop_tokens;
    int32_t n_ctx;
} gen_session;

/* Opens the backend and loads the model, and the --lora adapter checked against it (the
 * model's architecture, dimensions, Q/K row order and, when the adapter stores one, the sha256
 * of the model's file: a mismatch is an error naming what differs). need_template: 1 when a chat template is required
 * (--chat, twin chat): an unknown --chat-template or a model without a recognisable template
 * is then an error; 0: the model's template is still recognised when possible, for its
 * end-of-turn token. Returns CLI_OK or the exit status after printing a one-line error. */
int gen_session_open(gen_session *s, const char *cmd, const gen_opts *o, int need_template);

/* Makes the KV cache (pages for n_tokens tokens of one sequence, at most the context) and the
 * engine. Returns CLI_OK or CLI_ERR after printing the error. */
int gen_session_start(gen_session *s, const char *cmd, const gen_opts *o, int32_t n_tokens);

/* Tokenizes text as a prompt (special tokens parsed, BOS when the model asks for one). */
int gen_session_tokenize(gen_session *s, const char *cmd, const char *text, tw_tokens *out);

/* A request for prompt with the session's options: stop strings, end-of-turn token. */
void gen_session_request(const gen_session *s, const gen_opts *o, const tw_tokens *prompt,
                         tw_gen_request *r);

void gen_session_close(gen_session *s);

/* One line of statistics on stderr: "twin CMD: prompt N tokens (C cached) in S s, X tok/s;
 * generated M tokens in T s, Y tok/s; stop REASON; seed SEED". */
void gen_print_stats(const char *cmd, const tw_gen_stats *st, tw_stop_reason why,
                     const gen_opts *o);

#endif
