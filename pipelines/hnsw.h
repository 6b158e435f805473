/* hnsw.h: twin's own HNSW vector index (Malkov & Yashunin, "Efficient and robust approximate
 * nearest neighbor search using Hierarchical Navigable Small World graphs", 2016/2018).
 *
 *   hnsw_new(params, &ix) | hnsw_load(path, &ix)
 *   hnsw_add(ix, id, vec, payload)      insert, or update when id is present
 *   hnsw_remove(ix, id)                 slot reused by a later insert, links repaired
 *   hnsw_search(ix, q, k, ef, filter, hits, &n)
 *   hnsw_save(ix, path)                 tmp file + rename; magic, version, dim, metric, checksum
 *   hnsw_free(ix)
 *
 * Metrics: cosine (vectors normalised on insert and query; score = cosine similarity), inner
 * product (score = dot), L2 (score = -squared distance, so that higher is better for every
 * metric). Storage: f32, or int8 scalar quantization (per-dimension min/max learned from the
 * first vectors) with the candidates re-ranked by exact f32 scores (the f32 copy is kept in
 * the file for that). Neighbour selection uses the paper's heuristic (algorithm 4).
 * Payload filters are applied during the graph search (filtered-out nodes are traversed but not
 * returned); when the filter matches few vectors (under ~2% or under 4*ef) the search is an
 * exact scan of the matching ones, so a filtered query still returns k results when k exist.
 *
 * Thread safety: hnsw_add / hnsw_remove / hnsw_search may run concurrently from many threads
 * on one index (the locking design is written at the top of hnsw.c); hnsw_save runs with no
 * concurrent writer; hnsw_free with nothing else.
 */
#ifndef TWIN_HNSW_H
#define TWIN_HNSW_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hnsw_index hnsw_index;

typedef enum { HNSW_COSINE = 0, HNSW_IP, HNSW_L2 } hnsw_metric;
typedef enum { HNSW_F32 = 0, HNSW_INT8 } hnsw_storage;

typedef struct {
    int32_t dim;
    hnsw_metric metric;
    hnsw_storage storage;
    int32_t M;               /* default 16 (layer 0 gets 2*M) */
    int32_t ef_construction; /* default 200 */
    int64_t capacity;        /* initial slots; grows as needed. default 1024 */
    uint64_t seed;           /* level generator; default 42 */
} hnsw_params;
void hnsw_params_default(hnsw_params *p, int32_t dim, hnsw_metric metric);

/* What filters see of each vector (for twin: of its chunk's document). */
typedef struct {
    int64_t author_id;    /* 0: none */
    int32_t platform;     /* wh_platform, -1: none */
    int32_t doc_type;     /* 0 prose, 1 code (chunk kind), -1: none */
    int32_t published_day;/* days since 1970-01-01, INT32_MIN when unknown */
} hnsw_payload;

/* Zero-initialise, then set what to match; a field left at its zero value matches anything
 * (platform and doc_type use -1 for "any": hnsw_filter_init sets them). */
typedef struct {
    int64_t author_id;   /* 0: any */
    int32_t platform;    /* -1: any */
    int32_t doc_type;    /* -1: any */
    int32_t day_from, day_to; /* inclusive; INT32_MIN / INT32_MAX: open. Unknown dates never
                                 match a bounded range. */
} hnsw_filter;
void hnsw_filter_init(hnsw_filter *f);

typedef struct {
    int64_t id;
    float score; /* higher is better (see metrics above) */
} hnsw_hit;

tw_status hnsw_new(const hnsw_params *p, hnsw_index **out);
void hnsw_free(hnsw_index *ix); /* NULL is a no-op */

/* Inserts vec (dim floats) under id (any int64 except INT64_MIN), or replaces the vector and
 * payload of id when present. payload may be NULL (no payload). TW_ERR_ARG for a non-finite
 * value or a zero vector with cosine. */
tw_status hnsw_add(hnsw_index *ix, int64_t id, const float *vec, const hnsw_payload *payload);
/* Inserts n vectors (n, dim) with n_threads threads (0: tw_threads_get()). */
tw_status hnsw_add_batch(hnsw_index *ix, const int64_t *ids, const float *vecs,
                         const hnsw_payload *payloads, int64_t n, int n_threads);
/* TW_ERR_NOT_FOUND when id is absent. */
tw_status hnsw_remove(hnsw_index *ix, int64_t id);
int hnsw_contains(const hnsw_index *ix, int64_t id);

/* Up to k nearest to q (dim floats), best first, into hits (k entries); *n_found gets how many
 * (fewer than k only when fewer than k vectors match). ef: candidate list size, raised to k
 * when smaller; 0: max(k, 64). filter may be NULL. k = 0 gives *n_found = 0. */
tw_status hnsw_search(const hnsw_index *ix, const float *q, int32_t k, int32_t ef,
                      const hnsw_filter *filter, hnsw_hit *hits, int32_t *n_found);
/* Exact scan with the same scores (for recall measurements and tests). */
tw_status hnsw_search_exact(const hnsw_index *ix, const float *q, int32_t k,
                            const hnsw_filter *filter, hnsw_hit *hits, int32_t *n_found);

int64_t hnsw_count(const hnsw_index *ix);      /* live vectors */
int32_t hnsw_dim(const hnsw_index *ix);
hnsw_metric hnsw_get_metric(const hnsw_index *ix);
size_t hnsw_memory_bytes(const hnsw_index *ix); /* vectors + graph + payloads */
/* Calls fn for each live id (any order); fn returns non-zero to stop. */
tw_status hnsw_each_id(const hnsw_index *ix, int (*fn)(void *ctx, int64_t id), void *ctx);

/* Writes the index to path atomically (tmp + fsync + rename). */
tw_status hnsw_save(const hnsw_index *ix, const char *path);
/* Maps the file and builds an index from it (inserts after loading copy-on-write what they
 * change). A damaged or foreign file is refused with TW_ERR_FORMAT naming the path and what is
 * wrong (magic, version, checksum, sizes). */
tw_status hnsw_load(const char *path, hnsw_index **out);

/* Standard ANN benchmark files (little-endian: int32 dim, then dim values, per vector).
 * *data (n, dim) for tw_free. TW_ERR_FORMAT when the file's size or dims disagree. */
tw_status hnsw_fvecs_read(const char *path, float **data, int32_t *dim, int64_t *n);
tw_status hnsw_ivecs_read(const char *path, int32_t **data, int32_t *dim, int64_t *n);
tw_status hnsw_fvecs_write(const char *path, const float *data, int32_t dim, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
