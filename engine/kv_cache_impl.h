/* kv_cache_impl.h: private to engine/kv_cache.c and the forward pass (engine/model.c): the
 * layout of a tw_kv_cache and the calls the forward uses to reserve slots for a batch and to
 * publish the pages it filled. Nothing outside engine/ includes it. */
#ifndef TWIN_KV_CACHE_IMPL_H
#define TWIN_KV_CACHE_IMPL_H

#include "kv_cache.h"

typedef enum { KV_PAGE_FREE = 0, KV_PAGE_USED, KV_PAGE_CACHED } kv_page_state;

typedef struct {
    int32_t ref;        /* sequences holding the page */
    uint8_t state;      /* kv_page_state */
    uint8_t registered; /* in the hash table (full, immutable, tokens in page_tokens) */
    uint64_t hash;      /* chain hash of the tokens from position 0 to the page's end */
    int32_t hnext;      /* next page in the same hash bucket, -1 at the end */
    int32_t prev, next; /* free list (next only) or cached LRU list (both); -1 at the ends */
} kv_page;

typedef struct {
    int live;
    int32_t len;           /* tokens */
    int32_t *tokens;       /* (cap_tokens) the sequence's token ids */
    int32_t cap_tokens;
    int32_t *pages;        /* (cap_pages) page ids, position order */
    int32_t n_pages;       /* pages held: tw_kv_pages_for(len) */
    int32_t cap_pages;
    int32_t n_published;   /* leading full pages already registered (or reused) */
    uint64_t *chain;       /* (cap_pages) chain hash after each full page */
} kv_seq;

struct tw_kv_cache {
    const tw_model *model;
    tw_backend *be;
    int32_t n_pages, page_size, n_ctx, max_seqs;
    tw_dtype type;
    int32_t n_layer, n_kv_head, head_dim;
    size_t layer_bytes; /* bytes of one layer's K (or V): n_pages * page_size * kv_dim * elsize */

    /* K of layer l at offset 2*l*layer_bytes, V at (2*l+1)*layer_bytes, each
     * (n_pages * page_size, n_kv_head, head_dim) of `type`. */
    tw_buffer *buf;

    kv_page *pages;       /* (n_pages) */
    int32_t *page_tokens; /* (n_pages, page_size): tokens of registered pages (to verify a hash
                             hit token by token) */
    int32_t free_head;    /* free list, LIFO */
    int32_t n_free;
    int32_t lru_head, lru_tail; /* cached pages: evict from the head, release to the tail */
    int32_t n_cached;
    int32_t *buckets;     /* (n_buckets) first page of each hash bucket, -1 when empty */
    int32_t n_buckets;    /* power of two */

    kv_seq *seqs;         /* (max_seqs) */
    int32_t n_seqs;

    int64_t prefix_hits_tokens, evictions;
};

/* Makes a cache for a model of n_layer layers of n_kv_head x head_dim K/V on backend be;
 * n_ctx_model is the default for p->n_ctx. tw_kv_cache_new_ex calls it with the model's
 * hyper-parameters; unit tests call it directly (no model: kv->model stays NULL). */
tw_status kv_cache_create(tw_backend *be, int32_t n_layer, int32_t n_kv_head, int32_t head_dim,
                          int32_t n_ctx_model, const tw_kv_params *p, tw_kv_cache **out);

/* The K or V array of layer l as an op argument. */
tw_ref kv_cache_k(const tw_kv_cache *kv, int32_t layer);
tw_ref kv_cache_v(const tw_kv_cache *kv, int32_t layer);

/* Appends n tokens (ids) to seq and makes sure pages hold positions up to len + n - 1,
 * taking pages from the free list, then from the cached pages (least recently released
 * first). TW_ERR_NOMEM ("KV cache full ...") when there are not enough: then the sequence is
 * unchanged. TW_ERR_ARG when the sequence would pass n_ctx. */
tw_status kv_seq_append(tw_kv_cache *kv, int32_t seq, const int32_t *ids, int32_t n);

/* The slot of position pos of seq (pos < len). */
static inline int32_t kv_seq_slot(const tw_kv_cache *kv, int32_t seq, int32_t pos) {
    const kv_seq *s = &kv->seqs[seq];
    return s->pages[pos / kv->page_size] * kv->page_size + pos % kv->page_size;
}

/* Registers the full pages of seq that are not yet registered: called once their K/V are
 * written (after the forward), so a page is findable only when its contents are final. */
void kv_seq_publish(tw_kv_cache *kv, int32_t seq);

/* 1 when seq is a live sequence id. */
int kv_seq_live(const tw_kv_cache *kv, int32_t seq);

#endif
