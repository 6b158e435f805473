/* hnsw.c: the HNSW graph (hnsw.h): insertion, search, removal, filters, int8 quantisation and
 * the locking that lets inserts, removals and searches run at once. Files: hnsw_io.c.
 *
 * Locking design
 * --------------
 * Three kinds of lock, always taken in this order (never the other way round):
 *
 *   1. sync->grow, a rwlock. Every operation that touches slot storage holds it shared for its
 *      whole duration (searches, inserts, removals, hnsw_each_id). It is taken exclusively only
 *      (a) to grow the slot arrays (realloc moves them), (b) to reuse a tombstone's slot (its
 *      vector is rewritten, and a concurrent search might be reading it), and (c) to learn the
 *      int8 ranges and quantise every vector. While it is held shared, no array moves and no
 *      vector that a search can reach changes.
 *   2. sync->meta, a mutex for short critical sections: the id -> slot map, the free list and
 *      the allocation of fresh slots.
 *   3. one spin lock byte per slot (locks[slot]) held while that slot's link lists are
 *      rewritten; a writer holds at most one slot lock at a time, so there is no lock order
 *      among them and no deadlock.
 *
 * Readers do not take slot locks: link counts and entries are C11 atomics, written with
 * release stores and read with acquire loads (plain moves on x86). A search may see a list
 * half rewritten (some old, some new entries); every entry it can see is a slot that was
 * complete (vector, payload, level, state) before its number was stored anywhere, so any mix
 * is safe to follow. Links to a tombstone are followed (its own links are kept) but it is never
 * returned; a stale link can outlive the tombstone's reuse by a node of a lower level, so a
 * search at level l skips neighbours whose level is below l.
 *
 * The entry point and top level are one 64-bit atomic ((level << 32) | slot), changed by CAS:
 * an insert that reaches a new top level sets it after linking; a removal of the entry point
 * moves it to the highest live node. Concurrent new top levels can leave the lower of them
 * without links on its top levels; it stays reachable through its lower levels.
 *
 * Each search or insert takes a scratch (visited marks, heaps, query buffers) from a pool on
 * the index and gives it back, so every thread has its own visited set without thread-locals.
 *
 * Concurrent calls for the same id (two adds, an add and a remove) are not ordered against
 * each other: each is memory-safe, but which one wins is not defined. hnsw_save and hnsw_free
 * need no concurrent writer (hnsw.h).
 */
#include "hnsw_impl.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define HNSW_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define HNSW_PREFETCH(p) ((void)(p))
#endif

/* ---- small helpers ----------------------------------------------------------------------- */

static inline uint32_t ld(_Atomic uint32_t *p) { return atomic_load_explicit(p, memory_order_acquire); }
static inline void st(_Atomic uint32_t *p, uint32_t v) { atomic_store_explicit(p, v, memory_order_release); }

static void slot_lock(const hnsw_index *ix, uint32_t s) {
    while (atomic_exchange_explicit(&ix->locks[s], 1, memory_order_acquire)) {
        while (atomic_load_explicit(&ix->locks[s], memory_order_relaxed)) sched_yield();
    }
}
static void slot_unlock(const hnsw_index *ix, uint32_t s) {
    atomic_store_explicit(&ix->locks[s], 0, memory_order_release);
}

static inline uint8_t slot_state(const hnsw_index *ix, uint32_t s) {
    return atomic_load_explicit(&ix->state[s], memory_order_acquire);
}

static inline int32_t max_links(const hnsw_index *ix, int level) { return level ? ix->M : ix->M0; }

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline uint64_t ep_pack(int level, uint32_t slot) { return ((uint64_t)(uint32_t)level << 32) | slot; }

/* ---- params ------------------------------------------------------------------------------ */

void hnsw_params_default(hnsw_params *p, int32_t dim, hnsw_metric metric) {
    memset(p, 0, sizeof *p);
    p->dim = dim;
    p->metric = metric;
    p->storage = HNSW_F32;
    p->M = 16;
    p->ef_construction = 200;
    p->capacity = 1024;
    p->seed = 42;
}

void hnsw_filter_init(hnsw_filter *f) {
    memset(f, 0, sizeof *f);
    f->platform = -1;
    f->doc_type = -1;
    f->day_from = INT32_MIN;
    f->day_to = INT32_MAX;
}

static void payload_none(hnsw_payload *p) {
    p->author_id = 0;
    p->platform = -1;
    p->doc_type = -1;
    p->published_day = INT32_MIN;
}

/* A zero-initialised day range (0, 0) is taken as open too (hnsw.h: a field left at its zero
 * value matches anything); nobody filters on 1970-01-01 alone. */
static int filter_day_open(const hnsw_filter *f) {
    return (f->day_from == INT32_MIN && f->day_to == INT32_MAX) || (f->day_from == 0 && f->day_to == 0);
}

/* NULL when f matches everything (the search then needs no filter at all). */
static const hnsw_filter *filter_effective(const hnsw_filter *f) {
    if (!f) return NULL;
    if (f->author_id == 0 && f->platform == -1 && f->doc_type == -1 && filter_day_open(f)) return NULL;
    return f;
}

static inline int filter_match(const hnsw_filter *f, const hnsw_payload *p) {
    if (f->author_id && p->author_id != f->author_id) return 0;
    if (f->platform != -1 && p->platform != f->platform) return 0;
    if (f->doc_type != -1 && p->doc_type != f->doc_type) return 0;
    if (!filter_day_open(f)) {
        if (p->published_day == INT32_MIN) return 0;
        if (p->published_day < f->day_from || p->published_day > f->day_to) return 0;
    }
    return 1;
}

static inline int returnable(const hnsw_index *ix, uint32_t s, const hnsw_filter *f) {
    return slot_state(ix, s) == HNSW_SLOT_LIVE && (!f || filter_match(f, &ix->payloads[s]));
}

/* ---- heaps of (distance, slot) ------------------------------------------------------------ */

/* pair order: by distance, then slot (so that results are deterministic) */
static inline int pair_lt(hnsw_pair a, hnsw_pair b) { return a.d < b.d || (a.d == b.d && a.id < b.id); }

/* The heaps are specialised (min for candidates, max for results) and inline: with a `max`
 * flag and qsort's comparison callback they took a fifth of a search's time (perf, 20k x
 * 128). */
static inline void minheap_push(hnsw_pair *h, size_t *n, hnsw_pair v) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!pair_lt(v, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

/* Sifts v down from slot i of the min-heap h[0..m). */
static inline void minheap_sift(hnsw_pair *h, size_t i, size_t m, hnsw_pair v) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && pair_lt(h[c + 1], h[c])) c++;
        if (!pair_lt(h[c], v)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static inline void minheap_pop(hnsw_pair *h, size_t *n) {
    size_t m = --(*n);
    if (m) minheap_sift(h, 0, m, h[m]);
}

static inline void maxheap_push(hnsw_pair *h, size_t *n, hnsw_pair v) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!pair_lt(h[p], v)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

/* Sifts v down from slot i of the max-heap h[0..m). */
static inline void maxheap_sift(hnsw_pair *h, size_t i, size_t m, hnsw_pair v) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && pair_lt(h[c], h[c + 1])) c++;
        if (!pair_lt(v, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Replaces the top (the worst) of a non-empty max-heap by v: a pop and a push in one pass. */
static inline void maxheap_replace_top(hnsw_pair *h, size_t n, hnsw_pair v) { maxheap_sift(h, 0, n, v); }

/* Sorts p[0..n) by pair_lt, ascending: heap sort (in place, no callback). */
static void pairs_sort(hnsw_pair *p, size_t n) {
    if (n < 2) return;
    if (n <= 16) { /* insertion sort for the short lists of connect_back and repairs */
        for (size_t i = 1; i < n; i++) {
            hnsw_pair v = p[i];
            size_t j = i;
            for (; j && pair_lt(v, p[j - 1]); j--) p[j] = p[j - 1];
            p[j] = v;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;) maxheap_sift(p, i, n, p[i]);
    for (size_t m = n - 1; m > 0; m--) {
        hnsw_pair top = p[0];
        maxheap_sift(p, 0, m, p[m]);
        p[m] = top;
    }
}

/* ---- scratch ----------------------------------------------------------------------------- */

static int grow_pairs(hnsw_pair **a, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    hnsw_pair *p = tw_realloc(*a, nc * sizeof *p);
    if (!p) return -1;
    *a = p;
    *cap = nc;
    return 0;
}

static void scratch_free(hnsw_scratch *s) {
    if (!s) return;
    tw_free(s->tags);
    tw_free(s->cand);
    tw_free(s->res);
    tw_free(s->tmp);
    tw_free(s->qbuf);
    tw_free(s->q8);
    tw_free(s);
}

/* A scratch whose visited marks cover every slot (the caller holds grow shared, so cap is
 * fixed until it gives the scratch back). NULL on NOMEM. */
static hnsw_scratch *scratch_take(const hnsw_index *ix) {
    hnsw_sync *sy = ix->sync;
    pthread_mutex_lock(&sy->pool);
    hnsw_scratch *s = sy->pool_head;
    if (s) sy->pool_head = s->next;
    pthread_mutex_unlock(&sy->pool);
    if (!s) {
        s = tw_calloc(1, sizeof *s);
        if (!s) return NULL;
        s->qbuf = tw_malloc((size_t)ix->dim * sizeof(float));
        s->q8 = tw_calloc(ix->dim32, 1);
        if (!s->qbuf || !s->q8 || grow_pairs(&s->cand, &s->cand_cap, 256) ||
            grow_pairs(&s->res, &s->res_cap, 256) || grow_pairs(&s->tmp, &s->tmp_cap, 256)) {
            scratch_free(s);
            return NULL;
        }
    }
    if (s->tags_cap < ix->cap) {
        uint16_t *t = tw_realloc(s->tags, ix->cap * sizeof *t);
        if (!t) {
            pthread_mutex_lock(&sy->pool);
            s->next = sy->pool_head;
            sy->pool_head = s;
            pthread_mutex_unlock(&sy->pool);
            return NULL;
        }
        /* new marks must not equal any epoch in use: clear all and restart the epochs */
        memset(t, 0, ix->cap * sizeof *t);
        s->tags = t;
        s->tags_cap = ix->cap;
        s->epoch = 0;
    }
    return s;
}

static void scratch_give(const hnsw_index *ix, hnsw_scratch *s) {
    if (!s) return;
    hnsw_sync *sy = ix->sync;
    pthread_mutex_lock(&sy->pool);
    s->next = sy->pool_head;
    sy->pool_head = s;
    pthread_mutex_unlock(&sy->pool);
}

static void visited_reset(hnsw_scratch *s) {
    if (++s->epoch == 0) {
        memset(s->tags, 0, s->tags_cap * sizeof *s->tags);
        s->epoch = 1;
    }
}

/* ---- storage ----------------------------------------------------------------------------- */

static void *grow_array(void *p, size_t old_n, size_t new_n, size_t elem) {
    void *q = tw_realloc(p, new_n * elem);
    if (q) memset((char *)q + old_n * elem, 0, (new_n - old_n) * elem);
    return q;
}

/* Grows the slot arrays to hold cap slots. The caller holds grow exclusively (or owns the
 * index alone). On NOMEM the arrays that did grow stay grown; ix->cap is unchanged. */
tw_status hnsw_reserve(hnsw_index *ix, size_t cap) {
    if (cap <= ix->cap) return TW_OK;
    if (cap > (size_t)UINT32_MAX - 1) return tw_error(TW_ERR_ARG, "hnsw: capacity %zu over the limit", cap);
    size_t old = ix->cap;
    void *q;
#define HNSW_GROW(field, elem)                                                                   \
    do {                                                                                         \
        q = grow_array((void *)ix->field, old, cap, elem);                                       \
        if (!q) return tw_error(TW_ERR_NOMEM, "hnsw: no memory for %zu slots", cap);            \
        ix->field = q;                                                                           \
    } while (0)
    HNSW_GROW(block0, ix->block_size);
    if (ix->p.storage == HNSW_INT8) HNSW_GROW(f32v, (size_t)ix->dim * sizeof(float));
    HNSW_GROW(upper, sizeof *ix->upper);
    HNSW_GROW(levels, 1);
    HNSW_GROW(ids, sizeof *ix->ids);
    HNSW_GROW(payloads, sizeof *ix->payloads);
    HNSW_GROW(state, 1);
    HNSW_GROW(locks, 1);
#undef HNSW_GROW
    ix->cap = cap;
    return TW_OK;
}

/* ---- id map (meta mutex) ----------------------------------------------------------------- */

static inline size_t map_home(int64_t key, size_t cap) {
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

int hnsw_map_get(const hnsw_index *ix, int64_t id, uint32_t *slot) {
    if (!ix->map_cap) return 0;
    for (size_t i = map_home(id, ix->map_cap);; i = (i + 1) & (ix->map_cap - 1)) {
        if (ix->map_keys[i] == HNSW_MAP_EMPTY) return 0;
        if (ix->map_keys[i] == id) {
            *slot = ix->map_vals[i];
            return 1;
        }
    }
}

static tw_status map_resize(hnsw_index *ix, size_t ncap) {
    int64_t *k = tw_malloc(ncap * sizeof *k);
    uint32_t *v = tw_malloc(ncap * sizeof *v);
    if (!k || !v) {
        tw_free(k);
        tw_free(v);
        return tw_error(TW_ERR_NOMEM, "hnsw: no memory for the id map (%zu entries)", ncap);
    }
    for (size_t i = 0; i < ncap; i++) k[i] = HNSW_MAP_EMPTY;
    for (size_t i = 0; i < ix->map_cap; i++) {
        if (ix->map_keys[i] == HNSW_MAP_EMPTY) continue;
        size_t j = map_home(ix->map_keys[i], ncap);
        while (k[j] != HNSW_MAP_EMPTY) j = (j + 1) & (ncap - 1);
        k[j] = ix->map_keys[i];
        v[j] = ix->map_vals[i];
    }
    tw_free(ix->map_keys);
    tw_free(ix->map_vals);
    ix->map_keys = k;
    ix->map_vals = v;
    ix->map_cap = ncap;
    return TW_OK;
}

/* Sets id -> slot (replacing an existing entry). */
tw_status hnsw_map_put(hnsw_index *ix, int64_t id, uint32_t slot) {
    if ((ix->map_n + 1) * 2 > ix->map_cap) {
        tw_status st = map_resize(ix, ix->map_cap ? ix->map_cap * 2 : 64);
        if (st != TW_OK) return st;
    }
    size_t i = map_home(id, ix->map_cap);
    while (ix->map_keys[i] != HNSW_MAP_EMPTY && ix->map_keys[i] != id) i = (i + 1) & (ix->map_cap - 1);
    if (ix->map_keys[i] == HNSW_MAP_EMPTY) ix->map_n++;
    ix->map_keys[i] = id;
    ix->map_vals[i] = slot;
    return TW_OK;
}

/* Linear probing deletion by backward shift (no tombstones in the map). */
static void map_del(hnsw_index *ix, int64_t id) {
    if (!ix->map_cap) return;
    size_t mask = ix->map_cap - 1, i = map_home(id, ix->map_cap);
    while (ix->map_keys[i] != id) {
        if (ix->map_keys[i] == HNSW_MAP_EMPTY) return;
        i = (i + 1) & mask;
    }
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (ix->map_keys[j] == HNSW_MAP_EMPTY) break;
        size_t k = map_home(ix->map_keys[j], ix->map_cap);
        /* the entry at j stays when its home lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
        ix->map_keys[i] = ix->map_keys[j];
        ix->map_vals[i] = ix->map_vals[j];
        i = j;
    }
    ix->map_keys[i] = HNSW_MAP_EMPTY;
    ix->map_n--;
}

tw_status hnsw_free_push(hnsw_index *ix, uint32_t slot) {
    if (ix->n_free == ix->free_cap) {
        size_t nc = ix->free_cap ? ix->free_cap * 2 : 64;
        uint32_t *f = tw_realloc(ix->free_slots, nc * sizeof *f);
        if (!f) return tw_error(TW_ERR_NOMEM, "hnsw: no memory for the free list");
        ix->free_slots = f;
        ix->free_cap = nc;
    }
    ix->free_slots[ix->n_free++] = slot;
    return TW_OK;
}

/* ---- int8 quantisation ------------------------------------------------------------------- */

/* Codes and |x^|^2 of one slot from its f32 vector and the learned ranges. */
void hnsw_quant_encode(hnsw_index *ix, uint32_t slot) {
    const float *v = hnsw_vec(ix, slot);
    int8_t *c = hnsw_codes(ix, slot);
    float n2 = 0;
    for (int32_t i = 0; i < ix->dim; i++) {
        float t = (v[i] - ix->qmid[i]) / ix->qscale[i];
        t = t > 127.f ? 127.f : t < -127.f ? -127.f : t;
        int8_t q = (int8_t)lrintf(t);
        c[i] = q;
        float x = ix->qmid[i] + ix->qscale[i] * (float)q;
        n2 += x * x;
    }
    memset(c + ix->dim, 0, ix->dim32 - (size_t)ix->dim);
    memcpy(hnsw_code_norm(ix, slot), &n2, sizeof n2);
}

/* Learns per-dimension [min, max] from every vector so far (at least HNSW_TRAIN_N) and
 * quantises them all. The caller holds grow exclusively. */
static void quant_train(hnsw_index *ix) {
    uint32_t n = atomic_load(&ix->n_slots);
    for (int32_t i = 0; i < ix->dim; i++) {
        float lo = INFINITY, hi = -INFINITY;
        for (uint32_t s = 0; s < n; s++) {
            if (slot_state(ix, s) == HNSW_SLOT_EMPTY) continue;
            float x = hnsw_vec(ix, s)[i];
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        if (!(lo <= hi)) lo = hi = 0;
        /* a margin of a tenth of the range on each side: the ranges come from the first
         * vectors, and later ones beyond them were clipped; clipping, not the step, was what
         * cost recall (a numpy model of 20k clustered vectors: 0.2% of values clipped took
         * recall@10 at 12 re-ranked from 0.98 to 0.94; with the margin 0.004% are, and it is
         * 0.98 again, while a 20% coarser step costs nothing visible) */
        float w = hi - lo;
        lo -= 0.1f * w;
        hi += 0.1f * w;
        ix->qmid[i] = 0.5f * (lo + hi);
        /* a constant dimension still gets a positive step (its codes are then all 0) */
        ix->qscale[i] = hi > lo ? (hi - lo) / 254.f : 1e-6f;
    }
    for (uint32_t s = 0; s < n; s++)
        if (slot_state(ix, s) != HNSW_SLOT_EMPTY) hnsw_quant_encode(ix, s);
    ix->trained = 1;
}

/* ---- queries ----------------------------------------------------------------------------- */

typedef struct {
    const float *q; /* (dim) normalised for cosine */
    int use8;
    const int8_t *q8; /* (dim32) */
    float a, c0;      /* dot(q, x^) ~ c0 + a * dot8(q8, codes) */
} hnsw_query;

/* Prepares q (dim floats) into s->qbuf (normalised for cosine). */
static tw_status query_prepare(const hnsw_index *ix, const float *q, hnsw_scratch *s, const char *what) {
    double n2 = 0;
    for (int32_t i = 0; i < ix->dim; i++) {
        if (!isfinite(q[i])) return tw_error(TW_ERR_ARG, "hnsw: %s: value %d is not finite", what, (int)i);
        n2 += (double)q[i] * q[i];
    }
    if (ix->p.metric == HNSW_COSINE) {
        if (n2 == 0) return tw_error(TW_ERR_ARG, "hnsw: %s: zero vector with the cosine metric", what);
        float inv = (float)(1.0 / sqrt(n2));
        for (int32_t i = 0; i < ix->dim; i++) s->qbuf[i] = q[i] * inv;
    } else {
        memcpy(s->qbuf, q, (size_t)ix->dim * sizeof(float));
    }
    return TW_OK;
}

/* The int8 form of the prepared query: w_i = q_i * scale_i quantised with one step a. */
static void query_quantise(const hnsw_index *ix, hnsw_scratch *s, hnsw_query *Q) {
    float amax = 0, c0 = 0;
    for (int32_t i = 0; i < ix->dim; i++) {
        float w = s->qbuf[i] * ix->qscale[i];
        amax = fabsf(w) > amax ? fabsf(w) : amax;
        c0 += s->qbuf[i] * ix->qmid[i];
    }
    float a = amax > 0 ? amax / 127.f : 1.f;
    for (int32_t i = 0; i < ix->dim; i++) {
        float t = s->qbuf[i] * ix->qscale[i] / a;
        t = t > 127.f ? 127.f : t < -127.f ? -127.f : t;
        s->q8[i] = (int8_t)lrintf(t);
    }
    memset(s->q8 + ix->dim, 0, ix->dim32 - (size_t)ix->dim);
    Q->use8 = 1;
    Q->q8 = s->q8;
    Q->a = a;
    Q->c0 = c0;
}

static inline float qdist(const hnsw_index *ix, const hnsw_query *Q, uint32_t s) {
    if (Q->use8) {
        float dot = Q->c0 + Q->a * (float)ix->k.dots8(Q->q8, hnsw_codes(ix, s), ix->dim32);
        if (ix->p.metric == HNSW_L2) {
            float n2;
            memcpy(&n2, hnsw_code_norm(ix, s), sizeof n2);
            return n2 - 2.f * dot; /* |q - x^|^2 - |q|^2: the order is the same */
        }
        return -dot;
    }
    return ix->fdist(Q->q, hnsw_vec(ix, s), (size_t)ix->dim);
}

/* Greedy descent on one level: moves *cur to the closest neighbour until none is closer. */
static void search_greedy(const hnsw_index *ix, const hnsw_query *Q, uint32_t *cur, float *curd, int level) {
    for (int changed = 1; changed;) {
        changed = 0;
        _Atomic uint32_t *L = hnsw_links(ix, *cur, level);
        uint32_t n = ld(&L[0]), maxn = (uint32_t)max_links(ix, level);
        if (n > maxn) n = maxn;
        for (uint32_t j = 1; j <= n; j++) {
            uint32_t nb = ld(&L[j]);
            if (ix->levels[nb] < level) continue; /* a stale link to a reused slot */
            float d = qdist(ix, Q, nb);
            if (d < *curd) {
                *curd = d;
                *cur = nb;
                changed = 1;
            }
        }
    }
}

/* The bytes qdist reads for slot s (for prefetching): the int8 codes or the f32 vector. */
static inline const uint8_t *qdata(const hnsw_index *ix, const hnsw_query *Q, uint32_t s) {
    return Q->use8 ? (const uint8_t *)hnsw_codes(ix, s) : (const uint8_t *)hnsw_vec(ix, s);
}

/* Beam search of one level from ep (the paper's SEARCH-LAYER): the ef closest returnable
 * nodes end up in s->res (a max-heap of s->nres). Tombstones and filtered-out nodes are
 * traversed but not returned; while such nodes exist the search does not stop before it has
 * ef results or no candidates left (as hnswlib does). -1 on NOMEM.
 *
 * Memory, not arithmetic, bounds this loop (perf: the stalls sit on the visited marks, the
 * candidate's link list and the neighbours' vectors). So each expansion works in passes: the
 * visited marks of all neighbours are prefetched, then the unvisited ones are gathered and the
 * first line of each vector is prefetched, then the distances are computed while the rest of
 * the next vector is prefetched; and the link list of the next candidate is prefetched before
 * the loop comes back to it (hnswlib does the last one too). */
static int search_layer(const hnsw_index *ix, const hnsw_query *Q, uint32_t ep, float ep_d, size_t ef,
                        int level, const hnsw_filter *f, hnsw_scratch *s) {
    visited_reset(s);
    uint16_t *tags = s->tags, epoch = s->epoch;
    s->ncand = s->nres = 0;
    tags[ep] = epoch;
    /* without a filter or tombstones every reachable slot is returnable (slots are live before
     * any link to them is stored), and the state array need not be read */
    int restricted = f != NULL || atomic_load_explicit(&ix->n_tomb, memory_order_relaxed) > 0;
    float lb = INFINITY;
    if (grow_pairs(&s->res, &s->res_cap, ef + 2)) return -1;
    if (!restricted || returnable(ix, ep, f)) {
        s->res[s->nres++] = (hnsw_pair){ep_d, ep};
        lb = ep_d;
    }
    s->cand[s->ncand++] = (hnsw_pair){ep_d, ep};
    uint32_t maxn = (uint32_t)max_links(ix, level);
    size_t vbytes = Q->use8 ? ix->dim32 : (size_t)ix->dim * sizeof(float);
    uint32_t nbs[2 * 256]; /* (M0) at most: M <= 256 (hnsw_new) */
    while (s->ncand) {
        hnsw_pair c = s->cand[0];
        if (c.d > lb && (s->nres >= ef || !restricted)) break;
        minheap_pop(s->cand, &s->ncand);
        _Atomic uint32_t *L = hnsw_links(ix, c.id, level);
        uint32_t n = ld(&L[0]);
        if (n > maxn) n = maxn;
        if (grow_pairs(&s->cand, &s->cand_cap, s->ncand + n + 1)) return -1;
        for (uint32_t j = 0; j < n; j++) {
            nbs[j] = ld(&L[1 + j]);
            HNSW_PREFETCH(&tags[nbs[j]]);
        }
        uint32_t nt = 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t nb = nbs[j];
            if (tags[nb] == epoch) continue;
            tags[nb] = epoch;
            if (level && ix->levels[nb] < level) continue; /* a stale link to a reused slot */
            nbs[nt++] = nb;
            HNSW_PREFETCH(qdata(ix, Q, nb));
        }
        for (uint32_t t = 0; t < nt; t++) {
            uint32_t nb = nbs[t];
            if (t + 1 < nt) {
                const uint8_t *nx = qdata(ix, Q, nbs[t + 1]);
                for (size_t o = 64; o < vbytes; o += 64) HNSW_PREFETCH(nx + o);
            }
            float d = qdist(ix, Q, nb);
            if (s->nres < ef || d < lb) {
                minheap_push(s->cand, &s->ncand, (hnsw_pair){d, nb});
                if (!restricted || returnable(ix, nb, f)) {
                    if (s->nres < ef) maxheap_push(s->res, &s->nres, (hnsw_pair){d, nb});
                    else maxheap_replace_top(s->res, s->nres, (hnsw_pair){d, nb});
                    lb = s->res[0].d;
                }
            }
        }
        if (s->ncand) HNSW_PREFETCH(hnsw_links(ix, s->cand[0].id, level));
    }
    return 0;
}

/* ---- building the graph ------------------------------------------------------------------ */

/* The paper's algorithm 4 (hnswlib's getNeighborsByHeuristic2): from c[0..nc) (any order,
 * distances to the base point) keeps, closest first, a candidate only when it is closer to the
 * base than to every one already kept, up to m. The kept ones end in c[0..return), closest
 * first; with nc <= m all are kept. The candidates come off a min-heap one at a time, so the
 * ef_construction results of an insert are not sorted whole: the selection usually stops after
 * a few dozen of them (a full sort was 4% of a build). */
static size_t select_heuristic(const hnsw_index *ix, hnsw_pair *c, size_t nc, size_t m) {
    if (nc <= m) {
        pairs_sort(c, nc);
        return nc;
    }
    hnsw_pair kept[2 * 256]; /* m <= M0 <= 512 (hnsw_new) */
    TW_ASSERT(m <= sizeof kept / sizeof kept[0]);
    for (size_t i = nc / 2; i-- > 0;) minheap_sift(c, i, nc, c[i]);
    size_t no = 0, h = nc;
    while (h && no < m) {
        hnsw_pair x = c[0];
        minheap_pop(c, &h);
        const float *ve = hnsw_vec(ix, x.id);
        int good = 1;
        for (size_t j = 0; j < no; j++) {
            if (ix->fdist(ve, hnsw_vec(ix, kept[j].id), (size_t)ix->dim) < x.d) {
                good = 0;
                break;
            }
        }
        if (good) kept[no++] = x;
    }
    memcpy(c, kept, no * sizeof *c);
    return no;
}

static int has_link(_Atomic uint32_t *L, uint32_t n, uint32_t x) {
    for (uint32_t j = 1; j <= n; j++)
        if (ld(&L[j]) == x) return 1;
    return 0;
}

/* Writes a link list: entries first, then the count (readers load the count first). */
static void links_write(_Atomic uint32_t *L, const hnsw_pair *c, size_t n) {
    for (size_t j = 0; j < n; j++) st(&L[1 + j], c[j].id);
    st(&L[0], (uint32_t)n);
}

/* Adds `add` to the level-l list of node nb, shrinking it with the heuristic when full.
 * buf: room for M0 + 1 pairs. Takes nb's lock. */
static void connect_back(hnsw_index *ix, uint32_t nb, uint32_t add, int level, hnsw_pair *buf) {
    uint32_t maxn = (uint32_t)max_links(ix, level);
    slot_lock(ix, nb);
    _Atomic uint32_t *L = hnsw_links(ix, nb, level);
    uint32_t n = ld(&L[0]);
    if (!has_link(L, n, add)) {
        if (n < maxn) {
            st(&L[1 + n], add);
            st(&L[0], n + 1);
        } else {
            const float *vb = hnsw_vec(ix, nb);
            size_t nc = 0;
            buf[nc++] = (hnsw_pair){ix->fdist(vb, hnsw_vec(ix, add), (size_t)ix->dim), add};
            for (uint32_t j = 1; j <= n; j++) {
                uint32_t e = ld(&L[j]);
                buf[nc++] = (hnsw_pair){ix->fdist(vb, hnsw_vec(ix, e), (size_t)ix->dim), e};
            }
            nc = select_heuristic(ix, buf, nc, maxn);
            links_write(L, buf, nc);
        }
    }
    slot_unlock(ix, nb);
}

/* Links the filled slot into the graph at levels 0..its level (the paper's INSERT). The caller
 * holds grow shared. */
static tw_status graph_link(hnsw_index *ix, uint32_t slot, hnsw_scratch *s) {
    int level = ix->levels[slot];
    hnsw_query Q = {hnsw_vec(ix, slot), 0, NULL, 0, 0};
    uint64_t e;
    for (;;) {
        e = atomic_load(&ix->ep);
        if (e != HNSW_EP_NONE) break;
        uint64_t none = HNSW_EP_NONE;
        if (atomic_compare_exchange_strong(&ix->ep, &none, ep_pack(level, slot))) return TW_OK;
    }
    int top = (int)(e >> 32);
    uint32_t cur = (uint32_t)e;
    if (cur == slot) return TW_OK; /* a concurrent removal made this slot the entry already */
    float curd = qdist(ix, &Q, cur);
    for (int l = top; l > level; l--) search_greedy(ix, &Q, &cur, &curd, l);
    size_t efc = (size_t)ix->p.ef_construction;
    for (int l = level < top ? level : top; l >= 0; l--) {
        if (search_layer(ix, &Q, cur, curd, efc, l, NULL, s))
            return tw_error(TW_ERR_NOMEM, "hnsw: no memory for a search");
        if (grow_pairs(&s->tmp, &s->tmp_cap, s->nres + (size_t)ix->M0 + 2))
            return tw_error(TW_ERR_NOMEM, "hnsw: no memory for a search");
        size_t nc = 0, best = 0;
        for (size_t i = 0; i < s->nres; i++) {
            if (s->res[i].id == slot) continue;
            if (nc && pair_lt(s->res[i], s->tmp[best])) best = nc;
            s->tmp[nc++] = s->res[i];
        }
        if (!nc) continue;
        cur = s->tmp[best].id; /* the next level starts from the closest found here */
        curd = s->tmp[best].d;
        nc = select_heuristic(ix, s->tmp, nc, (size_t)ix->M);
        slot_lock(ix, slot);
        links_write(hnsw_links(ix, slot, l), s->tmp, nc);
        slot_unlock(ix, slot);
        hnsw_pair *buf = s->tmp + nc; /* room: tmp holds nres + M0 + 2 */
        for (size_t i = 0; i < nc; i++) connect_back(ix, s->tmp[i].id, slot, l, buf);
    }
    while (level > top) {
        if (atomic_compare_exchange_strong(&ix->ep, &e, ep_pack(level, slot))) break;
        if (e == HNSW_EP_NONE) continue;
        top = (int)(e >> 32);
    }
    return TW_OK;
}

static int random_level(hnsw_index *ix) {
    uint64_t c = atomic_fetch_add(&ix->level_ctr, 1);
    uint64_t x = splitmix64(ix->p.seed ^ splitmix64(c));
    double u = ((double)(x >> 11) + 0.5) * 0x1p-53; /* (0, 1) */
    double l = -log(u) * ix->mL;
    return l >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int)l;
}

/* Writes everything of a slot that searches read, and marks it live. The caller holds grow
 * exclusively (a reused slot) or shared (a fresh slot nobody can reach yet). */
static tw_status slot_fill(hnsw_index *ix, uint32_t slot, int64_t id, const float *v, const hnsw_payload *pl,
                           int level) {
    _Atomic uint32_t *up = NULL;
    if (ix->upper[slot] && ix->levels[slot] == level) {
        /* a reused slot of the same level: clear its lists in place */
        memset((void *)ix->upper[slot], 0, (size_t)level * (size_t)(1 + ix->M) * sizeof(uint32_t));
        up = ix->upper[slot];
    } else if (level > 0) {
        size_t bytes = (size_t)level * (size_t)(1 + ix->M) * sizeof(uint32_t);
        up = tw_calloc(1, bytes);
        if (!up) return tw_error(TW_ERR_NOMEM, "hnsw: no memory for the links of id %lld", (long long)id);
        atomic_fetch_add(&ix->upper_bytes, bytes);
    }
    if (ix->upper[slot] && ix->upper[slot] != up) {
        atomic_fetch_sub(&ix->upper_bytes, (size_t)ix->levels[slot] * (size_t)(1 + ix->M) * sizeof(uint32_t));
        tw_free((void *)ix->upper[slot]);
    }
    ix->upper[slot] = up;
    ix->levels[slot] = (uint8_t)level;
    ix->ids[slot] = id;
    if (pl) ix->payloads[slot] = *pl;
    else payload_none(&ix->payloads[slot]);
    memcpy(hnsw_vec(ix, slot), v, (size_t)ix->dim * sizeof(float));
    if (ix->p.storage == HNSW_INT8 && ix->trained) hnsw_quant_encode(ix, slot);
    st(&hnsw_links(ix, slot, 0)[0], 0);
    atomic_store_explicit(&ix->state[slot], HNSW_SLOT_LIVE, memory_order_release);
    return TW_OK;
}

/* ---- removal ----------------------------------------------------------------------------- */

/* The live slot of the highest level, as the new entry point (a scan: entry points are
 * removed about once per 1/N removals). */
static uint64_t ep_find(const hnsw_index *ix, uint32_t skip) {
    uint32_t n = atomic_load(&ix->n_slots), best = UINT32_MAX;
    int bl = -1;
    for (uint32_t s = 0; s < n; s++) {
        if (s == skip || slot_state(ix, s) != HNSW_SLOT_LIVE) continue;
        if (ix->levels[s] > bl) {
            bl = ix->levels[s];
            best = s;
        }
    }
    return best == UINT32_MAX ? HNSW_EP_NONE : ep_pack(bl, best);
}

/* Repairs the lists that link to the tombstone d: every neighbour of d that links back drops
 * d and picks again, by the heuristic, from its other links and d's links. s: scratch. */
static tw_status repair_links(hnsw_index *ix, uint32_t d, hnsw_scratch *s) {
    int dl = ix->levels[d];
    if (grow_pairs(&s->tmp, &s->tmp_cap, 2 * (size_t)ix->M0 + 4))
        return tw_error(TW_ERR_NOMEM, "hnsw: no memory to repair links");
    for (int l = 0; l <= dl; l++) {
        uint32_t maxn = (uint32_t)max_links(ix, l);
        _Atomic uint32_t *Ld = hnsw_links(ix, d, l);
        uint32_t nd = ld(&Ld[0]);
        if (nd > maxn) nd = maxn;
        uint32_t dn[512];
        TW_ASSERT(nd <= 512);
        for (uint32_t j = 0; j < nd; j++) dn[j] = ld(&Ld[1 + j]);
        for (uint32_t j = 0; j < nd; j++) {
            uint32_t nb = dn[j];
            if (nb == d || ix->levels[nb] < l || slot_state(ix, nb) == HNSW_SLOT_EMPTY) continue;
            slot_lock(ix, nb);
            _Atomic uint32_t *L = hnsw_links(ix, nb, l);
            uint32_t n = ld(&L[0]);
            if (n > maxn) n = maxn;
            if (has_link(L, n, d)) {
                const float *vb = hnsw_vec(ix, nb);
                size_t nc = 0;
                for (int pass = 0; pass < 2; pass++) {
                    uint32_t cnt = pass ? nd : n;
                    for (uint32_t t = 0; t < cnt; t++) {
                        uint32_t e = pass ? dn[t] : ld(&L[1 + t]);
                        if (e == d || e == nb || slot_state(ix, e) != HNSW_SLOT_LIVE || ix->levels[e] < l) continue;
                        int dup = 0;
                        for (size_t u = 0; u < nc && !dup; u++) dup = s->tmp[u].id == e;
                        if (!dup) s->tmp[nc++] = (hnsw_pair){ix->fdist(vb, hnsw_vec(ix, e), (size_t)ix->dim), e};
                    }
                }
                nc = select_heuristic(ix, s->tmp, nc, maxn);
                links_write(L, s->tmp, nc);
            }
            slot_unlock(ix, nb);
        }
    }
    return TW_OK;
}

/* Removes the live slot of id (the caller holds grow shared and has taken id out of the
 * map): tombstone, entry point moved, links repaired, slot onto the free list. */
static tw_status slot_remove(hnsw_index *ix, uint32_t slot, hnsw_scratch *s) {
    uint8_t live = HNSW_SLOT_LIVE;
    if (!atomic_compare_exchange_strong(&ix->state[slot], &live, HNSW_SLOT_TOMB)) return TW_OK;
    atomic_fetch_sub(&ix->count, 1);
    atomic_fetch_add(&ix->n_tomb, 1);
    uint64_t e = atomic_load(&ix->ep);
    while (e != HNSW_EP_NONE && (uint32_t)e == slot) {
        uint64_t ne = ep_find(ix, slot);
        if (atomic_compare_exchange_strong(&ix->ep, &e, ne)) break;
    }
    tw_status st_rep = repair_links(ix, slot, s);
    hnsw_sync *sy = ix->sync;
    pthread_mutex_lock(&sy->meta);
    tw_status st_free = hnsw_free_push(ix, slot);
    pthread_mutex_unlock(&sy->meta);
    /* a slot that cannot go onto the free list stays a tombstone: never reused, still correct */
    return st_rep != TW_OK ? st_rep : st_free;
}

/* ---- public: life cycle ------------------------------------------------------------------ */

tw_status hnsw_new(const hnsw_params *p, hnsw_index **out) {
    if (!out) return tw_error(TW_ERR_ARG, "hnsw_new: out is NULL");
    *out = NULL;
    if (!p) return tw_error(TW_ERR_ARG, "hnsw_new: params is NULL");
    if (p->dim < 1 || p->dim > 65536) return tw_error(TW_ERR_ARG, "hnsw_new: dim %d out of [1, 65536]", (int)p->dim);
    if ((unsigned)p->metric > HNSW_L2) return tw_error(TW_ERR_ARG, "hnsw_new: metric %d unknown", (int)p->metric);
    if ((unsigned)p->storage > HNSW_INT8) return tw_error(TW_ERR_ARG, "hnsw_new: storage %d unknown", (int)p->storage);
    int32_t M = p->M ? p->M : 16;
    if (M < 2 || M > 256) return tw_error(TW_ERR_ARG, "hnsw_new: M %d out of [2, 256]", (int)M);
    int32_t efc = p->ef_construction ? p->ef_construction : 200;
    if (efc < 1 || efc > 100000) return tw_error(TW_ERR_ARG, "hnsw_new: ef_construction %d out of [1, 100000]", (int)efc);
    int64_t cap = p->capacity ? p->capacity : 1024;
    if (cap < 1 || cap > (int64_t)UINT32_MAX - 2) return tw_error(TW_ERR_ARG, "hnsw_new: capacity %lld out of range", (long long)cap);

    hnsw_index *ix = tw_calloc(1, sizeof *ix);
    if (!ix) return tw_error(TW_ERR_NOMEM, "hnsw_new: no memory");
    ix->p = *p;
    ix->p.M = M;
    ix->p.ef_construction = efc;
    ix->p.capacity = cap;
    ix->dim = p->dim;
    ix->M = M;
    ix->M0 = 2 * M;
    ix->dim32 = ((size_t)p->dim + 31) & ~(size_t)31;
    ix->mL = 1.0 / log((double)M);
    ix->links0_bytes = (size_t)(1 + ix->M0) * sizeof(uint32_t);
    ix->block_size = ix->links0_bytes +
                     (p->storage == HNSW_F32 ? (size_t)p->dim * sizeof(float) : ix->dim32 + sizeof(float));
    ix->k = hnsw_kernels_select();
    ix->fdist = p->metric == HNSW_L2 ? ix->k.l2 : ix->k.negdot;
    atomic_init(&ix->ep, HNSW_EP_NONE);
    atomic_init(&ix->n_slots, 0);
    atomic_init(&ix->count, 0);
    atomic_init(&ix->level_ctr, 0);
    atomic_init(&ix->n_tomb, 0);
    atomic_init(&ix->upper_bytes, 0);
    ix->sync = tw_calloc(1, sizeof *ix->sync);
    if (!ix->sync) {
        tw_free(ix);
        return tw_error(TW_ERR_NOMEM, "hnsw_new: no memory");
    }
    /* writers first: growing and slot reuse are short, and with glibc's default (readers
     * first) a stream of searches starves them */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->sync->grow, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&ix->sync->meta, NULL);
    pthread_mutex_init(&ix->sync->pool, NULL);
    tw_status st0 = TW_OK;
    if (p->storage == HNSW_INT8) {
        ix->qmid = tw_calloc((size_t)p->dim, sizeof(float));
        ix->qscale = tw_calloc((size_t)p->dim, sizeof(float));
        if (!ix->qmid || !ix->qscale) st0 = tw_error(TW_ERR_NOMEM, "hnsw_new: no memory");
    }
    if (st0 == TW_OK) st0 = hnsw_reserve(ix, (size_t)cap);
    if (st0 == TW_OK) st0 = map_resize(ix, 64);
    if (st0 != TW_OK) {
        hnsw_free(ix);
        return st0;
    }
    *out = ix;
    return TW_OK;
}

void hnsw_free(hnsw_index *ix) {
    if (!ix) return;
    if (ix->upper)
        for (size_t s = 0; s < ix->cap; s++) tw_free((void *)ix->upper[s]);
    tw_free(ix->block0);
    tw_free(ix->f32v);
    tw_free((void *)ix->upper);
    tw_free(ix->levels);
    tw_free(ix->ids);
    tw_free(ix->payloads);
    tw_free((void *)ix->state);
    tw_free((void *)ix->locks);
    tw_free(ix->qmid);
    tw_free(ix->qscale);
    tw_free(ix->map_keys);
    tw_free(ix->map_vals);
    tw_free(ix->free_slots);
    if (ix->sync) {
        hnsw_scratch *s = ix->sync->pool_head;
        while (s) {
            hnsw_scratch *nx = s->next;
            scratch_free(s);
            s = nx;
        }
        pthread_rwlock_destroy(&ix->sync->grow);
        pthread_mutex_destroy(&ix->sync->meta);
        pthread_mutex_destroy(&ix->sync->pool);
        tw_free(ix->sync);
    }
    tw_free(ix);
}

/* ---- public: insert / update / remove ---------------------------------------------------- */

/* Puts a slot that could not be used (state EMPTY, or a tombstone popped for reuse and left
 * as it was) back as a tombstone on the free list. Takes meta; the caller holds grow. */
static void slot_discard(hnsw_index *ix, uint32_t slot) {
    uint8_t prev = atomic_exchange(&ix->state[slot], HNSW_SLOT_TOMB);
    if (prev != HNSW_SLOT_TOMB) atomic_fetch_add(&ix->n_tomb, 1);
    pthread_mutex_lock(&ix->sync->meta);
    (void)hnsw_free_push(ix, slot); /* on NOMEM it stays an unlisted tombstone: never reused */
    pthread_mutex_unlock(&ix->sync->meta);
}

/* A slot filled with (id, v, payload, level) under the exclusive lock: a tombstone's slot to
 * reuse, or a fresh one after growing the arrays. On return the caller holds grow shared
 * again. */
static tw_status slot_take_exclusive(hnsw_index *ix, int64_t id, const float *v, const hnsw_payload *pl, int level,
                                     uint32_t *out) {
    hnsw_sync *sy = ix->sync;
    pthread_rwlock_unlock(&sy->grow);
    pthread_rwlock_wrlock(&sy->grow);
    tw_status rc = TW_OK;
    int reused = 0;
    uint32_t slot = 0;
    pthread_mutex_lock(&sy->meta);
    if (ix->n_free) {
        slot = ix->free_slots[--ix->n_free];
        reused = 1;
        /* the slot keeps its level: levels are drawn independently per slot, so this is a
         * draw from the same distribution, and links that still point to the tombstone (from
         * nodes that were not its neighbours, so not repaired) stay links to a node of that
         * level */
        level = ix->levels[slot];
    } else {
        uint32_t n = atomic_load(&ix->n_slots);
        if (n == ix->cap) rc = hnsw_reserve(ix, ix->cap + (ix->cap >> 1) + 64);
        if (rc == TW_OK) {
            slot = n;
            atomic_store(&ix->n_slots, n + 1);
        }
    }
    pthread_mutex_unlock(&sy->meta);
    if (rc == TW_OK) {
        rc = slot_fill(ix, slot, id, v, pl, level); /* fails before it changes anything */
        if (rc == TW_OK && reused) atomic_fetch_sub(&ix->n_tomb, 1);
    }
    pthread_rwlock_unlock(&sy->grow);
    pthread_rwlock_rdlock(&sy->grow);
    if (rc != TW_OK && (reused || atomic_load(&ix->n_slots) > slot)) {
        if (reused || slot_state(ix, slot) == HNSW_SLOT_EMPTY) slot_discard(ix, slot);
    }
    *out = slot;
    return rc;
}

/* hnsw_add with the vector already checked and prepared (normalised) in v. An update inserts
 * the new vector first and removes the old one after, so a failed update leaves the old one. */
static tw_status add_prepared(hnsw_index *ix, int64_t id, const float *v, const hnsw_payload *pl) {
    hnsw_sync *sy = ix->sync;
    pthread_rwlock_rdlock(&sy->grow);
    tw_status rc = TW_OK;
    int level = random_level(ix);
    uint32_t slot = 0;
    pthread_mutex_lock(&sy->meta);
    int fresh = ix->n_free == 0 && atomic_load(&ix->n_slots) < ix->cap;
    if (fresh) {
        slot = atomic_load(&ix->n_slots);
        atomic_store(&ix->n_slots, slot + 1);
    }
    pthread_mutex_unlock(&sy->meta);
    if (fresh) {
        rc = slot_fill(ix, slot, id, v, pl, level);
        if (rc != TW_OK) slot_discard(ix, slot);
    } else {
        rc = slot_take_exclusive(ix, id, v, pl, level, &slot);
    }
    hnsw_scratch *s = NULL;
    if (rc == TW_OK) {
        s = scratch_take(ix);
        if (!s) rc = tw_error(TW_ERR_NOMEM, "hnsw_add: id %lld: no memory for a search", (long long)id);
    }
    uint32_t old = 0;
    int had = 0;
    if (rc == TW_OK) {
        pthread_mutex_lock(&sy->meta);
        had = hnsw_map_get(ix, id, &old);
        rc = hnsw_map_put(ix, id, slot);
        pthread_mutex_unlock(&sy->meta);
    }
    if (rc != TW_OK) {
        if (slot_state(ix, slot) == HNSW_SLOT_LIVE) slot_discard(ix, slot); /* filled, never linked */
    } else {
        atomic_fetch_add(&ix->count, 1);
        rc = graph_link(ix, slot, s);
        /* a link failure (NOMEM) leaves a live node with fewer links: still reachable through
         * those it has; the error is reported */
        if (had && old != slot && ix->ids[old] == id) (void)slot_remove(ix, old, s);
    }
    int need_train = ix->p.storage == HNSW_INT8 && !ix->trained && atomic_load(&ix->count) >= HNSW_TRAIN_N;
    scratch_give(ix, s);
    pthread_rwlock_unlock(&sy->grow);

    /* int8: learn the ranges once enough vectors are in (every reader out) */
    if (need_train) {
        pthread_rwlock_wrlock(&sy->grow);
        if (!ix->trained) quant_train(ix);
        pthread_rwlock_unlock(&sy->grow);
    }
    return rc;
}

/* Checks v and writes its prepared form (normalised for cosine) into out (dim floats). */
static tw_status vec_prepare(const hnsw_index *ix, int64_t id, const float *v, float *out) {
    double n2 = 0;
    for (int32_t i = 0; i < ix->dim; i++) {
        if (!isfinite(v[i]))
            return tw_error(TW_ERR_ARG, "hnsw_add: id %lld: value %d is not finite", (long long)id, (int)i);
        n2 += (double)v[i] * v[i];
    }
    if (ix->p.metric == HNSW_COSINE) {
        if (n2 == 0) return tw_error(TW_ERR_ARG, "hnsw_add: id %lld: zero vector with the cosine metric", (long long)id);
        float inv = (float)(1.0 / sqrt(n2));
        for (int32_t i = 0; i < ix->dim; i++) out[i] = v[i] * inv;
    } else {
        memcpy(out, v, (size_t)ix->dim * sizeof(float));
    }
    return TW_OK;
}

static tw_status add_one(hnsw_index *ix, int64_t id, const float *vec, const hnsw_payload *pl, float *buf) {
    if (id == INT64_MIN) return tw_error(TW_ERR_ARG, "hnsw_add: id INT64_MIN is reserved");
    tw_status rc = vec_prepare(ix, id, vec, buf);
    if (rc != TW_OK) return rc;
    return add_prepared(ix, id, buf, pl);
}

tw_status hnsw_add(hnsw_index *ix, int64_t id, const float *vec, const hnsw_payload *payload) {
    if (!ix || !vec) return tw_error(TW_ERR_ARG, "hnsw_add: index or vector is NULL");
    float stackbuf[1024];
    float *buf = ix->dim <= 1024 ? stackbuf : tw_malloc((size_t)ix->dim * sizeof(float));
    if (!buf) return tw_error(TW_ERR_NOMEM, "hnsw_add: no memory");
    tw_status rc = add_one(ix, id, vec, payload, buf);
    if (buf != stackbuf) tw_free(buf);
    return rc;
}

typedef struct {
    hnsw_index *ix;
    const int64_t *ids;
    const float *vecs;
    const hnsw_payload *payloads;
    int64_t n;
    _Atomic int64_t next;
    _Atomic int failed;
    pthread_mutex_t err_lock;
    tw_status err;
    char msg[512];
} batch_ctx;

static void *batch_worker(void *arg) {
    batch_ctx *b = arg;
    hnsw_index *ix = b->ix;
    float *buf = tw_malloc((size_t)ix->dim * sizeof(float));
    tw_status rc = buf ? TW_OK : tw_error(TW_ERR_NOMEM, "hnsw_add_batch: no memory");
    while (rc == TW_OK && !atomic_load(&b->failed)) {
        int64_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->n) break;
        rc = add_one(ix, b->ids[i], b->vecs + (size_t)i * (size_t)ix->dim, b->payloads ? &b->payloads[i] : NULL, buf);
    }
    if (rc != TW_OK) {
        pthread_mutex_lock(&b->err_lock);
        if (!atomic_load(&b->failed)) {
            b->err = rc;
            snprintf(b->msg, sizeof b->msg, "%s", tw_errmsg());
            atomic_store(&b->failed, 1);
        }
        pthread_mutex_unlock(&b->err_lock);
    }
    tw_free(buf);
    return NULL;
}

tw_status hnsw_add_batch(hnsw_index *ix, const int64_t *ids, const float *vecs, const hnsw_payload *payloads,
                         int64_t n, int n_threads) {
    if (!ix || n < 0 || (n > 0 && (!ids || !vecs))) return tw_error(TW_ERR_ARG, "hnsw_add_batch: bad arguments");
    if (n_threads <= 0) n_threads = tw_threads_get();
    if (n_threads > 256) n_threads = 256;
    if (n_threads > n) n_threads = (int)(n > 0 ? n : 1);
    batch_ctx b = {.ix = ix, .ids = ids, .vecs = vecs, .payloads = payloads, .n = n, .err = TW_OK};
    atomic_init(&b.next, 0);
    atomic_init(&b.failed, 0);
    pthread_mutex_init(&b.err_lock, NULL);
    pthread_t th[256];
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        if (pthread_create(&th[started], NULL, batch_worker, &b) != 0) break;
        started++;
    }
    batch_worker(&b); /* the caller is one of the workers */
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&b.err_lock);
    if (b.err != TW_OK) return tw_error(b.err, "%s", b.msg);
    return TW_OK;
}

tw_status hnsw_remove(hnsw_index *ix, int64_t id) {
    if (!ix) return tw_error(TW_ERR_ARG, "hnsw_remove: index is NULL");
    hnsw_sync *sy = ix->sync;
    pthread_rwlock_rdlock(&sy->grow);
    uint32_t slot;
    pthread_mutex_lock(&sy->meta);
    int had = hnsw_map_get(ix, id, &slot);
    if (had) map_del(ix, id);
    pthread_mutex_unlock(&sy->meta);
    tw_status rc;
    if (!had) {
        rc = tw_error(TW_ERR_NOT_FOUND, "hnsw_remove: id %lld is not in the index", (long long)id);
    } else {
        hnsw_scratch *s = scratch_take(ix);
        if (!s) {
            /* without room to repair, the node still leaves the results: a tombstone kept
             * out of the free list (never reused) is correct, only a little slower */
            uint8_t live = HNSW_SLOT_LIVE;
            if (atomic_compare_exchange_strong(&ix->state[slot], &live, HNSW_SLOT_TOMB)) {
                atomic_fetch_sub(&ix->count, 1);
                atomic_fetch_add(&ix->n_tomb, 1);
                uint64_t e = atomic_load(&ix->ep);
                while (e != HNSW_EP_NONE && (uint32_t)e == slot)
                    if (atomic_compare_exchange_strong(&ix->ep, &e, ep_find(ix, slot))) break;
            }
            rc = TW_OK;
        } else {
            rc = slot_remove(ix, slot, s);
            scratch_give(ix, s);
            if (rc == TW_ERR_NOMEM) rc = TW_OK; /* removed; only the repair or reuse was skipped */
        }
    }
    pthread_rwlock_unlock(&sy->grow);
    return rc;
}

int hnsw_contains(const hnsw_index *ix, int64_t id) {
    if (!ix) return 0;
    uint32_t slot;
    pthread_mutex_lock(&ix->sync->meta);
    int r = hnsw_map_get(ix, id, &slot);
    pthread_mutex_unlock(&ix->sync->meta);
    return r;
}

/* ---- public: search ---------------------------------------------------------------------- */

/* The k closest matching live slots by exact f32 distance, sorted, into hits. */
static int exact_scan(const hnsw_index *ix, const float *q, int32_t k, const hnsw_filter *f, hnsw_scratch *s,
                      hnsw_hit *hits) {
    if (grow_pairs(&s->res, &s->res_cap, (size_t)k + 1)) return -1;
    s->nres = 0;
    uint32_t n = atomic_load(&ix->n_slots);
    for (uint32_t i = 0; i < n; i++) {
        if (!returnable(ix, i, f)) continue;
        float d = ix->fdist(q, hnsw_vec(ix, i), (size_t)ix->dim);
        hnsw_pair p = {d, i};
        if (s->nres < (size_t)k) maxheap_push(s->res, &s->nres, p);
        else if (pair_lt(p, s->res[0])) maxheap_replace_top(s->res, s->nres, p);
    }
    pairs_sort(s->res, s->nres);
    for (size_t i = 0; i < s->nres; i++) hits[i] = (hnsw_hit){ix->ids[s->res[i].id], -s->res[i].d};
    return (int)s->nres;
}

static tw_status search_args(const hnsw_index *ix, const float *q, int32_t k, hnsw_hit *hits, int32_t *n_found,
                             const char *fn) {
    if (n_found) *n_found = 0;
    if (!ix || !q || !n_found) return tw_error(TW_ERR_ARG, "%s: index, query or n_found is NULL", fn);
    if (k < 0) return tw_error(TW_ERR_ARG, "%s: k %d is negative", fn, (int)k);
    if (k > 0 && !hits) return tw_error(TW_ERR_ARG, "%s: hits is NULL", fn);
    return TW_OK;
}

tw_status hnsw_search_exact(const hnsw_index *ix, const float *q, int32_t k, const hnsw_filter *filter,
                            hnsw_hit *hits, int32_t *n_found) {
    tw_status rc = search_args(ix, q, k, hits, n_found, "hnsw_search_exact");
    if (rc != TW_OK || k == 0) return rc;
    hnsw_sync *sy = ix->sync;
    pthread_rwlock_rdlock(&sy->grow);
    hnsw_scratch *s = scratch_take(ix);
    if (!s) rc = tw_error(TW_ERR_NOMEM, "hnsw_search_exact: no memory");
    if (rc == TW_OK) rc = query_prepare(ix, q, s, "hnsw_search_exact: query");
    if (rc == TW_OK) {
        int n = exact_scan(ix, s->qbuf, k, filter_effective(filter), s, hits);
        if (n < 0) rc = tw_error(TW_ERR_NOMEM, "hnsw_search_exact: no memory");
        else *n_found = n;
    }
    scratch_give(ix, s);
    pthread_rwlock_unlock(&sy->grow);
    return rc;
}

/* Whether fewer than `limit` live slots match f (counting stops at limit). */
static int filter_selective(const hnsw_index *ix, const hnsw_filter *f, size_t limit) {
    uint32_t n = atomic_load(&ix->n_slots);
    size_t m = 0;
    for (uint32_t i = 0; i < n && m < limit; i++) m += returnable(ix, i, f);
    return m < limit;
}

static tw_status search_locked(const hnsw_index *ix, hnsw_scratch *s, int32_t k, int32_t ef,
                               const hnsw_filter *f, hnsw_hit *hits, int32_t *n_found) {
    size_t efs = ef <= 0 ? (size_t)(k > 64 ? k : 64) : (size_t)(ef > k ? ef : k);
    uint64_t e = atomic_load(&ix->ep);
    if (e == HNSW_EP_NONE) return TW_OK;
    int64_t live = atomic_load(&ix->count);
    if (f) {
        size_t limit = (size_t)(live / 50);
        if (limit < 4 * efs) limit = 4 * efs;
        if (filter_selective(ix, f, limit)) {
            int n = exact_scan(ix, s->qbuf, k, f, s, hits);
            if (n < 0) return tw_error(TW_ERR_NOMEM, "hnsw_search: no memory");
            *n_found = n;
            return TW_OK;
        }
    }
    hnsw_query Q = {s->qbuf, 0, NULL, 0, 0};
    if (ix->p.storage == HNSW_INT8 && ix->trained) query_quantise(ix, s, &Q);
    uint32_t cur = (uint32_t)e;
    float curd = qdist(ix, &Q, cur);
    for (int l = (int)(e >> 32); l > 0; l--) search_greedy(ix, &Q, &cur, &curd, l);
    if (search_layer(ix, &Q, cur, curd, efs, 0, f, s)) return tw_error(TW_ERR_NOMEM, "hnsw_search: no memory");
    if (Q.use8) { /* re-rank the candidates by their exact f32 distance */
        /* the f32 vectors are cold (the search read codes): their first lines are requested
         * together, and the rest of each one while the previous is computed (this loop was a
         * quarter of an int8 search without it) */
        size_t vbytes = (size_t)ix->dim * sizeof(float);
        for (size_t i = 0; i < s->nres; i++) HNSW_PREFETCH(hnsw_vec(ix, s->res[i].id));
        for (size_t i = 0; i < s->nres; i++) {
            if (i + 1 < s->nres) {
                const char *nx = (const char *)hnsw_vec(ix, s->res[i + 1].id);
                for (size_t o = 64; o < vbytes; o += 64) HNSW_PREFETCH(nx + o);
            }
            s->res[i].d = ix->fdist(s->qbuf, hnsw_vec(ix, s->res[i].id), (size_t)ix->dim);
        }
    }
    pairs_sort(s->res, s->nres);
    size_t n = s->nres < (size_t)k ? s->nres : (size_t)k;
    for (size_t i = 0; i < n; i++) hits[i] = (hnsw_hit){ix->ids[s->res[i].id], -s->res[i].d};
    *n_found = (int32_t)n;
    /* fewer than k although more match (a part of the graph cut off by removals, or a filter
     * the graph search could not satisfy): the exact scan keeps hnsw.h's promise */
    if (n < (size_t)k && (f || (int64_t)n < live)) {
        int m = exact_scan(ix, s->qbuf, k, f, s, hits);
        if (m < 0) return tw_error(TW_ERR_NOMEM, "hnsw_search: no memory");
        *n_found = m;
    }
    return TW_OK;
}

tw_status hnsw_search(const hnsw_index *ix, const float *q, int32_t k, int32_t ef, const hnsw_filter *filter,
                      hnsw_hit *hits, int32_t *n_found) {
    tw_status rc = search_args(ix, q, k, hits, n_found, "hnsw_search");
    if (rc != TW_OK || k == 0) return rc;
    hnsw_sync *sy = ix->sync;
    pthread_rwlock_rdlock(&sy->grow);
    hnsw_scratch *s = scratch_take(ix);
    if (!s) rc = tw_error(TW_ERR_NOMEM, "hnsw_search: no memory");
    if (rc == TW_OK) rc = query_prepare(ix, q, s, "hnsw_search: query");
    if (rc == TW_OK) rc = search_locked(ix, s, k, ef, filter_effective(filter), hits, n_found);
    scratch_give(ix, s);
    pthread_rwlock_unlock(&sy->grow);
    return rc;
}

/* ---- public: information ----------------------------------------------------------------- */

int64_t hnsw_count(const hnsw_index *ix) { return ix ? atomic_load(&ix->count) : 0; }
int32_t hnsw_dim(const hnsw_index *ix) { return ix ? ix->dim : 0; }
hnsw_metric hnsw_get_metric(const hnsw_index *ix) { return ix ? ix->p.metric : HNSW_COSINE; }

size_t hnsw_memory_bytes(const hnsw_index *ix) {
    if (!ix) return 0;
    pthread_rwlock_rdlock(&ix->sync->grow);
    size_t per = ix->block_size + sizeof(*ix->upper) + 1 + sizeof(int64_t) + sizeof(hnsw_payload) + 1 + 1;
    if (ix->p.storage == HNSW_INT8) per += (size_t)ix->dim * sizeof(float);
    size_t b = sizeof *ix + ix->cap * per + atomic_load(&ix->upper_bytes);
    pthread_mutex_lock(&ix->sync->meta);
    b += ix->map_cap * (sizeof(int64_t) + sizeof(uint32_t)) + ix->free_cap * sizeof(uint32_t);
    pthread_mutex_unlock(&ix->sync->meta);
    if (ix->qmid) b += 2 * (size_t)ix->dim * sizeof(float);
    pthread_rwlock_unlock(&ix->sync->grow);
    return b;
}

tw_status hnsw_each_id(const hnsw_index *ix, int (*fn)(void *ctx, int64_t id), void *ctx) {
    if (!ix || !fn) return tw_error(TW_ERR_ARG, "hnsw_each_id: index or fn is NULL");
    pthread_rwlock_rdlock(&ix->sync->grow);
    uint32_t n = atomic_load(&ix->n_slots);
    for (uint32_t s = 0; s < n; s++)
        if (slot_state(ix, s) == HNSW_SLOT_LIVE && fn(ctx, ix->ids[s])) break;
    pthread_rwlock_unlock(&ix->sync->grow);
    return TW_OK;
}
