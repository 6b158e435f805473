/* train_golden.h: the half that test_train.c (the tiny llama) and test_train_gpt2.c (the tiny
 * GPT-2) share: the golden files of tools/gen_train_golden.py (tests/data/train/<stem>.json
 * and .bin, read from TWIN_TEST_DATA), a LoRA set filled with the golden A and B, the golden
 * packed batch of two examples, and the checks run on both architectures:
 *   - test_golden: the loss, every token's loss and every LoRA gradient against the golden
 *     ones; the same bits with recompute and another thread count; each packed example alone
 *     has the same token losses; two micro-batches add up to the batch; argument errors;
 *   - fd_check: central finite differences of the whole float32 model against the backward
 *     on the largest coordinate of every adapter's A and B, SFT (dpo 0) or DPO (dpo 1).
 * The including test calls golden_load(stem), makes be, model and set (lora_set_new) itself,
 * then golden_set_fill(). Each test that includes this has its own copy of the state below. */
#ifndef TWIN_TESTS_TRAIN_GOLDEN_H
#define TWIN_TESTS_TRAIN_GOLDEN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kernels.h"
#include "lora.h"
#include "lora_fd.h"
#include "model.h"
#include "test.h"
#include "train.h"

static tw_json *gold;
static float *gbin;
static size_t gbin_n;

/* The golden tensor called name: its floats, *n receives the count. */
static inline const float *gtensor(const char *name, int64_t *rows, int64_t *cols) {
    const tw_json *t = tw_json_get(tw_json_get(gold, "tensors"), name);
    if (!t) {
        fprintf(stderr, "golden tensor %s missing\n", name);
        exit(1);
    }
    const tw_json *shape = tw_json_get(t, "shape");
    const tw_json *s0 = tw_json_first(shape), *s1 = tw_json_next(s0);
    *rows = (int64_t)tw_json_num(s0, 0);
    *cols = s1 ? (int64_t)tw_json_num(s1, 0) : 1;
    size_t off = (size_t)tw_json_get_num(t, "offset", 0) / 4;
    if (off + (size_t)(*rows * *cols) > gbin_n) {
        fprintf(stderr, "golden tensor %s outside the .bin\n", name);
        exit(1);
    }
    return gbin + off;
}

/* The golden JSON and .bin of tests/data/train/<stem> into gold / gbin (exits on failure). */
static inline void golden_load(const char *stem) {
    const char *data = getenv("TWIN_TEST_DATA");
    if (!data) data = "tests/data";
    char path[1100];
    snprintf(path, sizeof path, "%.900s/train/%s.json", data, stem);
    gold = tw_json_parse_file(path);
    if (!gold) {
        fprintf(stderr, "%s\n", tw_errmsg());
        exit(1);
    }
    snprintf(path, sizeof path, "%.900s/train/%s.bin", data, stem);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    gbin_n = (size_t)sz / 4;
    gbin = malloc((size_t)sz);
    if (fread(gbin, 1, (size_t)sz, f) != (size_t)sz) exit(1);
    fclose(f);
}

static tw_backend *be;
static tw_model *model;
static lora_set *set;
static float *params;  /* host copy of the PARAM region with the golden A/B */
static size_t n_floats;

static const char *const mods[7] = {"q", "k", "v", "o", "gate", "up", "down"};

/* batch arrays from the golden JSON */
static int32_t b_tok[64], b_tgt[64], b_pos[64], b_seg[64];
static int64_t b_n;
static size_t b_ex[3];

static inline void read_ints(const char *key, int32_t *out) {
    int64_t i = 0;
    for (const tw_json *v = tw_json_first(tw_json_get(tw_json_get(gold, "batch"), key)); v;
         v = tw_json_next(v))
        out[i++] = (int32_t)tw_json_num(v, 0);
    b_n = i;
}

/* After the test made `set` (lora_set_new on `model`): params from it with every adapter's A
 * and B replaced by the golden ones (uploaded), and the golden batch into b_*. */
static inline void golden_set_fill(void) {
    n_floats = lora_set_n_floats(set);
    params = calloc(n_floats, sizeof(float));
    CHECK(lora_set_download(set, LORA_PARAM, params) == TW_OK);
    for (int32_t i = 0; i < lora_set_n_adapters(set); i++) {
        const lora_adapter *a = lora_set_adapter(set, i);
        char name[64];
        int64_t r, c;
        snprintf(name, sizeof name, "lora.%d.%s.A", (int)a->layer, mods[a->module]);
        const float *A = gtensor(name, &r, &c);
        CHECK(r == a->rank && c == a->in);
        memcpy(params + a->a_off, A, (size_t)(r * c) * 4);
        snprintf(name, sizeof name, "lora.%d.%s.B", (int)a->layer, mods[a->module]);
        const float *B = gtensor(name, &r, &c);
        CHECK(r == a->out && c == a->rank);
        memcpy(params + a->b_off, B, (size_t)(r * c) * 4);
    }
    CHECK(lora_set_upload(set, LORA_PARAM, params) == TW_OK);
    read_ints("tokens", b_tok);
    read_ints("targets", b_tgt);
    read_ints("pos", b_pos);
    read_ints("seg", b_seg);
    const tw_json *lens = tw_json_get(tw_json_get(gold, "batch"), "lens");
    b_ex[0] = 0;
    b_ex[1] = (size_t)tw_json_num(tw_json_first(lens), 0);
    b_ex[2] = (size_t)b_n;
}

static inline trainer_batch full_batch(void) {
    trainer_batch b = {b_n, b_tok, b_tgt, b_pos, b_seg, 2, b_ex};
    return b;
}

static inline int64_t n_loss_tokens(void) {
    int64_t k = 0;
    for (int64_t i = 0; i < b_n; i++) k += b_tgt[i] >= 0;
    return k;
}

/* forward + loss (+ backward) of the golden batch: returns the mean loss, grads in g (may be
 * NULL: no backward). */
static inline double run_sft(trainer *t, const trainer_batch *b, float *g, float *tok_loss) {
    float scale[2];
    scale[0] = scale[1] = 1.0f / (float)n_loss_tokens();
    float tl[64];
    if (!tok_loss) tok_loss = tl;
    CHECK(lora_set_zero(set, LORA_GRAD) == TW_OK);
    CHECK(trainer_forward(t, b) == TW_OK);
    CHECK(trainer_loss(t, g ? scale : NULL, tok_loss) == TW_OK);
    if (g) {
        CHECK(trainer_backward(t) == TW_OK);
        CHECK(lora_set_download(set, LORA_GRAD, g) == TW_OK);
    }
    double s = 0;
    for (int64_t i = 0; i < b->n; i++) s += tok_loss[i];
    return s / (double)n_loss_tokens();
}

/* The checks of one architecture's golden batch (see the top of this file). learned_positions:
 * the model's learned positions (GPT-2; a position at it is refused), 0 for none (RoPE). */
static inline void test_golden(int64_t learned_positions) {
    trainer_opts o = {32, 0};
    trainer *t = NULL;
    CHECK(trainer_new(model, set, &o, &t) == TW_OK);
    if (!t) return;
    trainer_batch b = full_batch();
    float *g = calloc(n_floats, 4), tok_loss[64];
    double loss = run_sft(t, &b, g, tok_loss);
    double want = tw_json_get_num(gold, "loss", 0);
    /* float32 forward through 2 layers: relative error of a few 1e-7 per op; 1e-5 of the
     * loss (8.0) is ample and far below any real mistake (a wrong mask moves it by > 1e-2) */
    CHECK_NEAR(loss, want, 1e-5 * fabs(want));
    int64_t i = 0;
    for (const tw_json *v = tw_json_first(tw_json_get(gold, "tok_loss")); v; v = tw_json_next(v), i++)
        CHECK_NEAR(tok_loss[i], tw_json_num(v, 0), 2e-5 * (1 + fabs(tw_json_num(v, 0))));
    double worst = 0;
    for (int32_t k = 0; k < lora_set_n_adapters(set); k++) {
        const lora_adapter *a = lora_set_adapter(set, k);
        for (int ab = 0; ab < 2; ab++) {
            char name[64];
            int64_t r, c;
            snprintf(name, sizeof name, "grad.%d.%s.%s", (int)a->layer, mods[a->module], ab ? "B" : "A");
            const float *want_g = gtensor(name, &r, &c);
            const float *got = g + (ab ? a->b_off : a->a_off);
            double mx = 0, err = 0;
            for (int64_t e = 0; e < r * c; e++) {
                if (fabs(want_g[e]) > mx) mx = fabs(want_g[e]);
                if (fabs(got[e] - want_g[e]) > err) err = fabs(got[e] - want_g[e]);
            }
            /* errors relative to the tensor's largest gradient: float32 sums over <= 48 terms
             * per dot product and a dozen ops deep; 1e-4 leaves room (observed ~1e-6) */
            double rel = err / (mx > 0 ? mx : 1);
            if (rel > worst) worst = rel;
            if (!(rel <= 1e-4)) fprintf(stderr, "%s: relative error %.3g (max |g| %.3g)\n", name, rel, mx);
            CHECK(rel <= 1e-4);
            CHECK(mx > 0);
        }
    }
    printf("golden: loss %.9f (numpy %.9f), worst gradient relative error %.3g\n", loss, want, worst);

    /* the same bits again, with recompute, and at another thread count */
    float *g2 = calloc(n_floats, 4);
    run_sft(t, &b, g2, NULL);
    CHECK(memcmp(g, g2, n_floats * 4) == 0);
    trainer *tr = NULL;
    trainer_opts orc = {32, 1};
    CHECK(trainer_new(model, set, &orc, &tr) == TW_OK);
    CHECK(trainer_act_bytes(tr) < trainer_act_bytes(t));
    memset(g2, 0, n_floats * 4);
    if (tr) run_sft(tr, &b, g2, NULL);
    CHECK(memcmp(g, g2, n_floats * 4) == 0);
    trainer_free(tr);
    int th = tw_threads_get();
    tw_threads_set(th == 1 ? 2 : 1);
    memset(g2, 0, n_floats * 4);
    run_sft(t, &b, g2, NULL);
    CHECK(memcmp(g, g2, n_floats * 4) == 0);
    tw_threads_set(th);

    /* packing: each example alone has the same token losses */
    for (int e = 0; e < 2; e++) {
        size_t s0 = b_ex[e], n = b_ex[e + 1] - b_ex[e];
        size_t ex[2] = {0, n};
        trainer_batch one = {(int64_t)n, b_tok + s0, b_tgt + s0, b_pos + s0, b_seg + s0, 1, ex};
        float tl[64];
        CHECK(trainer_forward(t, &one) == TW_OK);
        CHECK(trainer_loss(t, NULL, tl) == TW_OK);
        for (size_t k = 0; k < n; k++) CHECK_NEAR(tl[k], tok_loss[s0 + k], 1e-5 * (1 + fabs(tl[k])));
    }

    /* accumulation: the two examples as two micro-batches, each with the batch's scale */
    CHECK(lora_set_zero(set, LORA_GRAD) == TW_OK);
    float scale = 1.0f / (float)n_loss_tokens();
    for (int e = 0; e < 2; e++) {
        size_t s0 = b_ex[e], n = b_ex[e + 1] - b_ex[e];
        size_t ex[2] = {0, n};
        trainer_batch one = {(int64_t)n, b_tok + s0, b_tgt + s0, b_pos + s0, b_seg + s0, 1, ex};
        CHECK(trainer_forward(t, &one) == TW_OK);
        CHECK(trainer_loss(t, &scale, NULL) == TW_OK);
        CHECK(trainer_backward(t) == TW_OK);
    }
    CHECK(lora_set_download(set, LORA_GRAD, g2) == TW_OK);
    double mx = 0, err = 0;
    for (size_t k = 0; k < n_floats; k++) {
        if (fabs(g[k]) > mx) mx = fabs(g[k]);
        if (fabs(g[k] - g2[k]) > err) err = fabs(g[k] - g2[k]);
    }
    CHECK(err <= 1e-5 * mx);

    /* errors */
    trainer_batch bad = b;
    int32_t tok2[64];
    memcpy(tok2, b_tok, sizeof tok2);
    tok2[3] = 100000;
    bad.tokens = tok2;
    CHECK(trainer_forward(t, &bad) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "vocabulary") != NULL);
    int32_t pos2[64];
    if (learned_positions > 0) {
        memcpy(pos2, b_pos, sizeof pos2);
        pos2[4] = (int32_t)learned_positions;
        bad = b;
        bad.pos = pos2;
        CHECK(trainer_forward(t, &bad) == TW_ERR_ARG);
        CHECK(strstr(tw_errmsg(), "learned positions") != NULL);
    }
    bad = b;
    bad.n = 40;
    CHECK(trainer_forward(t, &bad) == TW_ERR_ARG);
    CHECK(trainer_backward(t) == TW_ERR_ARG);
    CHECK(trainer_loss(t, NULL, NULL) == TW_ERR_ARG);
    free(g);
    free(g2);
    trainer_free(t);
}

/* Finite differences of the whole float32 model vs the backward, on the largest-gradient
 * coordinate of every adapter's A and B. loss_of: SFT mean, or DPO with ex 0 chosen. */
static inline double dpo_loss_of(trainer *t, const trainer_batch *b, float *g) {
    float tl[64];
    CHECK(lora_set_zero(set, LORA_GRAD) == TW_OK);
    CHECK(trainer_forward(t, b) == TW_OK);
    CHECK(trainer_loss(t, NULL, tl) == TW_OK);
    double lc = 0, lr = 0;
    for (size_t i = b_ex[0]; i < b_ex[1]; i++) lc += tl[i];
    for (size_t i = b_ex[1]; i < b_ex[2]; i++) lr += tl[i];
    double dc, dr;
    /* fixed reference log-probs, taken from the unperturbed model and moved so that z is
     * near 0.5, where the gradient is large */
    static double rc = NAN, rr = NAN;
    if (isnan(rc)) rc = -lc - 0.3, rr = -lr + 0.2;
    double loss = trainer_dpo_loss(-lc, -lr, rc, rr, 0.5, &dc, &dr);
    if (g) {
        float sc[2] = {(float)dc, (float)dr};
        CHECK(trainer_loss(t, sc, NULL) == TW_OK);
        CHECK(trainer_backward(t) == TW_OK);
        CHECK(lora_set_download(set, LORA_GRAD, g) == TW_OK);
    }
    return loss;
}

typedef struct {
    trainer *t;
    const trainer_batch *b;
    int dpo;
} fd_ctx;

static inline double fd_loss(void *ctx) {
    const fd_ctx *c = ctx;
    return c->dpo ? dpo_loss_of(c->t, c->b, NULL) : run_sft(c->t, c->b, NULL, NULL);
}

static inline void fd_check(int dpo) {
    trainer_opts o = {32, 0};
    trainer *t = NULL;
    CHECK(trainer_new(model, set, &o, &t) == TW_OK);
    if (!t) return;
    trainer_batch b = full_batch();
    float *g = calloc(n_floats, 4);
    if (dpo) dpo_loss_of(t, &b, g);
    else run_sft(t, &b, g, NULL);
    fd_ctx c = {t, &b, dpo};
    int checked;
    double worst = lora_fd_worst(set, params, g, fd_loss, &c, dpo ? "dpo" : "sft", &checked);
    printf("%s finite differences: %d coordinates, worst relative error %.3g\n",
           dpo ? "dpo" : "sft", checked, worst);
    free(g);
    trainer_free(t);
}

#endif
