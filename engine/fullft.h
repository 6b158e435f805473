/* fullft.h: the trainable weights of full fine-tuning (twin train --full) of a llama-family
 * or GPT-2 model: an fp32 copy of every weight the forward uses (token embedding, GPT-2's
 * learned positions, every norm (LayerNorm weights and biases), every projection and bias,
 * the LM head when it is not tied to the embedding), with gradients and AdamW moments, on the
 * model's backend; and the trained model written as a GGUF.
 *
 * GPT-2's fused attention input projection (c_attn: blk.N.attn_qkv weight and bias, q rows
 * then k then v) is one tensor of the set, saved as such; fullft_find's TW_W_Q/K/V (and _B)
 * of a GPT-2 layer are views of its row ranges, so the gradients of the three projections land
 * in the matching rows of the one fused gradient.
 *
 * A quantized base is dequantized once (tw_dequantize_row, ggml's dequantizers), so training
 * starts from exactly the values the quantized forward multiplies with. RoPE frequency factors
 * are not trained (they are a fixed schedule). A tied head (no output.weight) stays tied: the
 * one table receives both its gradients (xent's dW and the embedding's scatter).
 *
 * Memory (one backend buffer, as lora.h's sets): four regions of fullft_n_floats() floats,
 *     [ PARAM | GRAD | ADAM_M | ADAM_V ]
 * laid out identically, tensor i at fullft_tensor_at(i)->off floats from its region's start,
 * each on a 64-float boundary, padding zero (and zero under AdamW), so one tw_op_adamw
 * updates every weight. That is 16 bytes per parameter, plus the trainer's host copy of the
 * gradient (4 more) and the activations: FULLFT_MAX_PARAMS bounds what is accepted.
 *
 * Errors: TW_ERR_UNSUPPORTED (an architecture other than the llama family and GPT-2, a weight
 * type that cannot be dequantized), TW_ERR_RUNTIME (more than FULLFT_MAX_PARAMS parameters: the message
 * names the count and the memory it would need), TW_ERR_NOMEM, TW_ERR_IO / TW_ERR_FORMAT
 * (files), backend errors.
 *
 * Thread safety: a set belongs to its backend's thread (kernels.h). */
#ifndef TWIN_FULLFT_H
#define TWIN_FULLFT_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kernels.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Full fine-tuning is for small models: 1.5e9 parameters need ~30 GB (20 bytes each) before
 * activations. Above it fullft_set_new refuses. */
#define FULLFT_MAX_PARAMS 1500000000LL

typedef enum {
    FULLFT_PARAM = 0,
    FULLFT_GRAD,
    FULLFT_ADAM_M,
    FULLFT_ADAM_V,
    FULLFT_N_REGIONS
} fullft_region;

/* One trained weight. */
typedef struct {
    char name[64];    /* its GGUF name: "token_embd.weight", "blk.3.attn_q.weight", ... */
    int32_t layer;    /* -1: a model-wide weight */
    int role;         /* model_impl.h's tw_wrole */
    int64_t ne0, ne1; /* GGUF order: ne1 rows of ne0; a vector has ne1 = 1 */
    size_t off;       /* floats from a region's start */
} fullft_tensor;

typedef struct fullft_set fullft_set;

/* Trainable parameters m would have (the same count fullft_set_new allocates, padding
 * excluded), without allocating anything. -1 for an architecture it does not cover. */
int64_t fullft_count_params(const tw_model *m);

/* Makes the fp32 copies of m's weights on m's backend (both must outlive the set);
 * gradients and moments zero. *out is for fullft_set_free. */
tw_status fullft_set_new(tw_model *m, fullft_set **out);
void fullft_set_free(fullft_set *s); /* NULL is a no-op */

int64_t fullft_n_params(const fullft_set *s);
size_t fullft_n_floats(const fullft_set *s);
int32_t fullft_n_tensors(const fullft_set *s);
const fullft_tensor *fullft_tensor_at(const fullft_set *s, int32_t i);
/* The tensor of (layer, role) (layer -1 for model-wide roles); NULL when not trained. A tied
 * head: role TW_W_OUTPUT gives the token embedding's tensor. GPT-2: TW_W_Q, TW_W_K, TW_W_V
 * and their biases give views of the layer's fused attn_qkv (its name, the range's shape and
 * offset), which fullft_tensor_at does not list; TW_W_QKV(_B) gives the fused tensor. */
const fullft_tensor *fullft_find(const fullft_set *s, int32_t layer, int role);
/* 1 when the LM head is the token embedding. */
int fullft_tied(const fullft_set *s);
/* A view: float `off` of region reg. */
tw_ref fullft_ref(const fullft_set *s, fullft_region reg, size_t off);

/* Whole regions (fullft_n_floats floats) to or from host memory; zeroing. */
tw_status fullft_download(const fullft_set *s, fullft_region reg, float *host);
tw_status fullft_upload(fullft_set *s, fullft_region reg, const float *host);
tw_status fullft_zero(fullft_set *s, fullft_region reg);

/* Writes the trained model as a GGUF at out_path (atomically): every metadata key and every
 * untrained tensor of the base GGUF at base_path (the file the set's model was loaded from)
 * copied, each trained tensor from PARAM as `type` (TW_DTYPE_F32 or TW_DTYPE_F16; vectors
 * always F32), general.file_type set to match, and twin.full_ft = true. TW_ERR_ARG for
 * another type; TW_ERR_RUNTIME when the base file does not hold the set's tensors. */
tw_status fullft_save_gguf(const fullft_set *s, const char *base_path, const char *out_path,
                           tw_dtype type);

#ifdef __cplusplus
}
#endif
#endif
