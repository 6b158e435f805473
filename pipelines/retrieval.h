/* retrieval.h: the warehouse's chunks in the vector index, kept in step, and searched.
 *
 *   retrieval_open(index_dir, enc, &r)     <workspace>/index/<model id>.hnsw, made when absent
 *   retrieval_sync(r, db, opts, &stats)    embed new chunks, drop deleted ones, save
 *   retrieval_search(r, db, query, k, filter, &hits, &n)
 *   retrieval_free(r)
 *
 * Ids in the index are chunk ids of the warehouse (never reused: chunks.id is AUTOINCREMENT),
 * and each vector carries its chunk's payload (author, platform, kind, publication day) so
 * filters run inside the graph search. The index file is named after the encoder's identity
 * (tw_encoder_id), so a different model starts a fresh index and re-embeds everything; the
 * warehouse's embeddings of other models are forgotten and their index files removed.
 *
 * Crash safety: a sync embeds chunks in batches, saves the index atomically (hnsw_save:
 * tmp + rename) and only then records the chunks as embedded in the warehouse. A sync killed at
 * any point leaves both consistent up to the last save; the next sync re-embeds what was not
 * recorded (the same ids, replaced in place) and removes what was deleted meanwhile.
 *
 * Thread safety: one thread at a time per retrieval handle (it owns the encoder's buffers).
 */
#ifndef TWIN_RETRIEVAL_H
#define TWIN_RETRIEVAL_H

#include <stdint.h>

#include "core.h"
#include "encoder.h"
#include "hnsw.h"
#include "warehouse.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct retrieval retrieval;

/* Opens the index of encoder enc in folder index_dir (created when absent). enc must outlive
 * the handle. TW_ERR_FORMAT when the file is damaged or its dimension differs from the model's
 * (the message names the file and both dimensions). */
tw_status retrieval_open(const char *index_dir, tw_encoder *enc, retrieval **out);
void retrieval_free(retrieval *r); /* NULL is a no-op */

/* The index (for benchmarks and stats); owned by r. */
hnsw_index *retrieval_index(retrieval *r);
const char *retrieval_index_path(const retrieval *r);

typedef struct {
    int32_t batch;        /* texts per encoder call; 0: 64 */
    double save_every_s;  /* save (and record) at least this often; 0: 30 s */
    /* called after each batch (may be NULL) */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} retrieval_sync_opts;

typedef struct {
    int64_t embedded;  /* chunks embedded and recorded by this sync */
    int64_t removed;   /* vectors of deleted chunks removed */
    int64_t truncated; /* chunks cut at the encoder's max length (warned) */
    int64_t total;     /* vectors in the index after the sync */
} retrieval_sync_stats;

/* Brings the index in step with the warehouse. opts and stats may be NULL. */
tw_status retrieval_sync(retrieval *r, wh_db *db, const retrieval_sync_opts *opts,
                         retrieval_sync_stats *stats);

typedef struct {
    float score;   /* cosine similarity of query and chunk */
    wh_chunk chunk;/* the chunk with its document's title, URL, author, platform */
} retrieval_hit;

/* The k best chunks for query (embedded with the encoder) among those matching filter (NULL:
 * all). *hits (k entries at most, for retrieval_hits_free) and *n. An empty or all-whitespace
 * query or k = 0 gives *n = 0 (not an error); k larger than the index gives what there is.
 * Hits whose chunk has left the warehouse since the last sync are skipped. */
tw_status retrieval_search(retrieval *r, wh_db *db, const char *query, int32_t k,
                           const hnsw_filter *filter, retrieval_hit **hits, int32_t *n);
void retrieval_hits_free(retrieval_hit *hits, int32_t n);

/* Days since 1970-01-01 of an ISO 8601 date ("2024-05-01", "2024-05-01T10:00:00Z"), or
 * INT32_MIN when s is empty or not a date. */
int32_t retrieval_day_of(const char *s);

#ifdef __cplusplus
}
#endif

#endif
