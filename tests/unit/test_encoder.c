/* test_encoder.c: the sentence encoder (encoder.h) on a tiny random BERT written to a temporary
 * HF folder (config.json, model.safetensors through st_writer, a hand-made WordPiece
 * tokenizer.json, modules.json with Pooling + Normalize, sentence_bert_config.json with
 * max_seq_length 8), against a plain fp64 BERT forward written out below:
 *   - every text's vector is within 1e-5 of the reference (fp32 vs fp64 over 2 layers of
 *     width 32: errors of a few 1e-7 expected), including an empty text and truncated ones
 *   - the truncation count, batch == single (bits), the id's form
 *   - cls pooling without Normalize (a second folder) against the reference
 *   - a generative model folder is refused; a missing pooling config named by modules.json
 *     is an error that names the file */
#include "encoder.h"
#include "safetensors.h"
#include "test.h"

#include <unistd.h>

enum { E = 32, NH = 4, HD = 8, NL = 2, FF = 64, NV = 14, NP = 16, MAXT = 8 };

static uint64_t rs = 12345;
static float frand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2 - 1);
}

/* the weights, (out, in) row-major as BertModel stores them */
static float word[NV][E], pos[NP][E], typ[2][E], eln_w[E], eln_b[E];
static float wq[NL][E][E], bq[NL][E], wk[NL][E][E], bk[NL][E], wv[NL][E][E], bv[NL][E];
static float wo[NL][E][E], bo[NL][E], aln_w[NL][E], aln_b[NL][E];
static float wi[NL][FF][E], bi[NL][FF], wd[NL][E][FF], bd[NL][E], oln_w[NL][E], oln_b[NL][E];

static void fill(float *v, int n, float s, float base) {
    for (int i = 0; i < n; i++) v[i] = base + s * frand();
}

static void put(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    TW_ASSERT(tw_file_write_atomic(p, text, strlen(text)) == TW_OK);
}

static const char *const vocab[NV] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat",
                                      "sat", "on", "mat", "a", "dog", "##s", "run", "."};

static void write_model(const char *dir, const char *pooling, int normalize) {
    TW_ASSERT(tw_mkdir_p(dir) == TW_OK);
    put(dir, "config.json",
        "{\"model_type\": \"bert\", \"architectures\": [\"BertModel\"], \"hidden_size\": 32,"
        " \"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"intermediate_size\": 64,"
        " \"vocab_size\": 14, \"max_position_embeddings\": 16, \"type_vocab_size\": 2,"
        " \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12}");
    tw_sb tj;
    tw_sb_init(&tj);
    tw_sb_puts(&tj, "{\"version\": \"1.0\", \"added_tokens\": [");
    for (int i = 0; i < 4; i++)
        tw_sb_printf(&tj, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false,"
                     " \"rstrip\": false, \"normalized\": false, \"special\": true}", i ? ", " : "", i, vocab[i]);
    tw_sb_puts(&tj, "], \"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true,"
               " \"handle_chinese_chars\": true, \"strip_accents\": null, \"lowercase\": true},"
               " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
               " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3], \"cls\": [\"[CLS]\", 2]},"
               " \"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true},"
               " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\","
               " \"max_input_chars_per_word\": 100, \"vocab\": {");
    for (int i = 0; i < NV; i++) tw_sb_printf(&tj, "%s\"%s\": %d", i ? ", " : "", vocab[i], i);
    tw_sb_puts(&tj, "}}}");
    put(dir, "tokenizer.json", tw_sb_str(&tj));
    tw_sb_free(&tj);
    char mods[512];
    snprintf(mods, sizeof mods,
             "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
             " {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}%s]",
             normalize ? ", {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", \"type\": \"sentence_transformers.models.Normalize\"}" : "");
    put(dir, "modules.json", mods);
    put(dir, "sentence_bert_config.json", "{\"max_seq_length\": 8, \"do_lower_case\": false}");
    if (pooling) {
        char p[1024];
        snprintf(p, sizeof p, "%s/1_Pooling", dir);
        TW_ASSERT(tw_mkdir_p(p) == TW_OK);
        put(p, "config.json", pooling);
    }
    st_writer *w = st_writer_new();
    char name[128];
    int64_t s2[2], s1[1];
#define ADD2(nm, arr, r, c)                                                                   \
    do {                                                                                      \
        s2[0] = (r), s2[1] = (c);                                                             \
        TW_ASSERT(st_writer_add_tensor(w, nm, ST_DTYPE_F32, 2, s2, arr) == TW_OK);            \
    } while (0)
#define ADD1(nm, arr, c)                                                                      \
    do {                                                                                      \
        s1[0] = (c);                                                                          \
        TW_ASSERT(st_writer_add_tensor(w, nm, ST_DTYPE_F32, 1, s1, arr) == TW_OK);            \
    } while (0)
    ADD2("embeddings.word_embeddings.weight", word, NV, E);
    ADD2("embeddings.position_embeddings.weight", pos, NP, E);
    ADD2("embeddings.token_type_embeddings.weight", typ, 2, E);
    ADD1("embeddings.LayerNorm.weight", eln_w, E);
    ADD1("embeddings.LayerNorm.bias", eln_b, E);
    for (int l = 0; l < NL; l++) {
#define L2(suffix, arr, r, c) snprintf(name, sizeof name, "encoder.layer.%d.%s", l, suffix); ADD2(name, arr, r, c)
#define L1(suffix, arr, c) snprintf(name, sizeof name, "encoder.layer.%d.%s", l, suffix); ADD1(name, arr, c)
        L2("attention.self.query.weight", wq[l], E, E); L1("attention.self.query.bias", bq[l], E);
        L2("attention.self.key.weight", wk[l], E, E); L1("attention.self.key.bias", bk[l], E);
        L2("attention.self.value.weight", wv[l], E, E); L1("attention.self.value.bias", bv[l], E);
        L2("attention.output.dense.weight", wo[l], E, E); L1("attention.output.dense.bias", bo[l], E);
        L1("attention.output.LayerNorm.weight", aln_w[l], E); L1("attention.output.LayerNorm.bias", aln_b[l], E);
        L2("intermediate.dense.weight", wi[l], FF, E); L1("intermediate.dense.bias", bi[l], FF);
        L2("output.dense.weight", wd[l], E, FF); L1("output.dense.bias", bd[l], E);
        L1("output.LayerNorm.weight", oln_w[l], E); L1("output.LayerNorm.bias", oln_b[l], E);
    }
    snprintf(name, sizeof name, "%s/model.safetensors", dir);
    TW_ASSERT(st_writer_write(w, name) == TW_OK);
    st_writer_free(w);
}

/* ---- the fp64 reference ---- */

static void ln(double *x, const float *w, const float *b) {
    double m = 0, v = 0;
    for (int i = 0; i < E; i++) m += x[i];
    m /= E;
    for (int i = 0; i < E; i++) v += (x[i] - m) * (x[i] - m);
    v /= E;
    for (int i = 0; i < E; i++) x[i] = (x[i] - m) / sqrt(v + 1e-12) * w[i] + b[i];
}

static void lin(double *y, const double *x, const float *W, const float *b, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int k = 0; k < in; k++) s += (double)W[o * in + k] * x[k];
        y[o] = s;
    }
}

/* ids (n) -> out (E): BERT, then cls or mean pooling, then normalisation when asked */
static void ref_embed(const int32_t *ids, int n, int cls, int normalize, double *out) {
    static double x[MAXT][E], q[MAXT][E], k[MAXT][E], v[MAXT][E], a[MAXT][E], t[MAXT][FF], u[E];
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < E; i++) x[j][i] = (double)word[ids[j]][i] + typ[0][i] + pos[j][i];
        ln(x[j], eln_w, eln_b);
    }
    for (int l = 0; l < NL; l++) {
        for (int j = 0; j < n; j++) {
            lin(q[j], x[j], &wq[l][0][0], bq[l], E, E);
            lin(k[j], x[j], &wk[l][0][0], bk[l], E, E);
            lin(v[j], x[j], &wv[l][0][0], bv[l], E, E);
        }
        for (int h = 0; h < NH; h++)
            for (int j = 0; j < n; j++) {
                double s[MAXT], mx = -1e300, sum = 0;
                for (int r = 0; r < n; r++) {
                    s[r] = 0;
                    for (int d = 0; d < HD; d++) s[r] += q[j][h * HD + d] * k[r][h * HD + d];
                    s[r] /= sqrt((double)HD);
                    mx = fmax(mx, s[r]);
                }
                for (int r = 0; r < n; r++) sum += (s[r] = exp(s[r] - mx));
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int r = 0; r < n; r++) o += s[r] / sum * v[r][h * HD + d];
                    a[j][h * HD + d] = o;
                }
            }
        for (int j = 0; j < n; j++) {
            lin(u, a[j], &wo[l][0][0], bo[l], E, E);
            for (int i = 0; i < E; i++) x[j][i] += u[i];
            ln(x[j], aln_w[l], aln_b[l]);
            lin(t[j], x[j], &wi[l][0][0], bi[l], FF, E);
            for (int i = 0; i < FF; i++) t[j][i] = 0.5 * t[j][i] * (1 + erf(t[j][i] / sqrt(2.0)));
            lin(u, t[j], &wd[l][0][0], bd[l], E, FF);
            for (int i = 0; i < E; i++) x[j][i] += u[i];
            ln(x[j], oln_w[l], oln_b[l]);
        }
    }
    double nn = 0;
    for (int i = 0; i < E; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += x[j][i];
        out[i] = cls ? x[0][i] : s / n;
        nn += out[i] * out[i];
    }
    if (normalize)
        for (int i = 0; i < E; i++) out[i] /= fmax(sqrt(nn), 1e-12);
}

static const char *const texts[] = {
    "the cat sat on the mat", "", "dogs run.", "a dog", "the the the the the the the the the",
    "cats sat on a mat. the dog runs", "zebra", "   ", "The CAT.",
};
#define NT ((int)(sizeof texts / sizeof texts[0]))

static double check_against_ref(tw_encoder *e, int cls, int normalize, int *n_trunc_want) {
    float out[NT * E];
    int32_t nt = -1;
    CHECK_EQ_INT(tw_encoder_embed(e, texts, NULL, NT, out, &nt), TW_OK);
    const tw_tokenizer *tok = tw_encoder_tokenizer(e);
    double worst = 0;
    int want = 0;
    for (int t = 0; t < NT; t++) {
        tw_tokens ids;
        tw_tokens_init(&ids);
        CHECK_EQ_INT(tw_tokenizer_encode(tok, texts[t], strlen(texts[t]), 0, &ids), TW_OK);
        int32_t seq[MAXT];
        int n = 0;
        seq[n++] = 2;
        for (size_t i = 0; i < ids.n && n < MAXT - 1; i++) seq[n++] = ids.ids[i];
        seq[n++] = 3;
        want += ids.n > MAXT - 2;
        tw_tokens_free(&ids);
        double ref[E];
        ref_embed(seq, n, cls, normalize, ref);
        for (int i = 0; i < E; i++) {
            double d = fabs(ref[i] - out[t * E + i]);
            if (d > worst) worst = d;
        }
        /* batch == single */
        float one[E];
        CHECK_EQ_INT(tw_encoder_embed(e, &texts[t], NULL, 1, one, NULL), TW_OK);
        CHECK(memcmp(one, out + t * E, sizeof one) == 0);
    }
    CHECK_EQ_INT(nt, want);
    *n_trunc_want = want;
    CHECK(worst <= 1e-5);
    fprintf(stderr, "  max |twin - fp64 reference| = %.3g\n", worst);
    return worst;
}

static char tmp[256];

static void test_mean_normalized(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mean", tmp);
    write_model(dir, "{\"word_embedding_dimension\": 32, \"pooling_mode_mean_tokens\": true}", 1);
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    tw_encoder *e = NULL;
    if (tw_encoder_load(dir, be, &e) != TW_OK) {
        fprintf(stderr, "load: %s\n", tw_errmsg());
        test_failures++;
    } else {
        CHECK_EQ_INT(tw_encoder_dim(e), E);
        CHECK_EQ_INT(tw_encoder_max_tokens(e), MAXT);
        CHECK(strncmp(tw_encoder_id(e), "mean@", 5) == 0 && strlen(tw_encoder_id(e)) == 21);
        int want = 0;
        check_against_ref(e, 0, 1, &want);
        CHECK(want >= 2); /* the test texts do truncate */
    }
    tw_encoder_free(e);
    tw_backend_free(be);
}

static void test_cls_plain(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cls", tmp);
    write_model(dir, "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}", 0);
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    tw_encoder *e = NULL;
    CHECK_EQ_INT(tw_encoder_load(dir, be, &e), TW_OK);
    int want = 0;
    if (e) check_against_ref(e, 1, 0, &want);
    tw_encoder_free(e);
    tw_backend_free(be);
}

static void test_errors(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/nopool", tmp);
    write_model(dir, NULL, 1);
    put(dir, "modules.json", "[{\"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
        " {\"path\": \"9_Pool\", \"type\": \"sentence_transformers.models.Pooling\"}]");
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    tw_encoder *e = NULL;
    CHECK_EQ_INT(tw_encoder_load(dir, be, &e), TW_ERR_NOT_FOUND);
    CHECK(e == NULL && strstr(tw_errmsg(), "9_Pool/config.json") != NULL);
    put(dir, "modules.json", "[{\"path\": \"2_Dense\", \"type\": \"sentence_transformers.models.Dense\"}]");
    CHECK_EQ_INT(tw_encoder_load(dir, be, &e), TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "modules.json") != NULL);
    put(dir, "modules.json", "[]");
    put(dir, "sentence_bert_config.json", "{\"max_seq_length\": 1}");
    CHECK_EQ_INT(tw_encoder_load(dir, be, &e), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "max_seq_length") != NULL);
    CHECK_EQ_INT(tw_encoder_load("/nonexistent/enc", be, &e), TW_ERR_NOT_FOUND);
    tw_encoder_free(e);
    tw_backend_free(be);
}

/* Many texts at 1, 2, 3 and 4 threads: several batches then run at once (one per thread,
 * engine/encoder.c), and every vector must have the bits of the one-thread run, in which the
 * batches run one after the other (and of the text embedded alone). */
static void test_parallel_batches(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/par", tmp);
    write_model(dir, "{\"pooling_mode_mean_tokens\": true}", 1);
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    tw_encoder *e = NULL;
    CHECK_EQ_INT(tw_encoder_load(dir, be, &e), TW_OK);
    enum { N = 700 }; /* ~4000 tokens: 4 batches at one thread, split further at more */
    static const char *many[N];
    static float base[N * E], got[N * E];
    for (int i = 0; i < N; i++) many[i] = texts[(i * 7) % NT];
    int saved = tw_threads_get();
    tw_threads_set(1);
    CHECK_EQ_INT(e ? tw_encoder_embed(e, many, NULL, N, base, NULL) : TW_ERR_ARG, TW_OK);
    for (int th = 2; th <= 4 && e; th++) {
        tw_threads_set(th);
        memset(got, 0, sizeof got);
        CHECK_EQ_INT(tw_encoder_embed(e, many, NULL, N, got, NULL), TW_OK);
        CHECK(memcmp(got, base, sizeof got) == 0);
    }
    tw_threads_set(saved);
    for (int t = 0; t < NT && e; t++) { /* the same text anywhere in the call: the same bits */
        float one[E];
        CHECK_EQ_INT(tw_encoder_embed(e, &texts[t], NULL, 1, one, NULL), TW_OK);
        for (int i = 0; i < N; i++)
            if (many[i] == texts[t]) CHECK(memcmp(one, base + (size_t)i * E, sizeof one) == 0);
    }
    CHECK_EQ_INT(tw_backend_mem_stats(be).n_allocs >= 4, 1); /* workers were allocated */
    tw_encoder_free(e);
    CHECK_EQ_INT(tw_backend_mem_stats(be).current_bytes, 0);
    tw_backend_free(be);
}

int main(void) {
    fill(&word[0][0], NV * E, 1, 0), fill(&pos[0][0], NP * E, 0.5f, 0), fill(&typ[0][0], 2 * E, 0.3f, 0);
    fill(eln_w, E, 0.2f, 1), fill(eln_b, E, 0.1f, 0);
    fill(&wq[0][0][0], NL * E * E, 0.3f, 0), fill(&bq[0][0], NL * E, 0.1f, 0);
    fill(&wk[0][0][0], NL * E * E, 0.3f, 0), fill(&bk[0][0], NL * E, 0.1f, 0);
    fill(&wv[0][0][0], NL * E * E, 0.3f, 0), fill(&bv[0][0], NL * E, 0.1f, 0);
    fill(&wo[0][0][0], NL * E * E, 0.2f, 0), fill(&bo[0][0], NL * E, 0.1f, 0);
    fill(&aln_w[0][0], NL * E, 0.2f, 1), fill(&aln_b[0][0], NL * E, 0.1f, 0);
    fill(&wi[0][0][0], NL * FF * E, 0.3f, 0), fill(&bi[0][0], NL * FF, 0.1f, 0);
    fill(&wd[0][0][0], NL * E * FF, 0.2f, 0), fill(&bd[0][0], NL * E, 0.1f, 0);
    fill(&oln_w[0][0], NL * E, 0.2f, 1), fill(&oln_b[0][0], NL * E, 0.1f, 0);
    snprintf(tmp, sizeof tmp, "%s/twin-test-encoder-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_mean_normalized);
    RUN(test_cls_plain);
    RUN(test_errors);
    RUN(test_parallel_batches);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    TEST_DONE();
}
