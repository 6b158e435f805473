/* test_encoder_golden.c: all-MiniLM-L6-v2 sentence embeddings against the golden vectors of
 * tools/gen_embed_golden.py (an onnx-helper-built BERT graph run by onnxruntime, HF tokenizers;
 * tests/data/embed/minilm-l6.golden.{json,bin}):
 *   - every one of the 200 texts (short, long past 256 tokens, code, other scripts, emoji,
 *     empty) embedded in one call has cosine >= 0.9999 with its golden vector, and a unit norm
 *   - truncation: *n_truncated is the number of golden texts longer than max_seq_length
 *   - batch == single: each of 40 texts embedded alone gives the bits of the batched call,
 *     and so do the first 60 texts as their own batch at 1 thread
 *   - the empty and all-whitespace texts get the embedding of "[CLS] [SEP]" (defined: equal
 *     to each other, finite, unit norm)
 *   - the id is "minilm-l6@<16 hex>", stable across loads, and the dimension 384
 * Skips (77) when $TWIN_MODELS/minilm-l6 is absent. */
#include "encoder.h"
#include "json.h"
#include "test.h"

static tw_encoder *enc;
static tw_json *doc;
static const float *gold; /* (n_cases, dim) */
static int n_cases, dim;
static const char **texts;
static float *batched; /* (n_cases, dim): one call over every text */

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

static void test_identity(void) {
    CHECK_EQ_INT(tw_encoder_dim(enc), 384);
    CHECK_EQ_INT(tw_encoder_max_tokens(enc), 256);
    const char *id = tw_encoder_id(enc);
    CHECK(strncmp(id, "minilm-l6@", 10) == 0 && strlen(id) == 26);
    for (int i = 10; i < 26 && id[i]; i++) CHECK(strchr("0123456789abcdef", id[i]) != NULL);
    fprintf(stderr, "  id %s\n", id);
}

static void test_all_texts(void) {
    int32_t n_trunc = -1;
    double t0 = tw_now_s();
    CHECK_EQ_INT(tw_encoder_embed(enc, texts, NULL, n_cases, batched, &n_trunc), TW_OK);
    double dt = tw_now_s() - t0;
    int want_trunc = 0;
    double worst = 2;
    int worst_i = -1;
    tw_json *cases = tw_json_get(doc, "cases");
    int i = 0;
    for (tw_json *c = tw_json_first(cases); c; c = tw_json_next(c), i++) {
        want_trunc += tw_json_get_bool(c, "truncated", 0);
        int off = (int)tw_json_get_num(c, "offset", -1);
        CHECK_EQ_INT(off, i * dim);
        double cs = cosine(batched + (size_t)i * dim, gold + (size_t)i * dim, dim);
        if (cs < worst) worst = cs, worst_i = i;
        if (!(cs >= 0.9999))
            fprintf(stderr, "  case %s: cosine %.7f\n", tw_json_get_str(c, "name", "?"), cs);
        CHECK(cs >= 0.9999);
        double nn = 0;
        for (int j = 0; j < dim; j++) nn += (double)batched[(size_t)i * dim + j] * batched[(size_t)i * dim + j];
        CHECK_NEAR(sqrt(nn), 1.0, 1e-5); /* fp32 rounding of 384 normalised values */
    }
    CHECK_EQ_INT(i, n_cases);
    CHECK(want_trunc > 0);
    CHECK_EQ_INT(n_trunc, want_trunc);
    fprintf(stderr, "  %d texts in %.3f s, worst cosine %.7f (case %d), %d truncated\n", n_cases, dt,
            worst, worst_i, (int)n_trunc);
}

static void test_batch_equals_single(void) {
    float *one = malloc((size_t)dim * sizeof *one);
    int32_t nt = -1;
    for (int i = 0; i < 40; i++) {
        int k = (i * 37) % n_cases; /* a spread of lengths */
        CHECK_EQ_INT(tw_encoder_embed(enc, &texts[k], NULL, 1, one, &nt), TW_OK);
        if (memcmp(one, batched + (size_t)k * dim, (size_t)dim * sizeof *one) != 0) {
            fprintf(stderr, "  text %d alone differs from the batch\n", k);
            test_failures++;
        }
    }
    /* the first 60 texts (the fixed ones: other scripts, code, emoji, a truncated one) again
     * in a smaller batch at one thread: the same bits */
    const int na = 60;
    float *again = malloc((size_t)na * (size_t)dim * sizeof *again);
    int th = tw_threads_get();
    tw_threads_set(1);
    CHECK_EQ_INT(tw_encoder_embed(enc, texts, NULL, na, again, NULL), TW_OK);
    tw_threads_set(th);
    CHECK(memcmp(again, batched, (size_t)na * (size_t)dim * sizeof *again) == 0);
    free(again);
    free(one);
}

static void test_empty_defined(void) {
    const char *t[3] = {"", "  \t\n ", "x"};
    size_t lens[3] = {0, 5, 0}; /* "x" with length 0 is empty too */
    float v[3 * 384];
    int32_t nt = -1;
    CHECK_EQ_INT(tw_encoder_embed(enc, t, lens, 3, v, &nt), TW_OK);
    CHECK_EQ_INT(nt, 0);
    CHECK(memcmp(v, v + 384, sizeof(float) * 384) == 0);
    CHECK(memcmp(v, v + 768, sizeof(float) * 384) == 0);
    double nn = 0;
    for (int j = 0; j < 384; j++) {
        CHECK(isfinite(v[j]));
        nn += (double)v[j] * v[j];
    }
    CHECK_NEAR(sqrt(nn), 1.0, 1e-5);
    /* bad arguments */
    CHECK_EQ_INT(tw_encoder_embed(enc, t, NULL, -1, v, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(tw_encoder_embed(enc, NULL, NULL, 2, v, NULL), TW_ERR_ARG);
    CHECK_EQ_INT(tw_encoder_embed(enc, t, NULL, 0, NULL, NULL), TW_OK);
}

static void test_stable_id(const char *path) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    tw_encoder *e2 = NULL;
    CHECK_EQ_INT(tw_encoder_load(path, be, &e2), TW_OK);
    if (e2) CHECK_EQ_STR(tw_encoder_id(e2), tw_encoder_id(enc));
    tw_encoder_free(e2);
    tw_backend_free(be);
}

int main(void) {
    const char *models = test_env("TWIN_MODELS"), *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    char path[1024], gpath[1024];
    snprintf(path, sizeof path, "%s/minilm-l6", models ? models : "twin-data/models");
    snprintf(gpath, sizeof gpath, "%s/minilm-l6/model.safetensors", models ? models : "twin-data/models");
    if (!tw_path_exists(gpath)) TEST_SKIP("%s is absent (twin model fetch minilm-l6)", gpath);
    snprintf(gpath, sizeof gpath, "%s/embed/minilm-l6.golden.json", data);
    doc = tw_json_parse_file(gpath);
    if (!doc) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return 1;
    }
    CHECK_EQ_STR(tw_json_get_str(doc, "format", ""), "twin-golden-embed-1");
    dim = (int)tw_json_get_num(doc, "dim", 0);
    n_cases = (int)tw_json_size(tw_json_get(doc, "cases"));
    snprintf(gpath, sizeof gpath, "%s/embed/%s", data, tw_json_get_str(doc, "bin", "?"));
    char *bin = NULL;
    size_t bin_len = 0;
    if (tw_file_read(gpath, &bin, &bin_len) != TW_OK) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return 1;
    }
    uint32_t h[4] = {0, 0, 0, 0};
    if (bin_len >= 16) memcpy(h, bin, 16);
    if (bin_len < 16 || memcmp(bin, "TWGL", 4) || h[1] != 1 || h[2] != 16 ||
        (size_t)h[3] * 4 != bin_len - 16 || h[3] != (uint32_t)(n_cases * dim) || dim != 384 ||
        n_cases != 200) {
        fprintf(stderr, "%s: bad TWGL header or size (%d cases of %d)\n", gpath, n_cases, dim);
        return 1;
    }
    gold = (const float *)(const void *)(bin + 16);
    texts = malloc((size_t)n_cases * sizeof *texts);
    int i = 0;
    for (tw_json *c = tw_json_first(tw_json_get(doc, "cases")); c; c = tw_json_next(c))
        texts[i++] = tw_json_get_str(c, "text", "");
    batched = malloc((size_t)n_cases * (size_t)dim * sizeof *batched);

    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    double t0 = tw_now_s();
    if (tw_encoder_load(path, be, &enc) != TW_OK) {
        fprintf(stderr, "load: %s\n", tw_errmsg());
        return 1;
    }
    fprintf(stderr, "  loaded in %.3f s\n", tw_now_s() - t0);
    RUN(test_identity);
    RUN(test_all_texts);
    RUN(test_batch_equals_single);
    RUN(test_empty_defined);
    test_stable_id(path);
    tw_encoder_free(enc);
    tw_backend_free(be);
    free(batched);
    free(texts);
    tw_free(bin);
    tw_json_free(doc);
    TEST_DONE();
}
