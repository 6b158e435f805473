/* kv_cache.h: the paged KV cache of a model (vLLM-style), shared by the sequences of a batch.
 *
 * Storage: n_pages pages of page_size token slots. Each layer has a K and a V array of
 * (n_pages * page_size, n_kv_head, head_dim) elements (f16 by default, as llama.cpp keeps
 * them; f32 on request) in one backend buffer; slot = page * page_size + offset.
 * A sequence is a block table (its page ids in position order) plus its token ids; position p
 * of the sequence lives in slot block[p / page_size] * page_size + p % page_size.
 *
 * Pages are refcounted. A page that holds page_size tokens (a full page) is immutable and is
 * registered under the hash of the chain of token ids from position 0 to its end, so a new
 * sequence whose prompt starts with the same tokens reuses those pages instead of computing
 * them again (tw_kv_seq_reuse_prefix). When the last sequence holding a registered page lets
 * it go, the page stays cached (still findable by hash) until an allocation needs it; the
 * least recently released cached page is reused first. Unregistered pages go back to the free
 * list at once. Only full pages are shared, so no copy-on-write is needed: a sequence only
 * ever writes into its own last, partial page (tw_kv_seq_truncate into a shared page copies
 * that page first).
 *
 * Thread safety: a tw_kv_cache is used by one thread at a time (with its model's forward).
 */
#ifndef TWIN_KV_CACHE_H
#define TWIN_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kernels.h"
#include "model.h"
#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TW_KV_DEFAULT_PAGE_SIZE 16

/* Cache options. Zero-initialise or call tw_kv_params_default. */
typedef struct {
    int32_t n_pages;   /* pages in the cache (> 0) */
    int32_t page_size; /* tokens per page; 0: TW_KV_DEFAULT_PAGE_SIZE */
    tw_dtype type;     /* TW_DTYPE_F16 (default) or TW_DTYPE_F32 */
    int32_t max_seqs;  /* live sequences at once; 0: 256 */
    int32_t n_ctx;     /* most positions of one sequence; 0: the model's n_ctx_train (and
                          never more than n_pages * page_size) */
} tw_kv_params;

void tw_kv_params_default(tw_kv_params *p);

/* Pages needed to hold n_tokens tokens of one sequence: ceil(n_tokens / page_size). */
int32_t tw_kv_pages_for(int32_t n_tokens, int32_t page_size);

/* Bytes of backend memory a cache with these parameters takes for model m
 * (2 * n_layer * n_pages * page_size * n_kv_head * head_dim * element size). */
size_t tw_kv_cache_bytes(const tw_model *m, const tw_kv_params *p);

/* Makes a cache for model m with n_pages pages of page_size tokens (0: default) and f16
 * storage. The cache keeps a pointer to m, which must outlive it. *out is for
 * tw_kv_cache_free. TW_ERR_ARG for n_pages <= 0 or page_size < 0; TW_ERR_NOMEM when the
 * backend cannot hold it (the message says how many bytes). */
tw_status tw_kv_cache_new(const tw_model *m, int32_t n_pages, int32_t page_size,
                          tw_kv_cache **out);
/* The same with every option (p may not be NULL). TW_ERR_UNSUPPORTED for a type other than
 * F16 or F32. */
tw_status tw_kv_cache_new_ex(const tw_model *m, const tw_kv_params *p, tw_kv_cache **out);
void tw_kv_cache_free(tw_kv_cache *kv); /* NULL is a no-op */

/* Frees every sequence and forgets every cached page (all pages free again). */
void tw_kv_cache_clear(tw_kv_cache *kv);

int32_t tw_kv_cache_page_size(const tw_kv_cache *kv);
int32_t tw_kv_cache_n_pages(const tw_kv_cache *kv);
int32_t tw_kv_cache_n_ctx(const tw_kv_cache *kv);
tw_dtype tw_kv_cache_type(const tw_kv_cache *kv);
/* Pages an allocation can take now: free pages + cached pages no sequence holds. */
int32_t tw_kv_cache_n_free(const tw_kv_cache *kv);

/* ---- sequences ----
 * Ids are small non-negative integers (< max_seqs), reused after tw_kv_seq_free. */

/* Starts an empty sequence; *seq_id is its id. TW_ERR_NOMEM when max_seqs are live. */
tw_status tw_kv_seq_new(tw_kv_cache *kv, int32_t *seq_id);
/* Ends a sequence: its pages are released (registered full pages stay cached for reuse).
 * An id that is not live is ignored. */
void tw_kv_seq_free(tw_kv_cache *kv, int32_t seq);
/* Tokens in the sequence (its next position); -1 for an id that is not live. */
int32_t tw_kv_seq_len(const tw_kv_cache *kv, int32_t seq);
/* The sequence's token ids (tw_kv_seq_len of them), owned by the cache, valid until the next
 * call that changes the sequence; NULL for an id that is not live. */
const int32_t *tw_kv_seq_tokens(const tw_kv_cache *kv, int32_t seq);
/* Drops the positions >= len (len <= current length), releasing pages no longer used. If the
 * page that now ends the sequence is shared or registered, the sequence gets a private copy of
 * it before it can write there again. TW_ERR_ARG for a bad id or len; TW_ERR_NOMEM when that
 * copy needs a page and none is free. */
tw_status tw_kv_seq_truncate(tw_kv_cache *kv, int32_t seq, int32_t len);

/* Prefix sharing: seq must be empty. Finds the longest chain of registered full pages whose
 * tokens equal tokens[0 .. k * page_size) and attaches them to seq (refcount + 1 each), so
 * the sequence starts with length k * page_size and the caller runs the forward from there.
 * At most (n - 2) / page_size pages are reused, so at least the last two tokens are left to
 * compute: the last one's logits are what the caller wants, and a prompt computed with two or
 * more tokens takes the prompt summation order in attention (kernels.h), so a prompt that
 * reuses pages made by another prompt gets the same bits as computing it all.
 * *n_reused = k * page_size (0 when nothing matched).
 * TW_ERR_ARG when seq is not live or not empty. */
tw_status tw_kv_seq_reuse_prefix(tw_kv_cache *kv, int32_t seq, const int32_t *tokens,
                                 int32_t n, int32_t *n_reused);

/* Statistics for tests and monitoring. */
typedef struct {
    int32_t n_pages, n_free, n_cached, n_used; /* free: on the free list; cached: registered, no
                                                  holder; used: held by >= 1 sequence */
    int32_t n_seqs;                            /* live sequences */
    int64_t prefix_hits_tokens;                /* tokens reused by tw_kv_seq_reuse_prefix */
    int64_t evictions;                         /* cached pages taken by an allocation */
} tw_kv_stats;
tw_kv_stats tw_kv_cache_stats(const tw_kv_cache *kv);

/* The page ids of a sequence (tw_kv_pages_for(len) of them), owned by the cache, valid until
 * the next call that changes the sequence; NULL for an id that is not live. For tests. */
const int32_t *tw_kv_seq_pages(const tw_kv_cache *kv, int32_t seq, int32_t *n_pages);
/* Holders of a page (0 for a free or cached page); -1 for an id out of range. For tests. */
int32_t tw_kv_page_refcount(const tw_kv_cache *kv, int32_t page);

#ifdef __cplusplus
}
#endif
#endif
