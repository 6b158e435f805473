/* cmd_chat.c: twin chat -m MODEL [options]
 *
 * A conversation on standard input: each non-empty line is a user message; the answer streams
 * to standard output, followed by a newline. The conversation is kept: every turn renders the
 * whole of it with the chat template, and the KV cache's prefix pages spare recomputing what
 * earlier turns computed. When the conversation outgrows the context the oldest exchanges are
 * dropped (the system message stays). Works the same from a terminal (with a "> " prompt) and
 * from a pipe. End of input (Ctrl-D) quits. */
#include "gen_session.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin chat -m MODEL [options]\n\n"
            "Reads user messages from standard input, one per line, and streams each answer to\n"
            "standard output on its own line. The conversation is kept until the end of input\n"
            "(Ctrl-D). -n limits each answer (default: until the end of the turn).\n\n");
    gen_opts_usage(out);
}

typedef struct {
    tw_sb reply;
    int write_failed;
    tw_stop_reason stop;
    tw_gen_stats stats;
} turn_out;

static int on_event(void *user, const tw_gen_event *ev) {
    turn_out *t = user;
    if (ev->n_text > 0) {
        tw_sb_append(&t->reply, ev->text, ev->n_text);
        if (fwrite(ev->text, 1, ev->n_text, stdout) != ev->n_text) t->write_failed = 1;
        fflush(stdout);
    }
    if (ev->stop != TW_STOP_NONE) {
        t->stop = ev->stop;
        t->stats = *ev->stats;
    }
    return t->write_failed;
}

/* The conversation: messages with owned contents (a system message first when given). */
typedef struct {
    tw_chat_msg *m;
    size_t n, cap;
} conversation;

static int conv_push(conversation *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        tw_chat_msg *nm = tw_realloc(c->m, ncap * sizeof *nm);
        if (!nm) return -1;
        c->m = nm;
        c->cap = ncap;
    }
    char *s = tw_strndup(content, len);
    if (!s) return -1;
    c->m[c->n++] = (tw_chat_msg){role, s};
    return 0;
}

/* Drops messages [from, from + k). */
static void conv_drop(conversation *c, size_t from, size_t k) {
    for (size_t i = from; i < from + k; i++) tw_free((char *)c->m[i].content);
    memmove(c->m + from, c->m + from + k, (c->n - from - k) * sizeof *c->m);
    c->n -= k;
}

static void conv_free(conversation *c) {
    for (size_t i = 0; i < c->n; i++) tw_free((char *)c->m[i].content);
    tw_free(c->m);
}

/* Renders and tokenizes the conversation; drops the oldest exchanges (after the system
 * message) until the prompt leaves `reserve` tokens of the context for the answer. Returns
 * CLI_OK, or CLI_ERR when even the last message alone does not fit (after printing why). */
static int conv_prompt(gen_session *s, conversation *c, size_t first, int32_t reserve,
                       tw_tokens *ids, const char *cmd) {
    tw_sb text;
    tw_sb_init(&text);
    for (;;) {
        tw_sb_clear(&text);
        ids->n = 0;
        if (tw_chat_template_render(s->tmpl, c->m, c->n, 1, &text) != TW_OK) {
            tw_sb_free(&text);
            return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
        }
        int rc = gen_session_tokenize(s, cmd, tw_sb_str(&text), ids);
        if (rc) {
            tw_sb_free(&text);
            return rc;
        }
        if ((int64_t)ids->n + reserve <= s->n_ctx) break;
        if (c->n - first < 3) { /* only the new user message is left */
            if ((int64_t)ids->n < s->n_ctx) break; /* fits, with less room for the answer */
            tw_sb_free(&text);
            return cli_fail(CLI_ERR, cmd, "message: prompt has %zu tokens; the context holds %d "
                                          "(--ctx-size)", ids->n, s->n_ctx);
        }
        conv_drop(c, first, 2); /* the oldest user message and its answer */
    }
    tw_sb_free(&text);
    return CLI_OK;
}

int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    gen_opts o;
    gen_opts_init(&o, -1);
    for (int i = 1; i < argc; i++) {
        int rc;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (gen_opts_parse(&o, cmd, argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else {
            return cli_fail(CLI_USAGE, cmd, "unknown argument '%s' (see twin chat --help)", argv[i]);
        }
    }
    int rc = gen_opts_finish(&o, cmd);
    if (rc) return rc;
    gen_session s;
    if ((rc = gen_session_open(&s, cmd, &o, 1)) || (rc = gen_session_start(&s, cmd, &o, s.n_ctx))) {
        gen_session_close(&s);
        return rc;
    }
    size_t ns;
    const char *const *tstops = tw_chat_template_stops(s.tmpl, &ns);
    for (size_t k = 0; k < ns && o.n_stops < GEN_MAX_STOPS; k++) o.stops[o.n_stops++] = tstops[k];

    int interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "twin chat: %s, template %s; one message per line, Ctrl-D quits\n",
                o.model, tw_chat_template_name(s.tmpl));
    conversation c = {0};
    size_t first = 0;
    if (o.system) {
        if (conv_push(&c, "system", o.system, strlen(o.system))) rc = cli_fail(CLI_ERR, cmd, "out of memory");
        first = 1;
    }
    int32_t reserve = o.n_predict > 0 ? (int32_t)o.n_predict : 256;
    if (reserve > s.n_ctx / 4) reserve = s.n_ctx / 4;
    tw_tokens ids;
    tw_tokens_init(&ids);
    turn_out t;
    tw_sb_init(&t.reply);
    char *line = NULL;
    size_t cap = 0;
    int turns = 0, failed = 0;
    double prompt_tok = 0, prompt_cached = 0, prompt_s = 0, gen_tok = 0, gen_s = 0;
    while (rc == CLI_OK) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        if (conv_push(&c, "user", line, (size_t)got)) {
            rc = cli_fail(CLI_ERR, cmd, "out of memory");
            break;
        }
        if (conv_prompt(&s, &c, first, reserve, &ids, cmd) != CLI_OK) {
            conv_drop(&c, c.n - 1, 1); /* this message cannot be answered; the chat goes on */
            failed = 1;
            continue;
        }
        tw_gen_request req;
        gen_session_request(&s, &o, &ids, &req);
        req.sampling.seed = o.sampling.seed + (uint64_t)turns; /* each turn its own draws */
        req.callback = on_event;
        req.user = &t;
        tw_sb_clear(&t.reply);
        t.write_failed = 0;
        t.stop = TW_STOP_NONE;
        int32_t id;
        if (tw_gen_submit(s.g, &req, &id) != TW_OK || tw_gen_run(s.g) != TW_OK) {
            rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
            break;
        }
        fputc('\n', stdout);
        if (fflush(stdout) != 0 || t.write_failed) {
            rc = cli_fail(CLI_ERR, cmd, "standard output: write failed");
            break;
        }
        if (t.reply.failed || conv_push(&c, "assistant", tw_sb_str(&t.reply), t.reply.len)) {
            rc = cli_fail(CLI_ERR, cmd, "out of memory");
            break;
        }
        turns++;
        prompt_tok += t.stats.n_prompt - t.stats.n_prompt_cached;
        prompt_cached += t.stats.n_prompt_cached;
        prompt_s += t.stats.prompt_s;
        gen_tok += t.stats.n_gen > 1 ? t.stats.n_gen - 1 : 0;
        gen_s += t.stats.gen_s;
        if (interactive) gen_print_stats(cmd, &t.stats, t.stop, &o);
    }
    if (rc == CLI_OK && ferror(stdin)) rc = cli_fail(CLI_ERR, cmd, "standard input: read failed");
    if (rc == CLI_OK && turns > 0)
        fprintf(stderr, "twin chat: %d turns; prompt %.0f tokens computed (%.0f cached), %.1f "
                        "tok/s; generated %.1f tok/s; seed %llu\n",
                turns, prompt_tok, prompt_cached, prompt_s > 0 ? prompt_tok / prompt_s : 0.0,
                gen_s > 0 ? gen_tok / gen_s : 0.0, (unsigned long long)o.sampling.seed);
    free(line); /* getline's buffer comes from the C library's malloc */
    tw_sb_free(&t.reply);
    tw_tokens_free(&ids);
    conv_free(&c);
    gen_session_close(&s);
    if (rc == CLI_OK && failed) rc = CLI_ERR;
    return rc;
}
