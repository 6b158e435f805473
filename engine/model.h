/* model.h: a loaded language model (weights on a backend + tokenizer) and its forward pass
 * over a ragged batch of tokens (ARCHITECTURE.md, "Models" and "Inference is batched").
 *
 *   tw_model_load(path, be, params, &m)   GGUF file or HF folder (config.json + safetensors)
 *   tw_model_forward(m, kv, batch, logits) one pass over the tokens of many sequences
 *   tw_model_free(m)
 *
 * Architectures are descriptors (hyper-parameters + a weight table), not code per checkpoint:
 *   llama family  llama, mistral, smollm2 (GGUF arch "llama"), qwen2 (q/k/v biases): token
 *                 embedding, RMSNorm, rotary positions (llama3 frequency scaling from
 *                 rope_freqs.weight or config), grouped-query attention, SwiGLU MLP, output
 *                 head (tied to the token embedding when output.weight is absent);
 *   gpt2          token + learned position embeddings, LayerNorm, fused q/k/v with biases,
 *                 GELU (tanh approximation) MLP, tied output head;
 *   bert          encoder only (all-MiniLM and its kind): token + position + token-type
 *                 embeddings, post-norm blocks, erf GELU; loaded here, run by encoder.h
 *                 (tw_model_forward refuses it with TW_ERR_UNSUPPORTED).
 * Weights keep the type they have in the file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K,
 * Q6_K); on the CPU backend they are used in place in the mmap'd file (no copy), on CUDA they
 * are uploaded once.
 *
 * Errors (status + the thread's message, see core.h): TW_ERR_NOT_FOUND (no such path, or a
 * required tensor is missing: the message names the tensor), TW_ERR_FORMAT (a tensor's shape or
 * type disagrees with the metadata: "<file>: tensor 'blk.3.attn_q.weight': expected shape
 * [576, 576], found [576, 192]"; the tokenizer's vocabulary size differs from the model's),
 * TW_ERR_UNSUPPORTED (an architecture or tensor type twin does not run: the message names it),
 * TW_ERR_NOMEM.
 *
 * Thread safety: loading and freeing are thread-safe with respect to other models. A tw_model
 * is used by one thread at a time for tw_model_forward (it owns the activation buffers, like
 * the tw_backend it runs on); the accessors and the tokenizer may be used from any thread
 * while no load/free runs on that model.
 */
#ifndef TWIN_MODEL_H
#define TWIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kernels.h"
#include "quant.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_model tw_model;
typedef struct tw_kv_cache tw_kv_cache; /* kv_cache.h */

/* Load options. Zero-initialise or call tw_model_params_default; 0 fields mean "default". */
typedef struct {
    int32_t max_batch_tokens; /* tokens per internal forward chunk (prefill chunking); the
                                 activation buffer is sized for it. 0: 512; at least 3. */
    int32_t max_logit_rows;   /* rows of logits one chunk may produce (tokens with want_logits);
                                 0: 64; at least 3, at most max_batch_tokens. More
                                 want_logits tokens than this split the batch into chunks. */
    int no_mmap_weights;      /* 1: copy weights into backend buffers even on the CPU (tests). */
} tw_model_params;

void tw_model_params_default(tw_model_params *p);

/* Hyper-parameters, as the loader resolved them from the file's metadata / config.json. */
typedef struct {
    char arch[16];       /* "llama", "qwen2", "gpt2", "bert" (the descriptor that runs it) */
    int32_t n_vocab;
    int32_t n_ctx_train; /* context length the model was trained with */
    int32_t n_embd;      /* d_model */
    int32_t n_layer;
    int32_t n_head;
    int32_t n_kv_head;   /* == n_head unless grouped-query attention */
    int32_t head_dim;    /* n_embd / n_head unless the file says otherwise */
    int32_t n_ff;        /* MLP inner width */
    int32_t rope_dim;    /* rotated dims of each head (<= head_dim); 0 for learned positions */
    float rope_theta;
    float rope_freq_scale; /* 1 / linear scaling factor; 1 when none */
    float norm_eps;
    int32_t n_type_vocab;  /* bert token types (2); 0 for the others */
} tw_model_hparams;

/* Loads the model at path: a .gguf file, or a folder with config.json, *.safetensors
 * (one file or an index of shards) and tokenizer.json. Weights go to backend be, which must
 * outlive the model. p may be NULL (defaults). On success *out is for tw_model_free; on
 * failure *out is NULL and the message names the file and the tensor/field at fault. */
tw_status tw_model_load(const char *path, tw_backend *be, const tw_model_params *p,
                        tw_model **out);

/* Frees the model, its weights, activations and tokenizer. Every tw_kv_cache made from it must
 * be freed before. NULL is a no-op. */
void tw_model_free(tw_model *m);

/* Accessors. Pointers stay valid (and owned by the model) while it lives. */
const tw_tokenizer *tw_model_tokenizer(const tw_model *m);
const tw_model_hparams *tw_model_get_hparams(const tw_model *m);
int32_t tw_model_n_vocab(const tw_model *m);
int32_t tw_model_n_ctx_train(const tw_model *m);
const char *tw_model_arch_name(const tw_model *m);
/* Raw Jinja chat template (GGUF tokenizer.chat_template, or tokenizer_config.json's
 * chat_template beside an HF folder), NULL when the model has none. */
const char *tw_model_chat_template(const tw_model *m);
tw_backend *tw_model_backend(const tw_model *m);
/* The file (or folder) it was loaded from. */
const char *tw_model_path(const tw_model *m);
/* Bytes of weights the model uses (as stored: quantized sizes), whether mapped or copied. */
size_t tw_model_weight_bytes(const tw_model *m);

/* Re-stores the seven projection matrices of every layer (q, k, v, o, gate, up, down) in type
 * `to`: TW_DTYPE_NF4 (QLoRA's frozen base: each matrix dequantized to fp32 rows, then
 * nf4_quantize with double quantization, in the op table's layout) or TW_DTYPE_F32 (a full
 * precision base to compare with; from NF4 too, which gives exactly the NF4 base's values).
 * Embeddings, the output head and the norms stay as they are. The converted matrices and the
 * weights of the old owned buffer move into one new owned buffer and the old one is freed;
 * pages of the mmap'd file that held converted matrices are handed back to the OS
 * (model_convert.c). tw_model_weight_bytes then counts the new sizes. Not thread-safe for the
 * model; no forward may run meanwhile. Errors, with the model unchanged: TW_ERR_ARG (another
 * type), TW_ERR_UNSUPPORTED (an encoder, a fused q/k/v matrix, NF4 rows that are not a
 * multiple of 64 elements: the message names the tensor), TW_ERR_NOMEM. */
tw_status tw_model_proj_convert(tw_model *m, tw_dtype to);

/* A ragged batch: n tokens, each of some sequence of the KV cache, in any interleaving.
 * Arrays are caller-owned host memory of n entries, read during tw_model_forward only.
 *
 * The tokens of one sequence must appear in the batch in increasing position order and must
 * extend it exactly: the first token of sequence s has pos == tw_kv_seq_len(kv, s) (its length
 * before the call), the next pos + 1, and so on. pos may be NULL, meaning exactly that.
 * After the forward each sequence's length is its last pos + 1.
 * want_logits may be NULL: logits only for the last token of the batch. */
typedef struct {
    int32_t n;
    const int32_t *token;       /* (n) token ids, 0 <= id < n_vocab */
    const int32_t *pos;         /* (n) positions, or NULL */
    const int32_t *seq;         /* (n) sequence ids from tw_kv_seq_new */
    const uint8_t *want_logits; /* (n) 1: write this token's logits; or NULL */
} tw_batch;

/* Number of tokens of b with want_logits set (1 when want_logits is NULL and n > 0). */
int32_t tw_batch_n_logits(const tw_batch *b);

/* Runs the model over the batch in one call: appends each token's K/V to its sequence's pages
 * in kv (allocating pages as needed) and writes the logits of the tokens with want_logits to
 * logits (n_want, n_vocab) f32 host memory, rows in batch order. logits may be NULL when the
 * caller reads them on the backend instead (tw_model_logits). Batches larger than
 * max_batch_tokens (or with more than max_logit_rows wanted) run in chunks with the same bits
 * as one pass. A sequence's result does not depend on the other sequences in the batch (given
 * the kernels' batch invariance, kernels.h): alone or with others, a token gets the same logits.
 *
 * Errors: TW_ERR_ARG (a token id out of range, an unknown sequence, positions that do not
 * extend their sequence, a position >= n_ctx of the cache: the message names the batch index),
 * TW_ERR_NOMEM ("KV cache full: need N pages, M free" — nothing was written, every sequence
 * keeps its length), backend errors from the ops. On an error after pages were allocated the
 * sequences are truncated back to their lengths before the call.
 * Not thread-safe for the same model or the same kv (one forward at a time). */
tw_status tw_model_forward(tw_model *m, tw_kv_cache *kv, const tw_batch *b, float *logits);

/* The logits of the last forward's last chunk, on the backend: *out refers to
 * (*n_rows, n_vocab) f32 rows in model-owned memory, valid until the next forward or free. A
 * batch that fits in one chunk (at most max_batch_tokens tokens and max_logit_rows wanted)
 * leaves all its rows here, in batch order. A larger one runs in chunks with its tokens
 * grouped by sequence, and only the last chunk's rows are here (all rows are in the host
 * logits array, in batch order), so a caller that samples on the backend keeps one step within
 * those limits. *n_rows is 0 before any forward and after a failed one. */
void tw_model_logits(const tw_model *m, tw_ref *out, int32_t *n_rows);

/* ---- LoRA adapters (lora.h) --------------------------------------------------------------
 * With an adapter set attached, every adapted matmul of tw_model_forward computes
 *   y = x W^T (+ bias) + scale * ((x A^T) B^T)        x: (rows, in), A: (r, in), B: (out, r)
 * with the rank-r product formed first (two small f32 matmuls through the op table, never the
 * (out, in) delta), for the layers and modules (q k v o gate up down) the set has. Each output
 * row still depends on its own input row only, so batches keep their invariance.
 *
 * tw_model_set_lora attaches s (NULL detaches). The set must live on the model's backend and be
 * made for this model: architecture, layer count, dimensions and Q/K row order equal to
 * lora_base_from_model's (TW_ERR_ARG naming the field that differs, e.g. "n_ff 1536 vs 128";
 * TW_ERR_UNSUPPORTED for an architecture adapters do not cover). The model keeps the pointer,
 * not a copy: s must outlive the attachment (detach or free the model first), and parameters
 * uploaded into s later are used by the next forward. Scratch for the rank-r products is
 * allocated here (TW_ERR_NOMEM; on any error the previous attachment is kept). Not
 * thread-safe for the model (like tw_model_forward). */
struct lora_set;
tw_status tw_model_set_lora(tw_model *m, const struct lora_set *s);
/* The attached set, NULL when none. */
const struct lora_set *tw_model_get_lora(const tw_model *m);

#ifdef __cplusplus
}
#endif
#endif
