/* kv_cache.c: the paged KV cache (kv_cache.h): pages, free list, refcounts, prefix sharing by
 * chain hash, sequences. The K/V bytes live in one backend buffer; everything here is host
 * bookkeeping except the page copy of tw_kv_seq_truncate. */
#include "kv_cache_impl.h"

#include <string.h>

#include "model.h"

#define KV_DEFAULT_MAX_SEQS 256

void tw_kv_params_default(tw_kv_params *p) {
    memset(p, 0, sizeof *p);
    p->page_size = TW_KV_DEFAULT_PAGE_SIZE;
    p->type = TW_DTYPE_F16;
    p->max_seqs = KV_DEFAULT_MAX_SEQS;
}

int32_t tw_kv_pages_for(int32_t n_tokens, int32_t page_size) {
    if (n_tokens <= 0 || page_size <= 0) return 0;
    return (int32_t)(((int64_t)n_tokens + page_size - 1) / page_size);
}

/* Bytes of one layer's K (or V) array, 0 on overflow. */
static size_t kv_layer_bytes(int32_t n_pages, int32_t page_size, int32_t kv_dim, tw_dtype type) {
    size_t es = type == TW_DTYPE_F32 ? 4 : 2;
    size_t slots = (size_t)n_pages * (size_t)page_size;
    if (kv_dim <= 0 || slots > SIZE_MAX / (size_t)kv_dim / es) return 0;
    return slots * (size_t)kv_dim * es;
}

size_t tw_kv_cache_bytes(const tw_model *m, const tw_kv_params *p) {
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    int32_t ps = p->page_size > 0 ? p->page_size : TW_KV_DEFAULT_PAGE_SIZE;
    tw_dtype type = p->type == TW_DTYPE_F32 ? TW_DTYPE_F32 : TW_DTYPE_F16;
    size_t lb = kv_layer_bytes(p->n_pages, ps, hp->n_kv_head * hp->head_dim, type);
    return 2 * (size_t)hp->n_layer * lb;
}

/* ---- hashing: a 64-bit chain over token ids (splitmix64's finalizer as the mixer) ---- */

static uint64_t kv_mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t kv_hash_page(uint64_t prev, const int32_t *tokens, int32_t n) {
    uint64_t h = kv_mix(prev ^ 0x9e3779b97f4a7c15ull);
    for (int32_t i = 0; i < n; i++) h = kv_mix(h ^ ((uint64_t)(uint32_t)tokens[i] + 0x632be59bd9b4e019ull));
    return h;
}

/* ---- creation ---- */

tw_status kv_cache_create(tw_backend *be, int32_t n_layer, int32_t n_kv_head, int32_t head_dim,
                          int32_t n_ctx_model, const tw_kv_params *p, tw_kv_cache **out) {
    *out = NULL;
    if (!be || n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0)
        return tw_error(TW_ERR_ARG, "kv cache: bad model dimensions");
    if (p->n_pages <= 0)
        return tw_error(TW_ERR_ARG, "kv cache: n_pages must be > 0 (got %d)", (int)p->n_pages);
    if (p->page_size < 0 || p->page_size > 4096)
        return tw_error(TW_ERR_ARG, "kv cache: page_size must be in 1..4096 (got %d)",
                        (int)p->page_size);
    if (p->type != TW_DTYPE_F16 && p->type != TW_DTYPE_F32)
        return tw_error(TW_ERR_UNSUPPORTED, "kv cache: type %s (only f16 and f32)",
                        tw_dtype_name(p->type) ? tw_dtype_name(p->type) : "?");
    if (p->max_seqs < 0 || p->n_ctx < 0)
        return tw_error(TW_ERR_ARG, "kv cache: max_seqs and n_ctx must be >= 0");
    int32_t ps = p->page_size ? p->page_size : TW_KV_DEFAULT_PAGE_SIZE;
    if ((int64_t)p->n_pages * ps > INT32_MAX)
        return tw_error(TW_ERR_ARG, "kv cache: %d pages of %d tokens: too many slots",
                        (int)p->n_pages, (int)ps);
    size_t lb = kv_layer_bytes(p->n_pages, ps, n_kv_head * head_dim, p->type);
    if (lb == 0 || lb > SIZE_MAX / 2 / (size_t)n_layer)
        return tw_error(TW_ERR_ARG, "kv cache: size overflows");

    tw_kv_cache *kv = tw_calloc(1, sizeof *kv);
    if (!kv) return TW_ERR_NOMEM;
    kv->be = be;
    kv->n_pages = p->n_pages;
    kv->page_size = ps;
    kv->type = p->type;
    kv->max_seqs = p->max_seqs ? p->max_seqs : KV_DEFAULT_MAX_SEQS;
    kv->n_layer = n_layer;
    kv->n_kv_head = n_kv_head;
    kv->head_dim = head_dim;
    kv->layer_bytes = lb;
    int64_t slots = (int64_t)p->n_pages * ps;
    int64_t n_ctx = p->n_ctx ? p->n_ctx : (n_ctx_model > 0 ? n_ctx_model : slots);
    kv->n_ctx = (int32_t)(n_ctx < slots ? n_ctx : slots);

    kv->n_buckets = 16;
    while (kv->n_buckets < 2 * kv->n_pages && kv->n_buckets < (1 << 30)) kv->n_buckets *= 2;
    kv->pages = tw_calloc((size_t)kv->n_pages, sizeof *kv->pages);
    kv->page_tokens = tw_calloc((size_t)slots, sizeof *kv->page_tokens);
    kv->buckets = tw_calloc((size_t)kv->n_buckets, sizeof *kv->buckets);
    kv->seqs = tw_calloc((size_t)kv->max_seqs, sizeof *kv->seqs);
    if (!kv->pages || !kv->page_tokens || !kv->buckets || !kv->seqs) {
        tw_kv_cache_free(kv);
        return tw_error(TW_ERR_NOMEM, "kv cache: out of host memory for %d pages",
                        (int)p->n_pages);
    }
    tw_status st = tw_buffer_alloc(be, 2 * (size_t)n_layer * lb, &kv->buf);
    if (st != TW_OK) {
        tw_error_wrap("kv cache of %zu bytes (%d layers, %d pages of %d tokens, %s)",
                      2 * (size_t)n_layer * lb, (int)n_layer, (int)p->n_pages, (int)ps,
                      tw_dtype_name(p->type));
        tw_kv_cache_free(kv);
        return st;
    }
    tw_kv_cache_clear(kv);
    *out = kv;
    return TW_OK;
}

tw_status tw_kv_cache_new_ex(const tw_model *m, const tw_kv_params *p, tw_kv_cache **out) {
    *out = NULL;
    if (!m || !p) return tw_error(TW_ERR_ARG, "tw_kv_cache_new: model and params are required");
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    tw_status st = kv_cache_create(tw_model_backend(m), hp->n_layer, hp->n_kv_head,
                                   hp->head_dim, hp->n_ctx_train, p, out);
    if (st == TW_OK) (*out)->model = m;
    return st;
}

tw_status tw_kv_cache_new(const tw_model *m, int32_t n_pages, int32_t page_size,
                          tw_kv_cache **out) {
    tw_kv_params p;
    tw_kv_params_default(&p);
    p.n_pages = n_pages;
    p.page_size = page_size;
    return tw_kv_cache_new_ex(m, &p, out);
}

static void kv_seq_release_memory(kv_seq *s) {
    tw_free(s->tokens);
    tw_free(s->pages);
    tw_free(s->chain);
    memset(s, 0, sizeof *s);
}

void tw_kv_cache_free(tw_kv_cache *kv) {
    if (!kv) return;
    if (kv->seqs)
        for (int32_t i = 0; i < kv->max_seqs; i++) kv_seq_release_memory(&kv->seqs[i]);
    tw_buffer_free(kv->buf);
    tw_free(kv->seqs);
    tw_free(kv->buckets);
    tw_free(kv->page_tokens);
    tw_free(kv->pages);
    tw_free(kv);
}

void tw_kv_cache_clear(tw_kv_cache *kv) {
    for (int32_t i = 0; i < kv->max_seqs; i++) {
        kv_seq *s = &kv->seqs[i];
        s->live = 0;
        s->len = 0;
        s->n_pages = 0;
        s->n_published = 0;
    }
    kv->n_seqs = 0;
    for (int32_t i = 0; i < kv->n_buckets; i++) kv->buckets[i] = -1;
    /* Free list in ascending page order (page 0 first). */
    for (int32_t i = 0; i < kv->n_pages; i++) {
        kv_page *pg = &kv->pages[i];
        memset(pg, 0, sizeof *pg);
        pg->state = KV_PAGE_FREE;
        pg->hnext = -1;
        pg->prev = -1;
        pg->next = i + 1 < kv->n_pages ? i + 1 : -1;
    }
    kv->free_head = 0;
    kv->n_free = kv->n_pages;
    kv->lru_head = kv->lru_tail = -1;
    kv->n_cached = 0;
}

int32_t tw_kv_cache_page_size(const tw_kv_cache *kv) { return kv->page_size; }
int32_t tw_kv_cache_n_pages(const tw_kv_cache *kv) { return kv->n_pages; }
int32_t tw_kv_cache_n_ctx(const tw_kv_cache *kv) { return kv->n_ctx; }
tw_dtype tw_kv_cache_type(const tw_kv_cache *kv) { return kv->type; }
int32_t tw_kv_cache_n_free(const tw_kv_cache *kv) { return kv->n_free + kv->n_cached; }

tw_kv_stats tw_kv_cache_stats(const tw_kv_cache *kv) {
    tw_kv_stats st;
    memset(&st, 0, sizeof st);
    st.n_pages = kv->n_pages;
    st.n_free = kv->n_free;
    st.n_cached = kv->n_cached;
    st.n_used = kv->n_pages - kv->n_free - kv->n_cached;
    st.n_seqs = kv->n_seqs;
    st.prefix_hits_tokens = kv->prefix_hits_tokens;
    st.evictions = kv->evictions;
    return st;
}

tw_ref kv_cache_k(const tw_kv_cache *kv, int32_t layer) {
    return tw_ref_at(kv->buf, (size_t)(2 * layer) * kv->layer_bytes);
}

tw_ref kv_cache_v(const tw_kv_cache *kv, int32_t layer) {
    return tw_ref_at(kv->buf, (size_t)(2 * layer + 1) * kv->layer_bytes);
}

/* ---- hash table ---- */

static int32_t kv_bucket(const tw_kv_cache *kv, uint64_t hash) {
    return (int32_t)(hash & (uint64_t)(kv->n_buckets - 1));
}

static void kv_hash_remove(tw_kv_cache *kv, int32_t page) {
    kv_page *pg = &kv->pages[page];
    if (!pg->registered) return;
    int32_t *link = &kv->buckets[kv_bucket(kv, pg->hash)];
    while (*link != -1 && *link != page) link = &kv->pages[*link].hnext;
    TW_ASSERT(*link == page);
    *link = pg->hnext;
    pg->hnext = -1;
    pg->registered = 0;
}

/* The registered page with this chain hash and these tokens, or -1. */
static int32_t kv_hash_find(const tw_kv_cache *kv, uint64_t hash, const int32_t *tokens) {
    for (int32_t p = kv->buckets[kv_bucket(kv, hash)]; p != -1; p = kv->pages[p].hnext) {
        if (kv->pages[p].hash != hash) continue;
        const int32_t *pt = kv->page_tokens + (size_t)p * (size_t)kv->page_size;
        if (memcmp(pt, tokens, (size_t)kv->page_size * sizeof *tokens) == 0) return p;
    }
    return -1;
}

/* ---- page lists ---- */

static void kv_lru_unlink(tw_kv_cache *kv, int32_t page) {
    kv_page *pg = &kv->pages[page];
    if (pg->prev != -1) kv->pages[pg->prev].next = pg->next;
    else kv->lru_head = pg->next;
    if (pg->next != -1) kv->pages[pg->next].prev = pg->prev;
    else kv->lru_tail = pg->prev;
    pg->prev = pg->next = -1;
    kv->n_cached--;
}

/* Takes a page for a sequence (ref 1): the free list first, then the least recently released
 * cached page (which leaves the hash table). The caller has checked there is one. */
static int32_t kv_page_take(tw_kv_cache *kv) {
    int32_t page;
    if (kv->free_head != -1) {
        page = kv->free_head;
        kv->free_head = kv->pages[page].next;
        kv->pages[page].next = -1;
        kv->n_free--;
    } else {
        page = kv->lru_head;
        TW_ASSERT(page != -1);
        kv_lru_unlink(kv, page);
        kv_hash_remove(kv, page);
        kv->evictions++;
    }
    kv_page *pg = &kv->pages[page];
    pg->state = KV_PAGE_USED;
    pg->ref = 1;
    return page;
}

/* A sequence holds one more reference to an existing (used or cached) page. */
static void kv_page_hold(tw_kv_cache *kv, int32_t page) {
    kv_page *pg = &kv->pages[page];
    if (pg->state == KV_PAGE_CACHED) {
        kv_lru_unlink(kv, page);
        pg->state = KV_PAGE_USED;
        pg->ref = 0;
    }
    TW_ASSERT(pg->state == KV_PAGE_USED);
    pg->ref++;
}

/* A sequence lets go of a page: with no holder left it is cached (registered) or free. */
static void kv_page_release(tw_kv_cache *kv, int32_t page) {
    kv_page *pg = &kv->pages[page];
    TW_ASSERT(pg->state == KV_PAGE_USED && pg->ref > 0);
    if (--pg->ref > 0) return;
    if (pg->registered) {
        pg->state = KV_PAGE_CACHED;
        pg->next = -1;
        pg->prev = kv->lru_tail;
        if (kv->lru_tail != -1) kv->pages[kv->lru_tail].next = page;
        else kv->lru_head = page;
        kv->lru_tail = page;
        kv->n_cached++;
    } else {
        pg->state = KV_PAGE_FREE;
        pg->prev = -1;
        pg->next = kv->free_head;
        kv->free_head = page;
        kv->n_free++;
    }
}

/* ---- sequences ---- */

int kv_seq_live(const tw_kv_cache *kv, int32_t seq) {
    return seq >= 0 && seq < kv->max_seqs && kv->seqs[seq].live;
}

tw_status tw_kv_seq_new(tw_kv_cache *kv, int32_t *seq_id) {
    *seq_id = -1;
    for (int32_t i = 0; i < kv->max_seqs; i++) {
        kv_seq *s = &kv->seqs[i];
        if (s->live) continue;
        s->live = 1;
        s->len = 0;
        s->n_pages = 0;
        s->n_published = 0;
        kv->n_seqs++;
        *seq_id = i;
        return TW_OK;
    }
    return tw_error(TW_ERR_NOMEM, "kv cache: all %d sequences are in use", (int)kv->max_seqs);
}

void tw_kv_seq_free(tw_kv_cache *kv, int32_t seq) {
    if (!kv_seq_live(kv, seq)) return;
    kv_seq *s = &kv->seqs[seq];
    /* Release the last page first so that the free list hands out low positions' pages last
     * (no effect on correctness; keeps reuse order predictable in tests). */
    for (int32_t i = s->n_pages; i-- > 0;) kv_page_release(kv, s->pages[i]);
    s->n_pages = 0;
    s->len = 0;
    s->n_published = 0;
    s->live = 0;
    kv->n_seqs--;
}

int32_t tw_kv_seq_len(const tw_kv_cache *kv, int32_t seq) {
    return kv_seq_live(kv, seq) ? kv->seqs[seq].len : -1;
}

const int32_t *tw_kv_seq_tokens(const tw_kv_cache *kv, int32_t seq) {
    if (!kv_seq_live(kv, seq)) return NULL;
    static const int32_t none[1] = {0}; /* an empty sequence's tokens: not NULL */
    return kv->seqs[seq].tokens ? kv->seqs[seq].tokens : none;
}

const int32_t *tw_kv_seq_pages(const tw_kv_cache *kv, int32_t seq, int32_t *n_pages) {
    if (!kv_seq_live(kv, seq)) {
        if (n_pages) *n_pages = 0;
        return NULL;
    }
    if (n_pages) *n_pages = kv->seqs[seq].n_pages;
    static const int32_t none[1] = {0};
    return kv->seqs[seq].pages ? kv->seqs[seq].pages : none;
}

int32_t tw_kv_page_refcount(const tw_kv_cache *kv, int32_t page) {
    if (page < 0 || page >= kv->n_pages) return -1;
    return kv->pages[page].state == KV_PAGE_USED ? kv->pages[page].ref : 0;
}

/* Grows the sequence's arrays to hold n_tokens tokens. */
static tw_status kv_seq_reserve(tw_kv_cache *kv, kv_seq *s, int32_t n_tokens) {
    if (n_tokens > s->cap_tokens) {
        int64_t cap = s->cap_tokens ? s->cap_tokens : 64;
        while (cap < n_tokens) cap *= 2;
        if (cap > kv->n_ctx) cap = kv->n_ctx;
        int32_t *t = tw_realloc(s->tokens, (size_t)cap * sizeof *t);
        if (!t) return tw_error(TW_ERR_NOMEM, "kv cache: out of host memory");
        s->tokens = t;
        s->cap_tokens = (int32_t)cap;
    }
    int32_t np = tw_kv_pages_for(n_tokens, kv->page_size);
    if (np > s->cap_pages) {
        int32_t cap = s->cap_pages ? s->cap_pages : 8;
        while (cap < np) cap *= 2;
        int32_t *p = tw_realloc(s->pages, (size_t)cap * sizeof *p);
        if (!p) return tw_error(TW_ERR_NOMEM, "kv cache: out of host memory");
        s->pages = p;
        uint64_t *c = tw_realloc(s->chain, (size_t)cap * sizeof *c);
        if (!c) return tw_error(TW_ERR_NOMEM, "kv cache: out of host memory");
        s->chain = c;
        s->cap_pages = cap;
    }
    return TW_OK;
}

tw_status kv_seq_append(tw_kv_cache *kv, int32_t seq, const int32_t *ids, int32_t n) {
    if (!kv_seq_live(kv, seq)) return tw_error(TW_ERR_ARG, "kv cache: sequence %d is not live", (int)seq);
    kv_seq *s = &kv->seqs[seq];
    if (n <= 0) return TW_OK;
    if ((int64_t)s->len + n > kv->n_ctx)
        return tw_error(TW_ERR_ARG,
                        "sequence %d: %d tokens + %d new exceed the context of %d positions",
                        (int)seq, (int)s->len, (int)n, (int)kv->n_ctx);
    int32_t new_len = s->len + n;
    tw_status st = kv_seq_reserve(kv, s, new_len);
    if (st != TW_OK) return st;
    int32_t need = tw_kv_pages_for(new_len, kv->page_size) - s->n_pages;
    if (need > kv->n_free + kv->n_cached)
        return tw_error(TW_ERR_NOMEM, "KV cache full: need %d more pages, %d free (%d pages of %d tokens)",
                        (int)need, (int)(kv->n_free + kv->n_cached), (int)kv->n_pages,
                        (int)kv->page_size);
    for (int32_t i = 0; i < need; i++) s->pages[s->n_pages++] = kv_page_take(kv);
    memcpy(s->tokens + s->len, ids, (size_t)n * sizeof *ids);
    s->len = new_len;
    return TW_OK;
}

void kv_seq_publish(tw_kv_cache *kv, int32_t seq) {
    if (!kv_seq_live(kv, seq)) return;
    kv_seq *s = &kv->seqs[seq];
    int32_t full = s->len / kv->page_size;
    for (int32_t i = s->n_published; i < full; i++) {
        const int32_t *toks = s->tokens + (size_t)i * (size_t)kv->page_size;
        uint64_t prev = i > 0 ? s->chain[i - 1] : 0;
        uint64_t h = kv_hash_page(prev, toks, kv->page_size);
        s->chain[i] = h;
        int32_t page = s->pages[i];
        kv_page *pg = &kv->pages[page];
        if (pg->registered) continue; /* reused from the cache: already findable */
        if (kv_hash_find(kv, h, toks) != -1) continue; /* another page has these contents */
        pg->registered = 1;
        pg->hash = h;
        memcpy(kv->page_tokens + (size_t)page * (size_t)kv->page_size, toks,
               (size_t)kv->page_size * sizeof *toks);
        int32_t b = kv_bucket(kv, h);
        pg->hnext = kv->buckets[b];
        kv->buckets[b] = page;
    }
    if (full > s->n_published) s->n_published = full;
}

tw_status tw_kv_seq_reuse_prefix(tw_kv_cache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                                 int32_t *n_reused) {
    *n_reused = 0;
    if (!kv_seq_live(kv, seq))
        return tw_error(TW_ERR_ARG, "kv cache: sequence %d is not live", (int)seq);
    kv_seq *s = &kv->seqs[seq];
    if (s->len != 0)
        return tw_error(TW_ERR_ARG, "kv cache: prefix reuse needs an empty sequence (%d has %d tokens)",
                        (int)seq, (int)s->len);
    if (n <= 2) return TW_OK;
    if (n > kv->n_ctx) n = kv->n_ctx;
    int32_t max_pages = (n - 2) / kv->page_size;
    int32_t k = 0;
    uint64_t h = 0;
    /* Find first, then take: a failed reservation must leave the sequence empty. */
    while (k < max_pages) {
        const int32_t *toks = tokens + (size_t)k * (size_t)kv->page_size;
        uint64_t hk = kv_hash_page(h, toks, kv->page_size);
        if (kv_hash_find(kv, hk, toks) == -1) break;
        h = hk;
        k++;
    }
    if (k == 0) return TW_OK;
    int32_t len = k * kv->page_size;
    tw_status st = kv_seq_reserve(kv, s, len);
    if (st != TW_OK) return st;
    h = 0;
    for (int32_t i = 0; i < k; i++) {
        const int32_t *toks = tokens + (size_t)i * (size_t)kv->page_size;
        h = kv_hash_page(h, toks, kv->page_size);
        int32_t page = kv_hash_find(kv, h, toks);
        TW_ASSERT(page != -1);
        kv_page_hold(kv, page);
        s->pages[i] = page;
        s->chain[i] = h;
    }
    s->n_pages = k;
    s->n_published = k;
    memcpy(s->tokens, tokens, (size_t)len * sizeof *tokens);
    s->len = len;
    kv->prefix_hits_tokens += len;
    *n_reused = len;
    return TW_OK;
}

/* Copies the first n_slots slots of page src to page dst in every layer's K and V, through the
 * host (a rare path: truncating into a shared page). */
static tw_status kv_page_copy(tw_kv_cache *kv, int32_t dst, int32_t src, int32_t n_slots) {
    size_t es = kv->type == TW_DTYPE_F32 ? 4 : 2;
    size_t slot_bytes = (size_t)kv->n_kv_head * (size_t)kv->head_dim * es;
    size_t page_bytes = (size_t)kv->page_size * slot_bytes;
    size_t n = (size_t)n_slots * slot_bytes;
    void *tmp = tw_malloc(n);
    if (!tmp) return tw_error(TW_ERR_NOMEM, "kv cache: out of host memory for a page copy");
    tw_status st = TW_OK;
    for (int32_t a = 0; a < 2 * kv->n_layer && st == TW_OK; a++) {
        size_t base = (size_t)a * kv->layer_bytes;
        st = tw_buffer_download(kv->buf, base + (size_t)src * page_bytes, tmp, n);
        if (st == TW_OK) st = tw_buffer_upload(kv->buf, base + (size_t)dst * page_bytes, tmp, n);
    }
    tw_free(tmp);
    return st;
}

tw_status tw_kv_seq_truncate(tw_kv_cache *kv, int32_t seq, int32_t len) {
    if (!kv_seq_live(kv, seq))
        return tw_error(TW_ERR_ARG, "kv cache: sequence %d is not live", (int)seq);
    kv_seq *s = &kv->seqs[seq];
    if (len < 0 || len > s->len)
        return tw_error(TW_ERR_ARG, "kv cache: truncate sequence %d to %d: it has %d tokens",
                        (int)seq, (int)len, (int)s->len);
    int32_t keep = tw_kv_pages_for(len, kv->page_size);
    int32_t partial = len % kv->page_size; /* tokens in the new last page when it is partial */
    if (partial && keep > 0) {
        int32_t page = s->pages[keep - 1];
        kv_page *pg = &kv->pages[page];
        if (pg->ref > 1) {
            /* Shared: this sequence will write into it again, so it gets its own copy. */
            if (kv->n_free + kv->n_cached < 1)
                return tw_error(TW_ERR_NOMEM,
                                "KV cache full: truncating sequence %d needs a page to copy a shared one",
                                (int)seq);
            int32_t fresh = kv_page_take(kv);
            tw_status st = kv_page_copy(kv, fresh, page, partial);
            if (st != TW_OK) {
                kv_page_release(kv, fresh);
                return st;
            }
            kv_page_release(kv, page);
            s->pages[keep - 1] = fresh;
        } else if (pg->registered) {
            /* Only holder: it becomes private and mutable again. */
            kv_hash_remove(kv, page);
        }
    }
    for (int32_t i = s->n_pages; i-- > keep;) kv_page_release(kv, s->pages[i]);
    s->n_pages = keep;
    s->len = len;
    if (s->n_published > len / kv->page_size) s->n_published = len / kv->page_size;
    return TW_OK;
}
