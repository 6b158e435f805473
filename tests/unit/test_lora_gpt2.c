/* test_lora_gpt2: LoRA adapter sets of GPT-2 bases (engine/lora.c), on the CPU backend:
 *   - the base from a GGUF (tests/data/gpt2/tiny-gpt2-f32.gguf: fused attn_qkv, MHA, no gate);
 *     targets: "all" is six modules, gate refused;
 *   - PEFT and GGUF round trips give the same parameter bits back for several target sets
 *     (all six, q alone, q+v, k+o, v+up; rsLoRA too): q, k, v leave as ONE fused c_attn /
 *     attn_qkv adapter (A stacked, B block-diagonal; GGUF: 3 blocks padded to 4 and B scaled
 *     by 4, a power of two) and come back split, exactly; F16 GGUF within f16 rounding;
 *   - the files' fused tensors: B A of the fused adapter, with the file's scale (PEFT:
 *     alpha_pattern / rank_pattern; GGUF: alpha / its own rank, as llama.cpp computes it),
 *     equals the sum of the set's q, k, v deltas on their rows;
 *   - a fused adapter written elsewhere (no twin.c_attn: PEFT's own c_attn) is read "shared":
 *     q, k, v each get A whole and their rows of B, the same delta;
 *   - refusals: an entry off the block diagonal in a file that claims twin's layout, a rank
 *     pattern for another module, a llama adapter on a gpt2 base;
 *   - merge: attn_qkv's rows get their module's W + scale B A (checked in double), ffn_up too,
 *     other tensors byte-identical. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "lora.h"
#include "safetensors.h"
#include "test.h"

static tw_backend *be;
static char tmpdir[256];
static char model_path[1024];
static lora_base base;

static uint64_t rng_state = 99;
static float frand(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 11) * 0x1.0p-52 - 1.0);
}

/* Random A and B (B is zero at creation: a round trip of zeros proves little). */
static float *randomize(lora_set *s) {
    size_t n = lora_set_n_floats(s);
    float *h = calloc(n, sizeof(float));
    CHECK(lora_set_download(s, LORA_PARAM, h) == TW_OK);
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        for (int64_t k = 0; k < a->out * a->rank; k++) h[a->b_off + (size_t)k] = 0.1f * frand();
        for (int64_t k = 0; k < a->rank * a->in; k++) h[a->a_off + (size_t)k] = frand() / 8;
    }
    CHECK(lora_set_upload(s, LORA_PARAM, h) == TW_OK);
    return h;
}

static lora_set *new_set(const char *targets, int rslora) {
    lora_config c;
    lora_config_default(&c);
    c.rank = 2;
    c.alpha = 5;
    c.dropout = 0;
    c.use_rslora = rslora;
    c.seed = 3;
    CHECK(lora_targets_parse_for(targets, &base, &c.targets) == TW_OK);
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &base, &c, &s) == TW_OK);
    return s;
}

/* The delta of module m's rows in layer l: scale * B A, in double, (out, in). */
static double *delta_of(const lora_set *s, const float *p, int32_t l, lora_module m) {
    const lora_adapter *a = lora_set_find(s, l, m);
    if (!a) return NULL;
    double *d = calloc((size_t)(a->out * a->in), sizeof(double));
    for (int64_t o = 0; o < a->out; o++)
        for (int64_t k = 0; k < a->rank; k++)
            for (int64_t j = 0; j < a->in; j++)
                d[o * a->in + j] += (double)lora_set_scale(s) * p[a->b_off + (size_t)(o * a->rank + k)] *
                                    p[a->a_off + (size_t)(k * a->in + j)];
    return d;
}

/* |scale * B A - (q, k, v deltas on their rows)| for a fused A (R, d), B (3d, R). */
static double fused_error(const lora_set *s, const float *p, int32_t l, const float *A,
                          const float *B, int64_t R, double scale) {
    const int64_t d = base.n_embd;
    double worst = 0;
    for (int m = LORA_Q; m <= LORA_V; m++) {
        double *want = delta_of(s, p, l, (lora_module)m);
        for (int64_t o = 0; o < d; o++)
            for (int64_t j = 0; j < d; j++) {
                double got = 0;
                for (int64_t k = 0; k < R; k++) got += (double)B[((m - LORA_Q) * d + o) * R + k] * A[k * d + j];
                got *= scale;
                double e = fabs(got - (want ? want[o * d + j] : 0));
                if (e > worst) worst = e;
            }
        free(want);
    }
    return worst;
}

static void check_same(const lora_set *a, const lora_set *b, double tol, const char *what) {
    CHECK_EQ_INT(lora_set_n_adapters(a), lora_set_n_adapters(b));
    CHECK(lora_set_config(a)->targets == lora_set_config(b)->targets);
    CHECK(lora_set_config(a)->rank == lora_set_config(b)->rank);
    CHECK(lora_set_scale(a) == lora_set_scale(b));
    size_t n = lora_set_n_floats(a);
    if (n != lora_set_n_floats(b)) return;
    float *x = calloc(n, 4), *y = calloc(n, 4);
    CHECK(lora_set_download(a, LORA_PARAM, x) == TW_OK);
    CHECK(lora_set_download(b, LORA_PARAM, y) == TW_OK);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)x[i] - y[i]) > worst) worst = fabs((double)x[i] - y[i]);
    if (tol == 0 && memcmp(x, y, n * 4) != 0) fprintf(stderr, "%s: bits differ\n", what);
    if (tol == 0) CHECK(memcmp(x, y, n * 4) == 0);
    else CHECK(worst <= tol);
    free(x);
    free(y);
}

static void test_base_and_targets(void) {
    CHECK(lora_base_from_gguf(model_path, &base) == TW_OK);
    CHECK_EQ_STR(base.arch, "gpt2");
    CHECK_EQ_INT(base.n_layer, 2);
    CHECK_EQ_INT(base.n_embd, 32);
    CHECK_EQ_INT(base.n_head, 2);
    CHECK_EQ_INT(base.n_kv_head, 2);
    CHECK_EQ_INT(base.head_dim, 16);
    CHECK_EQ_INT(base.n_ff, 128);
    CHECK_EQ_INT(base.qk_permuted, 0);
    CHECK(lora_base_modules(&base) == LORA_ALL_MODULES - (1u << LORA_GATE));
    unsigned m = 0;
    CHECK(lora_targets_parse_for("all", &base, &m) == TW_OK && m == lora_base_modules(&base));
    CHECK(lora_targets_parse_for("ffn_gate", &base, &m) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "gate") != NULL);
}

/* PEFT and GGUF round trips of one target set; the fused tensors' products. */
static void round_trip(const char *targets, int rslora) {
    lora_set *s = new_set(targets, rslora);
    if (!s) return;
    float *p = randomize(s);
    char dir[512], gg[512], g16[512];
    snprintf(dir, sizeof dir, "%s/peft", tmpdir);
    snprintf(gg, sizeof gg, "%s/a.gguf", tmpdir);
    snprintf(g16, sizeof g16, "%s/a16.gguf", tmpdir);
    CHECK(lora_save_peft(s, dir) == TW_OK);
    CHECK(lora_save_gguf(s, gg, TW_DTYPE_F32) == TW_OK);
    CHECK(lora_save_gguf(s, g16, TW_DTYPE_F16) == TW_OK);
    lora_set *a = NULL, *b = NULL, *c = NULL;
    CHECK(lora_load(be, dir, &base, &a) == TW_OK);
    CHECK(lora_load(be, gg, &base, &b) == TW_OK);
    CHECK(lora_load(be, g16, &base, &c) == TW_OK);
    char what[96];
    snprintf(what, sizeof what, "PEFT %s%s", targets, rslora ? " rslora" : "");
    if (a) check_same(s, a, 0, what);
    snprintf(what, sizeof what, "GGUF %s%s", targets, rslora ? " rslora" : "");
    if (b) check_same(s, b, 0, what);
    if (c) check_same(s, c, 2e-4, "GGUF f16"); /* |values| <= 0.125: f16 half-ulp 6e-5 */

    /* the fused tensors as other programs read them */
    const lora_config *cfg = lora_set_config(s);
    int t = 0;
    for (int m = LORA_Q; m <= LORA_V; m++) t += !!(cfg->targets & (1u << m));
    if (t) {
        char fp[600];
        snprintf(fp, sizeof fp, "%s/adapter_model.safetensors", dir);
        st_file *f = st_open(fp);
        CHECK(f != NULL);
        if (f) {
            const st_tensor *A = st_find_tensor(f, "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight");
            const st_tensor *B = st_find_tensor(f, "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight");
            CHECK(A && B);
            if (A && B) {
                const int64_t R = A->shape[0];
                CHECK_EQ_INT(R, t * cfg->rank);
                float *fa = malloc((size_t)(R * 32) * 4), *fb = malloc((size_t)(96 * R) * 4);
                CHECK(st_tensor_to_f32(A, fa) == TW_OK && st_tensor_to_f32(B, fb) == TW_OK);
                /* PEFT: scale alpha_c / R with alpha_c from alpha_pattern (t alpha, or
                 * sqrt(t) alpha with rsLoRA over sqrt(R)) */
                double sc = rslora ? cfg->alpha * sqrt((double)t) / sqrt((double)R)
                                   : (double)cfg->alpha * t / (double)R;
                CHECK(fused_error(s, p, 1, fa, fb, R, sc) < 1e-6);
                free(fa);
                free(fb);
            }
            st_close(f);
        }
        gguf_file *g = gguf_open(gg);
        CHECK(g != NULL);
        if (g) {
            const gguf_tensor *A = gguf_find_tensor(g, "blk.1.attn_qkv.weight.lora_a");
            const gguf_tensor *B = gguf_find_tensor(g, "blk.1.attn_qkv.weight.lora_b");
            double alpha = 0;
            CHECK(gguf_get_f64(g, "adapter.lora.alpha", &alpha) == TW_OK);
            CHECK(A && B && !gguf_find_tensor(g, "blk.1.attn_q.weight.lora_a"));
            if (A && B) {
                const int64_t R = A->ne[1];
                CHECK_EQ_INT(R, (t == 3 ? 4 : t) * cfg->rank);
                CHECK_EQ_INT(B->ne[0], R);
                CHECK_EQ_INT(B->ne[1], 96);
                /* llama.cpp: scale = alpha / (this tensor's rank) */
                CHECK(fused_error(s, p, 1, A->data, B->data, R, alpha / (double)R) < 1e-6);
            }
            gguf_close(g);
        }
    }
    lora_set_free(a);
    lora_set_free(b);
    lora_set_free(c);
    lora_set_free(s);
    free(p);
}

/* Writes a PEFT folder with one fused c_attn adapter per layer (A (R, 32), B (96, R)),
 * config text cfg and metadata twin.c_attn = qkv (NULL: none). */
static void write_fused_peft(const char *dir, const char *cfg, const char *qkv, int64_t R,
                             const float *A, const float *B) {
    CHECK(tw_mkdir_p(dir) == TW_OK);
    st_writer *w = st_writer_new();
    st_writer_set_metadata(w, "format", "pt");
    if (qkv) st_writer_set_metadata(w, "twin.c_attn", qkv);
    for (int l = 0; l < 2; l++) {
        char name[128];
        int64_t sa[2] = {R, 32}, sb[2] = {96, R};
        snprintf(name, sizeof name, "base_model.model.transformer.h.%d.attn.c_attn.lora_A.weight", l);
        CHECK(st_writer_add_tensor(w, name, ST_DTYPE_F32, 2, sa, A) == TW_OK);
        snprintf(name, sizeof name, "base_model.model.transformer.h.%d.attn.c_attn.lora_B.weight", l);
        CHECK(st_writer_add_tensor(w, name, ST_DTYPE_F32, 2, sb, B) == TW_OK);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(st_writer_write(w, path) == TW_OK);
    st_writer_free(w);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    CHECK(tw_file_write_atomic(path, cfg, strlen(cfg)) == TW_OK);
}

static void test_foreign_and_refusals(void) {
    enum { R = 3 };
    float A[R * 32], B[96 * R];
    for (int i = 0; i < R * 32; i++) A[i] = frand() / 4;
    for (int i = 0; i < 96 * R; i++) B[i] = 0.1f * frand();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/foreign", tmpdir);
    /* PEFT's own c_attn adapter (as peft writes it for GPT2LMHeadModel) */
    write_fused_peft(dir, "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 6, "
                          "\"target_modules\": [\"c_attn\"], \"fan_in_fan_out\": true}",
                     NULL, R, A, B);
    lora_set *s = NULL;
    CHECK(lora_load(be, dir, &base, &s) == TW_OK);
    if (s) {
        CHECK_EQ_INT(lora_set_n_adapters(s), 6);
        CHECK_EQ_INT(lora_set_config(s)->rank, R);
        CHECK(lora_set_scale(s) == 2.0f);
        float *p = calloc(lora_set_n_floats(s), 4);
        CHECK(lora_set_download(s, LORA_PARAM, p) == TW_OK);
        CHECK(fused_error(s, p, 0, A, B, R, 2.0) < 1e-6);
        CHECK(fused_error(s, p, 1, A, B, R, 2.0) < 1e-6);
        free(p);
        lora_set_free(s);
    }
    /* c_attn at another rank than the other modules: one rank per set */
    write_fused_peft(dir, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 6, "
                          "\"rank_pattern\": {\"c_attn\": 3}, "
                          "\"target_modules\": [\"c_attn\", \"c_fc\"]}",
                     NULL, R, A, B);
    s = NULL;
    CHECK(lora_load(be, dir, &base, &s) == TW_ERR_UNSUPPORTED && s == NULL);
    CHECK(strstr(tw_errmsg(), "c_attn") != NULL);
    /* a rank pattern for another module */
    write_fused_peft(dir, "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 6, "
                          "\"rank_pattern\": {\"c_fc\": 3}, \"target_modules\": [\"c_attn\"]}",
                     NULL, R, A, B);
    CHECK(lora_load(be, dir, &base, &s) == TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "rank_pattern") != NULL);
    /* twin's layout claimed (q,k,v at rank 1 each: R = 3) but B is not block-diagonal */
    write_fused_peft(dir, "{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, "
                          "\"rank_pattern\": {\"c_attn\": 3}, \"alpha_pattern\": {\"c_attn\": 6}, "
                          "\"target_modules\": [\"attn.c_attn\"]}",
                     "q,k,v", R, A, B);
    CHECK(lora_load(be, dir, &base, &s) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "block diagonal") != NULL);
    /* the same with B block-diagonal loads */
    for (int row = 0; row < 96; row++)
        for (int c = 0; c < R; c++)
            if (row / 32 != c) B[row * R + c] = 0;
    write_fused_peft(dir, "{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, "
                          "\"rank_pattern\": {\"c_attn\": 3}, \"alpha_pattern\": {\"c_attn\": 6}, "
                          "\"target_modules\": [\"attn.c_attn\"]}",
                     "q,k,v", R, A, B);
    CHECK(lora_load(be, dir, &base, &s) == TW_OK);
    if (s) {
        CHECK_EQ_INT(lora_set_config(s)->rank, 1);
        float *p = calloc(lora_set_n_floats(s), 4);
        CHECK(lora_set_download(s, LORA_PARAM, p) == TW_OK);
        CHECK(fused_error(s, p, 0, A, B, R, 2.0) < 1e-6);
        free(p);
        lora_set_free(s);
    }
    /* a llama adapter on the gpt2 base */
    lora_base lb = base;
    snprintf(lb.arch, sizeof lb.arch, "llama");
    lb.n_kv_head = 2;
    lora_config c;
    lora_config_default(&c);
    c.rank = 2;
    lora_set *ls = NULL;
    CHECK(lora_set_new(be, &lb, &c, &ls) == TW_OK);
    snprintf(dir, sizeof dir, "%s/llama", tmpdir);
    char gg[600];
    snprintf(gg, sizeof gg, "%s/llama.gguf", tmpdir);
    CHECK(lora_save_peft(ls, dir) == TW_OK && lora_save_gguf(ls, gg, TW_DTYPE_F32) == TW_OK);
    CHECK(lora_load(be, dir, &base, &s) != TW_OK && s == NULL);
    CHECK(lora_load(be, gg, &base, &s) == TW_ERR_RUNTIME && s == NULL);
    CHECK(strstr(tw_errmsg(), "llama") != NULL);
    lora_set_free(ls);
}

static void test_merge(void) {
    lora_set *s = new_set("all", 0);
    if (!s) return;
    float *p = randomize(s);
    char out[600];
    snprintf(out, sizeof out, "%s/merged.gguf", tmpdir);
    CHECK(lora_merge_gguf(model_path, s, out, TW_DTYPE_COUNT) == TW_OK);
    gguf_file *b = gguf_open(model_path), *m = gguf_open(out);
    CHECK(b && m);
    if (b && m) {
        double worst = 0;
        for (uint64_t t = 0; t < gguf_n_tensors(b); t++) {
            const gguf_tensor *tb = gguf_tensor_at(b, t);
            char name[96];
            snprintf(name, sizeof name, "%.*s", (int)tb->name.len, tb->name.ptr);
            const gguf_tensor *tm = gguf_find_tensor(m, name);
            CHECK(tm != NULL && tm->type == tb->type);
            if (!tm) continue;
            int layer = -1;
            char mod[32] = "";
            sscanf(name, "blk.%d.%31[a-z_]", &layer, mod);
            int adapted = !strcmp(mod, "attn_qkv") || !strcmp(mod, "attn_output") ||
                          !strcmp(mod, "ffn_up") || !strcmp(mod, "ffn_down");
            if (!adapted || strstr(name, ".bias")) {
                CHECK(tb->nbytes == tm->nbytes && memcmp(tb->data, tm->data, tb->nbytes) == 0);
                continue;
            }
            const float *w0 = tb->data, *w1 = tm->data;
            const int64_t in = tb->ne[0], rows = tb->ne[1];
            for (int64_t o = 0; o < rows; o++) {
                lora_module mm = !strcmp(mod, "attn_qkv") ? (lora_module)(LORA_Q + o / 32)
                                 : !strcmp(mod, "attn_output") ? LORA_O
                                 : !strcmp(mod, "ffn_up") ? LORA_UP : LORA_DOWN;
                int64_t ro = !strcmp(mod, "attn_qkv") ? o % 32 : o;
                double *dl = delta_of(s, p, layer, mm);
                for (int64_t j = 0; j < in; j++) {
                    double e = fabs((double)w1[o * in + j] - ((double)w0[o * in + j] + dl[ro * in + j]));
                    if (e > worst) worst = e;
                }
                free(dl);
            }
        }
        /* f32 sums of rank 2 products of values <= 0.125 near weights ~1: a few ulp */
        CHECK(worst < 1e-6);
        printf("merge: worst |W' - (W + s B A)| %.3g\n", worst);
    }
    gguf_close(b);
    gguf_close(m);
    free(p);
    lora_set_free(s);
}

int main(void) {
    const char *data = getenv("TWIN_TEST_DATA");
    if (!data) data = "tests/data";
    snprintf(model_path, sizeof model_path, "%.900s/gpt2/tiny-gpt2-f32.gguf", data);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_lora_gpt2.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    test_base_and_targets();
    round_trip("all", 0);
    round_trip("all", 1);
    round_trip("q", 0);
    round_trip("q,v", 0);
    round_trip("k,o", 0);
    round_trip("v,up", 1);
    round_trip("down", 0);
    test_foreign_and_refusals();
    test_merge();
    tw_backend_free(be);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (test_failures) fprintf(stderr, "test_lora_gpt2: %d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
