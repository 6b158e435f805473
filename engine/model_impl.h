/* model_impl.h: private to engine/model*.c, engine/forward.c and engine/encoder.c (which runs
 * the encoder-only descriptors): architecture descriptors
 * (hyper-parameter rules + weight tables), the layout of a loaded tw_model, and the hooks the
 * forward pass uses. */
#ifndef TWIN_MODEL_IMPL_H
#define TWIN_MODEL_IMPL_H

#include "gguf.h"
#include "model.h"
#include "safetensors.h"

/* What a weight is for. Per-layer roles come after TW_W_LAYER_FIRST. */
typedef enum {
    TW_W_TOK_EMBD = 0, /* (n_vocab, n_embd) token embedding */
    TW_W_POS_EMBD,     /* (n_ctx_train, n_embd) learned positions (gpt2) */
    TW_W_OUT_NORM,     /* (n_embd) final norm weight */
    TW_W_OUT_NORM_B,   /* (n_embd) final LayerNorm bias */
    TW_W_OUTPUT,       /* (n_vocab, n_embd) output head; absent: tied to TW_W_TOK_EMBD */
    TW_W_ROPE_FREQS,   /* (rope_dim/2) llama3 frequency factors */
    TW_W_TYPE_EMBD,    /* (n_type_vocab, n_embd) bert token-type embedding */
    TW_W_EMBD_NORM,    /* (n_embd) bert LayerNorm of the summed embeddings */
    TW_W_EMBD_NORM_B,  /* (n_embd) */
    TW_W_LAYER_FIRST,
    TW_W_ATTN_NORM = TW_W_LAYER_FIRST, /* (n_embd); bert: the norm after attention's residual */
    TW_W_ATTN_NORM_B,  /* (n_embd) */
    TW_W_Q,            /* (n_head*head_dim, n_embd) */
    TW_W_Q_B,          /* (n_head*head_dim) */
    TW_W_K,            /* (n_kv_head*head_dim, n_embd) */
    TW_W_K_B,
    TW_W_V,            /* (n_kv_head*head_dim, n_embd) */
    TW_W_V_B,
    TW_W_QKV,          /* (q + 2 kv, n_embd) fused; split into Q/K/V views at load */
    TW_W_QKV_B,
    TW_W_O,            /* (n_embd, n_head*head_dim) */
    TW_W_O_B,
    TW_W_FFN_NORM,     /* (n_embd); bert: the norm after the MLP's residual */
    TW_W_FFN_NORM_B,
    TW_W_GATE,         /* (n_ff, n_embd) */
    TW_W_UP,           /* (n_ff, n_embd) */
    TW_W_UP_B,
    TW_W_DOWN,         /* (n_embd, n_ff) */
    TW_W_DOWN_B,
    TW_W_COUNT
} tw_wrole;

/* A dimension of a weight, resolved from the hyper-parameters. */
typedef enum {
    TW_D_ONE = 0, TW_D_EMBD, TW_D_VOCAB, TW_D_Q, TW_D_KV, TW_D_QKV, TW_D_FF, TW_D_CTX,
    TW_D_ROPE_HALF, TW_D_TYPES
} tw_dimx;

enum {
    TW_WF_OPTIONAL = 1u << 0, /* absent is fine (bias of a model without, rope_freqs, output) */
    TW_WF_F32 = 1u << 1,      /* used by an op that reads fp32 (norms, biases, freq factors):
                                 other float types are converted at load */
    TW_WF_MATMUL = 1u << 2,   /* a matmul weight: must be a type tw_op_matmul takes */
    TW_WF_HF_CONV1D = 1u << 3 /* HF GPT-2 Conv1D: stored (in, out), transposed at load */
};

typedef struct {
    tw_wrole role;
    const char *gguf; /* "blk.%d.attn_q.weight" (%d: the layer) */
    const char *hf;   /* "model.layers.%d.self_attn.q_proj.weight"; NULL: none in HF files */
    tw_dimx ne0, ne1; /* GGUF order: ne0 contiguous; ne1 TW_D_ONE for a vector */
    unsigned flags;
} tw_wdesc;

typedef enum { TW_NORM_RMS = 0, TW_NORM_LAYER } tw_norm_kind;
typedef enum { TW_FFN_SWIGLU = 0, TW_FFN_GELU, TW_FFN_GELU_ERF } tw_ffn_kind;

/* An architecture: how to read its hyper-parameters and which weights it has. */
typedef struct {
    const char *name;          /* "llama", "qwen2", "gpt2": tw_model_arch_name */
    const char *gguf_names[4]; /* general.architecture values it runs (NULL-terminated) */
    int hf_arch;               /* hf_arch value (hfconfig.h) it runs, -1: none */
    int hf_arch2;              /* a second one (mistral runs as llama), -1: none */
    tw_norm_kind norm;
    tw_ffn_kind ffn;
    int learned_pos;           /* 1: TW_W_POS_EMBD, no rope */
    tw_rope_mode rope_gguf;    /* pair ordering for GGUF files (llama: NORM, the converter
                                  permuted Q/K) */
    tw_rope_mode rope_hf;      /* for HF safetensors (unpermuted: NEOX) */
    const char *eps_key;       /* GGUF "<arch>." suffix of the norm epsilon */
    float eps_default;
    const tw_wdesc *weights;
    int n_weights;
    int encoder_only;          /* 1: bert: post-norm blocks, bidirectional attention, no head;
                                  run by encoder.c (encoder.h), refused by tw_model_forward */
} tw_arch_desc;

/* The architecture running GGUF general.architecture `name` / HF arch; NULL when none. */
const tw_arch_desc *tw_arch_find_gguf(const char *name);
const tw_arch_desc *tw_arch_find_hf(int a);

/* One weight as the forward uses it. */
typedef struct {
    tw_ref ref;    /* buf NULL: absent */
    tw_dtype type;
    int64_t ne0, ne1;
} tw_weight;

typedef struct {
    tw_weight w[TW_W_COUNT - TW_W_LAYER_FIRST];
} tw_layer_weights;

struct tw_model {
    char *path;
    tw_backend *be;
    const tw_arch_desc *arch;
    tw_model_hparams hp;
    tw_model_params params;
    tw_rope_mode rope_mode;
    tw_tokenizer *tok;
    char *chat_template;

    gguf_file *gguf;   /* GGUF source (kept open: weights may point into its mapping) */
    st_file **st;      /* HF shards */
    int n_st;

    tw_buffer **wrapped; /* zero-copy buffers over file mappings (one per file) */
    int n_wrapped;
    tw_buffer *owned;    /* weights copied, converted or uploaded: one buffer */
    size_t weight_bytes;

    tw_weight g[TW_W_LAYER_FIRST]; /* global weights */
    tw_layer_weights *layers;      /* (n_layer) */

    /* Forward state (forward.c): activations for one chunk (views into one buffer at
     * act_off[TW_A_*]) and the block table. */
    tw_buffer *act;
    size_t act_off[16];
    tw_buffer *bt;      /* block table (rows, max_blocks) int32, grown on demand */
    size_t bt_bytes;
    int32_t logit_rows; /* rows in the logits of the last chunk */

    /* LoRA (tw_model_set_lora, forward.c): the attached set (not owned) and scratch for one
     * chunk's rank-r products: LA (T, max rank) at 0, LB (T, max out) at lora_lb_off. */
    const struct lora_set *lora;
    tw_buffer *lora_act;
    size_t lora_lb_off;
};

/* The forward's activation buffer for params->max_batch_tokens / max_logit_rows (forward.c). */
tw_status tw_forward_alloc(tw_model *m);
void tw_forward_free(tw_model *m);

static inline const tw_weight *tw_layer_w(const tw_model *m, int32_t l, tw_wrole r) {
    return &m->layers[l].w[r - TW_W_LAYER_FIRST];
}

/* The two decoder families the trainer's step covers (train.c, and fullft.c for --full):
 * TW_TRAIN_LLAMA (RMSNorm, rotary positions, SwiGLU), TW_TRAIN_GPT2 (LayerNorm, learned
 * positions, GELU), else TW_TRAIN_NONE. */
enum { TW_TRAIN_NONE = 0, TW_TRAIN_LLAMA, TW_TRAIN_GPT2 };
static inline int tw_train_family(const tw_model *m) {
    const tw_arch_desc *a = m->arch;
    if (a->encoder_only) return TW_TRAIN_NONE;
    if (a->norm == TW_NORM_RMS && a->ffn == TW_FFN_SWIGLU && !a->learned_pos) return TW_TRAIN_LLAMA;
    if (a->norm == TW_NORM_LAYER && a->ffn == TW_FFN_GELU && a->learned_pos) return TW_TRAIN_GPT2;
    return TW_TRAIN_NONE;
}

#endif
