/* test_lora: LoRA adapter sets (engine/lora.h) on a small llama-shaped base (2 layers, n_embd
 * 64, 4 heads of 16, 2 kv heads, n_ff 96), on the CPU backend.
 *   - target lists, scale alpha/r vs alpha/sqrt(r), config JSON round trip;
 *   - layout: one adapter per (layer, target) in order, 64-float aligned views, the four regions
 *     of equal size; A within PEFT's Kaiming bound 1/sqrt(in), seeded (same bits again, the
 *     same q values when other targets are added), B, gradients and moments zero;
 *   - a rank larger than a layer refused with a message naming the layer;
 *   - PEFT and GGUF round trips: the same parameter bits back (F32), within f16's rounding
 *     (F16); Q/K rows of B reordered exactly as llama.cpp's converter permutes them when the
 *     file and the base differ in order; GGUF shapes {in, r} / {r, out} and keys;
 *   - refusals naming the difference: another architecture, layer count, dimension, base hash;
 *   - merge into a GGUF: W + scale B A against an fp64 product, in the file's Q/K row order,
 *     other tensors byte-identical;
 *   - the PEFT folder read by tools/peft_inspect.py (json + struct only): names, shapes, sums;
 *   - every allocation of new/save/load failing in turn gives a clean error.
 *   test_lora --write-fixture DIR writes the files of tests/unit/test_merge_cli.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "json.h"
#include "lora.h"
#include "safetensors.h"
#include "test.h"

static tw_backend *be;
static char tmpdir[256];

static lora_base small_base(int permuted) {
    lora_base b;
    memset(&b, 0, sizeof b);
    snprintf(b.arch, sizeof b.arch, "llama");
    b.n_layer = 2;
    b.n_embd = 64;
    b.n_head = 4;
    b.n_kv_head = 2;
    b.head_dim = 16;
    b.n_ff = 96;
    b.qk_permuted = permuted;
    snprintf(b.name, sizeof b.name, "twin/tiny-llama");
    return b;
}

static lora_config small_config(unsigned targets) {
    lora_config c;
    lora_config_default(&c);
    c.rank = 4;
    c.alpha = 8;
    c.targets = targets;
    c.seed = 7;
    return c;
}

static float *download(const lora_set *s, lora_region r) {
    float *h = malloc(lora_set_n_floats(s) * sizeof(float));
    CHECK(lora_set_download(s, r, h) == TW_OK);
    return h;
}

static uint64_t rng_state = 12345;
static float frand(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* Gives every parameter (A and B) a random value, as training would. */
static void randomize(lora_set *s) {
    size_t n = lora_set_n_floats(s);
    float *h = download(s, LORA_PARAM);
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        for (int64_t k = 0; k < a->rank * a->in; k++) h[a->a_off + k] = frand() * 0.1f;
        for (int64_t k = 0; k < a->out * a->rank; k++) h[a->b_off + k] = frand() * 0.1f;
    }
    (void)n;
    CHECK(lora_set_upload(s, LORA_PARAM, h) == TW_OK);
    free(h);
}

static void test_names_and_config(void) {
    unsigned m = 0;
    CHECK(lora_targets_parse("q,v", &m) == TW_OK);
    CHECK_EQ_INT(m, (1u << LORA_Q) | (1u << LORA_V));
    CHECK(lora_targets_parse("q_proj, attn_output,ffn_down", &m) == TW_OK);
    CHECK_EQ_INT(m, (1u << LORA_Q) | (1u << LORA_O) | (1u << LORA_DOWN));
    CHECK(lora_targets_parse("all", &m) == TW_OK);
    CHECK_EQ_INT(m, 127);
    CHECK(lora_targets_parse("mlp", &m) == TW_OK);
    CHECK_EQ_INT(m, (1u << LORA_GATE) | (1u << LORA_UP) | (1u << LORA_DOWN));
    CHECK(lora_targets_parse("q,lm_head", &m) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "lm_head") != NULL);
    CHECK(lora_targets_parse("", &m) == TW_ERR_ARG);

    lora_config c = small_config(1);
    c.rank = 8;
    c.alpha = 16;
    CHECK_NEAR(lora_config_scale(&c), 2.0, 0);
    c.use_rslora = 1;
    CHECK_NEAR(lora_config_scale(&c), 16.0 / sqrt(8.0), 1e-6);

    /* JSON round trip */
    c.targets = (1u << LORA_K) | (1u << LORA_UP);
    c.dropout = 0.125f;
    c.seed = 99;
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK(lora_config_to_json(&c, &sb) == TW_OK);
    tw_json *j = tw_json_parse(sb.buf, sb.len, "cfg");
    lora_config back;
    CHECK(j && lora_config_from_json(j, "cfg", &back) == TW_OK);
    CHECK_EQ_INT(back.rank, 8);
    CHECK_NEAR(back.alpha, 16, 0);
    CHECK_NEAR(back.dropout, 0.125, 0);
    CHECK_EQ_INT(back.use_rslora, 1);
    CHECK_EQ_INT(back.targets, c.targets);
    CHECK_EQ_INT(back.seed, 99);
    tw_json_free(j);
    tw_sb_free(&sb);
    const char *bad = "{\"r\":0,\"lora_alpha\":8,\"target_modules\":[\"q_proj\"]}";
    j = tw_json_parse(bad, strlen(bad), "bad");
    CHECK(lora_config_from_json(j, "bad.json", &back) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "bad.json") && strstr(tw_errmsg(), "'r'"));
    tw_json_free(j);
}

static void test_layout_and_init(void) {
    lora_base b = small_base(1);
    lora_config c = small_config(LORA_ALL_MODULES);
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &b, &c, &s) == TW_OK);
    if (!s) return;
    CHECK_EQ_INT(lora_set_n_adapters(s), 14);
    int64_t want_params = 0;
    const int64_t dims[7][2] = {{64, 64}, {32, 64}, {32, 64}, {64, 64},
                                {96, 64}, {96, 64}, {64, 96}}; /* (out, in) */
    for (int32_t i = 0; i < 14; i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        CHECK_EQ_INT(a->layer, i / 7);
        CHECK_EQ_INT(a->module, i % 7);
        CHECK_EQ_INT(a->out, dims[i % 7][0]);
        CHECK_EQ_INT(a->in, dims[i % 7][1]);
        CHECK_EQ_INT(a->a_off % 64, 0);
        CHECK_EQ_INT(a->b_off % 64, 0);
        CHECK(a->b_off >= a->a_off + (size_t)(a->rank * a->in));
        CHECK(lora_set_find(s, a->layer, a->module) == a);
        want_params += 4 * (a->in + a->out);
    }
    CHECK_EQ_INT(lora_set_n_params(s), want_params);
    CHECK_EQ_INT(tw_buffer_size(lora_set_buffer(s)), lora_set_n_floats(s) * 4 * sizeof(float));
    CHECK_EQ_INT(lora_set_ref(s, LORA_ADAM_V, 0).offset, 3 * lora_set_n_floats(s) * sizeof(float));

    float *p = download(s, LORA_PARAM);
    for (int32_t i = 0; i < 14; i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        double bound = 1.0 / sqrt((double)a->in), sum = 0, maxabs = 0;
        int64_t n = a->rank * a->in;
        for (int64_t k = 0; k < n; k++) {
            double v = p[a->a_off + k];
            sum += v;
            if (fabs(v) > maxabs) maxabs = fabs(v);
        }
        CHECK(maxabs <= bound && maxabs > 0.8 * bound); /* uniform over the whole range */
        CHECK(fabs(sum / n) < 0.25 * bound);            /* centred */
        for (int64_t k = 0; k < a->out * a->rank; k++) CHECK(p[a->b_off + k] == 0.0f);
    }
    for (int r = LORA_GRAD; r < LORA_N_REGIONS; r++) {
        float *g = download(s, (lora_region)r);
        size_t nz = 0;
        for (size_t k = 0; k < lora_set_n_floats(s); k++) nz += g[k] != 0.0f;
        CHECK_EQ_INT(nz, 0);
        free(g);
    }
    /* Same seed: same bits; q alone: the same q values as with all targets. */
    lora_set *s2 = NULL, *s3 = NULL;
    CHECK(lora_set_new(be, &b, &c, &s2) == TW_OK);
    float *p2 = download(s2, LORA_PARAM);
    CHECK(memcmp(p, p2, lora_set_n_floats(s) * sizeof(float)) == 0);
    lora_config cq = small_config(1u << LORA_Q);
    CHECK(lora_set_new(be, &b, &cq, &s3) == TW_OK);
    float *p3 = download(s3, LORA_PARAM);
    const lora_adapter *q1 = lora_set_find(s, 1, LORA_Q), *q3 = lora_set_find(s3, 1, LORA_Q);
    CHECK(memcmp(p + q1->a_off, p3 + q3->a_off, 4 * 64 * sizeof(float)) == 0);
    CHECK(lora_set_find(s3, 1, LORA_K) == NULL);
    lora_config c2 = c;
    c2.seed = 8;
    lora_set *s4 = NULL;
    CHECK(lora_set_new(be, &b, &c2, &s4) == TW_OK);
    float *p4 = download(s4, LORA_PARAM);
    CHECK(memcmp(p, p4, 64 * sizeof(float)) != 0);
    free(p), free(p2), free(p3), free(p4);
    lora_set_free(s), lora_set_free(s2), lora_set_free(s3), lora_set_free(s4);

    /* rank larger than k's 32 rows */
    lora_config big = small_config(1u << LORA_K);
    big.rank = 33;
    lora_set *bad = (lora_set *)1;
    CHECK(lora_set_new(be, &b, &big, &bad) == TW_ERR_ARG);
    CHECK(bad == NULL);
    CHECK(strstr(tw_errmsg(), "rank 33") && strstr(tw_errmsg(), "k (32 x 64)"));
    big.rank = 32;
    CHECK(lora_set_new(be, &b, &big, &bad) == TW_OK);
    lora_set_free(bad);
    lora_base g = b;
    snprintf(g.arch, sizeof g.arch, "bert");
    CHECK(lora_set_new(be, &g, &c, &bad) == TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "bert") != NULL);
    /* gpt2 (trained since issue 6's second part) wants multi-head attention */
    snprintf(g.arch, sizeof g.arch, "gpt2");
    CHECK(lora_set_new(be, &g, &c, &bad) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "gpt2") != NULL);
}

/* dst row of the other order for Q/K: HF row h*hd + s*half + i <-> GGUF row h*hd + 2i + s. */
static int64_t hf_to_gguf_row(int64_t r, int64_t hd) {
    int64_t h = r / hd, w = r % hd, half = hd / 2, s = w / half, i = w % half;
    return h * hd + 2 * i + s;
}

static void check_same_params(const lora_set *a, const lora_set *b, double tol, const char *what) {
    float *pa = download(a, LORA_PARAM), *pb = download(b, LORA_PARAM);
    double worst = 0;
    for (size_t k = 0; k < lora_set_n_floats(a); k++) {
        double d = fabs((double)pa[k] - pb[k]);
        if (d > worst) worst = d;
    }
    if (worst > tol) fprintf(stderr, "%s: max diff %g\n", what, worst);
    CHECK(worst <= tol);
    free(pa), free(pb);
}

static void test_peft_round_trip(void) {
    lora_base b = small_base(1);
    lora_config c = small_config(LORA_ALL_MODULES);
    c.use_rslora = 1;
    c.dropout = 0.1f;
    lora_set *s = NULL, *back = NULL, *hf = NULL;
    CHECK(lora_set_new(be, &b, &c, &s) == TW_OK);
    randomize(s);
    char dir[320];
    snprintf(dir, sizeof dir, "%s/peft", tmpdir);
    CHECK(lora_save_peft(s, dir) == TW_OK);
    CHECK(lora_load(be, dir, &b, &back) == TW_OK);
    if (!back) return;
    check_same_params(s, back, 0, "peft f32 round trip");
    CHECK_EQ_INT(lora_set_config(back)->rank, 4);
    CHECK_NEAR(lora_set_config(back)->alpha, 8, 0);
    CHECK_NEAR(lora_set_config(back)->dropout, 0.1, 1e-7);
    CHECK_EQ_INT(lora_set_config(back)->use_rslora, 1);
    CHECK_EQ_INT(lora_set_config(back)->targets, LORA_ALL_MODULES);
    CHECK_EQ_STR(lora_set_base(back)->name, "twin/tiny-llama");

    /* The stored q/k B are in HF order: reading into an HF-order base gives the rows moved. */
    lora_base bh = small_base(0);
    CHECK(lora_load(be, dir, &bh, &hf) == TW_OK);
    if (hf) {
        float *ps = download(s, LORA_PARAM), *ph = download(hf, LORA_PARAM);
        for (int m = 0; m < LORA_N_MODULES; m++) {
            const lora_adapter *as = lora_set_find(s, 1, (lora_module)m),
                               *ah = lora_set_find(hf, 1, (lora_module)m);
            int moved = m == LORA_Q || m == LORA_K;
            int bad = 0;
            for (int64_t r = 0; r < as->out; r++) {
                int64_t rg = moved ? hf_to_gguf_row(r, 16) : r;
                bad += memcmp(ph + ah->b_off + r * 4, ps + as->b_off + rg * 4, 4 * sizeof(float)) != 0;
            }
            CHECK_EQ_INT(bad, 0);
            CHECK(memcmp(ph + ah->a_off, ps + as->a_off, (size_t)(4 * as->in) * sizeof(float)) == 0);
        }
        free(ps), free(ph);
        /* and back to the permuted order through a PEFT save of the HF-order set */
        char dir2[340];
        snprintf(dir2, sizeof dir2, "%s/peft-hf", tmpdir);
        lora_set *again = NULL;
        CHECK(lora_save_peft(hf, dir2) == TW_OK);
        CHECK(lora_load(be, dir2, &b, &again) == TW_OK);
        if (again) check_same_params(s, again, 0, "permuted -> hf -> permuted");
        lora_set_free(again);
    }
    lora_set_free(hf);
    lora_set_free(back);
    lora_set_free(s);
}

static void test_gguf_round_trip(void) {
    lora_base b = small_base(0); /* an HF-order base: the GGUF file holds permuted Q/K */
    snprintf(b.sha256, sizeof b.sha256, "%064d", 1);
    lora_config c = small_config((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_DOWN));
    c.use_rslora = 1;
    lora_set *s = NULL, *back = NULL;
    CHECK(lora_set_new(be, &b, &c, &s) == TW_OK);
    randomize(s);
    char path[320];
    snprintf(path, sizeof path, "%s/adapter-f32.gguf", tmpdir);
    CHECK(lora_save_gguf(s, path, TW_DTYPE_F32) == TW_OK);
    gguf_file *f = gguf_open(path);
    CHECK(f != NULL);
    if (f) {
        gguf_str v;
        CHECK(gguf_get_str(f, "general.type", &v) == TW_OK && gguf_str_eq(v, "adapter"));
        CHECK(gguf_get_str(f, "adapter.type", &v) == TW_OK && gguf_str_eq(v, "lora"));
        CHECK(gguf_get_str(f, "general.architecture", &v) == TW_OK && gguf_str_eq(v, "llama"));
        double alpha = 0;
        CHECK(gguf_get_f64(f, "adapter.lora.alpha", &alpha) == TW_OK);
        CHECK_NEAR(alpha, 8 * 2.0, 1e-5); /* rsLoRA: alpha*sqrt(r) so that llama.cpp's alpha/r fits */
        CHECK_EQ_INT(gguf_n_tensors(f), 12);
        const gguf_tensor *ta = gguf_find_tensor(f, "blk.1.attn_k.weight.lora_a");
        const gguf_tensor *tb = gguf_find_tensor(f, "blk.1.attn_k.weight.lora_b");
        const gguf_tensor *td = gguf_find_tensor(f, "blk.0.ffn_down.weight.lora_a");
        CHECK(ta && ta->ne[0] == 64 && ta->ne[1] == 4 && ta->type == TW_DTYPE_F32);
        CHECK(tb && tb->ne[0] == 4 && tb->ne[1] == 32);
        CHECK(td && td->ne[0] == 96 && td->ne[1] == 4);
        /* k's B rows in llama.cpp's order */
        float *p = download(s, LORA_PARAM);
        const lora_adapter *ak = lora_set_find(s, 1, LORA_K);
        int bad = 0;
        for (int64_t r = 0; tb && r < 32; r++)
            bad += memcmp((const float *)tb->data + hf_to_gguf_row(r, 16) * 4,
                          p + ak->b_off + r * 4, 16) != 0;
        CHECK_EQ_INT(bad, 0);
        free(p);
        gguf_close(f);
    }
    CHECK(lora_load(be, path, &b, &back) == TW_OK);
    if (back) {
        check_same_params(s, back, 0, "gguf f32 round trip");
        CHECK_NEAR(lora_set_config(back)->alpha, 8, 0);
        CHECK_EQ_INT(lora_set_config(back)->use_rslora, 1);
        CHECK_NEAR(lora_set_scale(back), lora_set_scale(s), 0);
    }
    lora_set_free(back);
    back = NULL;
    snprintf(path, sizeof path, "%s/adapter-f16.gguf", tmpdir);
    CHECK(lora_save_gguf(s, path, TW_DTYPE_F16) == TW_OK);
    CHECK(lora_load(be, path, &b, &back) == TW_OK);
    /* |x| < 0.125: f16's spacing there is at most 2^-14, so rounding moves a value by at most
     * 2^-15 = 3.05e-5 */
    if (back) check_same_params(s, back, 0x1.0p-15, "gguf f16 round trip");
    lora_set_free(back);
    back = NULL;
    CHECK(lora_save_gguf(s, path, TW_DTYPE_Q4_K) == TW_ERR_ARG);

    /* Refusals: each names what differs. */
    lora_base other = b;
    other.n_layer = 3;
    CHECK(lora_load(be, path, &other, &back) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "2 layers") && strstr(tw_errmsg(), "has 3"));
    other = b;
    snprintf(other.arch, sizeof other.arch, "qwen2");
    CHECK(lora_load(be, path, &other, &back) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "'llama'") && strstr(tw_errmsg(), "'qwen2'"));
    other = b;
    other.n_ff = 128;
    CHECK(lora_load(be, path, &other, &back) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "ffn_down") && strstr(tw_errmsg(), "[4, 96]") &&
          strstr(tw_errmsg(), "[4, 128]"));
    other = b;
    snprintf(other.sha256, sizeof other.sha256, "%064d", 2);
    CHECK(lora_load(be, path, &other, &back) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "sha256") != NULL);
    other.sha256[0] = 0; /* unknown base hash: accepted, the file's is kept */
    CHECK(lora_load(be, path, &other, &back) == TW_OK);
    if (back) CHECK_EQ_STR(lora_set_base(back)->sha256, b.sha256);
    lora_set_free(back);
    back = NULL;
    CHECK(lora_load(be, "/nonexistent/adapter.gguf", &b, &back) == TW_ERR_NOT_FOUND);

    /* A PEFT folder whose layer count disagrees. */
    char dir[320];
    snprintf(dir, sizeof dir, "%s/peft-3", tmpdir);
    lora_base b3 = small_base(0);
    b3.n_layer = 3;
    lora_set *s3 = NULL;
    CHECK(lora_set_new(be, &b3, &c, &s3) == TW_OK);
    CHECK(lora_save_peft(s3, dir) == TW_OK);
    lora_base b2 = small_base(0);
    CHECK(lora_load(be, dir, &b2, &back) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "3 layers") != NULL);
    lora_set_free(s3);
    lora_set_free(s);
}

/* A tiny llama GGUF: the metadata lora_base_from_gguf reads and f32 weights. */
static void write_tiny_llama(const char *path, float **w_out) {
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 2);
    gguf_writer_set_u32(w, "llama.embedding_length", 64);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 96);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    static const char *mods[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
    const int64_t dims[7][2] = {{64, 64}, {32, 64}, {32, 64}, {64, 64},
                                {96, 64}, {96, 64}, {64, 96}};
    float *all = malloc(2 * 7 * 96 * 96 * sizeof(float) + 64 * sizeof(float));
    size_t off = 0;
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < 7; m++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mods[m]);
            int64_t ne[2] = {dims[m][1], dims[m][0]};
            for (int64_t k = 0; k < ne[0] * ne[1]; k++) all[off + k] = frand();
            gguf_writer_add_tensor(w, name, TW_DTYPE_F32, 2, ne, all + off);
            off += (size_t)(ne[0] * ne[1]);
        }
    int64_t ne1[1] = {64};
    for (int k = 0; k < 64; k++) all[off + k] = 1.0f + 0.01f * k;
    gguf_writer_add_tensor(w, "output_norm.weight", TW_DTYPE_F32, 1, ne1, all + off);
    CHECK(gguf_writer_write(w, path) == TW_OK);
    gguf_writer_free(w);
    *w_out = all;
}

static void test_merge(void) {
    char base_path[320], out_path[320], out2[320];
    snprintf(base_path, sizeof base_path, "%s/tiny-llama.gguf", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/merged.gguf", tmpdir);
    snprintf(out2, sizeof out2, "%s/merged-hf.gguf", tmpdir);
    float *w0;
    write_tiny_llama(base_path, &w0);
    lora_base b;
    CHECK(lora_base_from_gguf(base_path, &b) == TW_OK);
    lora_base want = small_base(1);
    CHECK_EQ_STR(b.arch, "llama");
    CHECK(b.n_layer == want.n_layer && b.n_embd == want.n_embd && b.n_head == want.n_head &&
          b.n_kv_head == want.n_kv_head && b.head_dim == want.head_dim && b.n_ff == want.n_ff &&
          b.qk_permuted == 1);
    lora_config c = small_config((1u << LORA_Q) | (1u << LORA_V) | (1u << LORA_DOWN));
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &b, &c, &s) == TW_OK);
    if (!s) return;
    randomize(s);
    CHECK(lora_merge_gguf(base_path, s, out_path, TW_DTYPE_COUNT) == TW_OK);
    /* The same adapter expressed for an HF-order base (rows of q's B moved) merges the same. */
    lora_base bh = b;
    bh.qk_permuted = 0;
    char dir[320];
    snprintf(dir, sizeof dir, "%s/peft-merge", tmpdir);
    lora_set *sh = NULL;
    CHECK(lora_save_peft(s, dir) == TW_OK);
    CHECK(lora_load(be, dir, &bh, &sh) == TW_OK);
    if (sh) CHECK(lora_merge_gguf(base_path, sh, out2, TW_DTYPE_COUNT) == TW_OK);

    gguf_file *base = gguf_open(base_path), *m = gguf_open(out_path), *m2 = gguf_open(out2);
    CHECK(base && m && m2);
    if (base && m && m2) {
        float *p = download(s, LORA_PARAM);
        double scale = lora_set_scale(s), worst = 0;
        for (uint64_t t = 0; t < gguf_n_tensors(base); t++) {
            const gguf_tensor *tb = gguf_tensor_at(base, t);
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)tb->name.len, tb->name.ptr);
            const gguf_tensor *tm = gguf_find_tensor(m, name), *tm2 = gguf_find_tensor(m2, name);
            CHECK(tm && tm2 && tm->type == TW_DTYPE_F32 && tm->nbytes == tb->nbytes);
            if (!tm || !tm2) continue;
            CHECK(memcmp(tm->data, tm2->data, tm->nbytes) == 0);
            int layer = -1;
            const lora_adapter *a = NULL;
            if (sscanf(name, "blk.%d.", &layer) == 1) {
                if (strstr(name, "attn_q.")) a = lora_set_find(s, layer, LORA_Q);
                if (strstr(name, "attn_v.")) a = lora_set_find(s, layer, LORA_V);
                if (strstr(name, "ffn_down.")) a = lora_set_find(s, layer, LORA_DOWN);
            }
            if (!a) {
                CHECK(memcmp(tm->data, tb->data, tb->nbytes) == 0);
                continue;
            }
            const float *W = tb->data, *M = tm->data;
            for (int64_t o = 0; o < a->out; o++)
                for (int64_t i = 0; i < a->in; i++) {
                    double d = 0;
                    for (int64_t k = 0; k < a->rank; k++)
                        d += (double)p[a->b_off + o * a->rank + k] * p[a->a_off + k * a->in + i];
                    double e = fabs((double)W[o * a->in + i] + scale * d - M[o * a->in + i]);
                    if (e > worst) worst = e;
                }
        }
        /* fp32 row += c * a over rank 4 terms of size <= 0.02: a few ulps of |W| <= 1. */
        CHECK(worst < 1e-6);
        free(p);
        /* metadata copied */
        uint64_t nl = 0;
        CHECK(gguf_get_u64(m, "llama.block_count", &nl) == TW_OK && nl == 2);
    }
    gguf_close(base), gguf_close(m), gguf_close(m2);

    /* --type q8_0: merged tensors in q8_0, within its rounding of the f32 merge. */
    CHECK(lora_merge_gguf(base_path, s, out2, TW_DTYPE_Q8_0) == TW_OK);
    m = gguf_open(out_path);
    m2 = gguf_open(out2);
    if (m && m2) {
        const gguf_tensor *a = gguf_find_tensor(m, "blk.1.attn_q.weight"),
                          *q = gguf_find_tensor(m2, "blk.1.attn_q.weight");
        CHECK(q && q->type == TW_DTYPE_Q8_0);
        float row[64];
        double worst = 0;
        for (int64_t r = 0; q && r < 64; r++) {
            tw_dequantize_row(TW_DTYPE_Q8_0, (const uint8_t *)q->data + r * 68, row, 64);
            for (int i = 0; i < 64; i++) {
                double e = fabs(row[i] - ((const float *)a->data)[r * 64 + i]);
                if (e > worst) worst = e;
            }
        }
        CHECK(worst < 1.1 / 127); /* q8_0: half a step of amax/127, amax <= ~1.05 */
    }
    gguf_close(m), gguf_close(m2);

    /* a base of other dimensions is refused */
    lora_base wrong = b;
    wrong.n_ff = 128;
    lora_set *sw = NULL;
    CHECK(lora_set_new(be, &wrong, &c, &sw) == TW_OK);
    CHECK(lora_merge_gguf(base_path, sw, out2, TW_DTYPE_COUNT) == TW_ERR_RUNTIME);
    CHECK(strstr(tw_errmsg(), "n_ff 128") != NULL);
    lora_set_free(sw);
    lora_set_free(sh);
    lora_set_free(s);
    free(w0);
}

/* The PEFT folder as an independent reader sees it. */
static void test_peft_python(void) {
    const char *src = test_env("TWIN_SRC");
    if (!src || system("python3 -c 'import json, struct' 2>/dev/null") != 0) {
        fprintf(stderr, "python3 or TWIN_SRC missing: peft_inspect check skipped\n");
        return;
    }
    lora_base b = small_base(1);
    snprintf(b.sha256, sizeof b.sha256, "%064d", 5);
    lora_config c = small_config((1u << LORA_Q) | (1u << LORA_O) | (1u << LORA_UP));
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &b, &c, &s) == TW_OK);
    if (!s) return;
    randomize(s);
    char dir[320], cmd[1024];
    snprintf(dir, sizeof dir, "%s/peft-py", tmpdir);
    CHECK(lora_save_peft(s, dir) == TW_OK);
    snprintf(cmd, sizeof cmd, "python3 '%s/tools/peft_inspect.py' '%s'", src, dir);
    FILE *fp = popen(cmd, "r");
    char *out = calloc(1, 1 << 20);
    size_t n = fp ? fread(out, 1, (1 << 20) - 1, fp) : 0;
    CHECK(fp && pclose(fp) == 0);
    tw_json *j = tw_json_parse(out, n, "peft_inspect output");
    CHECK(j != NULL);
    if (j) {
        const tw_json *cfg = tw_json_get(j, "config");
        CHECK_EQ_STR(tw_json_get_str(cfg, "peft_type", ""), "LORA");
        CHECK_EQ_STR(tw_json_get_str(cfg, "task_type", ""), "CAUSAL_LM");
        CHECK_EQ_STR(tw_json_get_str(cfg, "base_model_name_or_path", ""), "twin/tiny-llama");
        CHECK_NEAR(tw_json_get_num(cfg, "r", 0), 4, 0);
        CHECK_NEAR(tw_json_get_num(cfg, "lora_alpha", 0), 8, 0);
        CHECK(tw_json_is_bool(tw_json_get(cfg, "use_rslora")));
        const tw_json *tm = tw_json_get(cfg, "target_modules");
        CHECK_EQ_INT(tw_json_size(tm), 3);
        CHECK_EQ_STR(tw_json_str(tw_json_first(tm)), "q_proj");
        const tw_json *meta = tw_json_get(j, "metadata");
        CHECK_EQ_STR(tw_json_get_str(meta, "format", ""), "pt");
        CHECK_EQ_STR(tw_json_get_str(meta, "twin.base_sha256", ""), b.sha256);
        /* Expected names and shapes, spelled out here as PEFT writes them for a llama. */
        struct { const char *fmt; int64_t r0, r1; int mod; } want[] = {
            {"base_model.model.model.layers.%d.mlp.up_proj.lora_A.weight", 4, 64, LORA_UP},
            {"base_model.model.model.layers.%d.mlp.up_proj.lora_B.weight", 96, 4, LORA_UP},
            {"base_model.model.model.layers.%d.self_attn.o_proj.lora_A.weight", 4, 64, LORA_O},
            {"base_model.model.model.layers.%d.self_attn.o_proj.lora_B.weight", 64, 4, LORA_O},
            {"base_model.model.model.layers.%d.self_attn.q_proj.lora_A.weight", 4, 64, LORA_Q},
            {"base_model.model.model.layers.%d.self_attn.q_proj.lora_B.weight", 64, 4, LORA_Q},
        };
        const tw_json *ts = tw_json_get(j, "tensors");
        CHECK_EQ_INT(tw_json_size(ts), 12);
        float *p = download(s, LORA_PARAM);
        const tw_json *t = tw_json_first(ts);
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 6 && t; k++, t = tw_json_next(t)) {
                char name[128];
                snprintf(name, sizeof name, want[k].fmt, l);
                CHECK_EQ_STR(tw_json_get_str(t, "name", ""), name);
                CHECK_EQ_STR(tw_json_get_str(t, "dtype", ""), "F32");
                const tw_json *sh = tw_json_get(t, "shape");
                CHECK(tw_json_size(sh) == 2 && tw_json_num(tw_json_first(sh), 0) == want[k].r0 &&
                      tw_json_num(tw_json_next(tw_json_first(sh)), 0) == want[k].r1);
                const lora_adapter *a = lora_set_find(s, l, (lora_module)want[k].mod);
                int is_b = strstr(name, "lora_B") != NULL;
                size_t o = is_b ? a->b_off : a->a_off, cnt = (size_t)(a->rank * (is_b ? a->out : a->in));
                double sum = 0, sq = 0;
                for (size_t i = 0; i < cnt; i++) sum += p[o + i], sq += (double)p[o + i] * p[o + i];
                /* sums of the same floats in another order: |error| <= n eps sum|x| */
                CHECK_NEAR(tw_json_get_num(t, "sum", 1e9), sum, 1e-9);
                CHECK_NEAR(tw_json_get_num(t, "sumsq", 1e9), sq, 1e-9);
            }
        free(p);
    }
    tw_json_free(j);
    free(out);
    lora_set_free(s);
}

static void test_alloc_failures(void) {
    lora_base b = small_base(1);
    lora_config c = small_config(LORA_ALL_MODULES);
    char dir[320], path[320];
    snprintf(dir, sizeof dir, "%s/peft-fail", tmpdir);
    snprintf(path, sizeof path, "%s/fail.gguf", tmpdir);
    int clean = 1;
    for (uint64_t n = 1; n < 400; n++) {
        lora_set *s = NULL, *l1 = NULL, *l2 = NULL;
        tw_mem_fail_after(n);
        tw_status st = lora_set_new(be, &b, &c, &s);
        if (!st) st = lora_save_peft(s, dir);
        if (!st) st = lora_save_gguf(s, path, TW_DTYPE_F16);
        if (!st) st = lora_load(be, dir, &b, &l1);
        if (!st) st = lora_load(be, path, &b, &l2);
        tw_mem_fail_after(0);
        if (st && !*tw_errmsg()) clean = 0;
        lora_set_free(s), lora_set_free(l1), lora_set_free(l2);
        if (!st) break;
    }
    CHECK(clean);
}

/* Files for tests/unit/test_merge_cli.sh: tiny-llama.gguf, adapters for it (PEFT folder and
 * GGUF, with the base's sha256), one whose stored hash is another base's, and one made for a
 * base of other dimensions. */
static int write_fixture(const char *dir) {
    snprintf(tmpdir, sizeof tmpdir, "%s", dir);
    char base_path[320], p[400];
    snprintf(base_path, sizeof base_path, "%s/tiny-llama.gguf", dir);
    float *w0;
    write_tiny_llama(base_path, &w0);
    free(w0);
    lora_base b;
    lora_config c = small_config((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_UP));
    lora_set *s = NULL, *o = NULL, *h = NULL;
    if (lora_base_from_gguf(base_path, &b) || lora_model_hash(base_path, b.sha256) ||
        lora_set_new(be, &b, &c, &s))
        return 1;
    randomize(s);
    snprintf(p, sizeof p, "%s/adapter", dir);
    if (lora_save_peft(s, p)) return 1;
    snprintf(p, sizeof p, "%s/adapter.gguf", dir);
    if (lora_save_gguf(s, p, TW_DTYPE_F32)) return 1;
    lora_base other = b;
    snprintf(other.sha256, sizeof other.sha256, "%064d", 9);
    if (lora_set_new(be, &other, &c, &h)) return 1;
    snprintf(p, sizeof p, "%s/other-hash.gguf", dir);
    if (lora_save_gguf(h, p, TW_DTYPE_F32)) return 1;
    other = b;
    other.n_ff = 128;
    other.sha256[0] = 0;
    if (lora_set_new(be, &other, &c, &o)) return 1;
    snprintf(p, sizeof p, "%s/other-dims", dir);
    if (lora_save_peft(o, p)) return 1;
    lora_set_free(s), lora_set_free(o), lora_set_free(h);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-fixture")) {
        if (tw_backend_open("cpu", &be)) return 1;
        int rc = write_fixture(argv[2]);
        if (rc) fprintf(stderr, "test_lora --write-fixture: %s\n", tw_errmsg());
        tw_backend_free(be);
        return rc;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_lora.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    if (tw_backend_open("cpu", &be)) return 1;
    RUN(test_names_and_config);
    RUN(test_layout_and_init);
    RUN(test_peft_round_trip);
    RUN(test_gguf_round_trip);
    RUN(test_merge);
    RUN(test_peft_python);
    RUN(test_alloc_failures);
    tw_backend_free(be);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
