/* test_train_dropout: LoRA dropout in the llama training step (train.h, trainer_set_dropout),
 * on a tiny random llama (2 layers, n_embd 32, grouped-query heads, rank 4 on all seven
 * projections, B non-zero so that every path carries gradient):
 *   - with p = 0.3 the backward agrees with central finite differences of the float32 loss
 *     under the same masks, on the largest coordinate of every adapter's A and B;
 *   - a set with p = 0 gives the bits of dropout switched off (the op is skipped), and
 *     dropout off gives the no-dropout loss whatever p is (evaluation sees no mask);
 *   - p > 0 changes the loss, and another step number gives another mask;
 *   - the mask follows the token counters: the batch as two micro-batches numbered by their
 *     offsets gives the gradient of one micro-batch (to float32 summation order) and each
 *     example's token losses as in the whole batch; thread counts give the same bits;
 *   - repeated runs give the same bits. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernel_inputs.h"
#include "kernels.h"
#include "lora.h"
#include "lora_fd.h"
#include "model.h"
#include "test.h"
#include "tiny_llama.h"
#include "train.h"

enum { NT = 40 };

static kin_rng rng = {0x74666561};

static tw_backend *be;
static tw_model *model;
static int32_t b_tok[NT], b_tgt[NT], b_pos[NT], b_seg[NT];
static size_t b_ex[3] = {0, 17, NT};

static void make_batch(int64_t vocab) {
    for (int i = 0; i < NT; i++) {
        int e = i >= (int)b_ex[1];
        b_tok[i] = (int32_t)(kin_next(&rng) % (uint64_t)vocab);
        b_pos[i] = i - (int)b_ex[e];
        b_seg[i] = e;
    }
    for (int i = 0; i < NT; i++) {
        int e = i >= (int)b_ex[1], last = i + 1 == (int)b_ex[e + 1];
        b_tgt[i] = last || b_pos[i] < 3 ? -1 : b_tok[i + 1]; /* a prompt of 3 tokens: no loss */
    }
}

static int64_t n_loss(size_t t0, size_t t1) {
    int64_t k = 0;
    for (size_t i = t0; i < t1; i++) k += b_tgt[i] >= 0;
    return k;
}

/* A set of rank 4 on all modules with dropout p, its B filled with small random values. */
static lora_set *make_set(float p, float **params) {
    lora_base base;
    CHECK(lora_base_from_model(model, &base) == TW_OK);
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 4;
    cfg.alpha = 8;
    cfg.dropout = p;
    cfg.targets = LORA_ALL_MODULES;
    cfg.seed = 7;
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &base, &cfg, &s) == TW_OK);
    if (!s) exit(1);
    size_t nf = lora_set_n_floats(s);
    float *h = calloc(nf, 4);
    CHECK(lora_set_download(s, LORA_PARAM, h) == TW_OK);
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        kin_fill(&rng, h + a->b_off, a->out * a->rank, 0.3f);
    }
    CHECK(lora_set_upload(s, LORA_PARAM, h) == TW_OK);
    if (params) *params = h;
    else free(h);
    return s;
}

/* Forward + loss (+ backward into g) of tokens [t0, t1) of the batch (whole examples), with
 * dropout (on, step, tok0 = t0 + shift). Returns the summed token loss / the batch's loss
 * tokens; tok_loss (t1 - t0) may be NULL. */
static double run(trainer *t, lora_set *s, size_t e0, size_t e1, int on, int64_t step, float *g,
                  float *tok_loss, int zero) {
    size_t t0 = b_ex[e0], t1 = b_ex[e1], ex[3];
    for (size_t e = e0; e <= e1; e++) ex[e - e0] = b_ex[e] - t0;
    trainer_batch b = {(int64_t)(t1 - t0), b_tok + t0, b_tgt + t0, b_pos + t0, b_seg + t0,
                       (int64_t)(e1 - e0), ex};
    float scale[2], tl[NT];
    scale[0] = scale[1] = 1.0f / (float)n_loss(0, NT);
    if (zero) CHECK(lora_set_zero(s, LORA_GRAD) == TW_OK);
    trainer_set_dropout(t, on, step, (int64_t)t0);
    CHECK(trainer_forward(t, &b) == TW_OK);
    CHECK(trainer_loss(t, g ? scale : NULL, tok_loss ? tok_loss : tl) == TW_OK);
    if (g) {
        CHECK(trainer_backward(t) == TW_OK);
        CHECK(lora_set_download(s, LORA_GRAD, g) == TW_OK);
    }
    double sum = 0;
    for (size_t i = 0; i < t1 - t0; i++) sum += (tok_loss ? tok_loss : tl)[i];
    return sum / (double)n_loss(0, NT);
}

typedef struct {
    trainer *t;
    lora_set *s;
} fd_ctx;

/* The loss of the fd batch (both examples, dropout on at step 5) for lora_fd_worst. */
static double fd_loss(void *ctx) {
    fd_ctx *c = ctx;
    return run(c->t, c->s, 0, 2, 1, 5, NULL, NULL, 0);
}

static void test_fd(void) {
    float *params = NULL;
    lora_set *s = make_set(0.3f, &params);
    size_t nf = lora_set_n_floats(s);
    trainer_opts o = {NT, 0};
    trainer *t = NULL;
    CHECK(trainer_new(model, s, &o, &t) == TW_OK);
    if (!t) return;
    float *g = calloc(nf, 4);
    run(t, s, 0, 2, 1, 5, g, NULL, 1);
    fd_ctx c = {t, s};
    int checked;
    double worst = lora_fd_worst(s, params, g, fd_loss, &c, "dropout", &checked);
    printf("dropout p=0.3 finite differences: %d coordinates, worst relative error %.3g\n", checked,
           worst);
    free(g), free(params);
    trainer_free(t);
    lora_set_free(s);
}

static void test_bits(void) {
    /* p = 0: dropout on gives the bits of dropout off */
    float *params0 = NULL, *params3 = NULL;
    uint64_t save = rng.s;
    lora_set *s0 = make_set(0.0f, &params0);
    rng.s = save;
    lora_set *s3 = make_set(0.3f, &params3);
    size_t nf = lora_set_n_floats(s0);
    CHECK(memcmp(params0, params3, nf * 4) == 0); /* the same adapters, only p differs */
    trainer_opts o = {NT, 0};
    trainer *t0 = NULL, *t3 = NULL;
    CHECK(trainer_new(model, s0, &o, &t0) == TW_OK);
    CHECK(trainer_new(model, s3, &o, &t3) == TW_OK);
    if (!t0 || !t3) return;
    float *ga = calloc(nf, 4), *gb = calloc(nf, 4), tla[NT], tlb[NT];
    double la = run(t0, s0, 0, 2, 0, 1, ga, tla, 1);
    double lb = run(t0, s0, 0, 2, 1, 1, gb, tlb, 1);
    CHECK(la == lb);
    CHECK(memcmp(ga, gb, nf * 4) == 0);
    /* p = 0.3 with dropout off: the no-dropout loss (evaluation, references) */
    double lc = run(t3, s3, 0, 2, 0, 1, gb, tlb, 1);
    CHECK(lc == la);
    CHECK(memcmp(ga, gb, nf * 4) == 0);
    /* on: another loss; the same step again: the same bits; another step: another mask */
    float *gc = calloc(nf, 4), tlc[NT];
    double l1 = run(t3, s3, 0, 2, 1, 1, gb, tlb, 1);
    CHECK(l1 != la);
    double l1b = run(t3, s3, 0, 2, 1, 1, gc, tlc, 1);
    CHECK(l1 == l1b);
    CHECK(memcmp(gb, gc, nf * 4) == 0);
    double l2 = run(t3, s3, 0, 2, 1, 2, gc, tlc, 1);
    CHECK(l2 != l1);
    /* threads and recompute: the same bits */
    int th = tw_threads_get();
    tw_threads_set(th == 1 ? 3 : 1);
    CHECK(run(t3, s3, 0, 2, 1, 1, gc, tlc, 1) == l1);
    CHECK(memcmp(gb, gc, nf * 4) == 0);
    tw_threads_set(th);
    trainer *tr = NULL;
    trainer_opts orc = {NT, 1};
    CHECK(trainer_new(model, s3, &orc, &tr) == TW_OK);
    if (tr) {
        CHECK(run(tr, s3, 0, 2, 1, 1, gc, tlc, 1) == l1);
        CHECK(memcmp(gb, gc, nf * 4) == 0);
    }
    trainer_free(tr);
    /* two micro-batches numbered by their offsets: the same masks */
    float tl2[NT];
    CHECK(lora_set_zero(s3, LORA_GRAD) == TW_OK);
    run(t3, s3, 0, 1, 1, 1, NULL, tl2, 0);
    for (size_t i = 0; i < b_ex[1]; i++) CHECK_NEAR(tl2[i], tlb[i], 1e-5 * (1 + fabs(tlb[i])));
    run(t3, s3, 1, 2, 1, 1, NULL, tl2, 0);
    for (size_t i = b_ex[1]; i < NT; i++)
        CHECK_NEAR(tl2[i - b_ex[1]], tlb[i], 1e-5 * (1 + fabs(tlb[i])));
    CHECK(lora_set_zero(s3, LORA_GRAD) == TW_OK);
    run(t3, s3, 0, 1, 1, 1, NULL, NULL, 0);
    run(t3, s3, 0, 1, 1, 1, gc, NULL, 0); /* accumulates: forward + backward once */
    CHECK(lora_set_zero(s3, LORA_GRAD) == TW_OK);
    run(t3, s3, 0, 1, 1, 1, gc, NULL, 0);
    run(t3, s3, 1, 2, 1, 1, gc, NULL, 0);
    double mx = 0, err = 0;
    for (size_t k = 0; k < nf; k++) {
        if (fabs(gb[k]) > mx) mx = fabs(gb[k]);
        if (fabs(gb[k] - gc[k]) > err) err = fabs(gb[k] - gc[k]);
    }
    CHECK(mx > 0);
    CHECK(err <= 1e-5 * mx);
    printf("dropout: loss %.6f without, %.6f with p=0.3 (step 1), %.6f (step 2); split "
           "micro-batches within %.2g of the gradient's scale\n", la, l1, l2, err / mx);
    free(ga), free(gb), free(gc), free(params0), free(params3);
    trainer_free(t0);
    trainer_free(t3);
    lora_set_free(s0);
    lora_set_free(s3);
}

int main(void) {
    char tmpdir[] = "/tmp/test_train_dropout.XXXXXX";
    if (!mkdtemp(tmpdir)) return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.gguf", tmpdir);
    if (tiny_llama_write(path, 0, &rng)) return 1;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    CHECK(tw_model_load(path, be, NULL, &model) == TW_OK);
    if (!model) return fprintf(stderr, "%s\n", tw_errmsg()), 1;
    make_batch(tw_model_get_hparams(model)->n_vocab);
    RUN(test_fd);
    RUN(test_bits);
    tw_model_free(model);
    tw_backend_free(be);
    unlink(path);
    rmdir(tmpdir);
    TEST_DONE();
}
