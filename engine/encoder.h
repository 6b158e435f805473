/* encoder.h: sentence embeddings from a BERT encoder (all-MiniLM-L6-v2 and its kind), through
 * the op table (kernels.h) on any backend.
 *
 *   tw_encoder_load(path, be, &enc)          HF folder (config.json, model.safetensors,
 *                                            tokenizer.json, modules.json, 1_Pooling/config.json,
 *                                            sentence_bert_config.json) or a BERT GGUF
 *   tw_encoder_embed(enc, texts, lens, n, out, &n_truncated)
 *   tw_encoder_free(enc)
 *
 * Forward: token + position + token-type embeddings, LayerNorm, n_layer x (bidirectional
 * attention with a padding mask, residual + LayerNorm, GELU MLP, residual + LayerNorm), then
 * the pooling the sentence-transformers config asks for (mean over real tokens for MiniLM; CLS
 * or max when configured) and L2 normalisation when the pipeline has a Normalize module.
 * Texts are tokenized with [CLS] ... [SEP], truncated at the model's max_seq_length (counted in
 * *n_truncated and logged once per call at warn level, never silent), sorted by length and
 * run in length buckets so that padding is not computed.
 *
 * Thread safety: one embed at a time per encoder (it owns activation buffers); accessors from
 * any thread.
 */
#ifndef TWIN_ENCODER_H
#define TWIN_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kernels.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_encoder tw_encoder;

/* Loads the encoder at path onto backend be (which must outlive it). On failure *out is NULL
 * and the message names the file and the tensor/field at fault. */
tw_status tw_encoder_load(const char *path, tw_backend *be, tw_encoder **out);
void tw_encoder_free(tw_encoder *e); /* NULL is a no-op */

int32_t tw_encoder_dim(const tw_encoder *e);        /* output dimension (384 for MiniLM) */
int32_t tw_encoder_max_tokens(const tw_encoder *e); /* max tokens per text, [CLS]/[SEP] incl. */
const tw_tokenizer *tw_encoder_tokenizer(const tw_encoder *e);
/* A stable identity of the model's weights and pooling, e.g. "minilm-l6@3f2a9c01e4b5d6a7"
 * (folder or file name + the first 16 hex digits of a hash of the weights' bytes and the
 * pooling config): the warehouse keys embeddings by it, so a changed model re-embeds. */
const char *tw_encoder_id(const tw_encoder *e);

/* Embeds n texts (texts[i] of lens[i] bytes; lens may be NULL for NUL-terminated texts) into
 * out (n, dim) f32 host memory, row i for text i. An empty or all-whitespace text gets the
 * embedding of "[CLS] [SEP]" (defined, not an error). *n_truncated (may be NULL) gets how many
 * texts were cut at the max length. TW_ERR_ARG for n < 0 or NULL arrays, TW_ERR_NOMEM, backend
 * errors. */
tw_status tw_encoder_embed(tw_encoder *e, const char *const *texts, const size_t *lens, int32_t n,
                           float *out, int32_t *n_truncated);

#ifdef __cplusplus
}
#endif

#endif
