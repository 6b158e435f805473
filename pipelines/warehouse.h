/* warehouse.h: the SQLite warehouse (ARCHITECTURE.md, "Workspace"): the one module that talks
 * to SQLite. Nothing else includes sqlite3.h or writes SQL.
 *
 *   wh_open(path, &db)            <workspace>/twin.db, WAL mode, schema migrated
 *   authors, sources, crawl state (ETag / Last-Modified per URL, feed GUIDs seen), crawl runs
 *   and their events, documents + document versions, cleaned documents, chunks, embeddings
 *   bookkeeping, chunk tombstones (for the vector index)
 *   wh_close(db)
 *
 * Schema (versioned by PRAGMA user_version, migrations applied in order inside a transaction;
 * a database newer than this build is refused):
 *   authors(id, name UNIQUE, created_at)
 *   sources(id, author_id, platform, url, every_s, next_crawl_at, last_crawl_at, last_status,
 *           lock_owner, lock_at, created_at, UNIQUE(author_id, platform, url))
 *   fetch_state(source_id, url, etag, last_modified, content_hash, fetched_at,
 *               PRIMARY KEY(source_id, url))
 *   seen_items(source_id, guid, first_seen_at, PRIMARY KEY(source_id, guid))
 *   crawl_runs(id, source_id, started_at, finished_at, status, fetched, new_docs, changed,
 *              unchanged, skipped, failed, error)
 *   crawl_events(id, run_id, url, kind, http_status, reason, at)
 *   documents(id, author_id, source_id, platform, url UNIQUE per author, title, published_at,
 *             content_type, meta_json, content, content_hash, version, first_seen_at,
 *             last_seen_at, first_run_id, last_run_id)
 *   document_versions(id, document_id, version, content_hash, content, title, seen_at, run_id,
 *             UNIQUE(document_id, version))
 *   cleaned(id, document_id UNIQUE, made_from_hash, text, text_hash, dup_of, dup_similarity,
 *           cleaned_at, chunked_at)        -- lineage: made_from_hash = documents.content_hash;
 *                                             chunked_at NULL until wh_chunks_replace ran
 *   chunks(id AUTOINCREMENT never reused, document_id, cleaned_id, position, heading, kind,
 *          text, n_tokens, tokenizer, text_hash, made_at, UNIQUE(cleaned_id, position))
 *   embeddings(chunk_id, model, dim, embedded_at, PRIMARY KEY(chunk_id, model))
 *   chunk_tombstones(chunk_id PRIMARY KEY, deleted_at)  -- filled by a trigger on chunk delete
 * Version 2 adds the tracked training runs (wh_trun_*; "runs" of crawls are crawl_runs):
 *   runs(id, name, kind sft|dpo, config_json, base_model, base_hash, dataset, dataset_hash,
 *        code_version, host, started_at, finished_at, status, adapter_path, error)
 *   run_steps(run_id, step, loss, lr, grad_norm, tokens_per_s, mem_bytes, at,
 *             PRIMARY KEY(run_id, step))
 *   run_evals(run_id, step, split, loss, metrics_json, PRIMARY KEY(run_id, step, split))
 * Version 3 keys local documents by folder (wh_local_url): the documents and fetch states of
 * each local source move from "file:<relative path>" to "file://<absolute path>" (migration 3
 * in warehouse.c, SQL with the function twin_local_url); no table changes.
 * Timestamps are seconds since the Unix epoch (REAL, wall clock); dates of publication are
 * ISO 8601 text ("2024-05-01" or "2024-05-01T10:00:00Z") as the source gave them, normalised.
 *
 * Errors: every function returns a tw_status and leaves the message in the thread's error
 * (core.h): TW_ERR_IO (cannot open/write the file: the message names the path and SQLite's
 * text), TW_ERR_FORMAT (not a twin database, or a schema newer than this build),
 * TW_ERR_NOT_FOUND (no such author/source/document/chunk id), TW_ERR_ARG (a NULL or empty field
 * that is required: named), TW_ERR_RUNTIME ("database is locked" after the busy timeout, or the
 * source is being crawled by another live process: wh_source_lock).
 *
 * Thread safety: a wh_db is a connection; use it from one thread at a time. Several
 * connections (threads or processes) may use the same file: WAL mode + a 10 s busy timeout.
 * Crash safety: every multi-row change is one transaction, so a process killed at any point
 * leaves the database as it was before or after that change.
 */
#ifndef TWIN_WAREHOUSE_H
#define TWIN_WAREHOUSE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wh_db wh_db;

/* The platforms of ARCHITECTURE.md's `twin source add --platform P`. Stored as their names. */
typedef enum {
    WH_PLATFORM_MEDIUM = 0,
    WH_PLATFORM_SUBSTACK,
    WH_PLATFORM_GITHUB,
    WH_PLATFORM_LINKEDIN,
    WH_PLATFORM_ARTICLE,
    WH_PLATFORM_LOCAL,
    WH_PLATFORM_COUNT
} wh_platform;

const char *wh_platform_name(wh_platform p); /* "medium", ...; "?" when out of range */
/* -1 when name is not a platform name (case-insensitive). */
int wh_platform_parse(const char *name);
/* The platform a source URL or path implies (`twin source add` without --platform):
 * http(s) on medium.com or *.medium.com -> medium, *.substack.com -> substack, github.com ->
 * github, any other http(s) host -> article; a folder holding Shares.csv -> linkedin, another
 * existing folder -> local, a path ending in .zip -> linkedin. -1 when none fits (another
 * scheme, a missing path, no host). Looks at the file system for paths. Thread-safe. */
int wh_platform_guess(const char *url);
/* Parses a crawl interval: SECONDS, or a number with a unit s|m|h|d|w ("30m", "6h", "1d"),
 * between 1 s and 3660 days. TW_ERR_ARG (naming the text) otherwise. Thread-safe. */
tw_status wh_interval_parse(const char *s, int64_t *seconds);

/* Opens (creating when absent) the database at path, sets WAL mode, foreign keys and the busy
 * timeout, and migrates the schema to the current version. The folder must exist.
 * On success *out is for wh_close; on failure *out is NULL. */
tw_status wh_open(const char *path, wh_db **out);
void wh_close(wh_db *db); /* NULL is a no-op */
int wh_schema_version(wh_db *db); /* PRAGMA user_version; -1 on error */
/* Checks the file (PRAGMA integrity_check, foreign keys) and twin's invariants (every document
 * has its version rows 1..version, the last with its content hash). TW_OK, or TW_ERR_FORMAT
 * naming the first problem. */
tw_status wh_integrity_check(wh_db *db);

/* Explicit transactions around a group of calls (the calls below are each atomic on their own;
 * nesting is counted, only the outermost begin/commit touches SQLite). A wh_rollback inside
 * (a failed call rolls back its own part this way) dooms the whole transaction: the outermost
 * wh_commit then rolls back and returns TW_ERR_RUNTIME. */
tw_status wh_begin(wh_db *db);
tw_status wh_commit(wh_db *db);
void wh_rollback(wh_db *db);

/* ---- authors and sources ------------------------------------------------------------------ */

/* The author's id, adding the author when absent. */
tw_status wh_author_ensure(wh_db *db, const char *name, int64_t *id);
/* TW_ERR_NOT_FOUND when there is no such author. */
tw_status wh_author_find(wh_db *db, const char *name, int64_t *id);

/* A source row. Strings are owned by the struct: wh_source_clear frees them. */
typedef struct {
    int64_t id;
    int64_t author_id;
    char *author;          /* the author's name */
    wh_platform platform;
    char *url;             /* base URL (profile, publication, user/repo, export path, folder) */
    int64_t every_s;       /* crawl interval for `twin schedule run`; 0: not scheduled */
    double next_crawl_at;  /* 0: due now */
    double last_crawl_at;  /* 0: never */
    char *last_status;     /* "ok", "partial", "failed", "interrupted", or "" (never run) */
} wh_source;

void wh_source_clear(wh_source *s); /* frees the strings; the struct may be reused */

/* Adds a source (its author is added when absent). A source with the same author, platform
 * and URL already present is not duplicated: *id is the existing one and *existed is 1. */
tw_status wh_source_add(wh_db *db, const char *author, wh_platform platform, const char *url,
                        int64_t every_s, int64_t *id, int *existed);
/* Removes a source with its fetch state and seen items; its documents stay (they belong to
 * the author) but no longer point to it. TW_ERR_NOT_FOUND when absent. */
tw_status wh_source_remove(wh_db *db, int64_t id);
tw_status wh_source_get(wh_db *db, int64_t id, wh_source *out);

/* Calls fn for each source (of author_id, or all when 0), by id. fn returns 0 to go on,
 * non-zero to stop (then wh_source_each returns TW_OK). The wh_source is valid during the
 * call only. */
typedef int (*wh_source_fn)(void *ctx, const wh_source *s);
tw_status wh_source_each(wh_db *db, int64_t author_id, wh_source_fn fn, void *ctx);

/* Sources whose next_crawl_at <= now and every_s > 0, in next_crawl_at order. */
tw_status wh_source_each_due(wh_db *db, double now, wh_source_fn fn, void *ctx);

/* Takes the source's crawl lock for owner (e.g. "pid:1234@host"): fails with TW_ERR_RUNTIME
 * ("source 3 is being crawled by pid:99@h since ...") when another owner holds it, its lock
 * is younger than stale_s seconds and owner_alive reports it alive (non-zero). owner_alive
 * may be NULL (then only age counts). A stale lock, or one left by a killed process, is taken
 * over. The same owner may take it again (its time is renewed). */
typedef int (*wh_owner_alive_fn)(const char *owner);
tw_status wh_source_lock(wh_db *db, int64_t id, const char *owner, double stale_s,
                         wh_owner_alive_fn owner_alive);
/* Releases owner's lock; a lock now held by another owner (taken over) is left alone. */
tw_status wh_source_unlock(wh_db *db, int64_t id, const char *owner);
/* Records a finished crawl: last_crawl_at = now, next_crawl_at = now + every_s, status. */
tw_status wh_source_crawled(wh_db *db, int64_t id, double now, const char *status);

/* ---- crawl state: conditional GET and feed GUIDs ------------------------------------------ */

/* What the last fetch of url for this source returned. Strings owned (wh_fetch_state_clear). */
typedef struct {
    char *etag;          /* NULL when none */
    char *last_modified; /* NULL when none */
    char *content_hash;  /* sha256 hex of the last body, NULL when none */
} wh_fetch_state;
void wh_fetch_state_clear(wh_fetch_state *st);
/* TW_ERR_NOT_FOUND (and *st zeroed) when url was never fetched for this source. */
tw_status wh_fetch_state_get(wh_db *db, int64_t source_id, const char *url, wh_fetch_state *st);
/* Stores (replaces) the state; any field may be NULL. */
tw_status wh_fetch_state_put(wh_db *db, int64_t source_id, const char *url, const char *etag,
                             const char *last_modified, const char *content_hash);

/* 1 when guid (a feed item's GUID, a post id, a file sha) was seen before for this source;
 * 0 when not; -1 on a database error (message set). */
int wh_item_seen(wh_db *db, int64_t source_id, const char *guid);
tw_status wh_item_mark(wh_db *db, int64_t source_id, const char *guid);

/* ---- crawl runs --------------------------------------------------------------------------- */

typedef enum {
    WH_EVENT_FETCHED = 0, /* a body was fetched (the document outcome is counted separately) */
    WH_EVENT_NOT_MODIFIED, /* 304, or a known GUID / unchanged hash: nothing to do */
    WH_EVENT_SKIPPED,      /* on purpose: robots.txt, binary, vendored, too large, filtered */
    WH_EVENT_FAILED        /* an error: http status and reason say which */
} wh_event_kind;

typedef struct {
    int64_t fetched, new_docs, changed, unchanged, skipped, failed;
} wh_run_counts;

/* Starts a run of source_id. Runs of that source still marked "running" (their process was
 * killed) are marked "interrupted" first. */
tw_status wh_run_begin(wh_db *db, int64_t source_id, int64_t *run_id);
/* Records one event of the run. http_status 0 when there was no HTTP answer; reason may be
 * NULL for FETCHED / NOT_MODIFIED, and must say why for SKIPPED / FAILED. */
tw_status wh_run_event(wh_db *db, int64_t run_id, const char *url, wh_event_kind kind,
                       int http_status, const char *reason);
/* Finishes the run with its counts; status "ok" (no failures), "partial" (some failed) or
 * "failed" (the run could not proceed: error says why). */
tw_status wh_run_finish(wh_db *db, int64_t run_id, const wh_run_counts *c, const char *status,
                        const char *error);

/* A run as stored (wh_run_get, wh_run_each). Strings owned; wh_run_clear frees them. */
typedef struct {
    int64_t id, source_id;
    double started_at, finished_at; /* finished_at 0 while running */
    char *status;                   /* "running", "ok", "partial", "failed", "interrupted" */
    char *error;                    /* NULL when none */
    wh_run_counts counts;
} wh_run;
void wh_run_clear(wh_run *r);
tw_status wh_run_get(wh_db *db, int64_t run_id, wh_run *out);

/* Events of a run in order. The struct is valid during the call only. */
typedef struct {
    const char *url;
    wh_event_kind kind;
    int http_status;
    const char *reason; /* NULL when none */
} wh_event;
typedef int (*wh_event_fn)(void *ctx, const wh_event *e);
tw_status wh_run_each_event(wh_db *db, int64_t run_id, wh_event_fn fn, void *ctx);

/* ---- documents ---------------------------------------------------------------------------- */

/* The document URL of the file at path rel (relative, '/'-separated, no "." or ".." parts)
 * below the folder of a local source whose stored URL is folder (an absolute path, as
 * `twin source add` stores it; a leading "file://" or "file:" and trailing slashes are
 * ignored): an RFC 8089 file URI "file://" + the absolute path, each byte outside RFC 3986's
 * pchar set (unreserved, sub-delims, ':' and '@') and '/' percent-encoded (%XX, upper case hex;
 * so non-ASCII names are encoded too: the URI is plain ASCII whatever the bytes of the name).
 * Unique per folder and stable across crawls (it depends on the path, not on the source id: a
 * folder removed and added again finds the same documents). A relative folder (only through
 * this API) gives "file:" + the encoded relative path. Appends to *out; out->failed on OOM.
 * Pure; thread-safe. Schema version 3 rewrote the older keys "file:<rel>" to this form. */
void wh_local_url(const char *folder, const char *rel, tw_sb *out);

/* What a crawler found. All strings are read during the call only. */
typedef struct {
    int64_t source_id;
    const char *url;          /* canonical URL; local files: wh_local_url ("file:///...") */
    const char *title;        /* may be NULL */
    const char *published_at; /* ISO 8601, may be NULL */
    const char *content_type; /* "html" (a whole page: cleaning extracts its main content),
                                 "html_fragment" (an article body only, e.g. Substack's
                                 body_html: all of it is kept), "markdown", "text", "code" */
    const char *meta_json;    /* extra fields as a JSON object text (language, repo path, ...),
                                 may be NULL */
    const char *content;      /* the raw content as fetched (HTML, Markdown, text, code) */
    size_t content_len;
} wh_doc_in;

typedef enum { WH_DOC_NEW = 0, WH_DOC_CHANGED, WH_DOC_UNCHANGED } wh_doc_outcome;

/* Stores a document of the source's author, keyed by (author, url). New: a row + version 1.
 * Same content hash (sha256 of content): only last_seen_at / last_run_id (and source_id, for a
 * source removed and added again) move (UNCHANGED). run_id 0: not part of a run.
 * Different hash: a new version row, the document's content, hash, title and version updated
 * (CHANGED); its cleaned text and chunks are then stale and are redone by the next clean/chunk.
 * One transaction. */
tw_status wh_document_upsert(wh_db *db, int64_t run_id, const wh_doc_in *d, int64_t *doc_id,
                             wh_doc_outcome *outcome);

/* A stored document. Strings owned (wh_doc_clear). content is the raw content, or the cleaned
 * text when read with WH_DOC_CLEANED (see wh_doc_each), NUL-terminated. */
typedef struct {
    int64_t id;
    int64_t author_id;
    char *author;
    int64_t source_id;          /* 0 when its source was removed */
    wh_platform platform;
    char *url;
    char *title;                /* "" when none */
    char *published_at;         /* "" when unknown */
    char *content_type;
    char *meta_json;            /* "{}" when none */
    char *content;
    size_t content_len;
    char *content_hash;         /* sha256 hex of the raw content */
    int64_t version;
    double first_seen_at, last_seen_at;
} wh_doc;
void wh_doc_clear(wh_doc *d);

/* Which text wh_doc_get / wh_doc_each put in wh_doc.content. */
typedef enum {
    WH_DOC_RAW = 0,   /* as fetched */
    WH_DOC_CLEANED,   /* the cleaned text; documents not cleaned yet (or whose cleaned text
                         is stale) are skipped by wh_doc_each */
    WH_DOC_NONE       /* no content (listing): content is "" */
} wh_doc_text;

/* With WH_DOC_CLEANED, a document without current cleaned text is TW_ERR_NOT_FOUND. */
tw_status wh_doc_get(wh_db *db, int64_t id, wh_doc_text which, wh_doc *out);

/* Filter for wh_doc_each; NULL means everything (a zero-initialised one has platform 0,
 * medium: set platform to -1 for any). */
typedef struct {
    int64_t author_id;   /* 0: any */
    int platform;        /* -1 or WH_PLATFORM_COUNT: any (set it to -1 explicitly) */
    int64_t source_id;   /* 0: any */
    int need_cleaning;   /* 1: only documents with no cleaned text or a stale one */
    int skip_duplicates; /* 1 with WH_DOC_CLEANED: leave out those marked dup_of another */
} wh_doc_filter;

typedef int (*wh_doc_fn)(void *ctx, const wh_doc *d);
/* Calls fn for each matching document in id order. The wh_doc is valid during the call only.
 * fn may call other wh_ functions on the same db (rows are read in pages, not under an open
 * statement). */
tw_status wh_doc_each(wh_db *db, const wh_doc_filter *f, wh_doc_text which, wh_doc_fn fn,
                      void *ctx);
/* Number of documents matching f. */
tw_status wh_doc_count(wh_db *db, const wh_doc_filter *f, int64_t *n);

/* ---- cleaned text and chunks (lineage: each row names what it was made from) --------------- */

/* Stores the cleaned text of a document, made from the raw content whose hash is
 * made_from_hash (a document changed since is then stale). dup_of: the id of the document this
 * one duplicates (exact or near), 0 when none; dup_similarity its estimated Jaccard (1 for
 * exact). Replaces the previous cleaned text; when the text changed, or the document became a
 * duplicate, the document's chunks are deleted (their ids go to chunk_tombstones). One
 * transaction. *cleaned_id may be NULL. */
tw_status wh_cleaned_put(wh_db *db, int64_t doc_id, const char *made_from_hash,
                         const char *text, size_t len, int64_t dup_of, double dup_similarity,
                         int64_t *cleaned_id);

/* A chunk as the chunker made it. Strings read during the call only. */
typedef struct {
    int32_t position;     /* 0.. in document order */
    const char *heading;  /* nearest heading above it, NULL when none */
    const char *kind;     /* "prose" or "code" */
    const char *text;
    size_t len;
    int32_t n_tokens;     /* content tokens of the tokenizer below */
} wh_chunk_in;

/* Replaces all chunks of the document's current cleaned text with these n (one transaction;
 * old chunk ids go to chunk_tombstones). tokenizer names the tokenizer that counted n_tokens
 * (e.g. the embedding model's name). Fails with TW_ERR_NOT_FOUND when the document has no
 * cleaned text. */
tw_status wh_chunks_replace(wh_db *db, int64_t doc_id, const char *tokenizer,
                            const wh_chunk_in *chunks, size_t n);

/* Documents whose cleaned text has no chunks yet (not duplicates), for `twin chunk`: fn gets
 * the document with its cleaned text. */
tw_status wh_doc_each_unchunked(wh_db *db, int64_t author_id, wh_doc_fn fn, void *ctx);

/* A stored chunk with what search shows of its document. Strings owned (wh_chunk_clear). */
typedef struct {
    int64_t id, document_id;
    int32_t position;
    char *heading;        /* "" when none */
    char *kind;
    char *text;
    int32_t n_tokens;
    int64_t author_id;
    char *author;
    wh_platform platform;
    char *url, *title, *published_at; /* of the document; "" when unknown */
    char *content_type;               /* of the document */
} wh_chunk;
void wh_chunk_clear(wh_chunk *c);
tw_status wh_chunk_get(wh_db *db, int64_t id, wh_chunk *out);

typedef int (*wh_chunk_fn)(void *ctx, const wh_chunk *c);
/* Chunks not yet embedded by model (embeddings has no (chunk, model) row), in id order. Like
 * wh_doc_each, rows are read in pages (by id > last seen), so fn may write to the db (e.g.
 * wh_embeddings_mark) while the walk goes on. */
tw_status wh_chunk_each_unembedded(wh_db *db, const char *model, wh_chunk_fn fn, void *ctx);
/* Records that these chunks are in the index for model (dimension dim). One transaction. Ids
 * of chunks deleted meanwhile are skipped (their tombstones take them out of the index). */
tw_status wh_embeddings_mark(wh_db *db, const char *model, int32_t dim, const int64_t *chunk_ids,
                             size_t n);
/* Forgets every embedding of other models than model (the index is rebuilt for the new one). */
tw_status wh_embeddings_reset_except(wh_db *db, const char *model);
/* Ids of deleted chunks not yet removed from the index (ascending); fn returns non-zero to
 * stop. wh_tombstones_clear drops those <= upto once the index no longer holds them. */
typedef int (*wh_id_fn)(void *ctx, int64_t id);
tw_status wh_tombstones_each(wh_db *db, wh_id_fn fn, void *ctx);
tw_status wh_tombstones_clear(wh_db *db, int64_t upto);

/* ---- training runs (schema version 2) ------------------------------------------------------ */

/* What a training run starts with. Strings are read during the call only; all but name and
 * kind may be NULL. */
typedef struct {
    const char *name;         /* a label for people (need not be unique) */
    const char *kind;         /* "sft" or "dpo" */
    const char *config_json;  /* the run's configuration as a JSON object text; NULL: "{}" */
    const char *base_model;   /* path or name of the base model */
    const char *base_hash;    /* its sha256 (lora_model_hash) */
    const char *dataset;      /* dataset name/version */
    const char *dataset_hash;
    const char *code_version; /* twin's version (and commit when known) */
    const char *host;         /* the machine */
} wh_trun_in;

/* Records a new run with status "running", started now. TW_ERR_ARG for a missing name or a
 * kind other than sft/dpo. */
tw_status wh_trun_begin(wh_db *db, const wh_trun_in *r, int64_t *run_id);

/* One optimizer step's figures. A non-finite loss is stored as NULL and read back as NAN. */
typedef struct {
    int64_t step;
    double loss, lr, grad_norm, tokens_per_s;
    int64_t mem_bytes;
    double at; /* wall-clock seconds since the epoch; 0: now (on write) */
} wh_trun_step;

/* Records (or replaces: a resumed run logs steps again) a step of run_id. TW_ERR_NOT_FOUND
 * when there is no such run. */
tw_status wh_trun_log_step(wh_db *db, int64_t run_id, const wh_trun_step *s);
/* Records (or replaces) an evaluation: split ("eval", "test", ...), its loss and other metrics
 * as a JSON object text (NULL: "{}"). TW_ERR_NOT_FOUND when there is no such run. */
tw_status wh_trun_log_eval(wh_db *db, int64_t run_id, int64_t step, const char *split,
                           double loss, const char *metrics_json);
/* Ends a run: status "ok", "failed" or "interrupted", the adapter it produced (NULL: keep),
 * the error (NULL when none); finished_at = now. */
tw_status wh_trun_finish(wh_db *db, int64_t run_id, const char *status, const char *adapter_path,
                         const char *error);

/* A run as stored, with a summary of its steps and evaluations. Strings owned (wh_trun_clear);
 * optional ones are "" when absent. */
typedef struct {
    int64_t id;
    char *name, *kind, *config_json, *base_model, *base_hash, *dataset, *dataset_hash,
        *code_version, *host, *status, *adapter_path, *error;
    double started_at, finished_at; /* finished_at 0 while running */
    int64_t n_steps;                /* rows in run_steps */
    int64_t last_step;              /* -1 when none */
    double last_loss;               /* NAN when none */
    int64_t n_evals;
    double last_eval_loss;          /* of the latest evaluation step (first split by name); NAN */
    char *last_eval_split;          /* "" when none */
} wh_trun;
void wh_trun_clear(wh_trun *r);
tw_status wh_trun_get(wh_db *db, int64_t run_id, wh_trun *out);
/* The run named by text: a decimal id, else the latest run with that name. TW_ERR_NOT_FOUND
 * ("no training run 'x'") otherwise. */
tw_status wh_trun_find(wh_db *db, const char *id_or_name, int64_t *run_id);

/* Calls fn for every run by id (the struct is valid during the call only; fn may use db). */
typedef int (*wh_trun_fn)(void *ctx, const wh_trun *r);
tw_status wh_trun_each(wh_db *db, wh_trun_fn fn, void *ctx);
/* A run's steps in step order. */
typedef int (*wh_trun_step_fn)(void *ctx, const wh_trun_step *s);
tw_status wh_trun_each_step(wh_db *db, int64_t run_id, wh_trun_step_fn fn, void *ctx);
/* A run's evaluations by step, then split. Strings valid during the call only. */
typedef struct {
    int64_t step;
    const char *split;
    double loss;              /* NAN when not finite */
    const char *metrics_json;
} wh_trun_eval;
typedef int (*wh_trun_eval_fn)(void *ctx, const wh_trun_eval *e);
tw_status wh_trun_each_eval(wh_db *db, int64_t run_id, wh_trun_eval_fn fn, void *ctx);

/* Counts for `twin docs ls` summaries and the demo. */
typedef struct {
    int64_t authors, sources, documents, versions, cleaned, duplicates, chunks, embedded, runs;
} wh_stats;
tw_status wh_stats_get(wh_db *db, wh_stats *out);

#ifdef __cplusplus
}
#endif

#endif
