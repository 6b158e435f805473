/* retrieval_session.h: what `twin embed` (no TEXT) and `twin search` both open: the workspace's
 * warehouse, the embedding model on the CPU backend, and its vector index (pipelines/retrieval.h). */
#ifndef TWIN_RETRIEVAL_SESSION_H
#define TWIN_RETRIEVAL_SESSION_H

#include "encoder.h"
#include "pipelines/retrieval.h"
#include "pipelines/warehouse.h"

typedef struct {
    tw_backend *be;
    tw_encoder *enc;
    wh_db *db;
    retrieval *r;
} retrieval_session;

/* Opens <workspace>/twin.db, the encoder `model` (NULL: minilm-l6, resolved like -m) on the
 * `auto` backend, and <workspace>/index/. Returns CLI_OK, or prints the one-line error for cmd
 * and returns its exit status (everything opened so far is closed). */
int retrieval_session_open(const char *cmd, const char *model, retrieval_session *s);
void retrieval_session_close(retrieval_session *s);

/* twin embed without TEXT: brings the index of `model` (NULL: minilm-l6) in step with the
 * warehouse (retrieval_sync) with a progress line on stderr and a summary on stdout. Returns
 * the exit status. */
int retrieval_embed_chunks(const char *model);

#endif
