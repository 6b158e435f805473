/* test_model_load: what tw_model_load refuses, and how it says so. Starting from the tiny
 * GPT-2 of tests/data/gpt2 (f32), it writes altered copies with our GGUF writer (one change
 * each) and checks the status and that the one-line message names the file and the tensor or
 * key at fault: a tensor whose shape disagrees with the metadata, a missing tensor, an unknown
 * architecture, a tokenizer whose vocabulary differs from the embedding, bad hyper-parameters,
 * a tensor type matmul cannot take. The unaltered copy loads and computes the same logits as
 * the original file. Every host and backend allocation of a load fails in turn: a clean error
 * each time (ASan checks nothing leaks). Also: the accessors, and forward's argument checks. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "golden.h"
#include "gguf.h"

static tw_backend *be;
static char tmpdir[256];
static const char *base_path;

/* What to change in the copy. */
typedef struct {
    const char *drop_tensor;    /* leave this tensor out */
    const char *reshape_tensor; /* give this tensor ne0/ne1 swapped */
    const char *retype_tensor;  /* store this tensor as I32 (same bytes) */
    const char *set_str_key, *set_str_val;
    const char *set_u32_key;
    uint32_t set_u32_val;
    int extra_token;            /* append one token to the vocabulary */
} edit;

/* Writes the base file with edit e applied to tmpdir/name; returns the path (static). */
static const char *write_copy(const char *name, const edit *e) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    gguf_file *f = gguf_open(base_path);
    if (!f) {
        fprintf(stderr, "open %s: %s\n", base_path, tw_errmsg());
        return NULL;
    }
    gguf_writer *w = gguf_writer_new(3, gguf_alignment(f));
    const char **toks = NULL;
    int32_t *types = NULL;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (e->set_str_key && strcmp(key, e->set_str_key) == 0) continue;
        if (e->set_u32_key && strcmp(key, e->set_u32_key) == 0) continue;
        if (e->extra_token && strcmp(key, "tokenizer.ggml.tokens") == 0) {
            uint64_t n = kv->value.v.arr.count;
            toks = calloc(n + 1, sizeof *toks);
            for (uint64_t t = 0; t < n; t++) {
                gguf_str s = gguf_arr_str(&kv->value, t);
                toks[t] = strndup(s.ptr, s.len);
            }
            toks[n] = strdup("<extra>");
            gguf_writer_set_arr_str(w, key, toks, n + 1);
            for (uint64_t t = 0; t <= n; t++) free((void *)toks[t]);
            continue;
        }
        if (e->extra_token && strcmp(key, "tokenizer.ggml.token_type") == 0) {
            uint64_t n = kv->value.v.arr.count;
            types = calloc(n + 1, sizeof *types);
            for (uint64_t t = 0; t < n; t++) types[t] = (int32_t)gguf_arr_i64(&kv->value, t);
            types[n] = 1;
            gguf_writer_set_arr_i32(w, key, types, n + 1);
            continue;
        }
        gguf_writer_set_value(w, key, &kv->value);
    }
    if (e->set_str_key) gguf_writer_set_str(w, e->set_str_key, e->set_str_val);
    if (e->set_u32_key) gguf_writer_set_u32(w, e->set_u32_key, e->set_u32_val);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char tname[128];
        snprintf(tname, sizeof tname, "%.*s", (int)t->name.len, t->name.ptr);
        if (e->drop_tensor && strcmp(tname, e->drop_tensor) == 0) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        tw_dtype type = t->type;
        if (e->reshape_tensor && strcmp(tname, e->reshape_tensor) == 0) {
            ne[0] = t->ne[1];
            ne[1] = t->ne[0];
        }
        if (e->retype_tensor && strcmp(tname, e->retype_tensor) == 0) type = TW_DTYPE_I32;
        CHECK_EQ_INT(gguf_writer_add_tensor(w, tname, type, t->n_dims, ne, t->data), TW_OK);
    }
    tw_status st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    gguf_close(f);
    free(toks);
    free(types);
    if (st != TW_OK) {
        fprintf(stderr, "write %s: %s\n", path, tw_errmsg());
        return NULL;
    }
    return path;
}

/* Loads path expecting failure `want`, and a message containing each of the needles. */
static void expect_fail(const char *path, tw_status want, const char *n1, const char *n2) {
    tw_model *m = (tw_model *)1;
    tw_status st = tw_model_load(path, be, NULL, &m);
    CHECK_EQ_INT(st, want);
    CHECK(m == NULL);
    const char *msg = tw_errmsg();
    CHECK(strchr(msg, '\n') == NULL); /* one line */
    CHECK(strstr(msg, path) != NULL);
    if (n1 && !strstr(msg, n1)) {
        fprintf(stderr, "message lacks '%s': %s\n", n1, msg);
        test_failures++;
    }
    if (n2 && !strstr(msg, n2)) {
        fprintf(stderr, "message lacks '%s': %s\n", n2, msg);
        test_failures++;
    }
    if (st == want) fprintf(stderr, "  refused as expected: %s\n", msg);
}

/* Logits of every position of a short prompt. */
static int logits_of(const char *path, float *out, int32_t n) {
    tw_model *m = NULL;
    if (tw_model_load(path, be, NULL, &m) != TW_OK) {
        fprintf(stderr, "load %s: %s\n", path, tw_errmsg());
        return 1;
    }
    tw_kv_cache *kv = NULL;
    int32_t seq, toks[8] = {104, 101, 108, 108, 111, 32, 119, 287};
    int rc = tw_kv_cache_new(m, 8, 16, &kv) != TW_OK || run_prompt(m, kv, toks, n, 1, out, &seq) != TW_OK;
    if (rc) fprintf(stderr, "run %s: %s\n", path, tw_errmsg());
    tw_kv_cache_free(kv);
    tw_model_free(m);
    return rc;
}

static void test_unaltered_copy(void) {
    edit e;
    memset(&e, 0, sizeof e);
    const char *p = write_copy("same.gguf", &e);
    CHECK(p != NULL);
    if (!p) return;
    float a[8 * 288], b[8 * 288];
    CHECK(logits_of(base_path, a, 8) == 0);
    CHECK(logits_of(p, b, 8) == 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

static void test_refusals(void) {
    edit e;
    const char *p;
    memset(&e, 0, sizeof e);
    e.reshape_tensor = "blk.1.attn_qkv.weight";
    if ((p = write_copy("shape.gguf", &e)))
        expect_fail(p, TW_ERR_FORMAT, "'blk.1.attn_qkv.weight'", "expected shape [32, 96], found [96, 32]");
    memset(&e, 0, sizeof e);
    e.reshape_tensor = "token_embd.weight";
    if ((p = write_copy("shape2.gguf", &e)))
        expect_fail(p, TW_ERR_FORMAT, "'token_embd.weight'", "expected shape [32, 288], found [288, 32]");
    memset(&e, 0, sizeof e);
    e.drop_tensor = "blk.0.ffn_up.bias";
    if ((p = write_copy("missing.gguf", &e)))
        expect_fail(p, TW_ERR_NOT_FOUND, "'blk.0.ffn_up.bias'", "missing");
    memset(&e, 0, sizeof e);
    e.set_str_key = "general.architecture";
    e.set_str_val = "falcon";
    if ((p = write_copy("arch.gguf", &e)))
        expect_fail(p, TW_ERR_UNSUPPORTED, "'falcon'", "not supported");
    memset(&e, 0, sizeof e);
    e.extra_token = 1;
    if ((p = write_copy("vocab.gguf", &e)))
        expect_fail(p, TW_ERR_FORMAT, "vocabulary mismatch", "289");
    memset(&e, 0, sizeof e);
    e.set_u32_key = "gpt2.attention.head_count";
    e.set_u32_val = 0;
    if ((p = write_copy("heads.gguf", &e))) expect_fail(p, TW_ERR_FORMAT, "head count", NULL);
    memset(&e, 0, sizeof e);
    e.set_u32_key = "gpt2.attention.head_count";
    e.set_u32_val = 3; /* 32 is not a multiple of 3 */
    if ((p = write_copy("heads3.gguf", &e))) expect_fail(p, TW_ERR_FORMAT, "head count", NULL);
    memset(&e, 0, sizeof e);
    e.set_u32_key = "gpt2.feed_forward_length";
    e.set_u32_val = 64; /* the file's MLP matrices are 128 wide */
    if ((p = write_copy("ff.gguf", &e)))
        expect_fail(p, TW_ERR_FORMAT, "'blk.0.ffn_up.weight'", "expected shape [32, 64], found [32, 128]");
    memset(&e, 0, sizeof e);
    e.retype_tensor = "blk.0.attn_output.weight";
    if ((p = write_copy("type.gguf", &e)))
        expect_fail(p, TW_ERR_UNSUPPORTED, "'blk.0.attn_output.weight'", "i32");
    memset(&e, 0, sizeof e);
    e.drop_tensor = "general.architecture"; /* no such tensor: only the key below matters */
    e.set_str_key = "general.architecture";
    e.set_str_val = "";
    if ((p = write_copy("noarch.gguf", &e))) expect_fail(p, TW_ERR_UNSUPPORTED, "''", NULL);

    tw_model *m = (tw_model *)1;
    CHECK_EQ_INT(tw_model_load("/nonexistent/model.gguf", be, NULL, &m), TW_ERR_NOT_FOUND);
    CHECK(m == NULL);
    CHECK(strstr(tw_errmsg(), "/nonexistent/model.gguf") != NULL);
    /* a folder without config.json */
    CHECK(tw_model_load(tmpdir, be, NULL, &m) != TW_OK);
    CHECK(strstr(tw_errmsg(), "config.json") != NULL);
}

static void test_accessors_and_forward_args(void) {
    tw_model *m = NULL;
    CHECK_EQ_INT(tw_model_load(base_path, be, NULL, &m), TW_OK);
    if (!m) return;
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    CHECK_EQ_STR(tw_model_arch_name(m), "gpt2");
    CHECK_EQ_INT(hp->n_layer, 2);
    CHECK_EQ_INT(hp->n_embd, 32);
    CHECK_EQ_INT(hp->n_head, 2);
    CHECK_EQ_INT(hp->n_kv_head, 2);
    CHECK_EQ_INT(hp->head_dim, 16);
    CHECK_EQ_INT(hp->n_ff, 128);
    CHECK_EQ_INT(tw_model_n_vocab(m), 288);
    CHECK_EQ_INT(tw_model_n_ctx_train(m), 64);
    CHECK(tw_model_tokenizer(m) != NULL);
    CHECK(tw_model_backend(m) == be);
    CHECK_EQ_STR(tw_model_path(m), base_path);
    CHECK(tw_model_chat_template(m) == NULL);
    CHECK(tw_model_weight_bytes(m) > 100000); /* f32 file: ~150 KB of weights */
    /* Zero copy on the CPU: weights live in the mapped file, not in backend memory; with
     * no_mmap_weights they are copied into one backend buffer. */
    {
        size_t before = tw_backend_mem_stats(be).current_bytes;
        tw_model *mc = NULL;
        tw_model_params p;
        tw_model_params_default(&p);
        p.no_mmap_weights = 1;
        CHECK_EQ_INT(tw_model_load(base_path, be, &p, &mc), TW_OK);
        size_t copied = tw_backend_mem_stats(be).current_bytes - before;
        tw_model_free(mc);
        p.no_mmap_weights = 0;
        CHECK_EQ_INT(tw_model_load(base_path, be, &p, &mc), TW_OK);
        size_t mapped = tw_backend_mem_stats(be).current_bytes - before;
        tw_model_free(mc);
        CHECK(copied >= mapped + tw_model_weight_bytes(m));
    }

    tw_kv_cache *kv = NULL;
    CHECK_EQ_INT(tw_kv_cache_new(m, 4, 16, &kv), TW_OK);
    int32_t seq, other = 5;
    CHECK_EQ_INT(tw_kv_seq_new(kv, &seq), TW_OK);
    int32_t toks[3] = {1, 2, 3}, seqs[3] = {seq, seq, seq}, pos[3] = {0, 1, 3};
    float lg[288 * 3];
    tw_batch b = {3, toks, pos, seqs, NULL};
    CHECK_EQ_INT(tw_model_forward(m, kv, &b, lg), TW_ERR_ARG); /* pos 3 does not extend */
    CHECK(strstr(tw_errmsg(), "batch[2]") != NULL);
    CHECK_EQ_INT(tw_kv_seq_len(kv, seq), 0);
    pos[2] = 2;
    toks[1] = 288;
    CHECK_EQ_INT(tw_model_forward(m, kv, &b, lg), TW_ERR_ARG); /* token out of range */
    CHECK(strstr(tw_errmsg(), "token id 288") != NULL);
    toks[1] = 2;
    seqs[0] = other;
    CHECK_EQ_INT(tw_model_forward(m, kv, &b, lg), TW_ERR_ARG); /* not a live sequence */
    seqs[0] = seq;
    CHECK_EQ_INT(tw_model_forward(m, kv, &b, lg), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_len(kv, seq), 3);
    tw_ref r;
    int32_t rows;
    tw_model_logits(m, &r, &rows);
    CHECK_EQ_INT(rows, 1);
    /* The logits left on the backend are the ones returned. */
    float dev[288];
    CHECK_EQ_INT(tw_buffer_download(r.buf, r.offset, dev, sizeof dev), TW_OK);
    CHECK(memcmp(dev, lg, sizeof dev) == 0);
    /* A full cache: 4 pages of 16 = 64 slots; a batch that does not fit changes nothing. */
    int32_t many[70], mseq[70];
    for (int i = 0; i < 70; i++) many[i] = i % 200, mseq[i] = seq;
    tw_batch big = {62, many, NULL, mseq, NULL};
    CHECK_EQ_INT(tw_model_forward(m, kv, &big, NULL), TW_ERR_ARG); /* past 64 positions */
    CHECK_EQ_INT(tw_kv_seq_len(kv, seq), 3);
    int32_t s2;
    CHECK_EQ_INT(tw_kv_seq_new(kv, &s2), TW_OK);
    for (int i = 0; i < 70; i++) mseq[i] = s2;
    tw_batch fill = {62, many, NULL, mseq, NULL};
    CHECK_EQ_INT(tw_model_forward(m, kv, &fill, NULL), TW_ERR_NOMEM); /* 4 pages, 1 used */
    CHECK(strstr(tw_errmsg(), "KV cache full") != NULL);
    CHECK_EQ_INT(tw_kv_seq_len(kv, s2), 0);
    CHECK_EQ_INT(tw_kv_seq_len(kv, seq), 3);
    CHECK_EQ_INT(tw_batch_n_logits(&fill), 1);
    tw_kv_cache_free(kv);
    tw_model_free(m);
}

/* A ragged batch (three interleaved sequences of 5, 1 and 4 tokens, every logit wanted) run
 * in chunks of at most 3 tokens and 3 logit rows (the smallest allowed; 1 is raised to it)
 * gives the bits of one pass, and leaves the same cache behind (a following decode step
 * agrees too). */
static void test_chunking(void) {
    tw_model *one = NULL, *chunked = NULL;
    tw_model_params p;
    tw_model_params_default(&p);
    CHECK_EQ_INT(tw_model_load(base_path, be, &p, &one), TW_OK);
    p.max_batch_tokens = 3;
    p.max_logit_rows = 1;
    CHECK_EQ_INT(tw_model_load(base_path, be, &p, &chunked), TW_OK);
    if (!one || !chunked) {
        tw_model_free(one);
        tw_model_free(chunked);
        return;
    }
    static float la[10 * 288], lb[10 * 288];
    float *out[2] = {la, lb};
    tw_model *ms[2] = {one, chunked};
    float step[2][3 * 288];
    for (int v = 0; v < 2; v++) {
        tw_kv_cache *kv = NULL;
        CHECK_EQ_INT(tw_kv_cache_new(ms[v], 8, 4, &kv), TW_OK);
        if (!kv) continue;
        int32_t s[3];
        for (int i = 0; i < 3; i++) tw_kv_seq_new(kv, &s[i]);
        /* interleaving: a b a c a c a c a c */
        int32_t seq[10] = {s[0], s[1], s[0], s[2], s[0], s[2], s[0], s[2], s[0], s[2]};
        int32_t tok[10] = {10, 20, 11, 30, 12, 31, 13, 32, 14, 33};
        uint8_t want[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
        tw_batch b = {10, tok, NULL, seq, want};
        CHECK_EQ_INT(tw_batch_n_logits(&b), 10);
        CHECK_EQ_INT(tw_model_forward(ms[v], kv, &b, out[v]), TW_OK);
        CHECK_EQ_INT(tw_kv_seq_len(kv, s[0]), 5);
        CHECK_EQ_INT(tw_kv_seq_len(kv, s[1]), 1);
        CHECK_EQ_INT(tw_kv_seq_len(kv, s[2]), 4);
        int32_t t3[3] = {40, 41, 42};
        tw_batch d = {3, t3, NULL, s, NULL};
        uint8_t w3[3] = {1, 1, 1};
        d.want_logits = w3;
        CHECK_EQ_INT(tw_model_forward(ms[v], kv, &d, step[v]), TW_OK);
        tw_kv_cache_free(kv);
    }
    CHECK(memcmp(la, lb, sizeof la) == 0);
    CHECK(memcmp(step[0], step[1], sizeof step[0]) == 0);
    tw_model_free(one);
    tw_model_free(chunked);
}

/* Prefix reuse: a second sequence with the same prompt reuses the first one's full pages and
 * gets the same bits for its last token as computing the whole prompt (at least two tokens are
 * left to compute, so they take the prompt order in attention); likewise with a longer prompt
 * that starts with the first. */
static void test_prefix_reuse(void) {
    tw_model *m = NULL;
    CHECK_EQ_INT(tw_model_load(base_path, be, NULL, &m), TW_OK);
    if (!m) return;
    tw_kv_cache *kv = NULL;
    CHECK_EQ_INT(tw_kv_cache_new(m, 16, 16, &kv), TW_OK);
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = (i * 53 + 7) % 287;
    static const int32_t lens[3] = {17, 20, 33};
    for (int k = 0; k < 3 && kv; k++) {
        int32_t n = lens[k], a, bseq, n_reused = -1;
        float la[288], lb[288];
        CHECK_EQ_INT(run_prompt(m, kv, toks, n, 0, la, &a), TW_OK);
        CHECK_EQ_INT(tw_kv_seq_new(kv, &bseq), TW_OK);
        CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, bseq, toks, n, &n_reused), TW_OK);
        CHECK_EQ_INT(n_reused, (n - 2) / 16 * 16);
        int32_t seqs[40];
        for (int i = 0; i < 40; i++) seqs[i] = bseq;
        tw_batch b = {n - n_reused, toks + n_reused, NULL, seqs, NULL};
        CHECK_EQ_INT(tw_model_forward(m, kv, &b, lb), TW_OK);
        CHECK(memcmp(la, lb, sizeof la) == 0);
        tw_kv_seq_free(kv, a);
        tw_kv_seq_free(kv, bseq);
    }
    CHECK_EQ_INT(tw_kv_cache_stats(kv).prefix_hits_tokens, 0 + 16 + 16); /* 17 tokens reuse nothing */
    tw_kv_cache_free(kv);
    tw_model_free(m);
}

/* Every allocation of a load fails in turn. */
static void test_alloc_failures(void) {
    int n_fail = 0;
    for (uint64_t k = 1; k < 400; k++) {
        tw_model *m = NULL;
        tw_mem_fail_after(k);
        tw_status st = tw_model_load(base_path, be, NULL, &m);
        tw_mem_fail_after(0);
        if (st == TW_OK) {
            tw_model_free(m);
            break;
        }
        CHECK(m == NULL);
        n_fail++;
    }
    CHECK(n_fail > 10);
    for (uint64_t k = 1; k < 10; k++) {
        tw_model *m = NULL;
        tw_buffer_fail_after(k);
        tw_status st = tw_model_load(base_path, be, NULL, &m);
        tw_buffer_fail_after(0);
        tw_model_free(m);
        if (st == TW_OK) break;
        CHECK_EQ_INT(st, TW_ERR_NOMEM);
    }
}

int main(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    static char base[4096];
    snprintf(base, sizeof base, "%.4000s/gpt2/tiny-gpt2-f32.gguf", data);
    base_path = base;
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%.200s/twin-model-load-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (tw_backend_open("cpu", &be) != TW_OK) return 1;
    tw_log_set_level(TW_LOG_ERROR);
    RUN(test_unaltered_copy);
    RUN(test_refusals);
    RUN(test_accessors_and_forward_args);
    RUN(test_chunking);
    RUN(test_prefix_reuse);
    RUN(test_alloc_failures);
    tw_backend_free(be);
    /* remove the copies */
    static const char *const names[] = {"same", "shape", "shape2", "missing", "arch", "vocab", "heads",
                                        "heads3", "ff", "type", "noarch"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s.gguf", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    TEST_DONE();
}
