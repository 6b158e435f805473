/* model_arch.c: the architecture descriptors: for each family, its norms, MLP, positions,
 * rope ordering per source format, and the weight table (GGUF and HF names, expected shapes
 * in GGUF order, and how each weight is used). Adding a llama-like family is a new table
 * entry, not new forward code. */
#include <string.h>

#include "hfconfig.h"
#include "model_impl.h"

#define MAT TW_WF_MATMUL
#define VEC TW_WF_F32
#define OPT TW_WF_OPTIONAL

/* Llama, Mistral, SmolLM2 (llama in GGUF). HF names as transformers' LlamaForCausalLM saves
 * them; biases are optional (llama with attention_bias / mlp_bias has them). */
#define LLAMA_COMMON(QKV_BIAS)                                                                 \
    {TW_W_TOK_EMBD, "token_embd.weight", "model.embed_tokens.weight", TW_D_EMBD, TW_D_VOCAB, 0},  \
    {TW_W_OUT_NORM, "output_norm.weight", "model.norm.weight", TW_D_EMBD, TW_D_ONE, VEC},       \
    {TW_W_OUTPUT, "output.weight", "lm_head.weight", TW_D_EMBD, TW_D_VOCAB, MAT | OPT},         \
    {TW_W_ROPE_FREQS, "rope_freqs.weight", NULL, TW_D_ROPE_HALF, TW_D_ONE, VEC | OPT},          \
    {TW_W_ATTN_NORM, "blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight",       \
     TW_D_EMBD, TW_D_ONE, VEC},                                                                 \
    {TW_W_Q, "blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", TW_D_EMBD,      \
     TW_D_Q, MAT},                                                                              \
    {TW_W_Q_B, "blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", TW_D_Q, TW_D_ONE,  \
     VEC | (QKV_BIAS)},                                                                         \
    {TW_W_K, "blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", TW_D_EMBD,      \
     TW_D_KV, MAT},                                                                             \
    {TW_W_K_B, "blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", TW_D_KV, TW_D_ONE, \
     VEC | (QKV_BIAS)},                                                                         \
    {TW_W_V, "blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", TW_D_EMBD,      \
     TW_D_KV, MAT},                                                                             \
    {TW_W_V_B, "blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", TW_D_KV, TW_D_ONE, \
     VEC | (QKV_BIAS)},                                                                         \
    {TW_W_O, "blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", TW_D_Q,    \
     TW_D_EMBD, MAT},                                                                           \
    {TW_W_O_B, "blk.%d.attn_output.bias", "model.layers.%d.self_attn.o_proj.bias", TW_D_EMBD,   \
     TW_D_ONE, VEC | OPT},                                                                      \
    {TW_W_FFN_NORM, "blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", \
     TW_D_EMBD, TW_D_ONE, VEC},                                                                 \
    {TW_W_GATE, "blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", TW_D_EMBD,    \
     TW_D_FF, MAT},                                                                             \
    {TW_W_UP, "blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", TW_D_EMBD, TW_D_FF, \
     MAT},                                                                                      \
    {TW_W_UP_B, "blk.%d.ffn_up.bias", "model.layers.%d.mlp.up_proj.bias", TW_D_FF, TW_D_ONE,    \
     VEC | OPT},                                                                                \
    {TW_W_DOWN, "blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", TW_D_FF,      \
     TW_D_EMBD, MAT},                                                                           \
    {TW_W_DOWN_B, "blk.%d.ffn_down.bias", "model.layers.%d.mlp.down_proj.bias", TW_D_EMBD,      \
     TW_D_ONE, VEC | OPT}

static const tw_wdesc llama_weights[] = {LLAMA_COMMON(OPT)};
/* Qwen2: the llama layout with q/k/v biases that must be there. */
static const tw_wdesc qwen2_weights[] = {LLAMA_COMMON(0)};

/* GPT-2: GGUF names as llama.cpp's converter writes them (fused attn_qkv); HF names as
 * transformers' GPT2Model saves them (Conv1D weights stored (in, out)); the loader also tries
 * them with a "transformer." prefix (GPT2LMHeadModel). */
#define CONV TW_WF_HF_CONV1D
static const tw_wdesc gpt2_weights[] = {
    {TW_W_TOK_EMBD, "token_embd.weight", "wte.weight", TW_D_EMBD, TW_D_VOCAB, 0},
    {TW_W_POS_EMBD, "position_embd.weight", "wpe.weight", TW_D_EMBD, TW_D_CTX, 0},
    {TW_W_OUT_NORM, "output_norm.weight", "ln_f.weight", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_OUT_NORM_B, "output_norm.bias", "ln_f.bias", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_OUTPUT, "output.weight", "lm_head.weight", TW_D_EMBD, TW_D_VOCAB, MAT | OPT},
    {TW_W_ATTN_NORM, "blk.%d.attn_norm.weight", "h.%d.ln_1.weight", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_ATTN_NORM_B, "blk.%d.attn_norm.bias", "h.%d.ln_1.bias", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_QKV, "blk.%d.attn_qkv.weight", "h.%d.attn.c_attn.weight", TW_D_EMBD, TW_D_QKV,
     MAT | CONV},
    {TW_W_QKV_B, "blk.%d.attn_qkv.bias", "h.%d.attn.c_attn.bias", TW_D_QKV, TW_D_ONE, VEC},
    {TW_W_O, "blk.%d.attn_output.weight", "h.%d.attn.c_proj.weight", TW_D_Q, TW_D_EMBD,
     MAT | CONV},
    {TW_W_O_B, "blk.%d.attn_output.bias", "h.%d.attn.c_proj.bias", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_FFN_NORM, "blk.%d.ffn_norm.weight", "h.%d.ln_2.weight", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_FFN_NORM_B, "blk.%d.ffn_norm.bias", "h.%d.ln_2.bias", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_UP, "blk.%d.ffn_up.weight", "h.%d.mlp.c_fc.weight", TW_D_EMBD, TW_D_FF, MAT | CONV},
    {TW_W_UP_B, "blk.%d.ffn_up.bias", "h.%d.mlp.c_fc.bias", TW_D_FF, TW_D_ONE, VEC},
    {TW_W_DOWN, "blk.%d.ffn_down.weight", "h.%d.mlp.c_proj.weight", TW_D_FF, TW_D_EMBD,
     MAT | CONV},
    {TW_W_DOWN_B, "blk.%d.ffn_down.bias", "h.%d.mlp.c_proj.bias", TW_D_EMBD, TW_D_ONE, VEC},
};

/* BERT (encoder only, run by encoder.c): GGUF names as llama.cpp's converter writes them, HF
 * names as transformers' BertModel saves them (the loader also tries them with a "bert."
 * prefix, as BertFor* heads save the body). Post-norm: ATTN_NORM is the LayerNorm after the
 * attention's residual (attention.output.LayerNorm), FFN_NORM the one after the MLP's. */
static const tw_wdesc bert_weights[] = {
    {TW_W_TOK_EMBD, "token_embd.weight", "embeddings.word_embeddings.weight", TW_D_EMBD,
     TW_D_VOCAB, 0},
    {TW_W_POS_EMBD, "position_embd.weight", "embeddings.position_embeddings.weight", TW_D_EMBD,
     TW_D_CTX, 0},
    {TW_W_TYPE_EMBD, "token_types.weight", "embeddings.token_type_embeddings.weight", TW_D_EMBD,
     TW_D_TYPES, 0},
    {TW_W_EMBD_NORM, "token_embd_norm.weight", "embeddings.LayerNorm.weight", TW_D_EMBD, TW_D_ONE,
     VEC},
    {TW_W_EMBD_NORM_B, "token_embd_norm.bias", "embeddings.LayerNorm.bias", TW_D_EMBD, TW_D_ONE,
     VEC},
    {TW_W_Q, "blk.%d.attn_q.weight", "encoder.layer.%d.attention.self.query.weight", TW_D_EMBD,
     TW_D_Q, MAT},
    {TW_W_Q_B, "blk.%d.attn_q.bias", "encoder.layer.%d.attention.self.query.bias", TW_D_Q,
     TW_D_ONE, VEC},
    {TW_W_K, "blk.%d.attn_k.weight", "encoder.layer.%d.attention.self.key.weight", TW_D_EMBD,
     TW_D_KV, MAT},
    {TW_W_K_B, "blk.%d.attn_k.bias", "encoder.layer.%d.attention.self.key.bias", TW_D_KV,
     TW_D_ONE, VEC},
    {TW_W_V, "blk.%d.attn_v.weight", "encoder.layer.%d.attention.self.value.weight", TW_D_EMBD,
     TW_D_KV, MAT},
    {TW_W_V_B, "blk.%d.attn_v.bias", "encoder.layer.%d.attention.self.value.bias", TW_D_KV,
     TW_D_ONE, VEC},
    {TW_W_O, "blk.%d.attn_output.weight", "encoder.layer.%d.attention.output.dense.weight",
     TW_D_Q, TW_D_EMBD, MAT},
    {TW_W_O_B, "blk.%d.attn_output.bias", "encoder.layer.%d.attention.output.dense.bias",
     TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_ATTN_NORM, "blk.%d.attn_output_norm.weight",
     "encoder.layer.%d.attention.output.LayerNorm.weight", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_ATTN_NORM_B, "blk.%d.attn_output_norm.bias",
     "encoder.layer.%d.attention.output.LayerNorm.bias", TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_UP, "blk.%d.ffn_up.weight", "encoder.layer.%d.intermediate.dense.weight", TW_D_EMBD,
     TW_D_FF, MAT},
    {TW_W_UP_B, "blk.%d.ffn_up.bias", "encoder.layer.%d.intermediate.dense.bias", TW_D_FF,
     TW_D_ONE, VEC},
    {TW_W_DOWN, "blk.%d.ffn_down.weight", "encoder.layer.%d.output.dense.weight", TW_D_FF,
     TW_D_EMBD, MAT},
    {TW_W_DOWN_B, "blk.%d.ffn_down.bias", "encoder.layer.%d.output.dense.bias", TW_D_EMBD,
     TW_D_ONE, VEC},
    {TW_W_FFN_NORM, "blk.%d.layer_output_norm.weight", "encoder.layer.%d.output.LayerNorm.weight",
     TW_D_EMBD, TW_D_ONE, VEC},
    {TW_W_FFN_NORM_B, "blk.%d.layer_output_norm.bias", "encoder.layer.%d.output.LayerNorm.bias",
     TW_D_EMBD, TW_D_ONE, VEC},
};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const tw_arch_desc arch_table[] = {
    {"llama", {"llama", "mistral", NULL}, HF_ARCH_LLAMA, HF_ARCH_MISTRAL, TW_NORM_RMS,
     TW_FFN_SWIGLU, 0, TW_ROPE_NORM, TW_ROPE_NEOX, "attention.layer_norm_rms_epsilon", 1e-5f,
     llama_weights, N_OF(llama_weights), 0},
    /* Qwen2's converter does not permute Q/K: NEOX pairs in both formats (llama.cpp's
     * LLAMA_ROPE_TYPE_NEOX for qwen2). */
    {"qwen2", {"qwen2", NULL}, HF_ARCH_QWEN2, -1, TW_NORM_RMS, TW_FFN_SWIGLU, 0, TW_ROPE_NEOX,
     TW_ROPE_NEOX, "attention.layer_norm_rms_epsilon", 1e-6f, qwen2_weights,
     N_OF(qwen2_weights), 0},
    {"gpt2", {"gpt2", NULL}, HF_ARCH_GPT2, -1, TW_NORM_LAYER, TW_FFN_GELU, 1, TW_ROPE_NORM,
     TW_ROPE_NORM, "attention.layer_norm_epsilon", 1e-5f, gpt2_weights, N_OF(gpt2_weights), 0},
    {"bert", {"bert", NULL}, HF_ARCH_BERT, -1, TW_NORM_LAYER, TW_FFN_GELU_ERF, 1, TW_ROPE_NORM,
     TW_ROPE_NORM, "attention.layer_norm_epsilon", 1e-12f, bert_weights, N_OF(bert_weights), 1},
};

const tw_arch_desc *tw_arch_find_gguf(const char *name) {
    for (int i = 0; i < N_OF(arch_table); i++)
        for (int j = 0; arch_table[i].gguf_names[j]; j++)
            if (strcmp(arch_table[i].gguf_names[j], name) == 0) return &arch_table[i];
    return NULL;
}

const tw_arch_desc *tw_arch_find_hf(int a) {
    for (int i = 0; i < N_OF(arch_table); i++)
        if (arch_table[i].hf_arch == a || arch_table[i].hf_arch2 == a)
            return &arch_table[i];
    return NULL;
}
