/* hnsw_impl.h: the private layout of the HNSW index (hnsw.h), shared by hnsw.c (graph, search,
 * locking), hnsw_io.c (files) and hnsw_dist.c (distance kernels). Nothing outside these three
 * files includes it.
 *
 * Slots. Every vector lives in a slot (uint32 index). Per slot:
 *   block0[slot]  one block of block_size bytes: the layer-0 link list, (1 + M0) uint32 (count,
 *                 then M0 neighbour slots), followed by the data the layer-0 search reads:
 *                   f32 storage:  dim floats (the vector, normalised for cosine)
 *                   int8 storage: dim32 int8 codes (zero padded), then one float: |x^|^2 of the
 *                                 dequantised vector (for L2)
 *                 so that one search step touches one contiguous block (hnswlib's layout idea).
 *   f32v          int8 storage only: (cap, dim) floats, the exact vectors for re-ranking and for
 *                 building the graph.
 *   upper[slot]   level > 0: level * (1 + M) uint32, the link lists of levels 1..level.
 *   levels, ids, payloads, state (EMPTY / LIVE / TOMB), lock (one spin lock byte per slot).
 * Link entries and counts are C11 atomics, written with release and read with acquire (plain
 * moves on x86), so that a search can read a list while an insert rewrites it (see hnsw.c).
 */
#ifndef TWIN_HNSW_IMPL_H
#define TWIN_HNSW_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "hnsw.h"

#define HNSW_MAX_LEVEL 30
#define HNSW_EP_NONE UINT64_MAX
#define HNSW_MAP_EMPTY INT64_MIN
/* int8: ranges are learned from the first HNSW_TRAIN_N vectors; until then searches use f32 */
#define HNSW_TRAIN_N 1024

enum { HNSW_SLOT_EMPTY = 0, HNSW_SLOT_LIVE = 1, HNSW_SLOT_TOMB = 2 };

typedef struct {
    float d; /* distance: lower is closer (L2: squared distance; ip/cosine: -dot) */
    uint32_t id; /* slot */
} hnsw_pair;

/* Distance kernels (hnsw_dist.c). n: elements; dots8: n a multiple of 32. */
typedef float (*hnsw_fdist_fn)(const float *a, const float *b, size_t n);
typedef int32_t (*hnsw_dots8_fn)(const int8_t *a, const int8_t *b, size_t n);
typedef struct {
    hnsw_fdist_fn l2, negdot;
    hnsw_dots8_fn dots8;
    int simd; /* 1: AVX2/FMA variants */
} hnsw_kernels;
/* The AVX2/FMA kernels when this CPU has them and TWIN_CPU_PORTABLE is unset, else scalar. */
hnsw_kernels hnsw_kernels_select(void);
hnsw_kernels hnsw_kernels_scalar(void);

/* Per-thread search state, kept in a pool on the index (taken and given back per call). */
typedef struct hnsw_scratch {
    uint16_t *tags; /* (tags_cap) visited marks: tags[slot] == epoch means visited */
    size_t tags_cap;
    uint16_t epoch;
    hnsw_pair *cand, *res; /* heaps: candidates (min), results (max) */
    size_t cand_cap, res_cap, ncand, nres;
    hnsw_pair *tmp; /* (tmp_cap) heuristic input / output */
    size_t tmp_cap;
    float *qbuf; /* (dim) the prepared query */
    int8_t *q8;  /* (dim32) the quantised query */
    struct hnsw_scratch *next;
} hnsw_scratch;

typedef struct {
    pthread_rwlock_t grow;  /* shared: any use of slot storage; exclusive: grow, slot reuse,
                               int8 training */
    pthread_mutex_t meta;   /* id map, free list, slot allocation */
    pthread_mutex_t pool;   /* the scratch pool */
    hnsw_scratch *pool_head;
} hnsw_sync;

struct hnsw_index {
    hnsw_params p;
    int32_t dim, M, M0;
    size_t dim32;       /* dim rounded up to 32 (int8 codes) */
    double mL;          /* 1 / ln(M) */
    size_t links0_bytes, block_size;
    hnsw_kernels k;
    hnsw_fdist_fn fdist; /* the metric's f32 distance */

    /* slot storage (grow lock) */
    size_t cap;
    _Atomic uint32_t n_slots; /* slots handed out (meta) */
    uint8_t *block0;          /* (cap, block_size) */
    float *f32v;              /* (cap, dim), int8 storage only */
    _Atomic uint32_t **upper; /* (cap) */
    uint8_t *levels;          /* (cap) */
    int64_t *ids;             /* (cap) */
    hnsw_payload *payloads;   /* (cap) */
    _Atomic uint8_t *state;   /* (cap) */
    _Atomic uint8_t *locks;   /* (cap) */
    _Atomic size_t upper_bytes;

    /* int8 quantisation: x_i ~ qmid[i] + qscale[i] * code_i, code in [-127, 127] */
    int trained;
    float *qmid, *qscale; /* (dim) */

    _Atomic uint64_t ep;        /* (level << 32) | slot, or HNSW_EP_NONE */
    _Atomic int64_t count;      /* live vectors */
    _Atomic uint64_t level_ctr; /* insertions so far: the level generator's counter */

    /* meta mutex */
    int64_t *map_keys; /* (map_cap) open addressing, HNSW_MAP_EMPTY = free */
    uint32_t *map_vals;
    size_t map_cap, map_n;
    uint32_t *free_slots; /* tombstones waiting for reuse */
    size_t n_free, free_cap;
    _Atomic size_t n_tomb; /* tombstones in the graph (searches must skip them) */

    hnsw_sync *sync; /* behind a pointer: searches on a const index still lock */
};

static inline _Atomic uint32_t *hnsw_links(const hnsw_index *ix, uint32_t slot, int level) {
    if (level == 0) return (_Atomic uint32_t *)(void *)(ix->block0 + (size_t)slot * ix->block_size);
    return ix->upper[slot] + (size_t)(level - 1) * (size_t)(1 + ix->M);
}
static inline float *hnsw_vec(const hnsw_index *ix, uint32_t slot) {
    if (ix->p.storage == HNSW_F32)
        return (float *)(void *)(ix->block0 + (size_t)slot * ix->block_size + ix->links0_bytes);
    return ix->f32v + (size_t)slot * (size_t)ix->dim;
}
static inline int8_t *hnsw_codes(const hnsw_index *ix, uint32_t slot) {
    return (int8_t *)(ix->block0 + (size_t)slot * ix->block_size + ix->links0_bytes);
}
static inline float *hnsw_code_norm(const hnsw_index *ix, uint32_t slot) {
    return (float *)(void *)(ix->block0 + (size_t)slot * ix->block_size + ix->links0_bytes + ix->dim32);
}

/* hnsw.c helpers for hnsw_io.c (the caller holds no lock; the index is not shared yet). */
tw_status hnsw_reserve(hnsw_index *ix, size_t cap);
tw_status hnsw_map_put(hnsw_index *ix, int64_t id, uint32_t slot);
int hnsw_map_get(const hnsw_index *ix, int64_t id, uint32_t *slot);
tw_status hnsw_free_push(hnsw_index *ix, uint32_t slot);
void hnsw_quant_encode(hnsw_index *ix, uint32_t slot);

#endif
