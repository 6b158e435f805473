/* hfconfig.c: config.json -> hf_config (hfconfig.h). Defaults follow the transformers config
 * classes (LlamaConfig, MistralConfig, Qwen2Config, GPT2Config, BertConfig). */
#include "hfconfig.h"

#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const hf_arch_names[HF_ARCH_COUNT] = {"llama", "mistral", "qwen2", "gpt2", "bert"};
static const char *const hf_act_names[HF_ACT_COUNT] = {"silu", "gelu", "gelu_tanh", "relu"};

const char *hf_arch_name(hf_arch a) { return (unsigned)a < HF_ARCH_COUNT ? hf_arch_names[a] : NULL; }
const char *hf_act_name(hf_act a) { return (unsigned)a < HF_ACT_COUNT ? hf_act_names[a] : NULL; }

#define HF_INT_MAX 2147483647LL /* every size and id fits an int32, so products fit int64 */

/* Where we are, for messages: "<what>: field '<prefix><key>': ...". */
typedef struct {
    const char *what;
    const char *prefix; /* "" or "rope_scaling." */
} hf_ctx;

/* A value from the file made safe for a one-line message: control bytes become '?', long
 * values are cut with "...". */
static const char *hf_msgval(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++) buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    buf[n] = '\0';
    if (s[n] && cap >= 4) memcpy(buf + cap - 4, "...", 4);
    return buf;
}

static int hf_cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key given twice is refused: Python's json (what transformers reads with) keeps the last
 * value and cJSON the first, so the file means different things to the two. */
static tw_status hf_check_unique(const hf_ctx *c, const tw_json *obj) {
    size_t n = tw_json_size(obj), i = 0;
    if (n < 2) return TW_OK;
    const char **keys = tw_malloc(n * sizeof *keys);
    if (!keys) return TW_ERR_NOMEM;
    for (const tw_json *m = tw_json_first(obj); m; m = tw_json_next(m)) keys[i++] = tw_json_key(m);
    qsort(keys, n, sizeof *keys, hf_cmp_key);
    tw_status rc = TW_OK;
    for (i = 1; i < n && rc == TW_OK; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            char vb[64];
            rc = tw_error(TW_ERR_FORMAT, "%s: field '%s%s': appears twice", c->what, c->prefix,
                          hf_msgval(keys[i], vb, sizeof vb));
        }
    }
    tw_free(keys);
    return rc;
}

/* obj[key] when present and not null, else NULL (HF writes null for "use the default"). */
static const tw_json *hf_field(const tw_json *obj, const char *key) {
    const tw_json *j = tw_json_get(obj, key);
    return tw_json_is_null(j) ? NULL : j;
}

/* The first of two spellings that is present (k2 may be NULL); k1 when neither is. */
static const char *hf_pick(const tw_json *obj, const char *k1, const char *k2) {
    if (hf_field(obj, k1) || !k2) return k1;
    return hf_field(obj, k2) ? k2 : k1;
}

static tw_status hf_missing(const hf_ctx *c, const char *key) {
    return tw_error(TW_ERR_FORMAT, "%s: field '%s%s': missing", c->what, c->prefix, key);
}

/* obj[key] as an integer in [lo, hi]. Absent or null: TW_ERR_FORMAT when required, else dflt. */
static tw_status hf_int(const hf_ctx *c, const tw_json *obj, const char *key, int required,
                        int64_t dflt, int64_t lo, int64_t hi, int64_t *out) {
    const tw_json *j = hf_field(obj, key);
    if (!j) {
        if (required) return hf_missing(c, key);
        *out = dflt;
        return TW_OK;
    }
    double d = tw_json_num(j, NAN);
    if (!tw_json_is_number(j) || !(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s%s': not an integer in [%lld, %lld]", c->what,
                        c->prefix, key, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return TW_OK;
}

/* obj[key] as a finite number > lo_excl and <= hi. Absent or null: error when required, else
 * dflt. */
static tw_status hf_num(const hf_ctx *c, const tw_json *obj, const char *key, int required,
                        double dflt, double lo_excl, double hi, double *out) {
    const tw_json *j = hf_field(obj, key);
    if (!j) {
        if (required) return hf_missing(c, key);
        *out = dflt;
        return TW_OK;
    }
    double d = tw_json_num(j, NAN);
    if (!tw_json_is_number(j) || !(d > lo_excl && d <= hi))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s%s': not a number in (%g, %g]", c->what,
                        c->prefix, key, lo_excl, hi);
    *out = d;
    return TW_OK;
}

static tw_status hf_bool(const hf_ctx *c, const tw_json *obj, const char *key, int dflt, int *out) {
    const tw_json *j = hf_field(obj, key);
    if (!j) {
        *out = dflt;
        return TW_OK;
    }
    if (!tw_json_is_bool(j))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s%s': not true or false", c->what, c->prefix, key);
    *out = tw_json_bool(j, dflt);
    return TW_OK;
}

/* A string field, or NULL when absent or null; a present non-string is an error. */
static tw_status hf_str(const hf_ctx *c, const tw_json *obj, const char *key, const char **out) {
    const tw_json *j = hf_field(obj, key);
    *out = NULL;
    if (!j) return TW_OK;
    if (!tw_json_is_string(j))
        return tw_error(TW_ERR_FORMAT, "%s: field '%s%s': not a string", c->what, c->prefix, key);
    *out = tw_json_str(j);
    return TW_OK;
}

static tw_status hf_parse_act(const hf_ctx *c, const tw_json *root, const char *key,
                              const char *dflt, hf_config *cfg) {
    static const struct {
        const char *name;
        hf_act act;
    } acts[] = {{"silu", HF_ACT_SILU},          {"swish", HF_ACT_SILU},
                {"gelu", HF_ACT_GELU},          {"gelu_new", HF_ACT_GELU_TANH},
                {"gelu_pytorch_tanh", HF_ACT_GELU_TANH}, {"gelu_fast", HF_ACT_GELU_TANH},
                {"relu", HF_ACT_RELU}};
    const char *s;
    tw_status rc = hf_str(c, root, key, &s);
    if (rc) return rc;
    if (!s) s = dflt;
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        if (strcmp(s, acts[i].name) == 0) {
            cfg->act = acts[i].act;
            snprintf(cfg->act_name, sizeof cfg->act_name, "%s", s);
            return TW_OK;
        }
    }
    char vb[48];
    return tw_error(TW_ERR_UNSUPPORTED, "%s: field '%s': activation '%s' is not supported", c->what,
                    key, hf_msgval(s, vb, sizeof vb));
}

/* rope_scaling: null/absent, {"type"|"rope_type": "linear", "factor"}, or llama3's
 * {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 *  "original_max_position_embeddings"}. */
static tw_status hf_parse_rope_scaling(const hf_ctx *c, const tw_json *root, hf_config *cfg) {
    const tw_json *rs = hf_field(root, "rope_scaling");
    cfg->rope_scaling.type = HF_ROPE_SCALING_NONE;
    if (!rs) return TW_OK;
    if (!tw_json_is_object(rs))
        return tw_error(TW_ERR_FORMAT, "%s: field 'rope_scaling': not an object", c->what);
    hf_ctx sc = {c->what, "rope_scaling."};
    tw_status rc = hf_check_unique(&sc, rs);
    if (rc) return rc;
    const char *key = hf_pick(rs, "rope_type", "type");
    const char *type;
    rc = hf_str(&sc, rs, key, &type);
    if (rc) return rc;
    if (!type) return hf_missing(&sc, "rope_type");
    if (strcmp(type, "default") == 0) return TW_OK;
    if (strcmp(type, "linear") == 0) {
        cfg->rope_scaling.type = HF_ROPE_SCALING_LINEAR;
        return hf_num(&sc, rs, "factor", 1, 0, 0.0, 1e6, &cfg->rope_scaling.factor);
    }
    if (strcmp(type, "llama3") == 0) {
        cfg->rope_scaling.type = HF_ROPE_SCALING_LLAMA3;
        if ((rc = hf_num(&sc, rs, "factor", 1, 0, 0.0, 1e6, &cfg->rope_scaling.factor)) ||
            (rc = hf_num(&sc, rs, "low_freq_factor", 1, 0, 0.0, 1e6, &cfg->rope_scaling.low_freq_factor)) ||
            (rc = hf_num(&sc, rs, "high_freq_factor", 1, 0, 0.0, 1e6, &cfg->rope_scaling.high_freq_factor)) ||
            (rc = hf_int(&sc, rs, "original_max_position_embeddings", 1, 0, 1, HF_INT_MAX,
                         &cfg->rope_scaling.original_max_position_embeddings)))
            return rc;
        /* The smoothing between the two bands divides by their difference. */
        if (!(cfg->rope_scaling.high_freq_factor > cfg->rope_scaling.low_freq_factor))
            return tw_error(TW_ERR_FORMAT,
                            "%s: field 'rope_scaling.high_freq_factor': must be greater than "
                            "low_freq_factor",
                            c->what);
        return TW_OK;
    }
    char vb[48];
    return tw_error(TW_ERR_UNSUPPORTED, "%s: field 'rope_scaling.%s': scaling '%s' is not supported",
                    c->what, key, hf_msgval(type, vb, sizeof vb));
}

/* eos_token_id: an integer, a list of integers, or null. */
static tw_status hf_parse_eos(const hf_ctx *c, const tw_json *root, hf_config *cfg) {
    const tw_json *j = hf_field(root, "eos_token_id");
    cfg->n_eos = 0;
    if (!j) return TW_OK;
    if (tw_json_is_number(j)) {
        int64_t id;
        tw_status rc = hf_int(c, root, "eos_token_id", 1, 0, -1, HF_INT_MAX, &id);
        if (rc) return rc;
        if (id >= 0) cfg->eos_token_ids[cfg->n_eos++] = id;
        return TW_OK;
    }
    if (!tw_json_is_array(j))
        return tw_error(TW_ERR_FORMAT, "%s: field 'eos_token_id': not an integer or a list", c->what);
    if (tw_json_size(j) > HF_MAX_EOS)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: field 'eos_token_id': %zu ids, twin keeps at most %d",
                        c->what, tw_json_size(j), HF_MAX_EOS);
    size_t i = 0;
    for (const tw_json *e = tw_json_first(j); e; e = tw_json_next(e), i++) {
        double d = tw_json_num(e, NAN);
        if (!tw_json_is_number(e) || !(d >= 0 && d <= (double)HF_INT_MAX) || d != floor(d))
            return tw_error(TW_ERR_FORMAT, "%s: field 'eos_token_id[%zu]': not a token id", c->what, i);
        cfg->eos_token_ids[cfg->n_eos++] = (int64_t)d;
    }
    return TW_OK;
}

#define TRY(x)                                                                                \
    do {                                                                                      \
        if ((rc = (x)) != TW_OK) return rc;                                                   \
    } while (0)

static tw_status hf_parse_root(const hf_ctx *c, const tw_json *root, hf_config *cfg) {
    tw_status rc;
    if (!tw_json_is_object(root))
        return tw_error(TW_ERR_FORMAT, "%s: not a JSON object", c->what);
    TRY(hf_check_unique(c, root));
    const char *mt;
    TRY(hf_str(c, root, "model_type", &mt));
    if (!mt) return hf_missing(c, "model_type");
    int found = 0;
    for (int a = 0; a < HF_ARCH_COUNT; a++) {
        if (strcmp(mt, hf_arch_names[a]) == 0) {
            cfg->arch = (hf_arch)a;
            found = 1;
        }
    }
    if (!found) {
        char vb[48];
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: field 'model_type': '%s' is not supported (twin runs llama, mistral, "
                        "qwen2, gpt2, bert)",
                        c->what, hf_msgval(mt, vb, sizeof vb));
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", hf_arch_names[cfg->arch]);

    const char *dt;
    TRY(hf_str(c, root, hf_pick(root, "torch_dtype", "dtype"), &dt));
    if (dt) hf_msgval(dt, cfg->torch_dtype, sizeof cfg->torch_dtype);

    hf_arch a = cfg->arch;
    int is_gpt2 = a == HF_ARCH_GPT2, is_bert = a == HF_ARCH_BERT;
    int rope = !is_gpt2 && !is_bert;
    cfg->uses_rope = rope;
    cfg->norm = rope ? HF_NORM_RMS : HF_NORM_LAYER;

    /* Sizes (GPT-2 has its own spellings; the generic ones are its attribute_map aliases). */
    TRY(hf_int(c, root, is_gpt2 ? hf_pick(root, "n_embd", "hidden_size") : "hidden_size", 1, 0, 1,
               HF_INT_MAX, &cfg->hidden_size));
    TRY(hf_int(c, root, is_gpt2 ? hf_pick(root, "n_layer", "num_hidden_layers") : "num_hidden_layers",
               1, 0, 1, HF_INT_MAX, &cfg->n_layers));
    TRY(hf_int(c, root, is_gpt2 ? hf_pick(root, "n_head", "num_attention_heads") : "num_attention_heads",
               1, 0, 1, HF_INT_MAX, &cfg->n_heads));
    TRY(hf_int(c, root, "vocab_size", 1, 0, 1, HF_INT_MAX, &cfg->vocab_size));
    if (is_gpt2) {
        /* n_inner null means 4 * n_embd (GPT2MLP). */
        TRY(hf_int(c, root, hf_pick(root, "n_inner", "intermediate_size"), 0, 4 * cfg->hidden_size,
                   1, HF_INT_MAX, &cfg->intermediate_size));
        const char *pk = hf_pick(root, "n_positions", "n_ctx");
        if (!hf_field(root, pk)) pk = hf_pick(root, pk, "max_position_embeddings");
        TRY(hf_int(c, root, pk, 1, 0, 1, HF_INT_MAX, &cfg->max_position_embeddings));
        if (cfg->intermediate_size > HF_INT_MAX)
            return tw_error(TW_ERR_FORMAT, "%s: field 'n_embd': 4 * %lld overflows the MLP width",
                            c->what, (long long)cfg->hidden_size);
    } else {
        TRY(hf_int(c, root, "intermediate_size", 1, 0, 1, HF_INT_MAX, &cfg->intermediate_size));
        int64_t dflt_pos = a == HF_ARCH_MISTRAL ? 4096 * 32 : a == HF_ARCH_QWEN2 ? 32768 : 2048;
        TRY(hf_int(c, root, "max_position_embeddings", is_bert, dflt_pos, 1, HF_INT_MAX,
                   &cfg->max_position_embeddings));
    }

    /* Heads. */
    TRY(hf_int(c, root, "num_key_value_heads", 0, cfg->n_heads, 1, HF_INT_MAX, &cfg->n_kv_heads));
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return tw_error(TW_ERR_FORMAT,
                        "%s: field 'num_key_value_heads': %lld does not divide the %lld heads",
                        c->what, (long long)cfg->n_kv_heads, (long long)cfg->n_heads);
    if (hf_field(root, "head_dim")) {
        TRY(hf_int(c, root, "head_dim", 1, 0, 1, HF_INT_MAX, &cfg->head_dim));
    } else {
        if (cfg->hidden_size % cfg->n_heads != 0)
            return tw_error(TW_ERR_FORMAT,
                            "%s: field '%s': %lld heads do not divide the hidden size %lld",
                            c->what, is_gpt2 ? "n_head" : "num_attention_heads",
                            (long long)cfg->n_heads, (long long)cfg->hidden_size);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }

    /* Norm, activation, positions. */
    if (is_gpt2) {
        TRY(hf_num(c, root, "layer_norm_epsilon", 0, 1e-5, 0.0, 1.0, &cfg->norm_eps));
        TRY(hf_parse_act(c, root, hf_pick(root, "activation_function", "hidden_act"), "gelu_new", cfg));
    } else if (is_bert) {
        TRY(hf_num(c, root, "layer_norm_eps", 0, 1e-12, 0.0, 1.0, &cfg->norm_eps));
        TRY(hf_parse_act(c, root, "hidden_act", "gelu", cfg));
        TRY(hf_int(c, root, "type_vocab_size", 0, 2, 1, HF_INT_MAX, &cfg->type_vocab_size));
        const char *pet;
        TRY(hf_str(c, root, "position_embedding_type", &pet));
        if (pet && strcmp(pet, "absolute") != 0) {
            char vb[48];
            return tw_error(TW_ERR_UNSUPPORTED,
                            "%s: field 'position_embedding_type': '%s' is not supported (only "
                            "absolute)",
                            c->what, hf_msgval(pet, vb, sizeof vb));
        }
    } else {
        TRY(hf_num(c, root, "rms_norm_eps", 0, 1e-6, 0.0, 1.0, &cfg->norm_eps));
        TRY(hf_parse_act(c, root, "hidden_act", "silu", cfg));
        TRY(hf_num(c, root, "rope_theta", 0, 10000.0, 0.0, 1e12, &cfg->rope_theta));
        TRY(hf_parse_rope_scaling(c, root, cfg));
    }

    /* Sliding window: mistral uses it whenever set; qwen2 only with use_sliding_window. */
    cfg->sliding_window = 0;
    if (a == HF_ARCH_MISTRAL) {
        TRY(hf_int(c, root, "sliding_window", 0, 0, 0, HF_INT_MAX, &cfg->sliding_window));
    } else if (a == HF_ARCH_QWEN2) {
        int use;
        TRY(hf_bool(c, root, "use_sliding_window", 0, &use));
        if (use) TRY(hf_int(c, root, "sliding_window", 1, 0, 1, HF_INT_MAX, &cfg->sliding_window));
    }

    /* Embedding tying: PretrainedConfig defaults to true (gpt2, bert); the llama-family
     * classes default to false. */
    TRY(hf_bool(c, root, "tie_word_embeddings", !rope, &cfg->tie_word_embeddings));

    /* Biases, as each family's modeling code builds its layers. */
    switch (a) {
    case HF_ARCH_LLAMA: {
        int ab, mb;
        TRY(hf_bool(c, root, "attention_bias", 0, &ab));
        TRY(hf_bool(c, root, "mlp_bias", 0, &mb));
        cfg->qkv_bias = cfg->o_bias = ab;
        cfg->mlp_bias = mb;
        break;
    }
    case HF_ARCH_MISTRAL: cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 0; break;
    case HF_ARCH_QWEN2:
        cfg->qkv_bias = 1; /* Qwen2Attention: q/k/v with bias, o_proj without */
        cfg->o_bias = cfg->mlp_bias = 0;
        break;
    default: cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 1; break; /* gpt2, bert */
    }

    /* Special token ids. */
    TRY(hf_int(c, root, "bos_token_id", 0, -1, -1, HF_INT_MAX, &cfg->bos_token_id));
    TRY(hf_int(c, root, "pad_token_id", 0, -1, -1, HF_INT_MAX, &cfg->pad_token_id));
    TRY(hf_parse_eos(c, root, cfg));
    return TW_OK;
}

tw_status hf_config_parse(const char *text, size_t n, const char *what, hf_config *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "config.json";
    tw_json *doc = tw_json_parse(text, n, what);
    if (!doc) return tw_errcode();
    hf_ctx c = {what, ""};
    tw_status rc = hf_parse_root(&c, doc, out);
    tw_json_free(doc);
    return rc;
}

tw_status hf_config_load(const char *path, hf_config *out) {
    char *buf;
    size_t n;
    tw_status rc = tw_file_read(path, &buf, &n);
    if (rc) return rc;
    rc = hf_config_parse(buf, n, path, out);
    tw_free(buf);
    return rc;
}
