/* test_hfconfig.c: config.json -> hf_config for the five families, on configs as the
 * published checkpoints ship them (Llama 3.1 8B, Llama 2 7B, SmolLM2-135M-Instruct,
 * Mistral 7B v0.1, Qwen2-0.5B-Instruct, GPT-2, bert-base-uncased, all-MiniLM-L6-v2), then the
 * defaults, and every refusal: unknown model_type, missing or malformed fields, unsupported
 * features; each message names the field. */
#include "hfconfig.h"
#include "test.h"

#include <unistd.h>

static tw_status parse(const char *json, hf_config *c) {
    return hf_config_parse(json, strlen(json), "config.json", c);
}

static const char *llama31_8b =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": [128001, 128008, 128009],\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 14336,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 8.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.43.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

static void test_llama31(void) {
    hf_config c;
    CHECK_EQ_INT(parse(llama31_8b, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_LLAMA);
    CHECK_EQ_STR(c.model_type, "llama");
    CHECK_EQ_STR(c.torch_dtype, "bfloat16");
    CHECK_EQ_INT(c.hidden_size, 4096);
    CHECK_EQ_INT(c.intermediate_size, 14336);
    CHECK_EQ_INT(c.n_layers, 32);
    CHECK_EQ_INT(c.n_heads, 32);
    CHECK_EQ_INT(c.n_kv_heads, 8);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.vocab_size, 128256);
    CHECK_EQ_INT(c.max_position_embeddings, 131072);
    CHECK_EQ_INT(c.type_vocab_size, 0);
    CHECK_EQ_INT(c.norm, HF_NORM_RMS);
    CHECK_NEAR(c.norm_eps, 1e-5, 0);
    CHECK_EQ_INT(c.act, HF_ACT_SILU);
    CHECK_EQ_STR(c.act_name, "silu");
    CHECK_EQ_INT(c.uses_rope, 1);
    CHECK_NEAR(c.rope_theta, 500000.0, 0);
    CHECK_EQ_INT(c.rope_scaling.type, HF_ROPE_SCALING_LLAMA3);
    CHECK_NEAR(c.rope_scaling.factor, 8.0, 0);
    CHECK_NEAR(c.rope_scaling.low_freq_factor, 1.0, 0);
    CHECK_NEAR(c.rope_scaling.high_freq_factor, 4.0, 0);
    CHECK_EQ_INT(c.rope_scaling.original_max_position_embeddings, 8192);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);
    CHECK_EQ_INT(c.qkv_bias, 0);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.mlp_bias, 0);
    CHECK_EQ_INT(c.bos_token_id, 128000);
    CHECK_EQ_INT(c.pad_token_id, -1);
    CHECK_EQ_INT(c.n_eos, 3);
    CHECK_EQ_INT(c.eos_token_ids[0], 128001);
    CHECK_EQ_INT(c.eos_token_ids[1], 128008);
    CHECK_EQ_INT(c.eos_token_ids[2], 128009);
}

/* Llama 2 7B: rope_scaling null, rope_theta absent (10000), MHA; then the same with the
 * "linear" scaling of long-context fine-tunes, and attention_bias on. */
static void test_llama2(void) {
    const char *j =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2, "
        "\"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02, "
        "\"intermediate_size\": 11008, \"max_position_embeddings\": 4096, \"model_type\": \"llama\", "
        "\"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 32, "
        "\"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, "
        "\"tie_word_embeddings\": false, \"torch_dtype\": \"float16\", "
        "\"transformers_version\": \"4.31.0.dev0\", \"use_cache\": true, \"vocab_size\": 32000}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.n_kv_heads, 32);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_NEAR(c.rope_theta, 10000.0, 0);
    CHECK_EQ_INT(c.rope_scaling.type, HF_ROPE_SCALING_NONE);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    CHECK_EQ_INT(c.bos_token_id, 1);
    CHECK_EQ_STR(c.torch_dtype, "float16");

    const char *lin =
        "{\"model_type\": \"llama\", \"hidden_size\": 4096, \"intermediate_size\": 11008, "
        "\"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"vocab_size\": 32000, "
        "\"max_position_embeddings\": 16384, \"attention_bias\": true, \"mlp_bias\": true, "
        "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}}";
    CHECK_EQ_INT(parse(lin, &c), TW_OK);
    CHECK_EQ_INT(c.rope_scaling.type, HF_ROPE_SCALING_LINEAR);
    CHECK_NEAR(c.rope_scaling.factor, 4.0, 0);
    CHECK_EQ_INT(c.qkv_bias, 1);
    CHECK_EQ_INT(c.o_bias, 1);
    CHECK_EQ_INT(c.mlp_bias, 1);
    CHECK_NEAR(c.norm_eps, 1e-6, 0); /* LlamaConfig's default */
    CHECK_EQ_INT(c.n_eos, 0);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_EQ_STR(c.torch_dtype, "");
}

/* SmolLM2-135M-Instruct: GQA 9/3, head_dim 64, tied embeddings, pad = eos. */
static void test_smollm2(void) {
    const char *j =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
        "\"attention_dropout\": 0.0, \"bos_token_id\": 1, \"eos_token_id\": 2, "
        "\"hidden_act\": \"silu\", \"hidden_size\": 576, \"initializer_range\": 0.041666666666666664, "
        "\"intermediate_size\": 1536, \"is_llama_config\": true, \"max_position_embeddings\": 8192, "
        "\"mlp_bias\": false, \"model_type\": \"llama\", \"num_attention_heads\": 9, "
        "\"num_hidden_layers\": 30, \"num_key_value_heads\": 3, \"pad_token_id\": 2, "
        "\"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_interleaved\": false, "
        "\"rope_scaling\": null, \"rope_theta\": 100000, \"tie_word_embeddings\": true, "
        "\"torch_dtype\": \"bfloat16\", \"transformers.js_config\": {\"kv_cache_dtype\": "
        "{\"q4f16\": \"float16\", \"fp16\": \"float16\"}}, \"transformers_version\": \"4.42.3\", "
        "\"use_cache\": true, \"vocab_size\": 49152}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.hidden_size, 576);
    CHECK_EQ_INT(c.n_layers, 30);
    CHECK_EQ_INT(c.n_heads, 9);
    CHECK_EQ_INT(c.n_kv_heads, 3);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.vocab_size, 49152);
    CHECK_NEAR(c.rope_theta, 100000.0, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.pad_token_id, 2);
}

static void test_mistral(void) {
    const char *j =
        "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2, "
        "\"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02, "
        "\"intermediate_size\": 14336, \"max_position_embeddings\": 32768, \"model_type\": \"mistral\", "
        "\"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8, "
        "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"sliding_window\": 4096, "
        "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
        "\"transformers_version\": \"4.34.0.dev0\", \"use_cache\": true, \"vocab_size\": 32000}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_MISTRAL);
    CHECK_EQ_STR(hf_arch_name(c.arch), "mistral");
    CHECK_EQ_INT(c.n_kv_heads, 8);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.max_position_embeddings, 32768);
    CHECK_EQ_INT(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);

    /* Mistral-Nemo style: explicit head_dim that is not hidden / heads; no sliding window. */
    const char *nemo =
        "{\"model_type\": \"mistral\", \"hidden_size\": 5120, \"intermediate_size\": 14336, "
        "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"head_dim\": 128, "
        "\"num_hidden_layers\": 40, \"vocab_size\": 131072, \"sliding_window\": null, "
        "\"rope_theta\": 1000000.0}";
    CHECK_EQ_INT(parse(nemo, &c), TW_OK);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.max_position_embeddings, 131072); /* MistralConfig's default, 4096 * 32 */
}

static void test_qwen2(void) {
    const char *j =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, "
        "\"bos_token_id\": 151643, \"eos_token_id\": 151645, \"hidden_act\": \"silu\", "
        "\"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864, "
        "\"max_position_embeddings\": 32768, \"max_window_layers\": 24, \"model_type\": \"qwen2\", "
        "\"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2, "
        "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 32768, "
        "\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
        "\"transformers_version\": \"4.40.1\", \"use_cache\": true, \"use_sliding_window\": false, "
        "\"vocab_size\": 151936}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_QWEN2);
    CHECK_EQ_INT(c.hidden_size, 896);
    CHECK_EQ_INT(c.n_heads, 14);
    CHECK_EQ_INT(c.n_kv_heads, 2);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.vocab_size, 151936);
    CHECK_NEAR(c.norm_eps, 1e-6, 0);
    CHECK_NEAR(c.rope_theta, 1e6, 0);
    CHECK_EQ_INT(c.sliding_window, 0); /* use_sliding_window is false */
    CHECK_EQ_INT(c.qkv_bias, 1);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.mlp_bias, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.bos_token_id, 151643);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 151645);

    const char *sw =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 896, \"intermediate_size\": 4864, "
        "\"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"vocab_size\": 151936, "
        "\"use_sliding_window\": true, \"sliding_window\": 4096}";
    CHECK_EQ_INT(parse(sw, &c), TW_OK);
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.max_position_embeddings, 32768); /* Qwen2Config's default */
}

static void test_gpt2(void) {
    const char *j =
        "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], "
        "\"attn_pdrop\": 0.1, \"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, "
        "\"initializer_range\": 0.02, \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", "
        "\"n_ctx\": 1024, \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, \"n_positions\": 1024, "
        "\"resid_pdrop\": 0.1, \"summary_activation\": null, \"summary_first_dropout\": 0.1, "
        "\"summary_proj_to_labels\": true, \"summary_type\": \"cls_index\", \"summary_use_proj\": true, "
        "\"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}}, "
        "\"vocab_size\": 50257}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_GPT2);
    CHECK_EQ_INT(c.hidden_size, 768);
    CHECK_EQ_INT(c.n_layers, 12);
    CHECK_EQ_INT(c.n_heads, 12);
    CHECK_EQ_INT(c.n_kv_heads, 12);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.intermediate_size, 3072); /* n_inner absent: 4 * n_embd */
    CHECK_EQ_INT(c.vocab_size, 50257);
    CHECK_EQ_INT(c.max_position_embeddings, 1024);
    CHECK_EQ_INT(c.norm, HF_NORM_LAYER);
    CHECK_NEAR(c.norm_eps, 1e-5, 0);
    CHECK_EQ_INT(c.act, HF_ACT_GELU_TANH);
    CHECK_EQ_STR(c.act_name, "gelu_new");
    CHECK_EQ_INT(c.uses_rope, 0);
    CHECK_NEAR(c.rope_theta, 0, 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.qkv_bias + c.o_bias + c.mlp_bias, 3);
    CHECK_EQ_INT(c.bos_token_id, 50256);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 50256);

    /* Old files with only n_ctx, an explicit n_inner, and the generic spellings. */
    const char *old = "{\"model_type\": \"gpt2\", \"n_embd\": 1024, \"n_head\": 16, \"n_layer\": 24, "
                      "\"n_ctx\": 2048, \"n_inner\": 2048, \"vocab_size\": 50257}";
    CHECK_EQ_INT(parse(old, &c), TW_OK);
    CHECK_EQ_INT(c.max_position_embeddings, 2048);
    CHECK_EQ_INT(c.intermediate_size, 2048);
    const char *gen = "{\"model_type\": \"gpt2\", \"hidden_size\": 64, \"num_attention_heads\": 4, "
                      "\"num_hidden_layers\": 2, \"max_position_embeddings\": 128, \"vocab_size\": 100, "
                      "\"n_inner\": null}";
    CHECK_EQ_INT(parse(gen, &c), TW_OK);
    CHECK_EQ_INT(c.hidden_size, 64);
    CHECK_EQ_INT(c.n_heads, 4);
    CHECK_EQ_INT(c.max_position_embeddings, 128);
    CHECK_EQ_INT(c.intermediate_size, 256);
}

static void test_bert(void) {
    const char *j =
        "{\"architectures\": [\"BertForMaskedLM\"], \"attention_probs_dropout_prob\": 0.1, "
        "\"gradient_checkpointing\": false, \"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, "
        "\"hidden_size\": 768, \"initializer_range\": 0.02, \"intermediate_size\": 3072, "
        "\"layer_norm_eps\": 1e-12, \"max_position_embeddings\": 512, \"model_type\": \"bert\", "
        "\"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"pad_token_id\": 0, "
        "\"position_embedding_type\": \"absolute\", \"transformers_version\": \"4.6.0.dev0\", "
        "\"type_vocab_size\": 2, \"use_cache\": true, \"vocab_size\": 30522}";
    hf_config c;
    CHECK_EQ_INT(parse(j, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_BERT);
    CHECK_EQ_INT(c.hidden_size, 768);
    CHECK_EQ_INT(c.intermediate_size, 3072);
    CHECK_EQ_INT(c.n_layers, 12);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.vocab_size, 30522);
    CHECK_EQ_INT(c.max_position_embeddings, 512);
    CHECK_EQ_INT(c.type_vocab_size, 2);
    CHECK_EQ_INT(c.norm, HF_NORM_LAYER);
    CHECK_NEAR(c.norm_eps, 1e-12, 0);
    CHECK_EQ_INT(c.act, HF_ACT_GELU);
    CHECK_EQ_INT(c.uses_rope, 0);
    CHECK_EQ_INT(c.pad_token_id, 0);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_EQ_INT(c.n_eos, 0);
    CHECK_EQ_INT(c.qkv_bias + c.o_bias + c.mlp_bias, 3);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
}

/* The config.json shipped with all-MiniLM-L6-v2 (sentence-transformers), byte for byte. */
static const char *minilm =
    "{\n"
    "  \"_name_or_path\": \"nreimers/MiniLM-L6-H384-uncased\",\n"
    "  \"architectures\": [\n"
    "    \"BertModel\"\n"
    "  ],\n"
    "  \"attention_probs_dropout_prob\": 0.1,\n"
    "  \"gradient_checkpointing\": false,\n"
    "  \"hidden_act\": \"gelu\",\n"
    "  \"hidden_dropout_prob\": 0.1,\n"
    "  \"hidden_size\": 384,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 1536,\n"
    "  \"layer_norm_eps\": 1e-12,\n"
    "  \"max_position_embeddings\": 512,\n"
    "  \"model_type\": \"bert\",\n"
    "  \"num_attention_heads\": 12,\n"
    "  \"num_hidden_layers\": 6,\n"
    "  \"pad_token_id\": 0,\n"
    "  \"position_embedding_type\": \"absolute\",\n"
    "  \"transformers_version\": \"4.8.2\",\n"
    "  \"type_vocab_size\": 2,\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 30522\n"
    "}\n";

static void test_minilm(void) {
    hf_config c;
    CHECK_EQ_INT(parse(minilm, &c), TW_OK);
    CHECK_EQ_INT(c.arch, HF_ARCH_BERT);
    CHECK_EQ_INT(c.hidden_size, 384);
    CHECK_EQ_INT(c.intermediate_size, 1536);
    CHECK_EQ_INT(c.n_layers, 6);
    CHECK_EQ_INT(c.n_heads, 12);
    CHECK_EQ_INT(c.head_dim, 32);
    CHECK_EQ_INT(c.vocab_size, 30522);
    CHECK_EQ_INT(c.max_position_embeddings, 512);
    CHECK_EQ_INT(c.type_vocab_size, 2);
    CHECK_NEAR(c.norm_eps, 1e-12, 0);
    CHECK_EQ_INT(c.act, HF_ACT_GELU);
    CHECK_EQ_INT(c.pad_token_id, 0);

    /* Through a file: hf_config_load names the path in its messages. */
    char dir[256], path[300];
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/twin-hfc-XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(tw_file_write_atomic(path, minilm, strlen(minilm)) == TW_OK);
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(hf_config_load(path, &c), TW_OK);
    CHECK_EQ_INT(c.hidden_size, 384);
    const char *bad = "{\"model_type\": \"bert\", \"hidden_size\": 384}";
    CHECK(tw_file_write_atomic(path, bad, strlen(bad)) == TW_OK);
    CHECK_EQ_INT(hf_config_load(path, &c), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), path) != NULL);
    unlink(path);
    CHECK_EQ_INT(hf_config_load(path, &c), TW_ERR_IO);
    rmdir(dir);
}

/* Expects failure with code and a one-line message holding "config.json" and s. */
static void expect_bad(int line, const char *json, tw_status code, const char *s) {
    hf_config c;
    tw_status rc = parse(json, &c);
    const char *msg = tw_errmsg();
    if (rc != code || !strstr(msg, "config.json") || !strstr(msg, s) || strchr(msg, '\n')) {
        fprintf(stderr, "line %d: wanted %s with '%s', got %s: %s\n", line, tw_status_name(code), s,
                tw_status_name(rc), rc ? msg : "");
        test_failures++;
    }
}
#define BAD(json, code, s) expect_bad(__LINE__, json, code, s)

/* A valid llama config with one field replaced: LL("\"rms_norm_eps\": \"x\"") */
#define LL(extra)                                                                             \
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "           \
    "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 100, " extra "}"

/* The same with the size fields given: LLF("64", "2", "4", "100") is valid. */
#define LLF(hidden, layers, heads, vocab)                                                     \
    "{\"model_type\": \"llama\", \"hidden_size\": " hidden ", \"intermediate_size\": 128, "    \
    "\"num_attention_heads\": " heads ", \"num_hidden_layers\": " layers ", \"vocab_size\": " vocab "}"

static void test_errors(void) {
    BAD("{\"model_type\": \"t5\", \"d_model\": 512}", TW_ERR_UNSUPPORTED, "'t5'");
    BAD("{\"model_type\": \"t5\\nx\"}", TW_ERR_UNSUPPORTED, "'t5?x'");
    BAD("{\"hidden_size\": 64}", TW_ERR_FORMAT, "'model_type': missing");
    BAD("{\"model_type\": 3}", TW_ERR_FORMAT, "'model_type': not a string");
    BAD("[1, 2]", TW_ERR_FORMAT, "not a JSON object");
    BAD("{\"model_type\": ", TW_ERR_FORMAT, "invalid JSON");
    BAD("", TW_ERR_FORMAT, "invalid JSON");
    BAD("{\"model_type\": \"llama\", \"intermediate_size\": 128, \"num_attention_heads\": 4, "
        "\"num_hidden_layers\": 2, \"vocab_size\": 100}",
        TW_ERR_FORMAT, "'hidden_size': missing");
    BAD("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4, "
        "\"num_hidden_layers\": 2, \"vocab_size\": 100}",
        TW_ERR_FORMAT, "'intermediate_size': missing");
    BAD("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
        "\"num_attention_heads\": 4, \"vocab_size\": 100}",
        TW_ERR_FORMAT, "'num_hidden_layers': missing");
    BAD("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": null}",
        TW_ERR_FORMAT, "'vocab_size': missing");
    BAD("{\"model_type\": \"gpt2\", \"n_head\": 12, \"n_layer\": 12, \"n_positions\": 1024, "
        "\"vocab_size\": 50257}",
        TW_ERR_FORMAT, "'n_embd': missing");
    BAD("{\"model_type\": \"gpt2\", \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, "
        "\"vocab_size\": 50257}",
        TW_ERR_FORMAT, "'n_positions': missing");
    BAD("{\"model_type\": \"bert\", \"hidden_size\": 384, \"intermediate_size\": 1536, "
        "\"num_attention_heads\": 12, \"num_hidden_layers\": 6, \"vocab_size\": 30522}",
        TW_ERR_FORMAT, "'max_position_embeddings': missing");
    BAD(LLF("64.5", "2", "4", "100"), TW_ERR_FORMAT, "'hidden_size': not an integer");
    BAD(LLF("64", "0", "4", "100"), TW_ERR_FORMAT, "'num_hidden_layers': not an integer");
    BAD(LLF("64", "2", "4", "\"100\""), TW_ERR_FORMAT, "'vocab_size': not an integer");
    BAD(LLF("64", "2", "4", "1e300"), TW_ERR_FORMAT, "'vocab_size'");
    hf_config ok;
    CHECK_EQ_INT(parse(LLF("64", "2", "4", "100"), &ok), TW_OK);
    BAD(LL("\"vocab_size\": 100"), TW_ERR_FORMAT, "'vocab_size': appears twice");
    BAD(LL("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2, \"factor\": 4}"), TW_ERR_FORMAT,
        "'rope_scaling.factor': appears twice");
    BAD(LL("\"num_key_value_heads\": 3"), TW_ERR_FORMAT, "'num_key_value_heads': 3 does not divide");
    BAD(LLF("64", "2", "5", "100"), TW_ERR_FORMAT, "'num_attention_heads': 5 heads");
    BAD(LL("\"head_dim\": 0"), TW_ERR_FORMAT, "'head_dim'");
    BAD(LL("\"rms_norm_eps\": -1"), TW_ERR_FORMAT, "'rms_norm_eps'");
    BAD(LL("\"rms_norm_eps\": \"1e-5\""), TW_ERR_FORMAT, "'rms_norm_eps'");
    BAD(LL("\"rope_theta\": 0"), TW_ERR_FORMAT, "'rope_theta'");
    BAD(LL("\"tie_word_embeddings\": 1"), TW_ERR_FORMAT, "'tie_word_embeddings': not true or false");
    BAD(LL("\"attention_bias\": \"no\""), TW_ERR_FORMAT, "'attention_bias'");
    BAD(LL("\"hidden_act\": \"quick_gelu\""), TW_ERR_UNSUPPORTED, "'quick_gelu'");
    BAD(LL("\"hidden_act\": 1"), TW_ERR_FORMAT, "'hidden_act': not a string");
    BAD(LL("\"rope_scaling\": 2"), TW_ERR_FORMAT, "'rope_scaling': not an object");
    BAD(LL("\"rope_scaling\": {\"factor\": 2}"), TW_ERR_FORMAT, "'rope_scaling.rope_type': missing");
    BAD(LL("\"rope_scaling\": {\"type\": \"linear\"}"), TW_ERR_FORMAT, "'rope_scaling.factor': missing");
    BAD(LL("\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}"), TW_ERR_UNSUPPORTED,
        "'rope_scaling.type': scaling 'yarn'");
    BAD(LL("\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4}"), TW_ERR_UNSUPPORTED, "'dynamic'");
    BAD(LL("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4, "
           "\"original_max_position_embeddings\": 8192}"),
        TW_ERR_FORMAT, "'rope_scaling.low_freq_factor': missing");
    BAD(LL("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
           "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"),
        TW_ERR_FORMAT, "'rope_scaling.high_freq_factor'");
    BAD(LL("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
           "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 0.5}"),
        TW_ERR_FORMAT, "'rope_scaling.original_max_position_embeddings'");
    BAD(LL("\"eos_token_id\": \"2\""), TW_ERR_FORMAT, "'eos_token_id': not an integer or a list");
    BAD(LL("\"eos_token_id\": [1, -5]"), TW_ERR_FORMAT, "'eos_token_id[1]'");
    BAD(LL("\"eos_token_id\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"), TW_ERR_UNSUPPORTED,
        "'eos_token_id': 17 ids");
    BAD(LL("\"bos_token_id\": 1.5"), TW_ERR_FORMAT, "'bos_token_id'");
    BAD("{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128, "
        "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 100, "
        "\"use_sliding_window\": true}",
        TW_ERR_FORMAT, "'sliding_window': missing");
    BAD("{\"model_type\": \"bert\", \"hidden_size\": 384, \"intermediate_size\": 1536, "
        "\"num_attention_heads\": 12, \"num_hidden_layers\": 6, \"vocab_size\": 30522, "
        "\"max_position_embeddings\": 512, \"position_embedding_type\": \"relative_key\"}",
        TW_ERR_UNSUPPORTED, "'relative_key'");
    BAD("{\"model_type\": \"gpt2\", \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, "
        "\"n_positions\": 1024, \"vocab_size\": 50257, \"activation_function\": \"tanh\"}",
        TW_ERR_UNSUPPORTED, "'activation_function': activation 'tanh'");

    /* Accepted variants: null means default; rope_type "default"; eos null; pad null. */
    hf_config c;
    CHECK_EQ_INT(parse(LL("\"num_key_value_heads\": null, \"head_dim\": null, \"rms_norm_eps\": null, "
                          "\"rope_scaling\": {\"rope_type\": \"default\"}, \"eos_token_id\": null, "
                          "\"pad_token_id\": null, \"hidden_act\": \"gelu_pytorch_tanh\", "
                          "\"dtype\": \"float32\""),
                       &c),
                 TW_OK);
    CHECK_EQ_INT(c.n_kv_heads, 4);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK_NEAR(c.norm_eps, 1e-6, 0);
    CHECK_EQ_INT(c.rope_scaling.type, HF_ROPE_SCALING_NONE);
    CHECK_EQ_INT(c.n_eos, 0);
    CHECK_EQ_INT(c.pad_token_id, -1);
    CHECK_EQ_INT(c.act, HF_ACT_GELU_TANH);
    CHECK_EQ_STR(c.torch_dtype, "float32");
    CHECK_EQ_INT(c.max_position_embeddings, 2048); /* LlamaConfig's default */
    CHECK_EQ_STR(hf_act_name(HF_ACT_GELU_TANH), "gelu_tanh");
    CHECK(hf_act_name(HF_ACT_COUNT) == NULL);
    CHECK(hf_arch_name(HF_ARCH_COUNT) == NULL);
}

int main(void) {
    RUN(test_llama31);
    RUN(test_llama2);
    RUN(test_smollm2);
    RUN(test_mistral);
    RUN(test_qwen2);
    RUN(test_gpt2);
    RUN(test_bert);
    RUN(test_minilm);
    RUN(test_errors);
    TEST_DONE();
}
