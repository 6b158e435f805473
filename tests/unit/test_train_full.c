/* test_train_full: full fine-tuning (fullft.h, trainer_new_full) on a tiny random llama, with
 * an untied head, with a tied one, and with q/k/v/o biases (matmul_dw's dbias):
 *   - fullft_set_new copies every weight (bits equal to the model's F32 weights), counts the
 *     parameters fullft_count_params predicts, and a tied head is one table;
 *   - the backward agrees with central finite differences of the float32 loss on the
 *     largest-gradient coordinate of every trained tensor (embedding, norms, projections, the
 *     head; the tied table gets the head's and the embedding's gradients);
 *   - with the adapters' trainer the same batch gives the same loss (the copies are exact);
 *   - repeated runs, recompute and another thread count give the same gradient bits;
 *   - five AdamW steps on one batch lower its loss;
 *   - a checkpoint (ckpt_save_full / ckpt_restore_full) gives back the weights and moments bit
 *     for bit, and one of the other model's layout is refused;
 *   - fullft_save_gguf writes a model that loads and whose forward gives the trained loss,
 *     F32 exactly and F16 within its rounding. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fullft.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"
#include "test.h"
#include "tiny_llama.h"
#include "train.h"

enum { NT = 40 };

static kin_rng rng = {0x66756c6c};
static tw_backend *be;
static char tmpdir[] = "/tmp/test_train_full.XXXXXX";
static int32_t b_tok[NT], b_tgt[NT], b_pos[NT], b_seg[NT];
static size_t b_ex[3] = {0, 17, NT};

static void make_batch(int64_t vocab) {
    for (int i = 0; i < NT; i++) {
        int e = i >= (int)b_ex[1];
        b_tok[i] = (int32_t)(kin_next(&rng) % (uint64_t)vocab);
        b_pos[i] = i - (int)b_ex[e];
        b_seg[i] = e;
    }
    b_tok[30] = b_tok[5]; /* a token twice: the embedding scatter adds both rows */
    for (int i = 0; i < NT; i++) {
        int e = i >= (int)b_ex[1], last = i + 1 == (int)b_ex[e + 1];
        b_tgt[i] = last || b_pos[i] < 3 ? -1 : b_tok[i + 1];
    }
    b_tgt[20] = b_tok[3]; /* a target that is also an input: the tied table's two gradients meet */
}

static int64_t n_loss(void) {
    int64_t k = 0;
    for (int i = 0; i < NT; i++) k += b_tgt[i] >= 0;
    return k;
}

/* Mean loss of the batch; with g the gradient of f's GRAD region (zeroed first). */
static double run(trainer *t, fullft_set *f, float *g) {
    trainer_batch b = {NT, b_tok, b_tgt, b_pos, b_seg, 2, b_ex};
    float scale[2], tl[NT];
    scale[0] = scale[1] = 1.0f / (float)n_loss();
    if (f) CHECK(fullft_zero(f, FULLFT_GRAD) == TW_OK);
    CHECK(trainer_forward(t, &b) == TW_OK);
    CHECK(trainer_loss(t, g ? scale : NULL, tl) == TW_OK);
    if (g) {
        CHECK(trainer_backward(t) == TW_OK);
        CHECK(fullft_download(f, FULLFT_GRAD, g) == TW_OK);
    }
    double s = 0;
    for (int i = 0; i < NT; i++) s += tl[i];
    return s / (double)n_loss();
}

static void check_model(unsigned flags) {
    const int tied = (flags & TL_TIED) != 0, bias = (flags & TL_BIAS) != 0;
    char path[512];
    snprintf(path, sizeof path, "%s/tiny%u.gguf", tmpdir, flags);
    CHECK(tiny_llama_write(path, flags, &rng) == 0);
    tw_model *m = NULL;
    CHECK(tw_model_load(path, be, NULL, &m) == TW_OK);
    if (!m) return;
    const int64_t vocab = tw_model_get_hparams(m)->n_vocab;
    make_batch(vocab);
    fullft_set *f = NULL;
    CHECK(fullft_set_new(m, &f) == TW_OK);
    if (!f) return;
    /* 2 layers x 9 (+ 4 biases) + embedding + output norm (+ head) */
    CHECK_EQ_INT(fullft_n_tensors(f), 2 * (9 + 4 * bias) + 2 + !tied);
    CHECK_EQ_INT(fullft_tied(f), tied);
    CHECK(fullft_n_params(f) == fullft_count_params(m));
    int64_t want = vocab * TL_D * (tied ? 1 : 2) + TL_D +
                   TL_L * (2 * TL_D + TL_D * (TL_NH + 2 * TL_NKV) * TL_HD + TL_NH * TL_HD * TL_D +
                           3 * TL_D * TL_FF + bias * (TL_NH * TL_HD + 2 * TL_NKV * TL_HD + TL_D));
    CHECK(fullft_n_params(f) == want);
    CHECK(fullft_find(f, -1, 4 /* TW_W_OUTPUT */) != NULL);
    size_t nf = fullft_n_floats(f);
    float *p = malloc(nf * 4), *p0 = malloc(nf * 4), *g = calloc(nf, 4), *g2 = calloc(nf, 4);
    CHECK(fullft_download(f, FULLFT_PARAM, p0) == TW_OK);
    memcpy(p, p0, nf * 4);

    /* the copies are the model's weights: the LoRA trainer with B = 0 gives the same loss */
    lora_base base;
    CHECK(lora_base_from_model(m, &base) == TW_OK);
    lora_config lc;
    lora_config_default(&lc);
    lc.dropout = 0;
    lc.rank = 2;
    lora_set *ls = NULL;
    CHECK(lora_set_new(be, &base, &lc, &ls) == TW_OK);
    trainer_opts o = {NT, 0};
    trainer *t = NULL, *tl = NULL;
    CHECK(trainer_new(m, ls, &o, &tl) == TW_OK);
    CHECK(trainer_new_full(m, f, &o, &t) == TW_OK);
    if (!t || !tl) return;
    double l_lora = run(tl, NULL, NULL);
    double l0 = run(t, f, g);
    CHECK(l0 == l_lora);

    /* finite differences on every tensor's largest-gradient coordinate */
    double worst = 0;
    for (int32_t k = 0; k < fullft_n_tensors(f); k++) {
        const fullft_tensor *ft = fullft_tensor_at(f, k);
        size_t cnt = (size_t)(ft->ne0 * ft->ne1), best = ft->off;
        for (size_t e = ft->off; e < ft->off + cnt; e++)
            if (fabs(g[e]) > fabs(g[best])) best = e;
        CHECK(g[best] != 0);
        /* h = 1e-2 on weights of O(0.3-1): float32 losses of ~6 carry ~1e-6 rounding, so the
         * quotient's noise is ~1e-4 against gradients of 1e-3..1e-1; curvature O(h^2) */
        const float h = 1e-2f;
        double v[2];
        for (int sg = 0; sg < 2; sg++) {
            p[best] = p0[best] + (sg ? -h : h);
            CHECK(fullft_upload(f, FULLFT_PARAM, p) == TW_OK);
            v[sg] = run(t, f, NULL);
        }
        p[best] = p0[best];
        double fd = (v[0] - v[1]) / (2.0 * (double)h);
        double err = fabs(fd - g[best]) / (fabs(g[best]) + 1e-3);
        if (err > worst) worst = err;
        if (!(err < 2e-2))
            fprintf(stderr, "full fd (tied %d): %s: fd %.6g backward %.6g\n", tied, ft->name, fd,
                    (double)g[best]);
        CHECK(err < 2e-2);
    }
    CHECK(fullft_upload(f, FULLFT_PARAM, p0) == TW_OK);
    printf("full fine-tuning (%s head%s): %d tensors, %lld parameters, finite differences worst "
           "relative error %.3g\n", tied ? "tied" : "untied", bias ? ", biases" : "",
           (int)fullft_n_tensors(f),
           (long long)fullft_n_params(f), worst);

    /* the same bits again, with recompute, at another thread count */
    CHECK(run(t, f, g2) == l0);
    CHECK(memcmp(g, g2, nf * 4) == 0);
    trainer *tr = NULL;
    trainer_opts orc = {NT, 1};
    CHECK(trainer_new_full(m, f, &orc, &tr) == TW_OK);
    if (tr) {
        CHECK(run(tr, f, g2) == l0);
        CHECK(memcmp(g, g2, nf * 4) == 0);
    }
    trainer_free(tr);
    int th = tw_threads_get();
    tw_threads_set(th == 1 ? 3 : 1);
    CHECK(run(t, f, g2) == l0);
    CHECK(memcmp(g, g2, nf * 4) == 0);
    tw_threads_set(th);

    /* five AdamW steps on the batch lower its loss */
    double l = l0;
    for (int s = 1; s <= 5; s++) {
        run(t, f, g);
        CHECK(tw_op_adamw(be, fullft_ref(f, FULLFT_PARAM, 0), fullft_ref(f, FULLFT_GRAD, 0),
                          fullft_ref(f, FULLFT_ADAM_M, 0), fullft_ref(f, FULLFT_ADAM_V, 0),
                          (int64_t)nf, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, s) == TW_OK);
        double ln = run(t, f, NULL);
        CHECK(ln < l);
        l = ln;
    }
    printf("  5 AdamW steps: loss %.4f -> %.4f\n", l0, l);
    CHECK(l < l0 - 0.1);

    /* checkpoint round trip */
    char ck[600];
    snprintf(ck, sizeof ck, "%s/ck%u", tmpdir, flags);
    ckpt_meta meta = {5, 7, {0}, "", "{}"};
    char *cp = NULL;
    CHECK(ckpt_save_full(ck, &meta, f, 2, &cp) == TW_OK);
    float *r[3], *q = malloc(nf * 4);
    static const fullft_region regs[3] = {FULLFT_PARAM, FULLFT_ADAM_M, FULLFT_ADAM_V};
    for (int i = 0; i < 3; i++) {
        r[i] = malloc(nf * 4);
        CHECK(fullft_download(f, regs[i], r[i]) == TW_OK);
    }
    fullft_set *f2 = NULL;
    CHECK(fullft_set_new(m, &f2) == TW_OK);
    ckpt *c = NULL;
    CHECK(cp && ckpt_open(cp, &c) == TW_OK);
    if (c && f2) {
        CHECK(ckpt_get_meta(c)->step == 5);
        CHECK(ckpt_restore_full(c, f2) == TW_OK);
        for (int i = 0; i < 3; i++) {
            CHECK(fullft_download(f2, regs[i], q) == TW_OK);
            CHECK(memcmp(q, r[i], nf * 4) == 0);
        }
        lora_set *none = NULL;
        CHECK(ckpt_restore_lora(c, be, &base, &none) == TW_ERR_FORMAT && none == NULL);
    }
    ckpt_close(c);
    fullft_set_free(f2);

    /* the trained GGUF: loads, and its forward gives the trained loss */
    for (int ty = 0; ty < 2; ty++) {
        char out[600];
        snprintf(out, sizeof out, "%s/trained%u-%d.gguf", tmpdir, flags, ty);
        CHECK(fullft_save_gguf(f, path, out, ty ? TW_DTYPE_F16 : TW_DTYPE_F32) == TW_OK);
        tw_model *m2 = NULL;
        CHECK(tw_model_load(out, be, NULL, &m2) == TW_OK);
        if (!m2) continue;
        lora_set *ls2 = NULL;
        trainer *t2 = NULL;
        lora_base b2;
        CHECK(lora_base_from_model(m2, &b2) == TW_OK);
        CHECK(lora_set_new(be, &b2, &lc, &ls2) == TW_OK);
        CHECK(trainer_new(m2, ls2, &o, &t2) == TW_OK);
        if (t2) {
            double l2 = run(t2, NULL, NULL);
            /* f16 rounds each weight by <= 2^-11 relative: the loss moves by ~1e-3 */
            if (ty == 0) CHECK(l2 == l);
            else CHECK(fabs(l2 - l) < 2e-2);
            printf("  trained GGUF (%s): loss %.6f (trainer %.6f)\n", ty ? "f16" : "f32", l2, l);
        }
        trainer_free(t2);
        lora_set_free(ls2);
        tw_model_free(m2);
        unlink(out);
    }
    CHECK(fullft_save_gguf(f, path, "/nonexistent-dir/x.gguf", TW_DTYPE_Q8_0) == TW_ERR_ARG);

    for (int i = 0; i < 3; i++) free(r[i]);
    free(q);
    if (cp) unlink(cp);
    tw_free(cp);
    rmdir(ck);
    free(p), free(p0), free(g), free(g2);
    trainer_free(t);
    trainer_free(tl);
    lora_set_free(ls);
    fullft_set_free(f);
    tw_model_free(m);
    unlink(path);
}

static void test_untied(void) { check_model(0); }
static void test_tied(void) { check_model(TL_TIED); }
static void test_biases(void) { check_model(TL_BIAS); }

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    RUN(test_untied);
    RUN(test_tied);
    RUN(test_biases);
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 0);
    tw_backend_free(be);
    rmdir(tmpdir);
    TEST_DONE();
}
