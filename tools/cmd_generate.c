/* cmd_generate.c: twin generate -m MODEL -p TEXT [--chat] [options]
 *
 * Generates a continuation of TEXT (or, with --chat, the answer to TEXT as a user message in
 * the model's chat format), streaming it to standard output as it comes; one line of
 * statistics (prompt and generation tokens/s, why it stopped, the seed) goes to standard error
 * at the end. A request of one sequence through the same engine the server batches with. */
#include "gen_session.h"

#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin generate -m MODEL -p TEXT [--chat] [options]\n\n"
            "Streams the model's continuation of TEXT to standard output; with --chat, TEXT is\n"
            "a user message and the answer follows the model's chat template. Prompt and\n"
            "generation speeds go to standard error at the end.\n\n"
            "  -p, --prompt TEXT     the prompt (required)\n"
            "  --chat                apply the chat template to TEXT (a user message)\n");
    gen_opts_usage(out);
    fprintf(out, "\nexit status: 0 success, 1 runtime error (a prompt longer than the context,\n"
                 "an unknown chat template, -n 0, a bad model file, an adapter made for another\n"
                 "model), 2 bad usage\n");
}

typedef struct {
    int write_failed;
    int ends_newline; /* the last byte written was '\n' (or nothing was written) */
    tw_stop_reason stop;
    tw_gen_stats stats;
} gen_out;

static int on_event(void *user, const tw_gen_event *ev) {
    gen_out *o = user;
    if (ev->n_text > 0) {
        if (fwrite(ev->text, 1, ev->n_text, stdout) != ev->n_text) o->write_failed = 1;
        o->ends_newline = ev->text[ev->n_text - 1] == '\n';
        fflush(stdout);
    }
    if (ev->stop != TW_STOP_NONE) {
        o->stop = ev->stop;
        o->stats = *ev->stats;
    }
    return o->write_failed; /* a closed pipe ends the generation */
}

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_opts o;
    gen_opts_init(&o, 256);
    const char *prompt = NULL;
    int chat = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int rc;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-p", &v) || cli_opt(argc, argv, &i, "--prompt", &v)) {
            if (!v) return cli_fail(CLI_USAGE, cmd, "-p needs a text");
            prompt = v;
        } else if (cli_flag(argv, i, "--chat")) {
            chat = 1;
        } else if (gen_opts_parse(&o, cmd, argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else {
            return cli_fail(CLI_USAGE, cmd, "unknown argument '%s' (see twin generate --help)", argv[i]);
        }
    }
    if (!o.model) return cli_fail(CLI_USAGE, cmd, "-m MODEL is required (see twin generate --help)");
    if (!prompt) return cli_fail(CLI_USAGE, cmd, "-p TEXT is required (see twin generate --help)");
    int rc = gen_opts_finish(&o, cmd);
    if (rc) return rc;
    if ((o.chat_template || o.system) && !chat)
        return cli_fail(CLI_USAGE, cmd, "--chat-template and --system need --chat");

    gen_session s;
    rc = gen_session_open(&s, cmd, &o, chat);
    tw_sb text;
    tw_sb_init(&text);
    tw_tokens ids;
    tw_tokens_init(&ids);
    size_t n_stops_user = o.n_stops;
    if (rc) goto done;

    if (chat) {
        tw_chat_msg msgs[2];
        size_t n = 0;
        if (o.system) msgs[n++] = (tw_chat_msg){"system", o.system};
        msgs[n++] = (tw_chat_msg){"user", prompt};
        if (tw_chat_template_render(s.tmpl, msgs, n, 1, &text) != TW_OK) {
            rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
            goto done;
        }
        size_t ns;
        const char *const *stops = tw_chat_template_stops(s.tmpl, &ns);
        for (size_t k = 0; k < ns && o.n_stops < GEN_MAX_STOPS; k++) o.stops[o.n_stops++] = stops[k];
    } else {
        tw_sb_puts(&text, prompt);
    }
    if (text.failed) {
        rc = cli_fail(CLI_ERR, cmd, "out of memory");
        goto done;
    }
    if ((rc = gen_session_tokenize(&s, cmd, tw_sb_str(&text), &ids))) goto done;
    if (ids.n == 0) {
        rc = cli_fail(CLI_ERR, cmd, "-p: the prompt has no tokens");
        goto done;
    }
    if ((int64_t)ids.n >= s.n_ctx) {
        rc = cli_fail(CLI_ERR, cmd, "prompt has %zu tokens; the context holds %d (--ctx-size)",
                      ids.n, s.n_ctx);
        goto done;
    }
    int64_t need = (int64_t)ids.n + (o.n_predict > 0 ? o.n_predict : s.n_ctx);
    if ((rc = gen_session_start(&s, cmd, &o, need > s.n_ctx ? s.n_ctx : (int32_t)need))) goto done;

    gen_out out = {0, 1, TW_STOP_NONE, {0}};
    tw_gen_request req;
    gen_session_request(&s, &o, &ids, &req);
    req.callback = on_event;
    req.user = &out;
    int32_t id;
    if (tw_gen_submit(s.g, &req, &id) != TW_OK) {
        rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
        goto done;
    }
    if (tw_gen_run(s.g) != TW_OK) {
        if (!out.ends_newline) fputc('\n', stdout);
        rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
        goto done;
    }
    if (!out.ends_newline) fputc('\n', stdout);
    if (fflush(stdout) != 0 || out.write_failed) {
        rc = cli_fail(CLI_ERR, cmd, "standard output: write failed");
        goto done;
    }
    gen_print_stats(cmd, &out.stats, out.stop, &o);
done:
    o.n_stops = n_stops_user;
    tw_tokens_free(&ids);
    tw_sb_free(&text);
    gen_session_close(&s);
    return rc;
}
