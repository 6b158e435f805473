/* lora.h: LoRA adapter sets (Hu et al. 2021) for the llama-family and GPT-2 models of model.h:
 * their parameters, gradients and AdamW moments on a backend, their files (PEFT and llama.cpp's
 * GGUF LoRA), and merging them into a base GGUF.
 *
 * An adapted linear layer W (out, in) computes  y = x W^T + scale * (dropout(x) A^T) B^T  with
 *   A: (r, in)   Kaiming-uniform at creation, as PEFT's init_lora_weights=True does
 *                (kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in))), drawn from our own
 *                seeded generator (splitmix64), so a seed gives the same bits on every machine
 *                (not torch's bits);
 *   B: (out, r)  zero at creation, so a new adapter leaves the model unchanged;
 *   scale        alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023; PEFT use_rslora).
 * Targets per layer: any of q, k, v, o (attention) and gate, up, down (MLP), the PEFT module
 * names q_proj ... down_proj and llama.cpp's attn_q ... ffn_down.
 *
 * Memory (one backend buffer per set, views into it): four regions of lora_set_n_floats()
 * floats each, in this order
 *     [ PARAM | GRAD | ADAM_M | ADAM_V ]
 * laid out identically: adapter i's A at a_off and B at b_off floats from its region's start,
 * adapters ordered by layer then module (q k v o gate up down), each tensor starting on a
 * 64-float (256-byte) boundary; the padding floats are zero and stay zero under AdamW (zero
 * gradient, zero parameter). So one tw_op_adamw over the whole region updates every adapter,
 * and one tw_op_scale (or a zero upload) over GRAD clears every gradient.
 *
 * Row order of Q and K: llama.cpp's converter permutes the rows of attn_q/attn_k of llama
 * models in GGUF files (pairs of rotary dimensions interleaved: rope mode NORM) while Hugging
 * Face checkpoints keep them in halves (NEOX). The adapter's B rows of q and k follow the base
 * it was made for (lora_base.qk_permuted). Files are always written in their own convention
 * (PEFT: HF order; GGUF: llama.cpp's order, as convert_lora_to_gguf.py permutes lora_B) and
 * read back into the base's order, so an adapter trained on the GGUF SmolLM2 is a correct PEFT
 * adapter for the HF model and vice versa.
 *
 * GPT-2: q, k, v are adapters on the three row ranges of the fused c_attn (the loader's views),
 * o on attn.c_proj, up on mlp.c_fc, down on mlp.c_proj; there is no gate. The files hold q, k,
 * v as one fused adapter, exactly (lora_save_peft, lora_save_gguf).
 *
 * Errors (core.h): TW_ERR_ARG (a bad config: rank < 1 or larger than a layer's smaller side,
 * no targets, a target the architecture lacks, alpha not finite, dropout outside [0, 1)),
 * TW_ERR_UNSUPPORTED (an architecture other than the llama family and gpt2: bert is not
 * trained here), TW_ERR_FORMAT (a
 * damaged or foreign adapter file: the message names the file and tensor/key),
 * TW_ERR_NOT_FOUND (a missing file or tensor), TW_ERR_RUNTIME (an adapter made for another base
 * model: the message names what differs), TW_ERR_IO, TW_ERR_NOMEM, backend errors.
 *
 * Thread safety: a lora_set belongs to its backend's thread (kernels.h); the pure functions
 * (names, parsing, scale) are thread-safe.
 */
#ifndef TWIN_LORA_H
#define TWIN_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "json.h"
#include "kernels.h"
#include "model.h"
#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LORA_Q = 0, /* (n_head*head_dim, n_embd)    self_attn.q_proj  / attn_q */
    LORA_K,     /* (n_kv_head*head_dim, n_embd) self_attn.k_proj  / attn_k */
    LORA_V,     /* (n_kv_head*head_dim, n_embd) self_attn.v_proj  / attn_v */
    LORA_O,     /* (n_embd, n_head*head_dim)    self_attn.o_proj  / attn_output */
    LORA_GATE,  /* (n_ff, n_embd)               mlp.gate_proj     / ffn_gate */
    LORA_UP,    /* (n_ff, n_embd)               mlp.up_proj       / ffn_up */
    LORA_DOWN,  /* (n_embd, n_ff)               mlp.down_proj     / ffn_down */
    LORA_N_MODULES
} lora_module;

#define LORA_ALL_MODULES ((1u << LORA_N_MODULES) - 1u)

/* "q", "k", "v", "o", "gate", "up", "down"; "?" out of range. */
const char *lora_module_name(lora_module m);
/* "q_proj" ... (PEFT / HF), and "attn_q" ... "ffn_down" (GGUF); "?" out of range. */
const char *lora_module_peft_name(lora_module m);
const char *lora_module_gguf_name(lora_module m);
/* Parses a comma-separated target list into a bit mask (1u << lora_module): each item is a
 * short name, a PEFT name or a GGUF name, or "attn" (q,k,v,o), "mlp" (gate,up,down), "all" /
 * "all-linear" (all seven). TW_ERR_ARG naming the unknown item; an empty list is an error. */
tw_status lora_targets_parse(const char *list, unsigned *mask);

/* The base model an adapter set is made for: enough to size, check and order the adapters. */
typedef struct {
    char arch[16];      /* "llama", "qwen2" or "gpt2" (model.h's names) */
    int32_t n_layer, n_embd, n_head, n_kv_head, head_dim, n_ff;
    int qk_permuted;    /* 1: Q/K rows in llama.cpp's GGUF order (a GGUF llama); 0: HF order */
    char name[256];     /* base_model_name_or_path for PEFT: a path or a name; may be "" */
    char sha256[65];    /* the base's content hash (lora_model_hash), "" when not computed */
} lora_base;

/* The modules a base has: all seven for the llama family; q, k, v, o, up, down for gpt2. */
unsigned lora_base_modules(const lora_base *b);
/* lora_targets_parse for base b: "all", "attn", "mlp" keep only b's modules ("all" is six
 * for gpt2); a module named explicitly that b lacks (gate on gpt2) is TW_ERR_ARG. */
tw_status lora_targets_parse_for(const char *list, const lora_base *b, unsigned *mask);

/* Fills *out from a loaded model (its hparams, its file kind for qk_permuted, its path as the
 * name). sha256 is left "" (hashing reads the whole file: lora_model_hash). TW_ERR_UNSUPPORTED
 * for an architecture the adapters do not cover. */
tw_status lora_base_from_model(const tw_model *m, lora_base *out);
/* The same from a GGUF model file without loading it: general.architecture, <arch>.block_count,
 * attention.head_count(_kv), and the dimensions from blk.0's weight shapes. */
tw_status lora_base_from_gguf(const char *path, lora_base *out);
/* The content hash that identifies a base model: sha256 of a file (a GGUF), or for a folder
 * sha256 over the lines "<name> <sha256 of file>\n" of its *.safetensors files in name order.
 * hex receives 64 hex digits + NUL. */
tw_status lora_model_hash(const char *path, char hex[65]);
/* Rows and columns of module m's weight (out, in) for this base. */
void lora_base_dims(const lora_base *b, lora_module m, int64_t *out_dim, int64_t *in_dim);

/* What an adapter set is. */
typedef struct {
    int32_t rank;      /* r >= 1, at most min(out, in) of every targeted layer */
    float alpha;       /* lora_alpha */
    float dropout;     /* lora_dropout in [0, 1): applied by the training loop to the input */
    int use_rslora;    /* 1: scale alpha / sqrt(r), 0: alpha / r */
    unsigned targets;  /* bit mask of lora_module */
    uint64_t seed;     /* for A's initialisation */
} lora_config;

/* r 8, alpha 16, dropout 0.05, rsLoRA off, targets q,k,v,o, seed 42. */
void lora_config_default(lora_config *c);
/* alpha / r or alpha / sqrt(r). */
float lora_config_scale(const lora_config *c);
/* Appends the config as a JSON object {"r":8,"lora_alpha":16,"lora_dropout":0.05,
 * "use_rslora":false,"target_modules":["q_proj",...],"seed":42} to sb. */
tw_status lora_config_to_json(const lora_config *c, tw_sb *sb);
/* Parses such an object (PEFT's adapter_config.json keys; "seed" optional). `what` names the
 * file in messages. The values are checked as lora_set_new checks them, except the rank
 * against the base. */
tw_status lora_config_from_json(const tw_json *obj, const char *what, lora_config *out);

/* One adapted layer: where its A and B lie in each region. */
typedef struct {
    int32_t layer;
    lora_module module;
    int64_t out, in, rank;
    size_t a_off; /* floats from the region's start: A (rank, in), row-major */
    size_t b_off; /* B (out, rank), row-major */
} lora_adapter;

typedef enum { LORA_PARAM = 0, LORA_GRAD, LORA_ADAM_M, LORA_ADAM_V, LORA_N_REGIONS } lora_region;

typedef struct lora_set lora_set;

/* Makes the adapters for every layer of base and every target of cfg on backend be (which must
 * outlive the set): A initialised from cfg->seed (adapter (layer, module) draws from its own
 * stream, so changing the targets does not change the other adapters' values), B, gradients
 * and moments zero. TW_ERR_ARG when cfg->rank exceeds a targeted layer's smaller dimension
 * ("rank 700 is larger than layer 0's q (576 x 576)"). *out is for lora_set_free. */
tw_status lora_set_new(tw_backend *be, const lora_base *base, const lora_config *cfg,
                       lora_set **out);
void lora_set_free(lora_set *s); /* NULL is a no-op */

const lora_config *lora_set_config(const lora_set *s);
const lora_base *lora_set_base(const lora_set *s);
float lora_set_scale(const lora_set *s);
int32_t lora_set_n_adapters(const lora_set *s);
const lora_adapter *lora_set_adapter(const lora_set *s, int32_t i); /* i < n_adapters */
/* The adapter of (layer, module), NULL when that layer is not adapted. */
const lora_adapter *lora_set_find(const lora_set *s, int32_t layer, lora_module m);
/* Trainable parameters (sum of rank*(in+out)), and floats per region (padding included). */
int64_t lora_set_n_params(const lora_set *s);
size_t lora_set_n_floats(const lora_set *s);
/* The backend buffer holding all four regions, and a view: float `off` of region `reg`
 * (e.g. lora_set_ref(s, LORA_GRAD, a->b_off) is the gradient of a's B). */
tw_buffer *lora_set_buffer(const lora_set *s);
tw_ref lora_set_ref(const lora_set *s, lora_region reg, size_t off);
tw_backend *lora_set_backend(const lora_set *s);

/* Copies a whole region (lora_set_n_floats floats) to or from host memory. */
tw_status lora_set_download(const lora_set *s, lora_region reg, float *host);
tw_status lora_set_upload(lora_set *s, lora_region reg, const float *host);
/* Sets a region to zero. */
tw_status lora_set_zero(lora_set *s, lora_region reg);

/* ---- files -------------------------------------------------------------------------------- */

/* Writes a PEFT adapter folder (created when absent): adapter_config.json (peft_type LORA,
 * task_type CAUSAL_LM, base_model_name_or_path, r, lora_alpha, lora_dropout, target_modules,
 * use_rslora, ...) and adapter_model.safetensors with F32 tensors
 *   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight  (r, in)
 *   base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight  (out, r)   (HF row order)
 *   ... mlp.gate_proj / up_proj / down_proj
 * and in its __metadata__ {"format": "pt"} plus twin.arch, twin.n_layer, twin.base_sha256 (when
 * known) for the checks of lora_load. Both files are written atomically. */
tw_status lora_save_peft(const lora_set *s, const char *dir);
/* Writes a llama.cpp GGUF LoRA adapter: general.architecture (the base's), general.type
 * "adapter", adapter.type "lora", adapter.lora.alpha (for rsLoRA alpha*sqrt(r), since llama.cpp
 * scales by alpha/r), tensors blk.N.attn_q.weight.lora_a with ne {in, r} and .lora_b with ne
 * {r, out} (llama.cpp's order for Q/K rows), of type F32, F16, BF16 or Q8_0; twin.* keys keep
 * the original alpha, rsLoRA, dropout and base hash. */
tw_status lora_save_gguf(const lora_set *s, const char *path, tw_dtype type);
/* Reads an adapter: a folder (PEFT) or a .gguf file (llama.cpp LoRA), for base. Refused with
 * TW_ERR_RUNTIME naming the difference: another architecture, more layers than the base,
 * tensor shapes that do not fit the base's dimensions, a stored base hash that differs from a
 * known base->sha256. Refused with TW_ERR_FORMAT: missing or unknown tensors, A and B ranks
 * that disagree, non-finite values. Gradients and moments of the new set are zero. */
tw_status lora_load(tw_backend *be, const char *path, const lora_base *base, lora_set **out);

/* Merges the set into the base GGUF file at base_path and writes the merged model to out_path:
 * every adapted weight becomes W + scale * B A, formed row by row (one row of the rank-r
 * product at a time, never the whole delta), dequantized from and requantized to `type`
 * (TW_DTYPE_COUNT: each weight keeps its type when tw_quantize_row writes it, else q8_0, or
 * f16 when rows do not split into 32-blocks); every other tensor and all metadata are copied
 * unchanged. The set's base must match the file (architecture, layer count, shapes; hash when
 * both are known). The output is written atomically. */
tw_status lora_merge_gguf(const char *base_path, const lora_set *s, const char *out_path,
                          tw_dtype type);

#ifdef __cplusplus
}
#endif
#endif
