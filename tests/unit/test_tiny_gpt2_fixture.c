/* test_tiny_gpt2_fixture.c: makes the tiny GPT-2 of tests/data/gpt2/ (random weights, written
 * by our GGUF writer in f32, f16 and q8_0) and checks that the committed files are exactly what
 * this code makes, tensor by tensor and key by key. The numpy reference
 * (tools/gen_gpt2_golden.py) computes its golden logits from those committed files, and the
 * model's golden test runs twin on them; this test keeps the fixture reproducible from source.
 *
 *   test_tiny_gpt2_fixture                 compare with $TWIN_TEST_DATA/gpt2/
 *   test_tiny_gpt2_fixture --write DIR     (re)write tiny-gpt2-{f32,f16,q8_0}.gguf into DIR,
 *                                          then run tools/gen_gpt2_golden.py DIR
 *
 * The model: GPT-2 as llama.cpp's gpt2 architecture names it (token_embd, position_embd,
 * blk.N.{attn_norm,attn_qkv,attn_output,ffn_norm,ffn_up,ffn_down} with biases, output_norm,
 * no output.weight: the head is tied to token_embd), n_layer 2, n_embd 32, n_head 2 (head
 * dim 16), n_ff 128, n_ctx 64, and a byte-level BPE vocabulary of 288 tokens: the 256 bytes
 * (GPT-2's byte-to-unicode spelling, id = byte value), 31 merges, and <|endoftext|> (287, bos
 * and eos). Weights are uniform in [-a, a] from a fixed splitmix64 stream, made with integer
 * arithmetic and one scaling so every machine makes the same bits. Scales are larger than
 * GPT-2's init (0.02) so that logits spread over several units, and the blocks' outputs are
 * large beside the token embedding so that the greedy continuation does not just repeat the
 * last token (with a tied head, a weak network predicts its own input).
 *
 * Variants: f32 (everything f32); f16 (the weight matrices f16; position_embd, norms and
 * biases f32: what llama-quantize and `twin quantize` make of the f32 file, which
 * test_quantize.sh checks byte for byte); q8_0 (token_embd and the four layer matrices q8_0,
 * position_embd f16, norms and biases f32: mixed types on purpose).
 */
#include "gguf.h"
#include "quant.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

#define TG_VOCAB 288
#define TG_EMBD 32
#define TG_HEAD 2
#define TG_FF 128
#define TG_CTX 64
#define TG_LAYER 2
#define TG_EOT 287

static const char *const tg_merges[] = {
    "Ġ t", "h e", "i n", "Ġ a", "e r", "o n", "Ġt he", "r e", "Ġ s", "a t", "o r",
    "e n", "Ġ w", "i s", "Ġ o", "in g", "Ġ c", "e d", "Ġ b", "a n", "o u", "Ġ f",
    "Ġ m", "a r", "Ġ p", "l l", "Ġ i", "Ġ d", "e s", "Ġa n", "Ġan d"};
#define TG_N_MERGES (sizeof tg_merges / sizeof tg_merges[0])

typedef struct {
    uint64_t s;
} tg_rng;

static uint64_t tg_next(tg_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a] on a grid of 2^20 steps: an integer times one double, rounded to float
 * once, so the bits do not depend on the compiler or libm. */
static float tg_uniform(tg_rng *r, double a) {
    int64_t k = (int64_t)(tg_next(r) >> 44) - (1 << 19); /* [-2^19, 2^19) */
    return (float)((double)k * (a / (double)(1 << 19)));
}

typedef struct {
    char name[64];
    uint32_t n_dims;
    int64_t ne[2];
    float *f; /* (ne[1], ne[0]) f32 values before conversion */
    void *data;
    tw_dtype type;
} tg_tensor;

typedef struct {
    tg_tensor t[64];
    int n;
} tg_model;

static tg_tensor *tg_add(tg_model *m, tg_rng *r, const char *name, int64_t ne0, int64_t ne1,
                         double center, double a) {
    tg_tensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 > 1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->data = NULL;
    t->type = TW_DTYPE_F32;
    t->f = tw_malloc((size_t)(ne0 * ne1) * sizeof(float));
    if (!t->f) abort();
    for (int64_t i = 0; i < ne0 * ne1; i++) t->f[i] = (float)center + tg_uniform(r, a);
    return t;
}

/* The weights in f32, always drawn in the same order. */
static void tg_make(tg_model *m) {
    tg_rng r = {20250607};
    m->n = 0;
    char nm[64];
    tg_add(m, &r, "token_embd.weight", TG_EMBD, TG_VOCAB, 0, 0.5);
    tg_add(m, &r, "position_embd.weight", TG_EMBD, TG_CTX, 0, 0.3);
    const double lin = 1.0 / 5.6568542494923806;  /* ~ sqrt(3/n_embd): unit-ish outputs */
    const double lin_ff = 1.0 / 11.313708498984761; /* ~ sqrt(3/n_ff) */
    for (int l = 0; l < TG_LAYER; l++) {
#define TG_T(suffix, ne0, ne1, c, a)                                                          \
    snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);                                          \
    tg_add(m, &r, nm, ne0, ne1, c, a)
        TG_T("attn_norm.weight", TG_EMBD, 1, 1.0, 0.2);
        TG_T("attn_norm.bias", TG_EMBD, 1, 0.0, 0.1);
        TG_T("attn_qkv.weight", TG_EMBD, 3 * TG_EMBD, 0.0, lin * 3.0);
        TG_T("attn_qkv.bias", 3 * TG_EMBD, 1, 0.0, 0.1);
        TG_T("attn_output.weight", TG_EMBD, TG_EMBD, 0.0, lin * 2.0);
        TG_T("attn_output.bias", TG_EMBD, 1, 0.0, 0.1);
        TG_T("ffn_norm.weight", TG_EMBD, 1, 1.0, 0.2);
        TG_T("ffn_norm.bias", TG_EMBD, 1, 0.0, 0.1);
        TG_T("ffn_up.weight", TG_EMBD, TG_FF, 0.0, lin);
        TG_T("ffn_up.bias", TG_FF, 1, 0.0, 0.1);
        TG_T("ffn_down.weight", TG_FF, TG_EMBD, 0.0, lin_ff * 4.0);
        TG_T("ffn_down.bias", TG_EMBD, 1, 0.0, 0.1);
#undef TG_T
    }
    tg_add(m, &r, "output_norm.weight", TG_EMBD, 1, 1.0, 0.2);
    tg_add(m, &r, "output_norm.bias", TG_EMBD, 1, 0.0, 0.1);
}

static int tg_is_matrix(const tg_tensor *t) { return t->n_dims == 2; }

/* Converts every tensor to the variant's type ("f32", "f16", "q8_0"). */
static void tg_convert(tg_model *m, const char *variant) {
    for (int i = 0; i < m->n; i++) {
        tg_tensor *t = &m->t[i];
        tw_dtype ty = TW_DTYPE_F32;
        int pos = strcmp(t->name, "position_embd.weight") == 0;
        if (tg_is_matrix(t) && !pos && strcmp(variant, "f16") == 0) ty = TW_DTYPE_F16;
        if (tg_is_matrix(t) && strcmp(variant, "q8_0") == 0)
            ty = pos ? TW_DTYPE_F16 : TW_DTYPE_Q8_0;
        t->type = ty;
        size_t rb = tw_dtype_row_bytes(ty, t->ne[0]);
        tw_free(t->data);
        t->data = tw_malloc(rb * (size_t)t->ne[1]);
        if (!t->data || rb == 0) abort();
        for (int64_t row = 0; row < t->ne[1]; row++) {
            tw_status st = tw_quantize_row(ty, t->f + row * t->ne[0], (char *)t->data + (size_t)row * rb,
                                           t->ne[0]);
            if (st != TW_OK) {
                fprintf(stderr, "tw_quantize_row(%s): %s\n", tw_dtype_name(ty), tw_errmsg());
                abort();
            }
        }
    }
}

static void tg_free(tg_model *m) {
    for (int i = 0; i < m->n; i++) {
        tw_free(m->t[i].f);
        tw_free(m->t[i].data);
    }
    m->n = 0;
}

/* GPT-2's byte-to-unicode table: the spelling of byte b as a token. */
static void tg_byte_token(int b, char out[8]) {
    uint32_t cp;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
        cp = (uint32_t)b;
    } else {
        /* the unprintable bytes, in increasing order, take 256, 257, ... */
        uint32_t k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) k++;
        cp = 256 + k;
    }
    int n = tw_utf8_encode(cp, out);
    out[n] = 0;
}

static gguf_writer *tg_writer(tg_model *m, const char *variant) {
    gguf_writer *w = gguf_writer_new(3, 0);
    if (!w) abort();
    uint32_t ftype = strcmp(variant, "f32") == 0 ? 0 : strcmp(variant, "f16") == 0 ? 1 : 7;
    int ok = 1;
    ok &= gguf_writer_set_str(w, "general.architecture", "gpt2") == TW_OK;
    ok &= gguf_writer_set_str(w, "general.name", "twin tiny gpt2 (random weights)") == TW_OK;
    ok &= gguf_writer_set_u32(w, "general.file_type", ftype) == TW_OK;
    if (ftype == 7) ok &= gguf_writer_set_u32(w, "general.quantization_version", 2) == TW_OK;
    ok &= gguf_writer_set_u32(w, "gpt2.context_length", TG_CTX) == TW_OK;
    ok &= gguf_writer_set_u32(w, "gpt2.embedding_length", TG_EMBD) == TW_OK;
    ok &= gguf_writer_set_u32(w, "gpt2.feed_forward_length", TG_FF) == TW_OK;
    ok &= gguf_writer_set_u32(w, "gpt2.block_count", TG_LAYER) == TW_OK;
    ok &= gguf_writer_set_u32(w, "gpt2.attention.head_count", TG_HEAD) == TW_OK;
    ok &= gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f) == TW_OK;

    /* vocabulary: 256 bytes, the merges' results, <|endoftext|> */
    static char store[TG_VOCAB][16];
    const char *toks[TG_VOCAB];
    int32_t types[TG_VOCAB];
    for (int b = 0; b < 256; b++) {
        tg_byte_token(b, store[b]);
        toks[b] = store[b];
        types[b] = 1; /* normal */
    }
    for (size_t i = 0; i < TG_N_MERGES; i++) {
        const char *sp = strchr(tg_merges[i], ' ');
        snprintf(store[256 + i], sizeof store[0], "%.*s%s", (int)(sp - tg_merges[i]), tg_merges[i], sp + 1);
        toks[256 + i] = store[256 + i];
        types[256 + i] = 1;
    }
    toks[TG_EOT] = "<|endoftext|>";
    types[TG_EOT] = 3; /* control */
    ok &= gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2") == TW_OK;
    ok &= gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2") == TW_OK;
    ok &= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, TG_VOCAB) == TW_OK;
    ok &= gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, TG_VOCAB) == TW_OK;
    ok &= gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", tg_merges, TG_N_MERGES) == TW_OK;
    ok &= gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", TG_EOT) == TW_OK;
    ok &= gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", TG_EOT) == TW_OK;
    ok &= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0) == TW_OK;

    tg_convert(m, variant);
    for (int i = 0; i < m->n; i++)
        ok &= gguf_writer_add_tensor(w, m->t[i].name, m->t[i].type, m->t[i].n_dims, m->t[i].ne,
                                     m->t[i].data) == TW_OK;
    if (!ok) {
        fprintf(stderr, "gguf writer: %s\n", tw_errmsg());
        abort();
    }
    return w;
}

static const char *const tg_variants[] = {"f32", "f16", "q8_0"};

static int tg_write_all(const char *dir) {
    for (int v = 0; v < 3; v++) {
        tg_model m;
        tg_make(&m);
        gguf_writer *w = tg_writer(&m, tg_variants[v]);
        char path[1024];
        snprintf(path, sizeof path, "%s/tiny-gpt2-%s.gguf", dir, tg_variants[v]);
        tw_status st = gguf_writer_write(w, path);
        gguf_writer_free(w);
        tg_free(&m);
        if (st != TW_OK) {
            fprintf(stderr, "%s: %s\n", path, tw_errmsg());
            return 1;
        }
        printf("wrote %s\n", path);
    }
    return 0;
}

/* The committed file holds the same keys (type and value bytes compared through a file we
 * write now) and the same tensors (name, type, shape, bytes) in the same order. */
static void check_variant(const char *dir, const char *variant) {
    char path[1024], fresh[1024];
    snprintf(path, sizeof path, "%s/tiny-gpt2-%s.gguf", dir, variant);
    const char *tmp = getenv("TMPDIR");
    snprintf(fresh, sizeof fresh, "%s/tiny-gpt2-%s-%ld.gguf", tmp && *tmp ? tmp : "/tmp", variant,
             (long)getpid());
    tg_model m;
    tg_make(&m);
    gguf_writer *w = tg_writer(&m, variant);
    CHECK(gguf_writer_write(w, fresh) == TW_OK);
    gguf_writer_free(w);
    tg_free(&m);

    gguf_file *a = gguf_open(path), *b = gguf_open(fresh);
    if (!a) fprintf(stderr, "%s\n", tw_errmsg());
    CHECK(a != NULL);
    CHECK(b != NULL);
    if (a && b) {
        CHECK_EQ_INT(gguf_n_kv(a), gguf_n_kv(b));
        for (uint64_t i = 0; i < gguf_n_kv(b) && i < gguf_n_kv(a); i++) {
            const gguf_kv *ka = gguf_kv_at(a, i), *kb = gguf_kv_at(b, i);
            int same_key = ka->key.len == kb->key.len && memcmp(ka->key.ptr, kb->key.ptr, ka->key.len) == 0;
            CHECK(same_key);
            CHECK_EQ_INT(ka->value.type, kb->value.type);
        }
        /* values: the metadata section is everything before the tensor infos' data; comparing
         * the files' bytes up to the data section covers keys, values and tensor infos */
        CHECK_EQ_INT(gguf_data_offset(a), gguf_data_offset(b));
        CHECK_EQ_INT(gguf_n_tensors(a), gguf_n_tensors(b));
        for (uint64_t i = 0; i < gguf_n_tensors(b) && i < gguf_n_tensors(a); i++) {
            const gguf_tensor *ta = gguf_tensor_at(a, i), *tb = gguf_tensor_at(b, i);
            CHECK(ta->name.len == tb->name.len && memcmp(ta->name.ptr, tb->name.ptr, ta->name.len) == 0);
            CHECK_EQ_INT(ta->type, tb->type);
            CHECK_EQ_INT(ta->n_dims, tb->n_dims);
            for (int d = 0; d < GGUF_MAX_DIMS; d++) CHECK_EQ_INT(ta->ne[d], tb->ne[d]);
            CHECK_EQ_INT(ta->nbytes, tb->nbytes);
            if (ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) != 0) {
                fprintf(stderr, "%s: tensor %.*s differs from what the generator makes\n", path,
                        (int)ta->name.len, ta->name.ptr);
                test_failures++;
            }
        }
    }
    if (a && b) {
        char *da = NULL, *db = NULL;
        size_t la = 0, lb = 0;
        CHECK(tw_file_read(path, &da, &la) == TW_OK);
        CHECK(tw_file_read(fresh, &db, &lb) == TW_OK);
        uint64_t head = gguf_data_offset(b);
        CHECK(la >= head && lb >= head && memcmp(da, db, (size_t)head) == 0);
        tw_free(da);
        tw_free(db);
    }
    gguf_close(a);
    gguf_close(b);
    remove(fresh);
}

static void test_fixture_f32(const char *dir) { check_variant(dir, "f32"); }
static void test_fixture_f16(const char *dir) { check_variant(dir, "f16"); }
static void test_fixture_q8_0(const char *dir) { check_variant(dir, "q8_0"); }

/* The generator's own promises: sizes stay small (the files are committed) and the converted
 * weights are close to the f32 ones (first row of each tensor). */
static void test_generator_properties(void) {
    tg_model m;
    tg_make(&m);
    CHECK_EQ_INT(m.n, 2 + 12 * TG_LAYER + 2);
    tg_convert(&m, "q8_0");
    size_t bytes = 0;
    for (int i = 0; i < m.n; i++) {
        tg_tensor *t = &m.t[i];
        bytes += tw_dtype_row_bytes(t->type, t->ne[0]) * (size_t)t->ne[1];
        float back[TG_FF];
        CHECK(tw_dequantize_row(t->type, t->data, back, t->ne[0]) == TW_OK);
        float amax = 0, err = 0;
        for (int64_t j = 0; j < t->ne[0]; j++) {
            amax = fmaxf(amax, fabsf(t->f[j]));
            err = fmaxf(err, fabsf(back[j] - t->f[j]));
        }
        /* q8_0: half a step d = amax / 127, plus |q| <= 127 times the f16 rounding of d
         * (2^-11 relative); f16: 2^-11 relative */
        float bound = t->type == TW_DTYPE_Q8_0 ? amax / 127.0f * (0.5f + 127.0f / 2048.0f)
                      : t->type == TW_DTYPE_F16 ? amax / 2048.0f
                                                : 0.0f;
        CHECK(err <= bound * 1.0001f);
    }
    CHECK(bytes < 100 * 1024);
    tg_free(&m);
}

#define RUN_DIR(fn, dir)                                                                      \
    do {                                                                                      \
        int _before = test_failures;                                                          \
        fn(dir);                                                                              \
        fprintf(stderr, "%s %s\n", test_failures == _before ? "ok  " : "FAIL", #fn);          \
    } while (0)

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write") == 0) return tg_write_all(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_tiny_gpt2_fixture [--write DIR]\n");
        return 2;
    }
    RUN(test_generator_properties);
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpt2", data);
    RUN_DIR(test_fixture_f32, dir);
    RUN_DIR(test_fixture_f16, dir);
    RUN_DIR(test_fixture_q8_0, dir);
    TEST_DONE();
}
