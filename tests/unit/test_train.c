/* test_train: the llama training step of engine/train.c on a tiny random llama (2 layers,
 * n_embd 32, grouped-query heads, LoRA rank 4 on all seven projections):
 *   - golden: the loss, every token's loss and every LoRA gradient of one packed batch equal
 *     an independent float64 numpy forward + backward (tools/gen_train_golden.py ->
 *     tests/data/train/) within float32 accumulation bounds;
 *   - finite differences of the whole model (float32 losses, central differences) agree with
 *     the backward on the largest coordinates of every adapter, for SFT and for DPO;
 *   - recompute gives the same bits; repeated runs and 1 vs 2 threads give the same bits;
 *   - packed examples do not see each other (each alone has the same token losses);
 *   - gradient accumulation: two micro-batches with the batch's scale add up to one batch;
 *   - the DPO loss and its derivatives against hand values; argument errors.
 * `test_train --write-model PATH` writes the tiny llama GGUF (the CLI tests use it). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "gguf.h"
#include "json.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"
#include "test.h"
#include "tiny_llama.h"
#include "train.h"
#include "train_golden.h"

/* The tiny llama as a GGUF at path: the tokenizer metadata of the tiny GPT-2 fixture (288
 * tokens) and the golden weights. */
static int write_model(const char *path) {
    const tw_json *c = tw_json_get(gold, "config");
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_file *tf = tiny_tokenizer_copy(w);
    if (!tf) return gguf_writer_free(w), 1;
    gguf_writer_set_str(w, "general.name", "twin tiny llama (random weights, train golden)");
    tiny_llama_hparams_set(w, 64, (int)tw_json_get_num(c, "n_embd", 0),
                           (int)tw_json_get_num(c, "n_layer", 0), (int)tw_json_get_num(c, "n_ff", 0),
                           (int)tw_json_get_num(c, "n_head", 0),
                           (int)tw_json_get_num(c, "n_kv_head", 0),
                           (int)tw_json_get_num(c, "head_dim", 0),
                           (float)tw_json_get_num(c, "rope_theta", 0),
                           (float)tw_json_get_num(c, "norm_eps", 0));
    for (const tw_json *t = tw_json_first(tw_json_get(gold, "tensors")); t; t = tw_json_next(t)) {
        const char *name = tw_json_key(t);
        if (strncmp(name, "lora.", 5) == 0 || strncmp(name, "grad.", 5) == 0) continue;
        int64_t rows, cols;
        const float *p = gtensor(name, &rows, &cols);
        const tw_json *s1 = tw_json_next(tw_json_first(tw_json_get(t, "shape")));
        int64_t ne[2] = {s1 ? cols : rows, s1 ? rows : 1};
        gguf_writer_add_tensor(w, name, TW_DTYPE_F32, s1 ? 2 : 1, ne, p);
    }
    tw_status st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    gguf_close(tf);
    if (st != TW_OK) return fprintf(stderr, "%s\n", tw_errmsg()), 1;
    return 0;
}

static void setup(const char *tmpdir) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-llama.gguf", tmpdir);
    CHECK(write_model(path) == 0);
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    CHECK(tw_model_load(path, be, NULL, &model) == TW_OK);
    if (!model) {
        fprintf(stderr, "%s\n", tw_errmsg());
        exit(1);
    }
    lora_base base;
    CHECK(lora_base_from_model(model, &base) == TW_OK);
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 4;
    cfg.alpha = 8;
    cfg.dropout = 0;
    cfg.targets = LORA_ALL_MODULES;
    CHECK(lora_set_new(be, &base, &cfg, &set) == TW_OK);
    golden_set_fill();
}

static void test_dpo_loss(void) {
    double dc, dr;
    /* z = 0: loss log 2, d/dlc = beta/2, d/dlr = -beta/2 */
    CHECK_NEAR(trainer_dpo_loss(-3, -4, -3, -4, 0.1, &dc, &dr), log(2.0), 1e-15);
    CHECK_NEAR(dc, 0.05, 1e-15);
    CHECK_NEAR(dr, -0.05, 1e-15);
    /* z = beta * ((pc-rc) - (pr-rr)) = 0.5 * ((-1 - -2) - (-5 - -4)) = 0.5 * 2 = 1 */
    double l = trainer_dpo_loss(-1, -5, -2, -4, 0.5, &dc, &dr);
    CHECK_NEAR(l, log1p(exp(-1.0)), 1e-15);
    CHECK_NEAR(dc, 0.5 / (1 + exp(1.0)), 1e-15);
    CHECK_NEAR(dr, -0.5 / (1 + exp(1.0)), 1e-15);
    /* very wrong preference: no overflow */
    l = trainer_dpo_loss(-1000, 0, 0, 0, 1.0, &dc, &dr);
    CHECK_NEAR(l, 1000.0, 1e-9);
    CHECK_NEAR(dc, 1.0, 1e-12);
}

static void test_refusals(void) {
    trainer *t = NULL;
    trainer_opts o = {0, 0};
    CHECK(trainer_new(model, set, &o, &t) == TW_ERR_ARG && t == NULL);
    lora_base base;
    CHECK(lora_base_from_model(model, &base) == TW_OK);
    lora_config cfg;
    lora_config_default(&cfg); /* dropout 0.05 */
    cfg.rank = 2;
    lora_set *s2 = NULL;
    CHECK(lora_set_new(be, &base, &cfg, &s2) == TW_OK);
    o.max_tokens = 8;
    /* LoRA dropout is trained (test_train_full.c checks its gradients) */
    CHECK(trainer_new(model, s2, &o, &t) == TW_OK);
    trainer_free(t);
    lora_set_free(s2);
}

int main(int argc, char **argv) {
    golden_load("tiny-llama");
    if (argc == 3 && strcmp(argv[1], "--write-model") == 0) {
        int rc = write_model(argv[2]);
        tw_json_free(gold);
        free(gbin);
        return rc;
    }
    char tmpdir[] = "/tmp/test_train.XXXXXX";
    if (!mkdtemp(tmpdir)) return 1;
    setup(tmpdir);
    test_golden(0);
    fd_check(0);
    fd_check(1);
    test_dpo_loss();
    test_refusals();
    lora_set_free(set);
    tw_model_free(model);
    tw_backend_free(be);
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-llama.gguf", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    free(params);
    tw_json_free(gold);
    free(gbin);
    if (test_failures) fprintf(stderr, "test_train: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
