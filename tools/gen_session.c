/* gen_session.c: options and session setup shared by twin generate and twin chat
 * (gen_session.h). */
#include "gen_session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void gen_opts_init(gen_opts *o, long n_predict) {
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    tw_sampler_params_default(&o->sampling);
    o->n_predict = n_predict;
}

void gen_opts_usage(FILE *out) {
    fprintf(out,
            "model:\n"
            "  -m MODEL              a GGUF file, an HF folder, or a name from `twin model fetch`\n"
            "  --lora ADAPTER        apply a LoRA adapter made for MODEL: a PEFT folder\n"
            "                        (adapter_config.json + adapter_model.safetensors) or a\n"
            "                        llama.cpp GGUF LoRA (llama-family and GPT-2 models)\n"
            "  --backend NAME        auto (default), cpu, cuda, cuda:N\n"
            "  --ctx-size N          context length (default: the model's, at most 4096)\n"
            "  --batch-size N        tokens per forward step; long prompts run in chunks of\n"
            "                        this size (default 512)\n"
            "chat:\n"
            "  --chat-template NAME  chatml, llama3, llama2, mistral or alpaca (default: the one\n"
            "                        the model's own template is recognised as)\n"
            "  --system TEXT         the system message (default: the template's, if any)\n"
            "sampling (llama.cpp's defaults and order: penalties, top-k, top-p, min-p,\n"
            "temperature):\n"
            "  -n N                  tokens to generate (-1: until the end of the answer or a full\n"
            "                        context)\n"
            "  --temp T              temperature; 0 is greedy (default 0.8)\n"
            "  --top-k K             keep the K most likely tokens; 0 is off (default 40)\n"
            "  --top-p P             keep the most likely tokens up to probability P (default "
            "0.95)\n"
            "  --min-p P             drop tokens below P times the best one's probability\n"
            "                        (default 0.05)\n"
            "  --repeat-penalty R    divide the logits of recent tokens by R (default 1: off)\n"
            "  --repeat-last-n N     how many recent tokens (default 64; -1 all)\n"
            "  --presence-penalty P  OpenAI's presence penalty (default 0)\n"
            "  --frequency-penalty P OpenAI's frequency penalty (default 0)\n"
            "  --seed S              random seed; the same seed gives the same text (default:\n"
            "                        a random one, printed at the end)\n"
            "  --stop STR            stop when the text contains STR (may be repeated)\n"
            "  --ignore-eos          do not stop at the end-of-text token\n"
            "  --threads N           CPU threads (a global option)\n");
}

static int parse_float(const char *cmd, const char *opt, const char *v, double lo, double hi,
                       int lo_open, float *out) {
    double d;
    if (cli_parse_double(cmd, opt, v, &d)) return CLI_USAGE;
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return cli_fail(CLI_USAGE, cmd, "%s: '%s' is outside %s%g, %g]", opt, v,
                        lo_open ? "(" : "[", lo, hi);
    *out = (float)d;
    return CLI_OK;
}

int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc) {
    const char *v;
    long n;
    *rc = CLI_OK;
    tw_sampler_params *sp = &o->sampling;
    if (cli_opt(argc, argv, i, "-m", &v) || cli_opt(argc, argv, i, "--model", &v)) {
        if (!v) *rc = cli_fail(CLI_USAGE, cmd, "-m needs a model");
        else o->model = v;
    } else if (cli_opt(argc, argv, i, "--lora", &v)) {
        if (!v) *rc = cli_fail(CLI_USAGE, cmd, "--lora needs an adapter (a PEFT folder or a .gguf)");
        else o->lora = v;
    } else if (cli_opt(argc, argv, i, "--backend", &v)) {
        if (!v) *rc = cli_fail(CLI_USAGE, cmd, "--backend needs a name (auto, cpu, cuda)");
        else o->backend = v;
    } else if (cli_opt(argc, argv, i, "--chat-template", &v)) {
        if (!v) *rc = cli_fail(CLI_USAGE, cmd, "--chat-template needs a name (%s)", tw_chat_template_names());
        else o->chat_template = v;
    } else if (cli_opt(argc, argv, i, "--system", &v)) {
        if (!v) *rc = cli_fail(CLI_USAGE, cmd, "--system needs a text");
        else o->system = v;
    } else if (cli_opt(argc, argv, i, "-n", &v) || cli_opt(argc, argv, i, "--n-predict", &v)) {
        if (!(*rc = cli_parse_int(cmd, "-n", v, -1, 1L << 30, &n) ? CLI_USAGE : CLI_OK))
            o->n_predict = n;
    } else if (cli_opt(argc, argv, i, "--ctx-size", &v)) {
        if (!(*rc = cli_parse_int(cmd, "--ctx-size", v, 2, 1L << 24, &n) ? CLI_USAGE : CLI_OK))
            o->n_ctx = n;
    } else if (cli_opt(argc, argv, i, "--batch-size", &v)) {
        if (!(*rc = cli_parse_int(cmd, "--batch-size", v, 1, 1L << 20, &n) ? CLI_USAGE : CLI_OK))
            o->n_batch = n;
    } else if (cli_opt(argc, argv, i, "--temp", &v)) {
        *rc = parse_float(cmd, "--temp", v, 0.0, 1e6, 0, &sp->temperature);
    } else if (cli_opt(argc, argv, i, "--top-k", &v)) {
        if (!(*rc = cli_parse_int(cmd, "--top-k", v, 0, INT32_MAX, &n) ? CLI_USAGE : CLI_OK))
            sp->top_k = (int32_t)n;
    } else if (cli_opt(argc, argv, i, "--top-p", &v)) {
        *rc = parse_float(cmd, "--top-p", v, 0.0, 1.0, 1, &sp->top_p);
    } else if (cli_opt(argc, argv, i, "--min-p", &v)) {
        *rc = parse_float(cmd, "--min-p", v, 0.0, 1.0, 0, &sp->min_p);
    } else if (cli_opt(argc, argv, i, "--repeat-penalty", &v)) {
        *rc = parse_float(cmd, "--repeat-penalty", v, 0.0, 1e6, 1, &sp->repeat_penalty);
    } else if (cli_opt(argc, argv, i, "--repeat-last-n", &v)) {
        if (!(*rc = cli_parse_int(cmd, "--repeat-last-n", v, -1, INT32_MAX, &n) ? CLI_USAGE : CLI_OK))
            sp->repeat_last_n = (int32_t)n;
    } else if (cli_opt(argc, argv, i, "--presence-penalty", &v)) {
        *rc = parse_float(cmd, "--presence-penalty", v, -1e6, 1e6, 0, &sp->presence_penalty);
    } else if (cli_opt(argc, argv, i, "--frequency-penalty", &v)) {
        *rc = parse_float(cmd, "--frequency-penalty", v, -1e6, 1e6, 0, &sp->frequency_penalty);
    } else if (cli_opt(argc, argv, i, "--seed", &v)) {
        char *end;
        errno = 0;
        unsigned long long s = v ? strtoull(v, &end, 10) : 0;
        if (!v || errno || end == v || *end || *v == '-')
            *rc = cli_fail(CLI_USAGE, cmd, "--seed: '%s' is not an integer in [0, 2^64)",
                           v ? v : "");
        else {
            sp->seed = (uint64_t)s;
            o->seed_set = 1;
        }
    } else if (cli_opt(argc, argv, i, "--stop", &v)) {
        if (!v || !*v) *rc = cli_fail(CLI_USAGE, cmd, "--stop needs a non-empty text");
        else if (o->n_stops == GEN_MAX_STOPS)
            *rc = cli_fail(CLI_USAGE, cmd, "--stop: at most %d stop strings", GEN_MAX_STOPS);
        else o->stops[o->n_stops++] = v;
    } else if (cli_flag(argv, *i, "--ignore-eos")) {
        o->ignore_eos = 1;
    } else {
        return 0;
    }
    return 1;
}

int gen_opts_finish(gen_opts *o, const char *cmd) {
    if (!o->model) return cli_fail(CLI_USAGE, cmd, "-m MODEL is required (see twin %s --help)", cmd);
    if (o->n_predict == 0)
        return cli_fail(CLI_ERR, cmd, "-n 0: nothing to generate (give -n >= 1, or -1 for no limit)");
    if (!o->seed_set) {
        /* a fresh seed per run, printed with the statistics so the run can be repeated */
        uint64_t t = (uint64_t)(tw_now_s() * 1e9) ^ ((uint64_t)getpid() << 32);
        tw_rng r;
        tw_rng_seed(&r, t);
        o->sampling.seed = tw_rng_next(&r) >> 1;
    }
    return CLI_OK;
}

/* The backend: "auto" takes CUDA only when it runs the ops a model needs (the CUDA backend
 * grows op by op), else the CPU with one line saying why. */
static tw_status open_backend(const char *name, tw_backend **out) {
    tw_status st = tw_backend_open(name, out);
    if (st || strcmp(name, "auto") != 0 || tw_backend_get_kind(*out) != TW_BACKEND_CUDA) return st;
    static const tw_op need[] = {TW_OP_GET_ROWS, TW_OP_MATMUL, TW_OP_RMSNORM, TW_OP_ROPE,
                                 TW_OP_KV_WRITE, TW_OP_ATTENTION, TW_OP_SWIGLU, TW_OP_ADD,
                                 TW_OP_SCALE /* --lora */};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!tw_backend_supports(*out, need[i])) {
            tw_log_info("%s does not run op %s yet; using the CPU backend",
                        tw_backend_name(*out), tw_op_name(need[i]));
            tw_backend_free(*out);
            *out = NULL;
            return tw_backend_open("cpu", out);
        }
    }
    return TW_OK;
}

int gen_session_open(gen_session *s, const char *cmd, const gen_opts *o, int need_template) {
    memset(s, 0, sizeof *s);
    char *path = cli_resolve_model(cmd, o->model);
    if (!path) return CLI_ERR;
    if (open_backend(o->backend, &s->be) != TW_OK) {
        tw_free(path);
        return cli_fail(CLI_ERR, cmd, "--backend %s: %s", o->backend, tw_errmsg());
    }
    tw_status st = tw_model_load(path, s->be, NULL, &s->m);
    tw_free(path);
    if (st) return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    if (o->lora) {
        /* The base as the adapter files describe it; its hash too, so an adapter that stores
         * the hash of the file it was made for is refused on another file of the same shape
         * (as twin merge refuses it). */
        lora_base base;
        if (lora_base_from_model(s->m, &base) != TW_OK ||
            lora_model_hash(tw_model_path(s->m), base.sha256) != TW_OK ||
            lora_load(s->be, o->lora, &base, &s->lora) != TW_OK ||
            tw_model_set_lora(s->m, s->lora) != TW_OK)
            return cli_fail(CLI_ERR, cmd, "--lora %s: %s", o->lora, tw_errmsg());
        tw_log_info("--lora %s: %d adapters of rank %d, scale %g", o->lora,
                    (int)lora_set_n_adapters(s->lora), (int)lora_set_config(s->lora)->rank,
                    (double)lora_set_scale(s->lora));
    }
    s->tok = tw_model_tokenizer(s->m);
    int32_t train = tw_model_n_ctx_train(s->m);
    if (o->n_ctx > 0 && train > 0 && o->n_ctx > train)
        return cli_fail(CLI_USAGE, cmd, "--ctx-size %ld is more than the model's context (%d)",
                        o->n_ctx, train);
    s->n_ctx = o->n_ctx > 0 ? (int32_t)o->n_ctx : train > 0 && train < 4096 ? train : 4096;

    const char *jinja = tw_model_chat_template(s->m);
    if (o->chat_template) {
        if (tw_chat_template_from_name_for(o->chat_template, jinja, &s->tmpl) != TW_OK)
            return cli_fail(CLI_ERR, cmd, "--chat-template: %s", tw_errmsg());
    } else if (jinja && *jinja) {
        if (tw_chat_template_detect(jinja, &s->tmpl) != TW_OK) {
            if (need_template) return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
            s->tmpl = NULL;
        }
    } else if (need_template) {
        return cli_fail(CLI_ERR, cmd, "the model has no chat template; name one with "
                                      "--chat-template (known: %s)", tw_chat_template_names());
    }
    if (s->tmpl && tw_chat_template_eot(s->tmpl)) {
        const char *eot = tw_chat_template_eot(s->tmpl);
        int32_t id = tw_tokenizer_find(s->tok, eot, strlen(eot));
        if (id >= 0 && id != tw_tokenizer_eos(s->tok)) s->stop_tokens[s->n_stop_tokens++] = id;
    }
    return CLI_OK;
}

int gen_session_start(gen_session *s, const char *cmd, const gen_opts *o, int32_t n_tokens) {
    tw_kv_params kp;
    tw_kv_params_default(&kp);
    int32_t ps = kp.page_size > 0 ? kp.page_size : TW_KV_DEFAULT_PAGE_SIZE;
    kp.page_size = ps;
    kp.n_ctx = s->n_ctx;
    kp.max_seqs = 4;
    kp.n_pages = tw_kv_pages_for(n_tokens < s->n_ctx ? n_tokens : s->n_ctx, ps);
    if (tw_kv_cache_new_ex(s->m, &kp, &s->kv) != TW_OK) return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    tw_gen_params gp = {(int32_t)o->n_batch};
    if (tw_gen_new(s->m, s->kv, &gp, &s->g) != TW_OK) return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    return CLI_OK;
}

int gen_session_tokenize(gen_session *s, const char *cmd, const char *text, tw_tokens *out) {
    if (tw_tokenizer_encode(s->tok, text, strlen(text), TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL,
                            out) != TW_OK)
        return cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    return CLI_OK;
}

void gen_session_request(const gen_session *s, const gen_opts *o, const tw_tokens *prompt,
                         tw_gen_request *r) {
    memset(r, 0, sizeof *r);
    r->prompt = prompt->ids;
    r->n_prompt = (int32_t)prompt->n;
    r->sampling = o->sampling;
    r->max_tokens = (int32_t)o->n_predict;
    r->stop = o->stops;
    r->n_stop = o->n_stops;
    r->stop_tokens = s->stop_tokens;
    r->n_stop_tokens = s->n_stop_tokens;
    r->ignore_eos = o->ignore_eos;
}

void gen_session_close(gen_session *s) {
    tw_gen_free(s->g);
    tw_kv_cache_free(s->kv);
    tw_chat_template_free(s->tmpl);
    tw_model_free(s->m);
    lora_set_free(s->lora);
    tw_backend_free(s->be);
    memset(s, 0, sizeof *s);
}

void gen_print_stats(const char *cmd, const tw_gen_stats *st, tw_stop_reason why,
                     const gen_opts *o) {
    fprintf(stderr,
            "twin %s: prompt %d tokens (%d cached) in %.3f s, %.1f tok/s; generated %d tokens "
            "in %.3f s, %.1f tok/s; stop %s; seed %llu\n",
            cmd, st->n_prompt, st->n_prompt_cached, st->prompt_s, st->prompt_tok_s, st->n_gen,
            st->gen_s, st->gen_tok_s, tw_stop_reason_name(why),
            (unsigned long long)o->sampling.seed);
}
