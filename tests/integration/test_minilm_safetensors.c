/* test_minilm_safetensors.c: the real all-MiniLM-L6-v2 model.safetensors and config.json.
 *   - the file opens; 104 tensors; __metadata__ {"format": "pt"}; the BERT tensor names and
 *     shapes, checked against the sizes its config.json gives (parsed as bert, 384 hidden,
 *     6 layers, 12 heads)
 *   - values converted to f32 match those read by Hugging Face's safetensors library (numpy),
 *     recorded below
 *   - every tensor copied through st_writer reads back byte-identical
 * Skips (77) when $TWIN_MODELS/minilm-l6/model.safetensors is absent. */
#include "hfconfig.h"
#include "safetensors.h"
#include "test.h"

#include <unistd.h>

static char model_dir[1024];

static void check_shape(const st_file *f, const char *name, st_dtype type, uint32_t n_dims,
                        int64_t d0, int64_t d1) {
    const st_tensor *t = st_find_tensor(f, name);
    if (!t) {
        fprintf(stderr, "missing tensor %s\n", name);
        test_failures++;
        return;
    }
    CHECK_EQ_INT(t->st_type, type);
    CHECK_EQ_INT(t->n_dims, n_dims);
    CHECK_EQ_INT(t->shape[0], d0);
    if (n_dims > 1) CHECK_EQ_INT(t->shape[1], d1);
    if (t->st_type != type || t->n_dims != n_dims || t->shape[0] != d0 || (n_dims > 1 && t->shape[1] != d1))
        fprintf(stderr, "  (tensor %s)\n", name);
}

static hf_config cfg;

static void test_config(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    CHECK_EQ_INT(hf_config_load(path, &cfg), TW_OK);
    CHECK_EQ_INT(cfg.arch, HF_ARCH_BERT);
    CHECK_EQ_INT(cfg.hidden_size, 384);
    CHECK_EQ_INT(cfg.n_layers, 6);
    CHECK_EQ_INT(cfg.n_heads, 12);
    CHECK_EQ_INT(cfg.intermediate_size, 1536);
    CHECK_EQ_INT(cfg.vocab_size, 30522);
    CHECK_EQ_INT(cfg.max_position_embeddings, 512);
    CHECK_EQ_INT(cfg.type_vocab_size, 2);
}

static st_file *f;

static void test_layout(void) {
    CHECK_EQ_INT(st_n_tensors(f), 104); /* 5 embedding + 6 * 16 encoder + 2 pooler + position_ids */
    CHECK_EQ_INT(st_header_size(f), 11408);
    CHECK_EQ_INT(st_file_size(f), 90868376);
    CHECK_EQ_INT(st_n_metadata(f), 1);
    CHECK_EQ_STR(st_metadata_get(f, "format"), "pt");

    int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    check_shape(f, "embeddings.word_embeddings.weight", ST_DTYPE_F32, 2, cfg.vocab_size, H);
    check_shape(f, "embeddings.position_embeddings.weight", ST_DTYPE_F32, 2, cfg.max_position_embeddings, H);
    check_shape(f, "embeddings.token_type_embeddings.weight", ST_DTYPE_F32, 2, cfg.type_vocab_size, H);
    check_shape(f, "embeddings.LayerNorm.weight", ST_DTYPE_F32, 1, H, 0);
    check_shape(f, "embeddings.LayerNorm.bias", ST_DTYPE_F32, 1, H, 0);
    check_shape(f, "embeddings.position_ids", ST_DTYPE_I64, 2, 1, cfg.max_position_embeddings);
    check_shape(f, "pooler.dense.weight", ST_DTYPE_F32, 2, H, H);
    check_shape(f, "pooler.dense.bias", ST_DTYPE_F32, 1, H, 0);
    for (int l = 0; l < cfg.n_layers; l++) {
        static const struct {
            const char *suffix;
            int rows_inter, cols_inter, n_dims;
        } per_layer[] = {
            {"attention.self.query.weight", 0, 0, 2},    {"attention.self.query.bias", 0, 0, 1},
            {"attention.self.key.weight", 0, 0, 2},      {"attention.self.key.bias", 0, 0, 1},
            {"attention.self.value.weight", 0, 0, 2},    {"attention.self.value.bias", 0, 0, 1},
            {"attention.output.dense.weight", 0, 0, 2},  {"attention.output.dense.bias", 0, 0, 1},
            {"attention.output.LayerNorm.weight", 0, 0, 1}, {"attention.output.LayerNorm.bias", 0, 0, 1},
            {"intermediate.dense.weight", 1, 0, 2},      {"intermediate.dense.bias", 1, 0, 1},
            {"output.dense.weight", 0, 1, 2},            {"output.dense.bias", 0, 0, 1},
            {"output.LayerNorm.weight", 0, 0, 1},        {"output.LayerNorm.bias", 0, 0, 1},
        };
        for (size_t k = 0; k < sizeof per_layer / sizeof *per_layer; k++) {
            char name[128];
            snprintf(name, sizeof name, "encoder.layer.%d.%s", l, per_layer[k].suffix);
            /* PyTorch Linear weights are [out, in]: intermediate [I, H], output [H, I]. */
            check_shape(f, name, ST_DTYPE_F32, (uint32_t)per_layer[k].n_dims,
                        per_layer[k].rows_inter ? I : H, per_layer[k].cols_inter ? I : H);
        }
    }
    char name[64];
    snprintf(name, sizeof name, "encoder.layer.%lld.output.dense.weight", (long long)cfg.n_layers);
    CHECK(st_find_tensor(f, name) == NULL);
}

/* Values as Hugging Face's safetensors (0.8, numpy backend) reads them; the sums were taken
 * in float64 by numpy. */
static void test_values(void) {
    const st_tensor *pos = st_find_tensor(f, "embeddings.position_ids");
    if (pos) {
        for (int64_t i = 0; i < 512; i++) {
            int64_t v;
            memcpy(&v, (const uint8_t *)pos->data + 8 * i, 8);
            if (v != i) {
                CHECK_EQ_INT(v, i);
                break;
            }
        }
    }
    const st_tensor *we = st_find_tensor(f, "embeddings.word_embeddings.weight");
    if (!we) return;
    float *w = malloc((size_t)we->n_elements * sizeof *w); /* (30522, 384) */
    CHECK(st_tensor_to_f32(we, w) == TW_OK);
    CHECK(w[0] == -0.019989013671875f);
    CHECK(w[1] == -0.0034027099609375f);
    CHECK(w[2] == -0.014678955078125f);
    CHECK(w[101 * 384 + 0] == -0.01761939749121666f); /* [CLS] */
    CHECK(w[101 * 384 + 2] == 0.047105543315410614f);
    CHECK(w[30521 * 384 + 383] == 0.004570063669234514f);
    double sum = 0, asum = 0;
    for (int64_t i = 0; i < we->n_elements; i++) {
        sum += w[i];
        asum += fabs(w[i]);
    }
    /* 11.7M terms of magnitude ~0.05 in double: order-dependent error is far below 1e-6. */
    CHECK_NEAR(sum, 138.05072214923618, 1e-6);
    CHECK_NEAR(asum, 508883.5765956839, 1e-6);
    free(w);

    const st_tensor *ln = st_find_tensor(f, "embeddings.LayerNorm.weight");
    float g[384];
    CHECK(ln && st_tensor_to_f32(ln, g) == TW_OK);
    double gs = 0;
    for (int i = 0; i < 384; i++) gs += g[i];
    CHECK_NEAR(gs, 236.85435231029987, 1e-9);
    CHECK(g[0] == 0.5989283323287964f);
}

/* Copies every tensor and the metadata through st_writer and reads the copy back. */
static void test_rewrite(void) {
    char path[1100];
    const char *t = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/twin-minilm-%ld.safetensors", t && *t ? t : "/tmp", (long)getpid());
    st_writer *w = st_writer_new();
    for (uint64_t i = 0; i < st_n_metadata(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        CHECK(st_writer_set_metadata(w, k, v) == TW_OK);
    }
    for (uint64_t i = 0; i < st_n_tensors(f); i++) {
        const st_tensor *x = st_tensor_at(f, i);
        CHECK(st_writer_add_tensor(w, x->name, x->st_type, x->n_dims, x->shape, x->data) == TW_OK);
    }
    CHECK(st_writer_write(w, path) == TW_OK);
    st_writer_free(w);
    st_file *g = st_open(path);
    CHECK(g != NULL);
    if (g) {
        CHECK_EQ_INT(st_n_tensors(g), st_n_tensors(f));
        CHECK_EQ_INT(st_file_size(g) - st_data_offset(g), st_file_size(f) - st_data_offset(f));
        CHECK_EQ_STR(st_metadata_get(g, "format"), "pt");
        for (uint64_t i = 0; i < st_n_tensors(f); i++) {
            const st_tensor *a = st_tensor_at(f, i), *b = st_find_tensor(g, a->name);
            CHECK(b != NULL);
            if (!b) continue;
            CHECK_EQ_INT(b->st_type, a->st_type);
            CHECK_EQ_INT(b->n_dims, a->n_dims);
            CHECK(memcmp(b->shape, a->shape, sizeof a->shape) == 0);
            CHECK(b->nbytes == a->nbytes && memcmp(b->data, a->data, a->nbytes) == 0);
        }
        st_close(g);
    }
    unlink(path);
}

int main(void) {
    const char *models = test_env("TWIN_MODELS");
    if (!models) TEST_SKIP("TWIN_MODELS is not set");
    snprintf(model_dir, sizeof model_dir, "%s/minilm-l6", models);
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    if (!tw_path_exists(path)) TEST_SKIP("%s is absent (twin model fetch minilm-l6)", path);
    double t0 = tw_now_s();
    f = st_open(path);
    double t1 = tw_now_s();
    if (!f) {
        fprintf(stderr, "st_open: %s\n", tw_errmsg());
        return 1;
    }
    fprintf(stderr, "st_open of %s: %.3f ms\n", path, (t1 - t0) * 1e3);
    RUN(test_config);
    RUN(test_layout);
    RUN(test_values);
    RUN(test_rewrite);
    st_close(f);
    TEST_DONE();
}
