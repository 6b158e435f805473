/* test_train_gpt2: the GPT-2 training step (engine/train_gpt2.c through train.c) on a tiny
 * random GPT-2 (2 layers, n_embd 32, 4 heads, n_ff 64, 16 learned positions, LayerNorms with
 * biases, fused c_attn, tied head; LoRA rank 4 on q, k, v, o, up, down):
 *   - golden: the loss, every token's loss and every LoRA gradient of one packed batch equal
 *     an independent float64 numpy forward + backward (tools/gen_train_golden.py ->
 *     tests/data/train/tiny-gpt2.*) within float32 accumulation bounds;
 *   - finite differences of the whole float32 model agree with the backward on the largest
 *     coordinate of every adapter, for SFT and for DPO;
 *   - recompute, repeated runs and 1 vs 2 threads give the same bits; packed examples do not
 *     see each other; a position past the learned ones is refused;
 *   - targets: "all" is six modules on GPT-2, an explicit gate is refused with a message;
 *   - full fine-tuning (fullft.h, trainer_new_full), tied head (the golden model) and untied
 *     (an output.weight added): the set holds 4 + 12 per layer tensors, the fused attn_qkv
 *     among them, with the model's bits; with each adapter folded into its rows (W + s B A)
 *     the full step's loss is the numpy golden loss and its weight gradients, taken back
 *     through the adapters (s G A^T, s B^T G), the golden LoRA gradients; central finite
 *     differences agree with the backward on every tensor (q, k and v rows of the fused
 *     weight and bias apart); recompute and another thread count give the same bits; five
 *     AdamW steps lower the loss; a checkpoint restores weights and moments bit for bit; the
 *     saved GGUF keeps attn_qkv fused and gives the trained loss (F32 exactly, F16 nearly).
 * `test_train_gpt2 --write-model PATH [--ctx N]` writes the tiny GPT-2 GGUF (the CLI test
 * test_train_gpt2_cli.sh uses it with more learned positions). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fullft.h"
#include "gguf.h"
#include "json.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"
#include "test.h"
#include "tiny_llama.h"
#include "train.h"
#include "train_golden.h"

/* The tiny GPT-2 as a GGUF at path: the tokenizer metadata of the tiny GPT-2 fixture (288
 * tokens) and the golden weights (llama.cpp's gpt2 names; no output.weight: tied head). With
 * n_ctx above the golden 16 positions, the rows past them are drawn from a fixed generator
 * (scale 0.3, as the golden ones) so that the CLI tests can train on longer examples. */
static uint64_t xorshift(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* With untied, an output.weight (n_vocab, n_embd) drawn from a fixed generator (scale 0.3)
 * makes the head separate from the token embedding. */
static int write_model_head(const char *path, int64_t n_ctx, int untied) {
    const tw_json *c = tw_json_get(gold, "config");
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_file *tf = tiny_tokenizer_copy(w);
    if (!tf) return gguf_writer_free(w), 1;
    float *extra = NULL;
    gguf_writer_set_str(w, "general.architecture", "gpt2");
    gguf_writer_set_str(w, "general.name", "twin tiny gpt2 (random weights, train golden)");
    const int64_t gold_ctx = (int64_t)tw_json_get_num(c, "n_ctx", 0);
    if (n_ctx < gold_ctx) n_ctx = gold_ctx;
    gguf_writer_set_u32(w, "gpt2.context_length", (uint32_t)n_ctx);
    gguf_writer_set_u32(w, "gpt2.embedding_length", (uint32_t)tw_json_get_num(c, "n_embd", 0));
    gguf_writer_set_u32(w, "gpt2.block_count", (uint32_t)tw_json_get_num(c, "n_layer", 0));
    gguf_writer_set_u32(w, "gpt2.feed_forward_length", (uint32_t)tw_json_get_num(c, "n_ff", 0));
    gguf_writer_set_u32(w, "gpt2.attention.head_count", (uint32_t)tw_json_get_num(c, "n_head", 0));
    gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", (float)tw_json_get_num(c, "norm_eps", 0));
    for (const tw_json *t = tw_json_first(tw_json_get(gold, "tensors")); t; t = tw_json_next(t)) {
        const char *name = tw_json_key(t);
        if (strncmp(name, "lora.", 5) == 0 || strncmp(name, "grad.", 5) == 0) continue;
        int64_t rows, cols;
        const float *p = gtensor(name, &rows, &cols);
        const tw_json *s1 = tw_json_next(tw_json_first(tw_json_get(t, "shape")));
        int64_t ne[2] = {s1 ? cols : rows, s1 ? rows : 1};
        if (strcmp(name, "position_embd.weight") == 0 && n_ctx > rows) {
            float *pe = calloc((size_t)(n_ctx * cols), sizeof(float));
            memcpy(pe, p, (size_t)(rows * cols) * sizeof(float));
            uint64_t x = 0x2545F4914F6CDD1Dull;
            for (int64_t i = rows * cols; i < n_ctx * cols; i++)
                pe[i] = 0.3f * (float)((double)(xorshift(&x) >> 11) * 0x1.0p-52 - 1.0);
            ne[1] = n_ctx;
            gguf_writer_add_tensor(w, name, TW_DTYPE_F32, 2, ne, pe);
            extra = pe; /* the writer references the data until it writes */
            continue;
        }
        gguf_writer_add_tensor(w, name, TW_DTYPE_F32, s1 ? 2 : 1, ne, p);
    }
    float *head = NULL;
    if (untied) {
        const int64_t ne[2] = {(int64_t)tw_json_get_num(c, "n_embd", 0),
                               (int64_t)tw_json_get_num(c, "n_vocab", 0)};
        head = malloc((size_t)(ne[0] * ne[1]) * sizeof(float));
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (int64_t i = 0; i < ne[0] * ne[1]; i++)
            head[i] = 0.3f * (float)((double)(xorshift(&x) >> 11) * 0x1.0p-52 - 1.0);
        gguf_writer_add_tensor(w, "output.weight", TW_DTYPE_F32, 2, ne, head);
    }
    tw_status st = gguf_writer_write(w, path);
    free(extra);
    free(head);
    gguf_writer_free(w);
    gguf_close(tf);
    if (st != TW_OK) return fprintf(stderr, "%s\n", tw_errmsg()), 1;
    return 0;
}

static int write_model(const char *path, int64_t n_ctx) { return write_model_head(path, n_ctx, 0); }

static void setup(const char *tmpdir) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-gpt2.gguf", tmpdir);
    CHECK(write_model(path, 0) == 0);
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    CHECK(tw_model_load(path, be, NULL, &model) == TW_OK);
    if (!model) {
        fprintf(stderr, "%s\n", tw_errmsg());
        exit(1);
    }
    lora_base base;
    CHECK(lora_base_from_model(model, &base) == TW_OK);
    CHECK(strcmp(base.arch, "gpt2") == 0 && base.qk_permuted == 0);
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 4;
    cfg.alpha = 8;
    cfg.dropout = 0;
    CHECK(lora_targets_parse_for("all", &base, &cfg.targets) == TW_OK);
    CHECK(cfg.targets == LORA_ALL_MODULES - (1u << LORA_GATE));
    if (lora_set_new(be, &base, &cfg, &set) != TW_OK) {
        fprintf(stderr, "%s\n", tw_errmsg());
        exit(1);
    }
    CHECK(lora_set_n_adapters(set) == 2 * 6);
    golden_set_fill();
}

static void test_targets(void) {
    lora_base base;
    CHECK(lora_base_from_model(model, &base) == TW_OK);
    unsigned mask = 0;
    CHECK(lora_targets_parse_for("gate,up", &base, &mask) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "gate") != NULL && strstr(tw_errmsg(), "gpt2") != NULL);
    CHECK(lora_targets_parse_for("mlp", &base, &mask) == TW_OK);
    CHECK(mask == ((1u << LORA_UP) | (1u << LORA_DOWN)));
    CHECK(lora_targets_parse_for("attn", &base, &mask) == TW_OK);
    CHECK(mask == 0xFu);
    /* a config with gate (parsed without the base) is refused when the set is made */
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 2;
    cfg.targets = LORA_ALL_MODULES;
    lora_set *s2 = NULL;
    CHECK(lora_set_new(be, &base, &cfg, &s2) == TW_ERR_ARG && s2 == NULL);
    CHECK(strstr(tw_errmsg(), "gate") != NULL);
}

/* ---- full fine-tuning ------------------------------------------------------------------------ */

/* Mean loss of the golden batch under a full trainer; with g, f's gradient (zeroed first). */
static double run_full(trainer *t, fullft_set *f, float *g, float *tok_loss) {
    trainer_batch b = full_batch();
    float scale[2], tl[64];
    scale[0] = scale[1] = 1.0f / (float)n_loss_tokens();
    if (!tok_loss) tok_loss = tl;
    CHECK(fullft_zero(f, FULLFT_GRAD) == TW_OK);
    CHECK(trainer_forward(t, &b) == TW_OK);
    CHECK(trainer_loss(t, g ? scale : NULL, tok_loss) == TW_OK);
    if (g) {
        CHECK(trainer_backward(t) == TW_OK);
        CHECK(fullft_download(f, FULLFT_GRAD, g) == TW_OK);
    }
    double s = 0;
    for (int64_t i = 0; i < b_n; i++) s += tok_loss[i];
    return s / (double)n_loss_tokens();
}

/* The set's tensor called name (NULL: absent). */
static const fullft_tensor *full_named(const fullft_set *f, const char *name) {
    for (int32_t i = 0; i < fullft_n_tensors(f); i++)
        if (!strcmp(fullft_tensor_at(f, i)->name, name)) return fullft_tensor_at(f, i);
    return NULL;
}

/* The rows [r0, r0 + rows) of a tensor: its fused attn_qkv's q, k, v ranges apart (j 0..2; any
 * other tensor is one range, j 0). Returns the number of ranges. */
static int full_ranges(const fullft_tensor *ft, int64_t d, int64_t r0[3], int64_t n[3]) {
    if (!strstr(ft->name, "attn_qkv")) {
        r0[0] = 0, n[0] = ft->ne1;
        return 1;
    }
    for (int j = 0; j < 3; j++) r0[j] = j * d, n[j] = d;
    return 3;
}

/* The LoRA modules of the golden data and the GGUF names of the weights they adapt; q, k, v
 * are rows [j d, (j+1) d) of attn_qkv. */
static const char *const full_mods[6] = {"q", "k", "v", "o", "up", "down"};
static const char *const full_gguf[6] = {"attn_qkv", "attn_qkv", "attn_qkv", "attn_output",
                                         "ffn_up", "ffn_down"};

static void full_check(const char *tmpdir, int untied) {
    const tw_json *c = tw_json_get(gold, "config");
    const int64_t d = (int64_t)tw_json_get_num(c, "n_embd", 0), L = (int64_t)tw_json_get_num(c, "n_layer", 0);
    const int64_t vocab = (int64_t)tw_json_get_num(c, "n_vocab", 0), ff = (int64_t)tw_json_get_num(c, "n_ff", 0);
    const int64_t ctx = (int64_t)tw_json_get_num(c, "n_ctx", 0), rank = (int64_t)tw_json_get_num(c, "rank", 0);
    const double s_lora = tw_json_get_num(c, "alpha", 0) / (double)rank;
    char path[512];
    snprintf(path, sizeof path, "%s/full-gpt2-%d.gguf", tmpdir, untied);
    CHECK(write_model_head(path, 0, untied) == 0);
    tw_model *m = NULL;
    CHECK(tw_model_load(path, be, NULL, &m) == TW_OK);
    if (!m) return;
    fullft_set *f = NULL;
    CHECK(fullft_set_new(m, &f) == TW_OK);
    if (!f) {
        fprintf(stderr, "%s\n", tw_errmsg());
        tw_model_free(m);
        return;
    }
    /* wte, wpe, ln_f w and b (+ head); per layer ln_1 w b, c_attn w b, c_proj w b, ln_2 w b,
     * c_fc w b, mlp c_proj w b */
    CHECK_EQ_INT(fullft_n_tensors(f), 4 + untied + 12 * L);
    CHECK_EQ_INT(fullft_tied(f), !untied);
    const int64_t want = vocab * d * (1 + untied) + ctx * d + 2 * d +
                         L * (4 * d + 3 * d * d + 3 * d + d * d + d + 2 * d * ff + ff + d);
    CHECK(fullft_n_params(f) == want && fullft_count_params(m) == want);
    CHECK(full_named(f, "blk.1.attn_qkv.weight") && full_named(f, "blk.1.attn_qkv.bias"));
    CHECK(full_named(f, "position_embd.weight") && full_named(f, "output_norm.bias"));
    const size_t nf = fullft_n_floats(f);
    float *p0 = malloc(nf * 4), *p = malloc(nf * 4), *g = calloc(nf, 4), *g2 = calloc(nf, 4);
    CHECK(fullft_download(f, FULLFT_PARAM, p0) == TW_OK);
    /* the copies are the golden weights, bit for bit (the fused c_attn in its file order) */
    for (int32_t k = 0; k < fullft_n_tensors(f); k++) {
        const fullft_tensor *ft = fullft_tensor_at(f, k);
        if (!strcmp(ft->name, "output.weight")) continue;
        int64_t r, cc;
        const float *w = gtensor(ft->name, &r, &cc);
        CHECK(r * cc == ft->ne0 * ft->ne1);
        CHECK(memcmp(p0 + ft->off, w, (size_t)(ft->ne0 * ft->ne1) * 4) == 0);
    }
    trainer_opts o = {32, 0};
    trainer *t = NULL;
    CHECK(trainer_new_full(m, f, &o, &t) == TW_OK);
    if (!t) return;

    if (!untied) {
        /* golden: fold each adapter into its rows, W' = W + s B A (B (out, r), A (r, in)) */
        memcpy(p, p0, nf * 4);
        for (int64_t l = 0; l < L; l++)
            for (int mi = 0; mi < 6; mi++) {
                char name[64];
                int64_t ra, ca, rb, cb;
                snprintf(name, sizeof name, "lora.%d.%s.A", (int)l, full_mods[mi]);
                const float *A = gtensor(name, &ra, &ca);
                snprintf(name, sizeof name, "lora.%d.%s.B", (int)l, full_mods[mi]);
                const float *B = gtensor(name, &rb, &cb);
                snprintf(name, sizeof name, "blk.%d.%s.weight", (int)l, full_gguf[mi]);
                const fullft_tensor *ft = full_named(f, name);
                CHECK(ft && ca == ft->ne0 && cb == ra);
                if (!ft) continue;
                float *W = p + ft->off + (size_t)((mi < 3 ? mi * d : 0) * ft->ne0); /* (rb, ca) */
                for (int64_t i = 0; i < rb; i++)
                    for (int64_t j = 0; j < ca; j++) {
                        double acc = 0;
                        for (int64_t q = 0; q < ra; q++) acc += (double)B[i * cb + q] * A[q * ca + j];
                        W[i * ca + j] += (float)(s_lora * acc);
                    }
            }
        CHECK(fullft_upload(f, FULLFT_PARAM, p) == TW_OK);
        float tok_loss[64];
        double loss = run_full(t, f, g, tok_loss), want_loss = tw_json_get_num(gold, "loss", 0);
        /* as test_golden (1e-5 of the loss), plus the folding's rounding (one float32 add per
         * weight, ~1e-7 relative) */
        CHECK_NEAR(loss, want_loss, 1e-5 * fabs(want_loss));
        int64_t i = 0;
        for (const tw_json *v = tw_json_first(tw_json_get(gold, "tok_loss")); v; v = tw_json_next(v), i++)
            CHECK_NEAR(tok_loss[i], tw_json_num(v, 0), 2e-5 * (1 + fabs(tw_json_num(v, 0))));
        /* dL/dB = s G A^T, dL/dA = s B^T G with G = dL/dW' (rb, ca) the full step's gradient */
        double worst = 0;
        for (int64_t l = 0; l < L; l++)
            for (int mi = 0; mi < 6; mi++) {
                char name[64];
                int64_t ra, ca, rb, cb, r2, c2;
                snprintf(name, sizeof name, "lora.%d.%s.A", (int)l, full_mods[mi]);
                const float *A = gtensor(name, &ra, &ca);
                snprintf(name, sizeof name, "lora.%d.%s.B", (int)l, full_mods[mi]);
                const float *B = gtensor(name, &rb, &cb);
                snprintf(name, sizeof name, "blk.%d.%s.weight", (int)l, full_gguf[mi]);
                const fullft_tensor *ft = full_named(f, name);
                if (!ft) continue;
                const float *G = g + ft->off + (size_t)((mi < 3 ? mi * d : 0) * ft->ne0);
                for (int ab = 0; ab < 2; ab++) {
                    snprintf(name, sizeof name, "grad.%d.%s.%s", (int)l, full_mods[mi], ab ? "B" : "A");
                    const float *want_g = gtensor(name, &r2, &c2);
                    double mx = 0, err = 0;
                    for (int64_t x = 0; x < r2; x++)
                        for (int64_t y = 0; y < c2; y++) {
                            double acc = 0;
                            if (ab) /* (rb, ra): sum over in */
                                for (int64_t j = 0; j < ca; j++) acc += (double)G[x * ca + j] * A[y * ca + j];
                            else    /* (ra, ca): sum over out */
                                for (int64_t j = 0; j < rb; j++) acc += (double)B[j * cb + x] * G[j * ca + y];
                            acc *= s_lora;
                            double wv = want_g[x * c2 + y];
                            if (fabs(wv) > mx) mx = fabs(wv);
                            if (fabs(acc - wv) > err) err = fabs(acc - wv);
                        }
                    /* as test_golden's 1e-4 of the tensor's largest gradient */
                    double rel = err / (mx > 0 ? mx : 1);
                    if (rel > worst) worst = rel;
                    if (!(rel <= 1e-4)) fprintf(stderr, "full %s: relative error %.3g\n", name, rel);
                    CHECK(rel <= 1e-4 && mx > 0);
                }
            }
        printf("full fine-tuning, adapters folded: loss %.9f (numpy %.9f), LoRA gradients from "
               "the weight gradients: worst relative error %.3g\n", loss, want_loss, worst);
        CHECK(fullft_upload(f, FULLFT_PARAM, p0) == TW_OK);
    }

    /* finite differences on the largest-gradient coordinate of every tensor (of the q, k and
     * v rows of the fused c_attn weight and bias each) */
    const double l0 = run_full(t, f, g, NULL);
    memcpy(p, p0, nf * 4);
    double worst = 0;
    int checked = 0;
    for (int32_t k = 0; k < fullft_n_tensors(f); k++) {
        const fullft_tensor *ft = fullft_tensor_at(f, k);
        int64_t r0[3], nr[3];
        int bias = ft->ne1 == 1 && strstr(ft->name, "attn_qkv");
        fullft_tensor tmp = *ft;
        if (bias) tmp.ne1 = tmp.ne0, tmp.ne0 = 1; /* the bias's entries as rows */
        int nrange = full_ranges(&tmp, d, r0, nr);
        for (int j = 0; j < nrange; j++) {
            size_t a = ft->off + (size_t)(r0[j] * tmp.ne0), cnt = (size_t)(nr[j] * tmp.ne0), best = a;
            for (size_t e = a; e < a + cnt; e++)
                if (fabs(g[e]) > fabs(g[best])) best = e;
            /* the key bias adds q . b_k to every score of a query's row, which the softmax
             * removes: its gradient is 0 up to rounding (the others' are 1e-2..1) */
            const int key_bias = bias && j == 1;
            if (key_bias) CHECK(fabs(g[best]) < 1e-6);
            else CHECK(fabs(g[best]) > 1e-3);
            /* h = 1e-2 as fd_check: float32 losses near 12 carry ~1e-6 of rounding */
            const float h = 1e-2f;
            double v[2];
            for (int sg = 0; sg < 2; sg++) {
                p[best] = p0[best] + (sg ? -h : h);
                CHECK(fullft_upload(f, FULLFT_PARAM, p) == TW_OK);
                v[sg] = run_full(t, f, NULL, NULL);
            }
            p[best] = p0[best];
            double fd = (v[0] - v[1]) / (2.0 * (double)h);
            double err = fabs(fd - g[best]) / (fabs(g[best]) + 1e-3);
            if (key_bias) err = fabs(fd) / 1e-3; /* the quotient's noise, ~1e-5 */
            else if (err > worst) worst = err;
            if (!(err < 2e-2))
                fprintf(stderr, "full fd (untied %d): %s range %d: fd %.6g backward %.6g\n", untied,
                        ft->name, j, fd, (double)g[best]);
            CHECK(err < 2e-2);
            checked++;
        }
    }
    CHECK(fullft_upload(f, FULLFT_PARAM, p0) == TW_OK);
    printf("full fine-tuning (%s head): %d tensors, %lld parameters, finite differences on %d "
           "coordinates: worst relative error %.3g (key biases apart)\n", untied ? "untied" : "tied",
           (int)fullft_n_tensors(f), (long long)fullft_n_params(f), checked, worst);

    /* the same bits with recompute and at another thread count */
    trainer *tr = NULL;
    trainer_opts orc = {32, 1};
    CHECK(trainer_new_full(m, f, &orc, &tr) == TW_OK);
    if (tr) {
        CHECK(run_full(tr, f, g2, NULL) == l0);
        CHECK(memcmp(g, g2, nf * 4) == 0);
    }
    trainer_free(tr);
    int th = tw_threads_get();
    tw_threads_set(th == 1 ? 2 : 1);
    CHECK(run_full(t, f, g2, NULL) == l0);
    CHECK(memcmp(g, g2, nf * 4) == 0);
    tw_threads_set(th);

    /* five AdamW steps lower the batch's loss */
    double l = l0;
    for (int st = 1; st <= 5; st++) {
        run_full(t, f, g, NULL);
        CHECK(tw_op_adamw(be, fullft_ref(f, FULLFT_PARAM, 0), fullft_ref(f, FULLFT_GRAD, 0),
                          fullft_ref(f, FULLFT_ADAM_M, 0), fullft_ref(f, FULLFT_ADAM_V, 0),
                          (int64_t)nf, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, st) == TW_OK);
        double ln = run_full(t, f, NULL, NULL);
        CHECK(ln < l);
        l = ln;
    }
    printf("  5 AdamW steps: loss %.4f -> %.4f\n", l0, l);
    CHECK(l < l0 - 0.1);

    /* checkpoint round trip */
    char ck[600];
    snprintf(ck, sizeof ck, "%s/ck%d", tmpdir, untied);
    ckpt_meta meta = {5, 7, {0}, "", "{}"};
    char *cp = NULL;
    CHECK(ckpt_save_full(ck, &meta, f, 2, &cp) == TW_OK);
    fullft_set *f2 = NULL;
    CHECK(fullft_set_new(m, &f2) == TW_OK);
    ckpt *cf = NULL;
    CHECK(cp && ckpt_open(cp, &cf) == TW_OK);
    if (cf && f2) {
        CHECK(ckpt_restore_full(cf, f2) == TW_OK);
        static const fullft_region regs[3] = {FULLFT_PARAM, FULLFT_ADAM_M, FULLFT_ADAM_V};
        for (int i = 0; i < 3; i++) {
            CHECK(fullft_download(f, regs[i], g) == TW_OK);
            CHECK(fullft_download(f2, regs[i], g2) == TW_OK);
            CHECK(memcmp(g, g2, nf * 4) == 0);
        }
    }
    ckpt_close(cf);
    fullft_set_free(f2);
    if (cp) unlink(cp);
    tw_free(cp);
    rmdir(ck);

    /* the trained GGUF: attn_qkv fused (d, 3d) holding the trained rows; loads, and a full
     * trainer over it gives the trained loss */
    CHECK(fullft_download(f, FULLFT_PARAM, p) == TW_OK);
    for (int ty = 0; ty < 2; ty++) {
        char out[600];
        snprintf(out, sizeof out, "%s/trained-%d-%d.gguf", tmpdir, untied, ty);
        CHECK(fullft_save_gguf(f, path, out, ty ? TW_DTYPE_F16 : TW_DTYPE_F32) == TW_OK);
        gguf_file *gf = gguf_open(out);
        CHECK(gf != NULL);
        if (gf) {
            const gguf_tensor *qkv = gguf_find_tensor(gf, "blk.0.attn_qkv.weight");
            const fullft_tensor *ft = full_named(f, "blk.0.attn_qkv.weight");
            CHECK(qkv && ft && qkv->ne[0] == d && qkv->ne[1] == 3 * d);
            CHECK(gguf_find_tensor(gf, "blk.0.attn_q.weight") == NULL);
            CHECK((gguf_find_tensor(gf, "output.weight") != NULL) == untied);
            if (qkv && ft && ty == 0)
                CHECK(memcmp(qkv->data, p + ft->off, (size_t)(3 * d * d) * 4) == 0);
            gguf_close(gf);
        }
        tw_model *m2 = NULL;
        CHECK(tw_model_load(out, be, NULL, &m2) == TW_OK);
        fullft_set *f3 = NULL;
        trainer *t3 = NULL;
        if (m2) CHECK(fullft_set_new(m2, &f3) == TW_OK);
        if (f3) CHECK(trainer_new_full(m2, f3, &o, &t3) == TW_OK);
        if (t3) {
            double l2 = run_full(t3, f3, NULL, NULL);
            /* f16 rounds each weight by <= 2^-11 relative: the loss moves by ~1e-3 */
            if (ty == 0) CHECK(l2 == l);
            else CHECK(fabs(l2 - l) < 2e-2);
            printf("  trained GGUF (%s): loss %.6f (trainer %.6f)\n", ty ? "f16" : "f32", l2, l);
        }
        trainer_free(t3);
        fullft_set_free(f3);
        tw_model_free(m2);
        unlink(out);
    }

    free(p0), free(p), free(g), free(g2);
    trainer_free(t);
    fullft_set_free(f);
    tw_model_free(m);
    unlink(path);
}

int main(int argc, char **argv) {
    golden_load("tiny-gpt2");
    if ((argc == 3 || argc == 5) && strcmp(argv[1], "--write-model") == 0) {
        /* --write-model PATH [--ctx N] */
        int rc = write_model(argv[2], argc == 5 ? atoll(argv[4]) : 0);
        tw_json_free(gold);
        free(gbin);
        return rc;
    }
    char tmpdir[] = "/tmp/test_train_gpt2.XXXXXX";
    if (!mkdtemp(tmpdir)) return 1;
    setup(tmpdir);
    test_golden(16); /* the model has 16 learned positions */
    fd_check(0);
    fd_check(1);
    test_targets();
    full_check(tmpdir, 0);
    full_check(tmpdir, 1);
    lora_set_free(set);
    tw_model_free(model);
    tw_backend_free(be);
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-gpt2.gguf", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    free(params);
    tw_json_free(gold);
    free(gbin);
    if (test_failures) fprintf(stderr, "test_train_gpt2: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
