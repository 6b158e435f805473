/* cmd_train.c: twin train: LoRA (or, with --full, full) fine-tuning of a llama-family or GPT-2
 * model on an SFT or preference (DPO) JSONL dataset (engine/train.h), with checkpoints,
 * bit-identical resume, held-out evaluation and run tracking in the warehouse (wh_trun_*).
 *
 * Files under --out DIR:
 *   checkpoints/ckpt-<step>.twck   every --save-every steps and at the end (newest 3 kept)
 *   adapter/                       the PEFT adapter (adapter_config.json + safetensors)
 *   adapter.gguf                   the same as a llama.cpp GGUF LoRA (f32)
 *                                  (both rewritten at every checkpoint and at the end)
 *   model.gguf                     --full: the whole trained model (--out-type f32|f16),
 *                                  instead of the adapter files (rewritten likewise)
 *   checkpoints/ref-logps.twck     DPO: the reference log-probs, computed once (before the
 *                                  first update) and read back by --resume when they were
 *                                  made from the same reference model and data
 *   steps.jsonl                    one line per step {"step", "loss" (%.17g), "lr", ...}; a
 *                                  resumed run appends the steps after its checkpoint again
 * A run that stops on a non-finite loss keeps its last good checkpoint and says why. */
#include "checkpoint.h"
#include "cli.h"
#include "cli_warehouse.h"
#include "comm.h"
#include "dataset.h"
#include "fullft.h"
#include "gguf.h"
#include "json.h"
#include "lora.h"
#include "model.h"
#include "train.h"
#include "train_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin train -m BASE --data FILE.jsonl [options]\n\n"
            "Fine-tunes LoRA adapters on a frozen base model (llama family: llama, mistral,\n"
            "smollm2, qwen2; and gpt2), or every weight with --full, with\n"
            "supervised examples, or with preference pairs (--dpo).\n"
            "  -m BASE              a GGUF file / HF folder / name from twin model fetch; the base\n"
            "                       stays in its stored type (native QLoRA on a quantized GGUF)\n"
            "  --data FILE          JSONL: alpaca, sharegpt, messages, or prompt/chosen/rejected\n"
            "  --dpo                preference data, DPO loss (--beta 0.1)\n"
            "  --ref-from BASE      DPO reference model (default: the base without adapters)\n"
            "  --lora-r 16 --lora-alpha 32 --lora-targets all --lora-dropout 0 --rslora\n"
            "  --full               full fine-tuning: every weight trained in f32 (small models:\n"
            "                       20 bytes a parameter; refused above 1.5e9 parameters); the\n"
            "                       base must be a GGUF; writes DIR/model.gguf; no LoRA options\n"
            "  --out-type f32|f16   --full: the type of the model's matrices (default f32)\n"
            "  --qlora native|nf4   native (default): the base's own GGUF type; nf4: its seven\n"
            "                       projections re-quantized to NF4 (QLoRA's 4-bit NormalFloat,\n"
            "                       double quantization), the rest as stored\n"
            "  --lr 2e-4 --warmup 10 --schedule cosine|linear|constant --min-lr-ratio 0.1\n"
            "  --steps N | --epochs E   optimizer steps (default: 1 epoch)\n"
            "  --batch-tokens 2048  tokens per optimizer step (whole examples)\n"
            "  --micro-batch 2048   tokens per micro-batch (gradient accumulation)\n"
            "  --max-len 512 --pack --recompute\n"
            "  --weight-decay 0 --clip 1.0\n"
            "  --eval-fraction 0.1 --eval-every 50 --save-every 50\n"
            "  --chat-template NAME (default: recognised from the model)\n"
            "  --out DIR            (default <workspace>/adapters/<name>)  --name NAME\n"
            "  --resume             continue from the latest checkpoint in DIR\n"
            "  --seed S             initialisation, split and shuffling (default 42)\n\n"
            "Prints one line per step (loss, lr, gradient norm, tokens/s, peak memory) and a\n"
            "summary; writes the adapter as PEFT (DIR/adapter) and GGUF (DIR/adapter.gguf); records\n"
            "the run in the warehouse (twin runs ls).\n\n"
            "exit status: 0 success, 1 runtime error (a bad file, a non-finite loss), 2 bad usage\n");
}

typedef struct {
    const char *model, *data, *ref_from, *targets, *schedule, *qlora, *tmpl, *out, *name;
    const char *out_type, *lora_opt; /* lora_opt: the first LoRA option given (for --full) */
    int dpo, rslora, pack, recompute, resume, full;
    long r, warmup, steps, batch_tokens, micro, max_len, eval_every, save_every, seed;
    double alpha, dropout, lr, epochs, eval_fraction, min_lr_ratio, wd, clip, beta;
} train_args;

static int parse_args(int argc, char **argv, train_args *a) {
    memset(a, 0, sizeof *a);
    a->targets = "all";
    a->schedule = "cosine";
    a->qlora = "native";
    a->r = 16;
    a->alpha = 32;
    a->lr = 2e-4;
    a->warmup = 10;
    a->batch_tokens = 2048;
    a->micro = 0;
    a->max_len = 512;
    a->eval_fraction = 0.1;
    a->eval_every = 50;
    a->save_every = 50;
    a->seed = 42;
    a->min_lr_ratio = 0.1;
    a->clip = 1.0;
    a->beta = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return -1;
        }
        if (!a->lora_opt && (!strncmp(argv[i], "--lora-", 7) || !strcmp(argv[i], "--rslora") ||
                             !strncmp(argv[i], "--qlora", 7)))
            a->lora_opt = argv[i];
#define STR(flag, field)                                                                      \
    if (cli_opt(argc, argv, &i, flag, &v)) {                                                  \
        if (!v) return cli_fail(CLI_USAGE, "train", flag " needs a value");                 \
        a->field = v;                                                                         \
        continue;                                                                             \
    }
#define INT(flag, field, lo, hi)                                                              \
    if (cli_opt(argc, argv, &i, flag, &v)) {                                                  \
        if (!v) return cli_fail(CLI_USAGE, "train", flag " needs a value");                 \
        if (cli_parse_int("train", flag, v, lo, hi, &a->field)) return CLI_USAGE;             \
        continue;                                                                             \
    }
#define DBL(flag, field)                                                                      \
    if (cli_opt(argc, argv, &i, flag, &v)) {                                                  \
        if (!v) return cli_fail(CLI_USAGE, "train", flag " needs a value");                 \
        if (cli_parse_double("train", flag, v, &a->field)) return CLI_USAGE;                  \
        continue;                                                                             \
    }
#define FLAG(flag, field)                                                                     \
    if (cli_flag(argv, i, flag)) {                                                            \
        a->field = 1;                                                                         \
        continue;                                                                             \
    }
        STR("-m", model) STR("--model", model) STR("--data", data) STR("--ref-from", ref_from)
        STR("--lora-targets", targets) STR("--schedule", schedule) STR("--qlora", qlora)
        STR("--chat-template", tmpl) STR("--out", out) STR("--name", name)
        FLAG("--dpo", dpo) FLAG("--rslora", rslora) FLAG("--pack", pack)
        FLAG("--recompute", recompute) FLAG("--resume", resume) FLAG("--full", full)
        STR("--out-type", out_type)
        INT("--lora-r", r, 1, 4096) INT("--warmup", warmup, 0, 100000000)
        INT("--steps", steps, 1, 1000000000) INT("--batch-tokens", batch_tokens, 2, 1 << 24)
        INT("--micro-batch", micro, 2, 1 << 24) INT("--max-len", max_len, 2, 1 << 20)
        INT("--eval-every", eval_every, 0, 1000000000) INT("--save-every", save_every, 0, 1000000000)
        INT("--seed", seed, 0, 0x7fffffffL)
        DBL("--lora-alpha", alpha) DBL("--lora-dropout", dropout) DBL("--lr", lr)
        DBL("--epochs", epochs) DBL("--eval-fraction", eval_fraction)
        DBL("--min-lr-ratio", min_lr_ratio) DBL("--weight-decay", wd) DBL("--clip", clip)
        DBL("--beta", beta)
        return cli_fail(CLI_USAGE, "train", "unexpected argument '%s' (see twin train --help)", argv[i]);
#undef STR
#undef INT
#undef DBL
#undef FLAG
    }
    if (!a->model || !a->data) {
        usage(stderr);
        return cli_fail(CLI_USAGE, "train", "-m BASE and --data FILE.jsonl are required");
    }
    if (a->full && a->lora_opt)
        return cli_fail(CLI_USAGE, "train", "%s is a LoRA option; --full trains every weight",
                        a->lora_opt);
    if (a->full && a->ref_from)
        return cli_fail(CLI_USAGE, "train", "--ref-from with --full: not supported (the reference "
                                            "is the initial weights)");
    if (a->out_type && !a->full)
        return cli_fail(CLI_USAGE, "train", "--out-type is for --full (adapters are written f32)");
    if (a->out_type && strcmp(a->out_type, "f32") && strcmp(a->out_type, "f16"))
        return cli_fail(CLI_USAGE, "train", "--out-type '%s': expected f32 or f16", a->out_type);
    if (!a->out_type) a->out_type = "f32";
    if (a->steps && a->epochs > 0)
        return cli_fail(CLI_USAGE, "train", "--steps and --epochs exclude each other");
    if (a->epochs < 0 || !isfinite(a->epochs))
        return cli_fail(CLI_USAGE, "train", "--epochs %g: expected a positive number", a->epochs);
    if (!(a->lr > 0) || !isfinite(a->lr)) return cli_fail(CLI_USAGE, "train", "--lr %g: expected > 0", a->lr);
    if (!(a->eval_fraction >= 0 && a->eval_fraction < 1))
        return cli_fail(CLI_USAGE, "train", "--eval-fraction %g: expected [0, 1)", a->eval_fraction);
    if (!(a->dropout >= 0 && a->dropout < 1))
        return cli_fail(CLI_USAGE, "train", "--lora-dropout %g: expected [0, 1)", a->dropout);
    if (!(a->beta > 0)) return cli_fail(CLI_USAGE, "train", "--beta %g: expected > 0", a->beta);
    if (!(a->min_lr_ratio >= 0 && a->min_lr_ratio <= 1))
        return cli_fail(CLI_USAGE, "train", "--min-lr-ratio %g: expected [0, 1]", a->min_lr_ratio);
    if (train_sched_parse(a->schedule) < 0)
        return cli_fail(CLI_USAGE, "train", "--schedule '%s': expected cosine, linear or constant", a->schedule);
    if (strcmp(a->qlora, "native") && strcmp(a->qlora, "nf4"))
        return cli_fail(CLI_USAGE, "train", "--qlora '%s': expected native or nf4", a->qlora);
    if (a->micro == 0) a->micro = a->batch_tokens;
    if (a->micro > a->batch_tokens) a->micro = a->batch_tokens;
    unsigned mask;
    if (lora_targets_parse(a->targets, &mask) != TW_OK) return cli_fail(CLI_USAGE, "train", "--lora-targets: %s", tw_errmsg());
    return CLI_OK;
}

/* The run's configuration as JSON (stored in the warehouse and in every checkpoint). */
static char *config_json(const train_args *a, const char *base, const char *ds_hash, int64_t total) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "{\"kind\":\"%s\",\"mode\":\"%s\",", a->dpo ? "dpo" : "sft",
                 a->full ? "full" : "lora");
    if (a->full) tw_sb_printf(&sb, "\"out_type\":\"%s\",", a->out_type);
    tw_sb_puts(&sb, "\"base\":");
    cli_json_text(&sb, base, strlen(base));
    tw_sb_printf(&sb, ",\"data\":");
    cli_json_text(&sb, a->data, strlen(a->data));
    tw_sb_printf(&sb, ",\"dataset_hash\":\"%s\",\"lora_r\":%ld,\"lora_alpha\":%.17g,"
                 "\"lora_targets\":", ds_hash, a->r, a->alpha);
    cli_json_text(&sb, a->targets, strlen(a->targets));
    tw_sb_printf(&sb, ",\"rslora\":%s,\"qlora\":\"%s\",\"lr\":%.17g,\"warmup\":%ld,\"schedule\":\"%s\","
                 "\"min_lr_ratio\":%.17g,\"steps\":%lld,\"batch_tokens\":%ld,\"micro_batch\":%ld,"
                 "\"max_len\":%ld,\"pack\":%s,\"recompute\":%s,\"eval_fraction\":%.17g,"
                 "\"weight_decay\":%.17g,\"clip\":%.17g,\"beta\":%.17g,\"seed\":%ld,\"threads\":%d}",
                 a->rslora ? "true" : "false", a->qlora, a->lr, a->warmup, a->schedule,
                 a->min_lr_ratio, (long long)total, a->batch_tokens, a->micro, a->max_len,
                 a->pack ? "true" : "false", a->recompute ? "true" : "false", a->eval_fraction,
                 a->wd, a->clip, a->dpo ? a->beta : 0.0, a->seed, tw_threads_get());
    return tw_sb_take(&sb);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_maxrss * 1024;
}

/* Data position <-> checkpoint's u64: epoch in the high 32 bits, index in the low 32. */
static uint64_t pos_pack(const ds_position *p) { return (p->epoch << 32) | (p->index & 0xffffffffu); }
static ds_position pos_unpack(uint64_t v) {
    ds_position p = {v >> 32, v & 0xffffffffu};
    return p;
}

typedef struct {
    wh_db *db;
    int64_t run_id;
    FILE *steps;
} run_log;

static int do_eval(trainer *t, ds_dataset *ds, const train_args *a, const double *ref_eval,
                   int64_t step, run_log *lg, double *out_loss) {
    double loss;
    trainer_step_stats s;
    if (trainer_eval(t, ds, (size_t)a->micro, (float)a->beta, ref_eval, &loss, &s) != TW_OK)
        return cli_fail_status("train");
    char metrics[256];
    if (a->dpo) {
        snprintf(metrics, sizeof metrics, "{\"reward_chosen\":%.6g,\"reward_rejected\":%.6g,"
                 "\"margin\":%.6g,\"accuracy\":%.6g}", s.reward_chosen, s.reward_rejected,
                 s.reward_margin, s.accuracy);
        printf("eval step %lld: dpo loss %.4f, accuracy %.3f, margin %.4f\n", (long long)step, loss,
               s.accuracy, s.reward_margin);
    } else {
        snprintf(metrics, sizeof metrics, "{\"tokens\":%lld,\"perplexity\":%.6g}",
                 (long long)s.n_loss_tokens, exp(loss));
        printf("eval step %lld: loss %.4f (perplexity %.2f, %lld tokens)\n", (long long)step, loss,
               exp(loss), (long long)s.n_loss_tokens);
    }
    fflush(stdout);
    if (lg->db && wh_trun_log_eval(lg->db, lg->run_id, step, "eval", loss, metrics) != TW_OK)
        tw_log_warn("train: could not record the evaluation: %s", tw_errmsg());
    if (out_loss) *out_loss = loss;
    return CLI_OK;
}

/* Writes the adapter as PEFT (<out>/adapter) and GGUF (<out>/adapter.gguf), atomically each. */
static tw_status save_adapter(const lora_set *s, const char *out) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/adapter", out);
    char *pd = tw_sb_take(&sb);
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/adapter.gguf", out);
    char *pg = tw_sb_take(&sb);
    tw_status st = pd && pg ? lora_save_peft(s, pd) : tw_error(TW_ERR_NOMEM, "out of memory");
    if (st == TW_OK) st = lora_save_gguf(s, pg, TW_DTYPE_F32);
    tw_free(pg);
    tw_free(pd);
    return st;
}

/* <out>/model.gguf (--full), written atomically from the base GGUF's metadata. */
static tw_status save_model(const fullft_set *f, const char *base_path, const char *out,
                            const char *out_type) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/model.gguf", out);
    char *pm = tw_sb_take(&sb);
    tw_status st = pm ? fullft_save_gguf(f, base_path, pm, strcmp(out_type, "f16") ? TW_DTYPE_F32
                                                                                  : TW_DTYPE_F16)
                      : tw_error(TW_ERR_NOMEM, "out of memory");
    tw_free(pm);
    return st;
}

/* What a run trains: adapters, or (--full) every weight. */
typedef struct {
    lora_set *s;
    fullft_set *f;
    const char *base_path, *out_type;
} trained;

/* A checkpoint of step, and the adapter files (or the model) as they are at this step. */
static int save_ckpt(const char *ckdir, const char *out, const trained *tr, ds_dataset *ds,
                     int64_t step, const char *cfg, const char *base_hash) {
    ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = step;
    ds_position p;
    ds_position_get(ds, DS_SPLIT_TRAIN, &p);
    meta.data_pos = pos_pack(&p);
    snprintf(meta.base_sha256, sizeof meta.base_sha256, "%s", base_hash);
    meta.config_json = cfg;
    if (tr->f ? ckpt_save_full(ckdir, &meta, tr->f, 3, NULL) != TW_OK ||
                    save_model(tr->f, tr->base_path, out, tr->out_type) != TW_OK
              : ckpt_save_lora(ckdir, &meta, tr->s, 3, NULL) != TW_OK || save_adapter(tr->s, out) != TW_OK)
        return cli_fail_status("train");
    return CLI_OK;
}

/* ---- DPO reference log-probs, cached in the checkpoint folder ------------------------------
 * Computed once per run (LoRA: the base without adapters; --full: the initial weights, before
 * the first update; --ref-from: that model) and written to <ckdir>/ref-logps.twck (a
 * checkpoint file: magic, checksum, atomic write) with the key they depend on: the reference
 * model's content hash, the dataset's hash, the split sizes, max_len and the template. A
 * --resume reads them back when the key matches, so a full fine-tuning run never takes its
 * references from weights it has already changed. */

static char *ref_cache_path(const char *ckdir) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/ref-logps.twck", ckdir);
    return tw_sb_take(&sb);
}

static char *ref_cache_key(const char *ref_hash, const char *ds_hash, size_t nt, size_t ne,
                           long max_len, const char *tmpl, int full) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "{\"ref_sha256\":\"%s\",\"dataset_hash\":\"%s\",\"n_train\":%zu,"
                 "\"n_eval\":%zu,\"max_len\":%ld,\"template\":", ref_hash, ds_hash, nt, ne, max_len);
    cli_json_text(&sb, tmpl, strlen(tmpl));
    tw_sb_printf(&sb, ",\"mode\":\"%s\"}", full ? "full" : "lora");
    return tw_sb_take(&sb);
}

/* 1: the cache at path holds refs for key (copied into rt (2 nt), re (2 ne)); 0: absent or for
 * another key (a damaged file is reported and ignored). */
static int ref_cache_load(const char *path, const char *key, double *rt, size_t nt, double *re,
                          size_t ne) {
    if (access(path, F_OK) != 0) return 0;
    ckpt *c = NULL;
    if (ckpt_open(path, &c) != TW_OK) {
        tw_log_warn("train: %s", tw_errmsg());
        return 0;
    }
    const ckpt_meta *cm = ckpt_get_meta(c);
    const ckpt_blob *bt = ckpt_find_blob(c, "ref.train"), *be = ckpt_find_blob(c, "ref.eval");
    int ok = cm->config_json && !strcmp(cm->config_json, key) && bt && be &&
             bt->nbytes == 2 * nt * sizeof(double) && be->nbytes == 2 * ne * sizeof(double);
    if (ok) {
        memcpy(rt, bt->data, bt->nbytes);
        memcpy(re, be->data, be->nbytes);
    }
    ckpt_close(c);
    return ok;
}

static tw_status ref_cache_save(const char *ckdir, const char *path, const char *key,
                                const char *ref_hash, const double *rt, size_t nt,
                                const double *re, size_t ne) {
    tw_status st = tw_mkdir_p(ckdir);
    if (st) return st;
    ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.base_sha256, sizeof meta.base_sha256, "%s", ref_hash);
    meta.config_json = key;
    ckpt_blob blobs[2] = {{"ref.train", rt, 2 * nt * sizeof(double)},
                          {"ref.eval", re, 2 * ne * sizeof(double)}};
    return ckpt_write(path, &meta, NULL, blobs, 2);
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? CLI_OK : rc;
    comm_ctx *cc = NULL;
    if (comm_init(&cc) != TW_OK) return cli_fail_status("train");
    const int root = comm_rank(cc) == 0, n_ranks = comm_size(cc);
    if (!root && !freopen("/dev/null", "w", stdout)) return cli_fail(CLI_ERR, "train", "cannot silence rank %d", comm_rank(cc));
    char *base_path = cli_resolve_model("train", a.model), *ref_path = NULL;
    if (!base_path) {
        comm_finalize(cc);
        return CLI_ERR;
    }
    if (a.full) { /* the trained model is written from the base GGUF's metadata */
        gguf_file *g = gguf_open(base_path);
        if (!g) {
            int r = cli_fail(CLI_USAGE, "train", "--full: %s: the base must be a GGUF file (the "
                             "trained model is written as one): %s", base_path, tw_errmsg());
            tw_free(base_path);
            comm_finalize(cc);
            return r;
        }
        gguf_close(g);
    }
    tw_backend *be = NULL;
    tw_model *m = NULL, *ref_m = NULL;
    tw_chat_template *tpl = NULL;
    ds_dataset *ds = NULL;
    lora_set *s = NULL;
    fullft_set *f = NULL;
    trainer *t = NULL, *rt = NULL;
    ckpt *ck = NULL;
    char *out = NULL, *ckdir = NULL, *cfg = NULL, *ck_path = NULL, *name = NULL, *rc_path = NULL,
         *rc_key = NULL;
    double *ref_train = NULL, *ref_eval = NULL;
    run_log lg = {NULL, 0, NULL};
    const char *fail_status = "failed";
    lora_base base;
    rc = CLI_OK;
#define FAIL()                                                                                \
    do {                                                                                      \
        rc = cli_fail_status("train");                                                        \
        goto done;                                                                            \
    } while (0)
    if (tw_backend_open("cpu", &be) != TW_OK || tw_model_load(base_path, be, NULL, &m) != TW_OK) FAIL();
    /* --qlora nf4: the frozen projections become NF4 (model_convert.c); the GGUF pages they
     * came from are given back, the adapter still names the GGUF as its base */
    if (!strcmp(a.qlora, "nf4") && tw_model_proj_convert(m, TW_DTYPE_NF4) != TW_OK) {
        tw_error_wrap("--qlora nf4");
        FAIL();
    }
    if (lora_base_from_model(m, &base) != TW_OK || lora_model_hash(base_path, base.sha256) != TW_OK) FAIL();
    const char *jinja = tw_model_chat_template(m);
    if (a.tmpl ? tw_chat_template_from_name_for(a.tmpl, jinja, &tpl) != TW_OK
               : (jinja ? tw_chat_template_detect(jinja, &tpl) != TW_OK
                        : tw_chat_template_from_name("chatml", &tpl) != TW_OK))
        FAIL();
    ds_opts dopt;
    ds_opts_default(&dopt);
    dopt.max_len = (size_t)a.max_len;
    dopt.eval_fraction = a.eval_fraction;
    dopt.split_seed = (uint64_t)a.seed;
    dopt.shuffle_seed = (uint64_t)a.seed;
    dopt.pack = a.pack && !a.dpo;
    dopt.lineage = base.sha256;
    if (a.dpo) dopt.format = DS_FORMAT_PREFERENCE;
    if (ds_open(a.data, tw_model_tokenizer(m), tpl, &dopt, &ds) != TW_OK) FAIL();
    const ds_stats *dst = ds_get_stats(ds);
    if (!a.dpo && ds_get_kind(ds) == DS_KIND_PREFERENCE) {
        rc = cli_fail(CLI_USAGE, "train", "%s: preference pairs (prompt/chosen/rejected): pass --dpo", a.data);
        goto done;
    }
    fprintf(stderr, "dataset %s: %zu examples (%zu train, %zu eval), %zu tokens, %zu loss tokens, "
            "%zu bad lines, %zu truncated; template %s\n", a.data, dst->n_examples, dst->n_train,
            dst->n_eval, dst->n_tokens, dst->n_loss_tokens, dst->n_bad, dst->n_truncated,
            tw_chat_template_name(tpl));
    if (dst->n_bad) fprintf(stderr, "  first bad line %zu: %s\n", dst->bad_lines[0], dst->bad_reason);
    /* steps: given, or epochs x batches per epoch (counted on epoch 0's order) */
    int64_t total = a.steps;
    if (!total) {
        ds_batch cb;
        ds_batch_init(&cb);
        int64_t per_epoch = 0;
        ds_position zero = {0, 0};
        for (int end = 0; !end; per_epoch++) {
            if (ds_next_batch(ds, DS_SPLIT_TRAIN, (size_t)a.batch_tokens, 0, &cb) != TW_OK) {
                ds_batch_free(&cb);
                FAIL();
            }
            end = cb.epoch_end;
        }
        ds_batch_free(&cb);
        if (ds_position_set(ds, DS_SPLIT_TRAIN, &zero) != TW_OK) FAIL();
        double ep = a.epochs > 0 ? a.epochs : 1.0;
        total = (int64_t)ceil(ep * (double)per_epoch);
        if (total < 1) total = 1;
    }
    /* output folder */
    if (a.name) name = tw_strdup(a.name);
    else {
        char nb[64];
        snprintf(nb, sizeof nb, "%s-%lld", a.dpo ? "dpo" : "sft", (long long)time(NULL));
        name = tw_strdup(nb);
    }
    if (a.out) out = tw_strdup(a.out);
    else {
        char sub[300];
        snprintf(sub, sizeof sub, "%s/%s", a.full ? "finetuned" : "adapters", name);
        out = cli_workspace_path(sub);
    }
    if (!out || !name) {
        rc = cli_fail(CLI_ERR, "train", "out of memory");
        goto done;
    }
    if (a.resume && !a.out) {
        rc = cli_fail(CLI_USAGE, "train", "--resume needs --out DIR (the run to continue)");
        goto done;
    }
    {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s/checkpoints", out);
        ckdir = tw_sb_take(&sb);
    }
    if (tw_mkdir_p(out) != TW_OK) FAIL();
    cfg = config_json(&a, base_path, ds_content_hash(ds), total);
    int64_t step = 0;
    int64_t resumed_run = 0;
    lora_config lc;
    lora_config_default(&lc);
    lc.rank = (int32_t)a.r;
    lc.alpha = (float)a.alpha;
    lc.dropout = (float)a.dropout;
    lc.use_rslora = a.rslora;
    lc.seed = (uint64_t)a.seed;
    if (lora_targets_parse_for(a.targets, &base, &lc.targets) != TW_OK) FAIL();
    if (a.resume) {
        if (ckpt_latest(ckdir, &ck_path) != TW_OK) FAIL();
        if (ckpt_open(ck_path, &ck) != TW_OK) FAIL();
        if (a.full ? fullft_set_new(m, &f) != TW_OK || ckpt_restore_full(ck, f) != TW_OK
                   : ckpt_restore_lora(ck, be, &base, &s) != TW_OK)
            FAIL();
        const ckpt_meta *cm = ckpt_get_meta(ck);
        tw_json *old = tw_json_parse(cm->config_json, strlen(cm->config_json), ck_path);
        const char *oh = old ? tw_json_get_str(old, "dataset_hash", "") : "";
        if (strcmp(oh, ds_content_hash(ds)) != 0) {
            tw_json_free(old);
            rc = cli_fail(CLI_ERR, "train", "%s: made on another dataset (hash %.12s, now %.12s)",
                          ck_path, oh, ds_content_hash(ds));
            goto done;
        }
        resumed_run = old ? (int64_t)tw_json_get_num(old, "run_id", 0) : 0;
        tw_json_free(old);
        step = cm->step;
        ds_position p = pos_unpack(cm->data_pos);
        if (ds_position_set(ds, DS_SPLIT_TRAIN, &p) != TW_OK) FAIL();
        fprintf(stderr, "resuming from %s (step %lld)\n", ck_path, (long long)step);
    } else if (a.full ? fullft_set_new(m, &f) != TW_OK : lora_set_new(be, &base, &lc, &s) != TW_OK) {
        FAIL();
    }
    int64_t max_tokens = a.micro > a.max_len * (a.dpo ? 2 : 1) ? a.micro : a.max_len * (a.dpo ? 2 : 1);
    trainer_opts to = {max_tokens, a.recompute};
    if (f ? trainer_new_full(m, f, &to, &t) != TW_OK : trainer_new(m, s, &to, &t) != TW_OK) FAIL();
    trainer_set_comm(t, cc);
    if (root && f)
        fprintf(stderr, "%s: full fine-tuning: %d tensors, %lld trainable parameters (%s head), "
                "%.1f MiB of weights, gradients and moments; activations %.1f MiB for %lld "
                "tokens%s\n", base_path, (int)fullft_n_tensors(f), (long long)fullft_n_params(f),
                fullft_tied(f) ? "tied" : "untied",
                (double)fullft_n_floats(f) * 16.0 / 1048576.0,
                (double)trainer_act_bytes(t) / 1048576.0, (long long)max_tokens,
                a.recompute ? " (recompute)" : "");
    if (root && s) fprintf(stderr, "%s: %d adapters, %lld trainable parameters (rank %d, scale %g), activations "
            "%.1f MiB for %lld tokens%s\n", base_path, (int)lora_set_n_adapters(s),
            (long long)lora_set_n_params(s), (int)a.r, (double)lora_set_scale(s),
            (double)trainer_act_bytes(t) / 1048576.0, (long long)max_tokens,
            a.recompute ? " (recompute)" : "");
    if (a.dpo) {
        trainer *use = t;
        if (a.ref_from) {
            ref_path = cli_resolve_model("train", a.ref_from);
            if (!ref_path) {
                rc = CLI_ERR;
                goto done;
            }
            if (strcmp(ref_path, base_path) != 0) {
                if (tw_model_load(ref_path, be, NULL, &ref_m) != TW_OK) FAIL();
                if (!strcmp(a.qlora, "nf4") && tw_model_proj_convert(ref_m, TW_DTYPE_NF4) != TW_OK) {
                    tw_error_wrap("--qlora nf4");
                    FAIL();
                }
                if (trainer_new(ref_m, s, &to, &rt) != TW_OK) FAIL();
                use = rt;
            }
        }
        size_t nt = ds_count(ds, DS_SPLIT_TRAIN), ne = ds_count(ds, DS_SPLIT_EVAL);
        ref_train = tw_calloc(2 * nt + 1, sizeof *ref_train);
        ref_eval = tw_calloc(2 * ne + 1, sizeof *ref_eval);
        if (!ref_train || !ref_eval) {
            rc = cli_fail(CLI_ERR, "train", "out of memory");
            goto done;
        }
        char ref_hash[65];
        if (ref_m) {
            if (lora_model_hash(ref_path, ref_hash) != TW_OK) FAIL();
        } else {
            memcpy(ref_hash, base.sha256, sizeof ref_hash);
        }
        rc_path = ref_cache_path(ckdir);
        rc_key = ref_cache_key(ref_hash, ds_content_hash(ds), nt, ne, a.max_len,
                               tw_chat_template_name(tpl), a.full);
        if (!rc_path || !rc_key) {
            rc = cli_fail(CLI_ERR, "train", "out of memory");
            goto done;
        }
        if (step > 0 && ref_cache_load(rc_path, rc_key, ref_train, nt, ref_eval, ne)) {
            fprintf(stderr, "reference log-probs read from %s\n", rc_path);
        } else if (step > 0 && a.full) {
            rc = cli_fail(CLI_ERR, "train", "%s: the reference log-probs of the initial weights "
                          "are missing or were made for other data; a --full DPO run cannot "
                          "recompute them after its first update (start the run again)", rc_path);
            goto done;
        } else {
            double t0 = now_s();
            if (trainer_ref_logps(use, ds, DS_SPLIT_TRAIN, (size_t)max_tokens, ref_train) != TW_OK) FAIL();
            if (ne && trainer_ref_logps(use, ds, DS_SPLIT_EVAL, (size_t)max_tokens, ref_eval) != TW_OK) FAIL();
            fprintf(stderr, "reference log-probs of %zu pairs in %.1f s\n", nt + ne, now_s() - t0);
            if (root && ref_cache_save(ckdir, rc_path, rc_key, ref_hash, ref_train, nt, ref_eval, ne) != TW_OK)
                FAIL();
        }
    }
    /* run tracking: rank 0 writes every file and record; the others only compute */
    if (!root) goto train;
    if (cli_warehouse_open("train", &lg.db) != CLI_OK) {
        rc = CLI_ERR;
        goto done;
    }
    if (resumed_run > 0) {
        lg.run_id = resumed_run;
    } else {
        char host[256] = "unknown";
        gethostname(host, sizeof host - 1);
        wh_trun_in in = {name, a.dpo ? "dpo" : "sft", cfg, base_path, base.sha256, a.data,
                         ds_content_hash(ds), "twin " TWIN_VERSION, host};
        if (wh_trun_begin(lg.db, &in, &lg.run_id) != TW_OK) FAIL();
    }
    {
        /* the run id goes into the config the checkpoints carry, so --resume continues it */
        size_t cl = strlen(cfg);
        char *c2 = tw_malloc(cl + 48);
        if (!c2) {
            rc = cli_fail(CLI_ERR, "train", "out of memory");
            goto done;
        }
        memcpy(c2, cfg, cl - 1);
        snprintf(c2 + cl - 1, 48, ",\"run_id\":%lld}", (long long)lg.run_id);
        tw_free(cfg);
        cfg = c2;
    }
    {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s/steps.jsonl", out);
        char *sp = tw_sb_take(&sb);
        lg.steps = sp ? fopen(sp, "a") : NULL;
        if (!lg.steps) {
            rc = cli_fail(CLI_ERR, "train", "%s: cannot open for writing", sp ? sp : out);
            tw_free(sp);
            goto done;
        }
        tw_free(sp);
    }
train:
    printf("run %lld: %s, %lld steps, lr %g %s (warmup %ld), batch %ld tokens, micro-batch %ld, "
           "threads %d, ranks %d\n", (long long)lg.run_id, a.dpo ? "DPO" : "SFT", (long long)total,
           a.lr, a.schedule, a.warmup, a.batch_tokens, a.micro, tw_threads_get(), n_ranks);
    fflush(stdout);
    double eval_first = NAN, eval_last = NAN;
    int has_eval = ds_count(ds, DS_SPLIT_EVAL) > 0;
    if (has_eval && step == 0 && a.eval_every > 0) {
        if ((rc = do_eval(t, ds, &a, ref_eval, 0, &lg, &eval_first)) != CLI_OK) goto done;
    }
    const trained tr = {s, f, base_path, a.out_type};
    train_sched sched = {(train_sched_kind)train_sched_parse(a.schedule), a.lr, a.warmup, total,
                         a.min_lr_ratio};
    if (sched.warmup >= total) sched.warmup = total > 1 ? total - 1 : 0;
    if (train_sched_check(&sched) != TW_OK) FAIL();
    trainer_step_opts so;
    trainer_step_opts_default(&so);
    so.batch_tokens = (size_t)a.batch_tokens;
    so.micro_tokens = (size_t)a.micro;
    so.weight_decay = (float)a.wd;
    so.max_grad_norm = a.clip;
    so.dpo_beta = (float)a.beta;
    double t_start = now_s(), loss_first = NAN, loss_last = NAN;
    int64_t tokens_all = 0, step0 = step;
    while (step < total) {
        so.lr = train_lr_at(&sched, step);
        trainer_step_stats st;
        double t0 = now_s();
        tw_status s_st = trainer_step(t, ds, &so, step, ref_train, &st);
        if (s_st != TW_OK) {
            if (st.skipped)
                fprintf(stderr, "twin train: stopped at step %lld: %s; the last good checkpoint is in "
                        "%s\n", (long long)step + 1, tw_errmsg(), ckdir);
            rc = cli_fail_status("train");
            goto done;
        }
        double dt = now_s() - t0;
        step++;
        tokens_all += st.n_tokens;
        double tps = dt > 0 ? (double)st.n_tokens / dt : 0;
        int64_t mem = peak_rss_bytes();
        if (isnan(loss_first)) loss_first = st.loss;
        loss_last = st.loss;
        if (a.dpo)
            printf("step %lld/%lld loss %.4f acc %.2f margin %.3f lr %.3e grad_norm %.3f tok/s %.0f "
                   "mem %.0f MiB\n", (long long)step, (long long)total, st.loss, st.accuracy,
                   st.reward_margin, so.lr, st.grad_norm, tps, (double)mem / 1048576.0);
        else
            printf("step %lld/%lld loss %.4f lr %.3e grad_norm %.3f tok/s %.0f mem %.0f MiB\n",
                   (long long)step, (long long)total, st.loss, so.lr, st.grad_norm, tps,
                   (double)mem / 1048576.0);
        fflush(stdout);
        if (lg.steps) fprintf(lg.steps, "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,"
                "\"tokens\":%lld,\"tokens_per_s\":%.1f}\n", (long long)step, st.loss, so.lr,
                st.grad_norm, (long long)st.n_tokens, tps);
        if (lg.steps) fflush(lg.steps);
        wh_trun_step ws = {step, st.loss, so.lr, st.grad_norm, tps, mem, 0};
        if (lg.db && wh_trun_log_step(lg.db, lg.run_id, &ws) != TW_OK)
            tw_log_warn("train: could not record step %lld: %s", (long long)step, tw_errmsg());
        if (has_eval && a.eval_every > 0 && step % a.eval_every == 0 && step < total)
            if ((rc = do_eval(t, ds, &a, ref_eval, step, &lg, &eval_last)) != CLI_OK) goto done;
        if (root && a.save_every > 0 && step % a.save_every == 0 && step < total)
            if ((rc = save_ckpt(ckdir, out, &tr, ds, step, cfg, base.sha256)) != CLI_OK) goto done;
    }
    if (has_eval && (rc = do_eval(t, ds, &a, ref_eval, step, &lg, &eval_last)) != CLI_OK) goto done;
    if (!root) {
        fail_status = NULL;
        goto done;
    }
    if ((rc = save_ckpt(ckdir, out, &tr, ds, step, cfg, base.sha256)) != CLI_OK) goto done;
    {
        /* save_ckpt wrote the final adapter files (or the model) too */
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, f ? "%s/model.gguf" : "%s/adapter", out);
        char *pd = tw_sb_take(&sb);
        if (!pd) {
            rc = cli_fail(CLI_ERR, "train", "out of memory");
            goto done;
        }
        wh_trun_finish(lg.db, lg.run_id, "ok", pd, NULL);
        double el = now_s() - t_start;
        printf("done: %lld steps (%lld this session) in %.1f s, %.0f tokens/s; train loss %.4f -> "
               "%.4f", (long long)step, (long long)(step - step0), el,
               el > 0 ? (double)tokens_all / el : 0.0, loss_first, loss_last);
        if (has_eval && !isnan(eval_first)) printf("; held-out loss %.4f -> %.4f", eval_first, eval_last);
        else if (has_eval) printf("; held-out loss %.4f", eval_last);
        if (f)
            printf("\nmodel: %s (GGUF, %s); run %lld; peak memory %.0f MiB\n", pd, a.out_type,
                   (long long)lg.run_id, (double)peak_rss_bytes() / 1048576.0);
        else
            printf("\nadapter: %s (PEFT), %s.gguf (GGUF); run %lld; peak memory %.0f MiB\n", pd, pd,
                   (long long)lg.run_id, (double)peak_rss_bytes() / 1048576.0);
        tw_free(pd);
    }
    fail_status = NULL;
done:
    if (lg.db && lg.run_id && fail_status)
        wh_trun_finish(lg.db, lg.run_id, fail_status, NULL, tw_errmsg());
    if (lg.steps) fclose(lg.steps);
    if (lg.db) wh_close(lg.db);
    tw_free(ref_train);
    tw_free(ref_eval);
    trainer_free(t);
    trainer_free(rt);
    lora_set_free(s);
    fullft_set_free(f);
    ckpt_close(ck);
    ds_free(ds);
    tw_chat_template_free(tpl);
    tw_model_free(ref_m);
    tw_model_free(m);
    tw_backend_free(be);
    tw_free(base_path);
    tw_free(ref_path);
    tw_free(out);
    tw_free(ckdir);
    tw_free(cfg);
    tw_free(ck_path);
    tw_free(name);
    tw_free(rc_path);
    tw_free(rc_key);
    if (rc != CLI_OK && n_ranks > 1) comm_abort(cc, rc); /* the other ranks must not wait */
    comm_finalize(cc);
    return rc;
#undef FAIL
}
