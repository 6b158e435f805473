/* hfconfig.h: a Hugging Face transformers `config.json` as one struct describing the
 * architecture, for the families twin runs: llama, mistral, qwen2 (rotary, RMSNorm, gated MLP)
 * and gpt2, bert (learned positions, LayerNorm).
 *
 * What is required and what has a default. Fields that fix the shape of a weight are required
 * (a missing one is TW_ERR_FORMAT naming the field): hidden size, intermediate size (except
 * gpt2, where n_inner null means 4 * n_embd), layers, heads, vocab size, and for the learned
 * position tables of gpt2/bert the number of positions. Everything else takes the default of
 * the transformers config class of that family when absent or null (norm eps, rope theta,
 * kv heads = heads, head_dim = hidden / heads, activation, tie_word_embeddings, biases,
 * type_vocab_size = 2); token ids that are absent or null are -1. GPT-2 spells its fields
 * n_embd / n_layer / n_head / n_positions (n_ctx in old files) / n_inner / layer_norm_epsilon /
 * activation_function; the generic spellings are accepted as a fallback, as GPT2Config's
 * attribute_map does.
 *
 * Refused with TW_ERR_UNSUPPORTED (message names the field and value): an unknown model_type,
 * an unknown hidden_act, a rope_scaling type other than linear or llama3 ("default" means
 * none), a bert position_embedding_type other than "absolute".
 * Values are checked (TW_ERR_FORMAT naming the field): integers must be integral numbers in
 * range, heads must divide hidden size when head_dim is not given, kv heads must divide heads,
 * and a key may not appear twice (Python's json keeps the last, cJSON the first).
 *
 * Thread safety: pure functions over caller memory.
 */
#ifndef TWIN_HFCONFIG_H
#define TWIN_HFCONFIG_H

#include "core.h"

typedef enum { HF_ARCH_LLAMA = 0, HF_ARCH_MISTRAL, HF_ARCH_QWEN2, HF_ARCH_GPT2, HF_ARCH_BERT, HF_ARCH_COUNT } hf_arch;

typedef enum {
    HF_ACT_SILU = 0,  /* "silu", "swish" */
    HF_ACT_GELU,      /* "gelu": the exact erf form */
    HF_ACT_GELU_TANH, /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast": the tanh approximation */
    HF_ACT_RELU,      /* "relu" */
    HF_ACT_COUNT
} hf_act;

typedef enum { HF_NORM_RMS = 0, HF_NORM_LAYER } hf_norm;

typedef enum {
    HF_ROPE_SCALING_NONE = 0,
    HF_ROPE_SCALING_LINEAR, /* positions divided by factor */
    HF_ROPE_SCALING_LLAMA3, /* Llama 3.1 frequency-dependent scaling */
} hf_rope_scaling_type;

#define HF_MAX_EOS 16

typedef struct {
    hf_arch arch;
    char model_type[16];   /* as in the file: "llama", "mistral", "qwen2", "gpt2", "bert" */
    char torch_dtype[16];  /* "float32", "bfloat16", ... ("dtype" in newer files); "" absent */

    int64_t hidden_size;       /* d_model */
    int64_t intermediate_size; /* MLP inner width */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;        /* == n_heads unless grouped-query attention */
    int64_t head_dim;          /* usually hidden_size / n_heads, may be set explicitly */
    int64_t vocab_size;
    int64_t max_position_embeddings; /* learned table size (gpt2, bert) or context limit */
    int64_t type_vocab_size;   /* bert token-type embeddings (2); 0 for the others */

    hf_norm norm;              /* RMS for the llama family, LayerNorm for gpt2 and bert */
    double norm_eps;           /* rms_norm_eps, layer_norm_epsilon (gpt2), layer_norm_eps (bert) */
    hf_act act;
    char act_name[24];         /* the activation as spelled in the file */

    int uses_rope;             /* 1: rotary positions (llama family); 0: learned (gpt2, bert) */
    double rope_theta;         /* rotary base; 0 when uses_rope is 0 */
    struct {
        hf_rope_scaling_type type;
        double factor;                            /* linear and llama3 */
        double low_freq_factor, high_freq_factor; /* llama3 */
        int64_t original_max_position_embeddings; /* llama3 */
    } rope_scaling;
    int64_t sliding_window;    /* mistral / qwen2 when enabled; 0 means full attention */

    int tie_word_embeddings;   /* the output head shares the token embedding matrix */
    int qkv_bias;              /* q, k, v projections have a bias (qwen2, gpt2, bert, llama
                                  with attention_bias) */
    int o_bias;                /* the attention output projection has a bias */
    int mlp_bias;              /* the MLP projections have biases */

    int64_t bos_token_id;      /* -1 when absent or null */
    int64_t pad_token_id;      /* -1 when absent or null */
    int64_t eos_token_ids[HF_MAX_EOS]; /* an int or a list in the file */
    int n_eos;
} hf_config;

/* Parses n bytes of config.json text into *out. `what` names the document in messages (the
 * path). Returns TW_OK, TW_ERR_FORMAT (invalid JSON, missing or bad field: the message names
 * the field), TW_ERR_UNSUPPORTED (unknown model_type or feature: the message names it) or
 * TW_ERR_NOMEM. *out is fully written on TW_OK and unspecified otherwise. */
tw_status hf_config_parse(const char *text, size_t n, const char *what, hf_config *out);
/* Reads and parses the file at path (messages name the path). */
tw_status hf_config_load(const char *path, hf_config *out);

const char *hf_arch_name(hf_arch a); /* "llama", ...; NULL when out of range */
const char *hf_act_name(hf_act a);   /* "silu", "gelu", "gelu_tanh", "relu"; NULL out of range */

#endif
