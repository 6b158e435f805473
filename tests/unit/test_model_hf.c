/* test_model_hf: the same weights loaded from a GGUF file and from an HF folder (config.json +
 * model.safetensors + tokenizer.json) give the same logits, for each family's conventions:
 *
 *   gpt2   HF Conv1D matrices are stored (in, out) and transposed at load; GGUF fuses q/k/v
 *          (tiny-gpt2-f32.gguf of tests/data/gpt2 converted to an HF folder here): equal bits.
 *   llama  llama.cpp's converter permutes the rows of Q and K so that rope rotates adjacent
 *          pairs (NORM); HF checkpoints are unpermuted and rotate (i, i + d/2) (NEOX). A random
 *          tiny llama (GQA 4/2 heads, untied head) is written both ways: the logits agree to
 *          fp32 rounding; the unpermuted weights read as GGUF do NOT (the test that the pairing
 *          matters). The HF file is BF16, the GGUF F32 with the same (bf16-exact) values.
 *   llama3 rope scaling: config.json's rope_scaling (llama3) vs GGUF rope_freqs.weight computed
 *          here as transformers' _compute_llama3_parameters scales inv_freq; and linear scaling.
 *   qwen2  q/k/v biases, unpermuted NEOX in both formats, tied embeddings: equal bits.
 * Also: config.json naming an architecture twin does not run is a clear error. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "golden.h"
#include "gguf.h"
#include "safetensors.h"

static tw_backend *be;
static char tmpdir[256];
static const char *tiny_path;
static gguf_file *tiny; /* tokenizer source and the gpt2 weights */

/* ---- small helpers ---- */

static char *pjoin(const char *a, const char *b) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%s", a, b);
    return tw_sb_take(&sb);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = pjoin(dir, name);
    CHECK_EQ_INT(tw_file_write_atomic(p, text, strlen(text)), TW_OK);
    tw_free(p);
}

static char *mkdir_in(const char *name) {
    char *p = pjoin(tmpdir, name);
    CHECK_EQ_INT(tw_mkdir_p(p), TW_OK);
    return p;
}

/* tokenizer.json for the tiny GPT-2 vocabulary (byte-level BPE, 288 tokens, eot 287). */
static void write_tokenizer_json(const char *dir) {
    const gguf_value *toks = gguf_find(tiny, "tokenizer.ggml.tokens");
    const gguf_value *merges = gguf_find(tiny, "tokenizer.ggml.merges");
    TW_ASSERT(toks && merges);
    uint64_t n = toks->v.arr.count;
    tw_sb j;
    tw_sb_init(&j);
    tw_sb_puts(&j, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":");
    tw_sb_printf(&j, "%llu,\"content\":", (unsigned long long)(n - 1));
    gguf_str last = gguf_arr_str(toks, n - 1);
    tw_sb_json_str(&j, last.ptr, last.len);
    tw_sb_puts(&j, ",\"special\":true}],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                   "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                   "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
                   "\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(toks, i);
        if (i) tw_sb_putc(&j, ',');
        tw_sb_json_str(&j, s.ptr, s.len);
        tw_sb_printf(&j, ":%llu", (unsigned long long)i);
    }
    tw_sb_puts(&j, "},\"merges\":[");
    for (uint64_t i = 0; i < merges->v.arr.count; i++) {
        gguf_str s = gguf_arr_str(merges, i);
        if (i) tw_sb_putc(&j, ',');
        tw_sb_json_str(&j, s.ptr, s.len);
    }
    tw_sb_puts(&j, "]}}");
    write_text(dir, "tokenizer.json", tw_sb_str(&j));
    tw_sb_free(&j);
}

/* Copies the tokenizer.* keys of the tiny GPT-2 into a GGUF being written. */
static void copy_tokenizer_keys(gguf_writer *w) {
    for (uint64_t i = 0; i < gguf_n_kv(tiny); i++) {
        const gguf_kv *kv = gguf_kv_at(tiny, i);
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (strncmp(key, "tokenizer.", 10) == 0) gguf_writer_set_value(w, key, &kv->value);
    }
}

/* Logits of every position of a fixed token list (n <= 48). */
#define N_TOK 40
static int model_logits(const char *path, float *out) {
    tw_model *m = NULL;
    if (tw_model_load(path, be, NULL, &m) != TW_OK) {
        fprintf(stderr, "load %s: %s\n", path, tw_errmsg());
        return 1;
    }
    int32_t toks[N_TOK];
    for (int i = 0; i < N_TOK; i++) toks[i] = (i * 37 + 11) % 287;
    tw_kv_cache *kv = NULL;
    int32_t seq;
    int rc = tw_kv_cache_new(m, 8, 16, &kv) != TW_OK || run_prompt(m, kv, toks, N_TOK, 1, out, &seq) != TW_OK;
    if (rc) fprintf(stderr, "run %s: %s\n", path, tw_errmsg());
    tw_kv_cache_free(kv);
    tw_model_free(m);
    return rc;
}

/* ---- gpt2: GGUF -> HF folder ---- */

static void test_gpt2(void) {
    char *dir = mkdir_in("gpt2");
    double eps;
    CHECK_EQ_INT(gguf_get_f64(tiny, "gpt2.attention.layer_norm_epsilon", &eps), TW_OK);
    tw_sb cfg;
    tw_sb_init(&cfg);
    tw_sb_printf(&cfg, "{\"model_type\":\"gpt2\",\"n_embd\":32,\"n_layer\":2,\"n_head\":2,"
                       "\"n_positions\":64,\"n_inner\":null,\"vocab_size\":288,"
                       "\"layer_norm_epsilon\":%.17g,\"activation_function\":\"gelu_new\"}", eps);
    /* n_inner null means 4 * n_embd = 128, the fixture's width */
    write_text(dir, "config.json", tw_sb_str(&cfg));
    tw_sb_free(&cfg);
    write_tokenizer_json(dir);
    static const char *const map[][2] = {
        {"token_embd.weight", "wte.weight"}, {"position_embd.weight", "wpe.weight"},
        {"output_norm.weight", "ln_f.weight"}, {"output_norm.bias", "ln_f.bias"},
        {"attn_norm.weight", "ln_1.weight"}, {"attn_norm.bias", "ln_1.bias"},
        {"attn_qkv.weight", "attn.c_attn.weight"}, {"attn_qkv.bias", "attn.c_attn.bias"},
        {"attn_output.weight", "attn.c_proj.weight"}, {"attn_output.bias", "attn.c_proj.bias"},
        {"ffn_norm.weight", "ln_2.weight"}, {"ffn_norm.bias", "ln_2.bias"},
        {"ffn_up.weight", "mlp.c_fc.weight"}, {"ffn_up.bias", "mlp.c_fc.bias"},
        {"ffn_down.weight", "mlp.c_proj.weight"}, {"ffn_down.bias", "mlp.c_proj.bias"}};
    st_writer *w = st_writer_new();
    char names[64][64];
    float *bufs[64];
    int nb = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(tiny); i++) {
        const gguf_tensor *t = gguf_tensor_at(tiny, i);
        char gname[64], hname[64] = "";
        snprintf(gname, sizeof gname, "%.*s", (int)t->name.len, t->name.ptr);
        int layer = -1;
        const char *suffix = gname;
        if (sscanf(gname, "blk.%d.", &layer) == 1) suffix = strchr(gname + 4, '.') + 1;
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (strcmp(map[k][0], suffix) == 0) {
                /* layer 1 under "transformer.", as GPT2LMHeadModel saves: both spellings load */
                if (layer >= 0) snprintf(hname, sizeof hname, "%sh.%d.%s", layer == 1 ? "transformer." : "", layer, map[k][1]);
                else snprintf(hname, sizeof hname, "%s", map[k][1]);
            }
        CHECK(hname[0] != 0);
        CHECK_EQ_INT(t->type, TW_DTYPE_F32);
        int64_t ne0 = t->ne[0], ne1 = t->ne[1];
        float *b = malloc((size_t)(ne0 * ne1) * sizeof *b);
        const float *src = t->data;
        int conv = strstr(hname, "c_attn.weight") || strstr(hname, "c_proj.weight") || strstr(hname, "c_fc.weight");
        int64_t shape[2];
        if (conv) { /* torch Conv1D weight (in, out): the transpose of GGUF's (out rows of in) */
            for (int64_t r = 0; r < ne1; r++)
                for (int64_t c = 0; c < ne0; c++) b[c * ne1 + r] = src[r * ne0 + c];
            shape[0] = ne0, shape[1] = ne1;
        } else {
            memcpy(b, src, (size_t)(ne0 * ne1) * sizeof *b);
            shape[0] = ne1, shape[1] = ne0;
        }
        snprintf(names[nb], sizeof names[nb], "%s", hname);
        bufs[nb] = b;
        CHECK_EQ_INT(st_writer_add_tensor(w, names[nb], ST_DTYPE_F32, t->n_dims == 1 ? 1 : 2,
                                          t->n_dims == 1 ? shape + 1 : shape, b), TW_OK);
        nb++;
    }
    char *st_path = pjoin(dir, "model.safetensors");
    CHECK_EQ_INT(st_writer_write(w, st_path), TW_OK);
    st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    tw_free(st_path);

    float *a = malloc(N_TOK * 288 * sizeof *a), *b = malloc(N_TOK * 288 * sizeof *b);
    CHECK(model_logits(tiny_path, a) == 0);
    CHECK(model_logits(dir, b) == 0);
    double d = max_abs_diff(a, b, N_TOK * 288);
    fprintf(stderr, "  gpt2 GGUF vs HF folder: max |logit diff| %.3g\n", d);
    CHECK(d == 0);
    free(a);
    free(b);
    tw_free(dir);
}

/* ---- a random tiny llama / qwen2 ---- */

#define L_EMBD 64
#define L_HEAD 4
#define L_KV 2
#define L_HD 16
#define L_FF 96
#define L_LAYER 2
#define L_VOCAB 288
#define L_CTX 128

static uint64_t rng_state;
/* Uniform in [-a, a]. Weights are rounded to bf16 (bf16_exact) so that the BF16 HF file holds
 * exactly the GGUF's f32 values. */
static float rnd(float a) {
    rng_state += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float u = (float)((double)(z >> 11) / 9007199254740992.0) * 2 - 1;
    return u * a;
}

typedef struct {
    const char *gguf, *hf; /* GGUF name ("%d" = layer) and HF name */
    int64_t rows, cols;    /* torch shape (out, in); cols 0 for a vector */
    float scale;
    int rope_rows;         /* heads to permute for GGUF llama: n_head (Q), n_kv_head (K), 0 */
    int bias;              /* a qwen2 bias: only with biases */
    float *data;
} ltensor;

static ltensor lt_global[] = {
    {"token_embd.weight", "model.embed_tokens.weight", L_VOCAB, L_EMBD, 1.0f, 0, 0, NULL},
    {"output_norm.weight", "model.norm.weight", L_EMBD, 0, 0.3f, 0, 0, NULL},
    {"output.weight", "lm_head.weight", L_VOCAB, L_EMBD, 0.3f, 0, 0, NULL},
};
static ltensor lt_layer[] = {
    {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", L_EMBD, 0, 0.3f, 0, 0, NULL},
    {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", L_HEAD * L_HD, L_EMBD, 0.4f, L_HEAD, 0, NULL},
    {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", L_HEAD * L_HD, 0, 0.5f, 0, 1, NULL},
    {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", L_KV * L_HD, L_EMBD, 0.4f, L_KV, 0, NULL},
    {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", L_KV * L_HD, 0, 0.5f, 0, 1, NULL},
    {"blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", L_KV * L_HD, L_EMBD, 0.4f, 0, 0, NULL},
    {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", L_KV * L_HD, 0, 0.5f, 0, 1, NULL},
    {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", L_EMBD, L_HEAD * L_HD, 0.2f, 0, 0, NULL},
    {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", L_EMBD, 0, 0.3f, 0, 0, NULL},
    {"blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", L_FF, L_EMBD, 0.3f, 0, 0, NULL},
    {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", L_FF, L_EMBD, 0.3f, 0, 0, NULL},
    {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", L_EMBD, L_FF, 0.2f, 0, 0, NULL},
};
#define N_LT_LAYER (int)(sizeof lt_layer / sizeof lt_layer[0])
#define N_LT_GLOBAL (int)(sizeof lt_global / sizeof lt_global[0])
static float *layer_data[L_LAYER][N_LT_LAYER];

static float bf16_exact(float x) { return tw_bf16_to_f32(tw_f32_to_bf16(x)); }

static int64_t lt_count(const ltensor *t) { return t->rows * (t->cols ? t->cols : 1); }

static void make_weights(void) {
    rng_state = 20240601;
    for (int i = 0; i < N_LT_GLOBAL; i++) {
        ltensor *t = &lt_global[i];
        t->data = malloc((size_t)lt_count(t) * sizeof(float));
        for (int64_t k = 0; k < lt_count(t); k++) t->data[k] = bf16_exact((t->cols ? 0 : 1) + rnd(t->scale));
    }
    for (int l = 0; l < L_LAYER; l++)
        for (int i = 0; i < N_LT_LAYER; i++) {
            const ltensor *t = &lt_layer[i];
            float *d = malloc((size_t)lt_count(t) * sizeof(float));
            for (int64_t k = 0; k < lt_count(t); k++) d[k] = bf16_exact((t->cols ? 0 : (t->bias ? 0 : 1)) + rnd(t->scale));
            layer_data[l][i] = d;
        }
}

static void free_weights(void) {
    for (int i = 0; i < N_LT_GLOBAL; i++) free(lt_global[i].data);
    for (int l = 0; l < L_LAYER; l++)
        for (int i = 0; i < N_LT_LAYER; i++) free(layer_data[l][i]);
}

/* convert_hf_to_gguf.py's LlamaModel.permute: within each head, row i*(hd/2)+j moves to 2j+i. */
static void permute_rows(const float *src, float *dst, int n_head, int64_t rows, int64_t cols) {
    int64_t hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++)
                memcpy(dst + (h * hd + 2 * j + i) * cols, src + (h * hd + i * half + j) * cols,
                       (size_t)cols * sizeof *src);
}

typedef struct {
    const char *arch;  /* "llama" or "qwen2" */
    int biases, tied;  /* qwen2: q/k/v biases; tied: no output / lm_head */
    int permute;       /* permute Q/K rows in the GGUF (llama's converter) */
    const char *scaling; /* NULL, "linear" or "llama3" */
} lvariant;

/* llama3's scaling as transformers computes it (modeling_rope_utils._compute_llama3_parameters):
 * inv_freq scaled by 1/factor at long wavelengths, kept at short ones, blended between; the
 * GGUF factor is inv_freq / scaled inv_freq. Written independently of the loader's formula. */
#define L3_FACTOR 8.0
#define L3_LOW 1.0
#define L3_HIGH 4.0
#define L3_OLD 32.0
#define L_THETA 10000.0
static void llama3_factors(float *out) {
    for (int i = 0; i < L_HD / 2; i++) {
        double inv = 1.0 / pow(L_THETA, (2.0 * i) / L_HD);
        double wavelen = 2 * 3.14159265358979323846 / inv;
        double scaled;
        if (wavelen > L3_OLD / L3_LOW) scaled = inv / L3_FACTOR;
        else if (wavelen < L3_OLD / L3_HIGH) scaled = inv;
        else {
            double smooth = (L3_OLD / wavelen - L3_LOW) / (L3_HIGH - L3_LOW);
            scaled = (1 - smooth) * inv / L3_FACTOR + smooth * inv;
        }
        out[i] = (float)(inv / scaled);
    }
}

/* Returns the path (tw_free). */
static char *write_llama_gguf(const char *name, const lvariant *v) {
    char *path = pjoin(tmpdir, name);
    gguf_writer *w = gguf_writer_new(3, 0);
    const char *a = v->arch;
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    gguf_writer_set_str(w, "general.architecture", a);
    gguf_writer_set_u32(w, KEY("block_count"), L_LAYER);
    gguf_writer_set_u32(w, KEY("context_length"), L_CTX);
    gguf_writer_set_u32(w, KEY("embedding_length"), L_EMBD);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), L_FF);
    gguf_writer_set_u32(w, KEY("attention.head_count"), L_HEAD);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), L_KV);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)L_THETA);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (v->scaling && strcmp(v->scaling, "linear") == 0) {
        gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
        gguf_writer_set_f32(w, KEY("rope.scaling.factor"), 2.0f);
    }
#undef KEY
    copy_tokenizer_keys(w);
    float *tmp[64];
    int nt = 0;
    float freqs[L_HD / 2];
    if (v->scaling && strcmp(v->scaling, "llama3") == 0) {
        llama3_factors(freqs);
        int64_t ne[1] = {L_HD / 2};
        gguf_writer_add_tensor(w, "rope_freqs.weight", TW_DTYPE_F32, 1, ne, freqs);
    }
    for (int i = 0; i < N_LT_GLOBAL; i++) {
        const ltensor *t = &lt_global[i];
        if (v->tied && strcmp(t->gguf, "output.weight") == 0) continue;
        int64_t ne[2] = {t->cols ? t->cols : t->rows, t->rows};
        gguf_writer_add_tensor(w, t->gguf, TW_DTYPE_F32, t->cols ? 2 : 1, ne, t->data);
    }
    char names[L_LAYER * N_LT_LAYER][64];
    int nn = 0;
    for (int l = 0; l < L_LAYER; l++)
        for (int i = 0; i < N_LT_LAYER; i++) {
            const ltensor *t = &lt_layer[i];
            if (t->bias && !v->biases) continue;
            snprintf(names[nn], sizeof names[nn], t->gguf, l);
            const float *d = layer_data[l][i];
            if (v->permute && t->rope_rows) {
                float *p = malloc((size_t)lt_count(t) * sizeof *p);
                permute_rows(d, p, t->rope_rows, t->rows, t->cols);
                tmp[nt++] = p;
                d = p;
            }
            int64_t ne[2] = {t->cols ? t->cols : t->rows, t->rows};
            CHECK_EQ_INT(gguf_writer_add_tensor(w, names[nn], TW_DTYPE_F32, t->cols ? 2 : 1, ne, d), TW_OK);
            nn++;
        }
    tw_status st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    for (int i = 0; i < nt; i++) free(tmp[i]);
    CHECK_EQ_INT(st, TW_OK);
    return path;
}

/* shards 1: model.safetensors; 2: model-0000{1,2}-of-00002.safetensors (global tensors, then
 * the layers) with model.safetensors.index.json, as transformers saves large models. */
static char *write_llama_hf_sharded(const char *name, const lvariant *v, const char *model_type,
                                    int shards);
static char *write_llama_hf(const char *name, const lvariant *v, const char *model_type) {
    return write_llama_hf_sharded(name, v, model_type, 1);
}
static char *write_llama_hf_sharded(const char *name, const lvariant *v, const char *model_type,
                                    int shards) {
    char *dir = mkdir_in(name);
    tw_sb cfg;
    tw_sb_init(&cfg);
    tw_sb_printf(&cfg, "{\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
                       "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
                       "\"vocab_size\":%d,\"max_position_embeddings\":%d,\"rms_norm_eps\":1e-05,"
                       "\"rope_theta\":%g,\"hidden_act\":\"silu\",\"tie_word_embeddings\":%s",
                 model_type, L_EMBD, L_FF, L_LAYER, L_HEAD, L_KV, L_VOCAB, L_CTX, L_THETA,
                 v->tied ? "true" : "false");
    if (v->scaling && strcmp(v->scaling, "llama3") == 0)
        tw_sb_printf(&cfg, ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":%g,"
                           "\"low_freq_factor\":%g,\"high_freq_factor\":%g,"
                           "\"original_max_position_embeddings\":%d}",
                     L3_FACTOR, L3_LOW, L3_HIGH, (int)L3_OLD);
    if (v->scaling && strcmp(v->scaling, "linear") == 0)
        tw_sb_puts(&cfg, ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}");
    tw_sb_puts(&cfg, "}");
    write_text(dir, "config.json", tw_sb_str(&cfg));
    tw_sb_free(&cfg);
    write_tokenizer_json(dir);
    write_text(dir, "tokenizer_config.json",
               "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
               "{\"name\":\"default\",\"template\":\"{{ messages }}\"}]}");
    st_writer *ws[2] = {st_writer_new(), shards > 1 ? st_writer_new() : NULL};
    static const char *const shard_name[2] = {"model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors"};
    tw_sb index;
    tw_sb_init(&index);
    tw_sb_puts(&index, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    uint16_t *bf[64];
    char names[64][80];
    int nb = 0;
    for (int l = -1; l < L_LAYER; l++) {
        st_writer *w = ws[shards > 1 && l >= 0];
        int n = l < 0 ? N_LT_GLOBAL : N_LT_LAYER;
        for (int i = 0; i < n; i++) {
            const ltensor *t = l < 0 ? &lt_global[i] : &lt_layer[i];
            if (t->bias && !v->biases) continue;
            if (v->tied && strcmp(t->gguf, "output.weight") == 0) continue;
            const float *d = l < 0 ? t->data : layer_data[l][i];
            uint16_t *b = malloc((size_t)lt_count(t) * sizeof *b);
            for (int64_t k = 0; k < lt_count(t); k++) b[k] = tw_f32_to_bf16(d[k]);
            snprintf(names[nb], sizeof names[nb], t->hf, l);
            int64_t shape[2] = {t->rows, t->cols};
            CHECK_EQ_INT(st_writer_add_tensor(w, names[nb], ST_DTYPE_BF16, t->cols ? 2 : 1, shape, b), TW_OK);
            tw_sb_printf(&index, "%s\"%s\":\"%s\"", nb ? "," : "", names[nb], shard_name[l >= 0]);
            bf[nb++] = b;
        }
    }
    tw_sb_puts(&index, "}}");
    if (shards > 1) {
        for (int i = 0; i < 2; i++) {
            char *p = pjoin(dir, shard_name[i]);
            CHECK_EQ_INT(st_writer_write(ws[i], p), TW_OK);
            tw_free(p);
        }
        write_text(dir, "model.safetensors.index.json", tw_sb_str(&index));
    } else {
        char *p = pjoin(dir, "model.safetensors");
        CHECK_EQ_INT(st_writer_write(ws[0], p), TW_OK);
        tw_free(p);
    }
    tw_sb_free(&index);
    st_writer_free(ws[0]);
    st_writer_free(ws[1]);
    for (int i = 0; i < nb; i++) free(bf[i]);
    return dir;
}

/* Logits of a GGUF and an HF folder of the same weights: max |diff| <= tol. */
static double compare_files(const char *what, const char *a_path, const char *b_path) {
    float *a = malloc(N_TOK * L_VOCAB * sizeof *a), *b = malloc(N_TOK * L_VOCAB * sizeof *b);
    double d = INFINITY;
    if (model_logits(a_path, a) == 0 && model_logits(b_path, b) == 0) d = max_abs_diff(a, b, N_TOK * L_VOCAB);
    fprintf(stderr, "  %s: max |logit diff| %.3g\n", what, d);
    free(a);
    free(b);
    return d;
}

/* Logits span about +-8. GGUF (NORM pairs, permuted Q/K rows, f32 weights) and HF (NEOX
 * pairs, bf16 weights holding the same values) compute the same products; the q.k dot products
 * add the head dims in another order (the permutation) and the bf16 and f32 matmul kernels
 * may group their sums differently, so results differ by fp32 rounding amplified through two
 * layers and softmax: measured 1e-5 .. 6e-4. A wrong pairing or a missing scaling moves
 * logits by several units (checked below), far above this bound. */
#define ORDER_TOL 2e-3

static void test_llama(void) {
    lvariant v = {"llama", 0, 0, 1, NULL};
    char *g = write_llama_gguf("llama.gguf", &v);
    char *h = write_llama_hf("llama-hf", &v, "llama");
    CHECK(compare_files("llama GGUF (permuted, NORM) vs HF (NEOX)", g, h) <= ORDER_TOL);
    /* The pairing matters: the unpermuted rows read as a llama GGUF give other logits. */
    lvariant u = v;
    u.permute = 0;
    char *g2 = write_llama_gguf("llama-unpermuted.gguf", &u);
    CHECK(compare_files("llama GGUF without the permutation vs HF", g2, h) > 1e-2);
    /* the same weights in two shards with an index */
    char *hs = write_llama_hf_sharded("llama-hf-sharded", &v, "llama", 2);
    CHECK(compare_files("llama HF one file vs two shards", h, hs) == 0);
    tw_free(hs);
    /* mistral's config runs as llama */
    char *hm = write_llama_hf("mistral-hf", &v, "mistral");
    CHECK(compare_files("mistral HF vs llama GGUF", g, hm) <= ORDER_TOL);

    tw_model *m = NULL;
    CHECK_EQ_INT(tw_model_load(h, be, NULL, &m), TW_OK);
    if (m) {
        CHECK_EQ_STR(tw_model_arch_name(m), "llama");
        CHECK_EQ_STR(tw_model_chat_template(m), "{{ messages }}"); /* the "default" one */
        CHECK_EQ_INT(tw_model_get_hparams(m)->n_kv_head, L_KV);
    }
    tw_model_free(m);
    tw_free(h);
    tw_free(hm);
    tw_free(g);
    tw_free(g2);
}

static void test_rope_scaling(void) {
    lvariant v = {"llama", 0, 0, 1, "llama3"};
    char *g = write_llama_gguf("llama3.gguf", &v);
    char *h = write_llama_hf("llama3-hf", &v, "llama");
    CHECK(compare_files("llama3 scaling: GGUF rope_freqs vs HF rope_scaling", g, h) <= ORDER_TOL);
    lvariant plain = {"llama", 0, 0, 1, NULL};
    char *gp = write_llama_gguf("llama-plain.gguf", &plain);
    CHECK(compare_files("llama3 scaling vs none (must differ)", g, gp) > 1e-2);
    lvariant lin = {"llama", 0, 0, 1, "linear"};
    char *gl = write_llama_gguf("llama-linear.gguf", &lin);
    char *hl = write_llama_hf("llama-linear-hf", &lin, "llama");
    CHECK(compare_files("linear scaling: GGUF vs HF", gl, hl) <= ORDER_TOL);
    CHECK(compare_files("linear scaling vs none (must differ)", gl, gp) > 1e-2);
    tw_free(h);
    tw_free(hl);
    tw_free(g);
    tw_free(gp);
    tw_free(gl);
}

static void test_qwen2(void) {
    lvariant v = {"qwen2", 1, 1, 0, NULL};
    char *g = write_llama_gguf("qwen2.gguf", &v);
    char *h = write_llama_hf("qwen2-hf", &v, "qwen2");
    /* same pair order and the same rows in both: only the bf16 vs f32 matmul kernels differ */
    CHECK(compare_files("qwen2 GGUF vs HF (biases, tied head)", g, h) <= ORDER_TOL);
    /* without its biases a qwen2 file is incomplete */
    lvariant nb = v;
    nb.biases = 0;
    char *g2 = write_llama_gguf("qwen2-nobias.gguf", &nb);
    tw_model *m = NULL;
    CHECK_EQ_INT(tw_model_load(g2, be, NULL, &m), TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "'blk.0.attn_q.bias'") != NULL);
    tw_free(h);
    tw_free(g);
    tw_free(g2);
}

static void test_hf_refusals(void) {
    char *dir = mkdir_in("bert-hf");
    write_text(dir, "config.json",
               "{\"model_type\":\"bert\",\"hidden_size\":32,\"intermediate_size\":64,"
               "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":100,"
               "\"max_position_embeddings\":64}");
    tw_model *m = NULL;
    /* bert loads (encoder.h runs it): this folder has no weights */
    CHECK_EQ_INT(tw_model_load(dir, be, NULL, &m), TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "model.safetensors") != NULL);
    fprintf(stderr, "  refused: %s\n", tw_errmsg());
    /* a llama folder without weights */
    write_text(dir, "config.json",
               "{\"model_type\":\"llama\",\"hidden_size\":32,\"intermediate_size\":64,"
               "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":100,"
               "\"max_position_embeddings\":64}");
    CHECK_EQ_INT(tw_model_load(dir, be, NULL, &m), TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "model.safetensors") != NULL);
    fprintf(stderr, "  refused: %s\n", tw_errmsg());
    tw_free(dir);
}

static int rm_rf(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

int main(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    static char base[4096];
    snprintf(base, sizeof base, "%.4000s/gpt2/tiny-gpt2-f32.gguf", data);
    tiny_path = base;
    tiny = gguf_open(base);
    if (!tiny) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%.200s/twin-model-hf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    if (tw_backend_open("cpu", &be) != TW_OK) return 1;
    tw_log_set_level(TW_LOG_ERROR);
    make_weights();
    RUN(test_gpt2);
    RUN(test_llama);
    RUN(test_rope_scaling);
    RUN(test_qwen2);
    RUN(test_hf_refusals);
    free_weights();
    gguf_close(tiny);
    tw_backend_free(be);
    if (rm_rf(tmpdir) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
