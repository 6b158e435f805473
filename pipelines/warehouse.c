/* warehouse.c: the SQLite warehouse (warehouse.h). The one file of twin that includes sqlite3.h
 * and writes SQL.
 *
 * Layout of this file: errors and statements (a per-connection cache of prepared statements,
 * indexed by the wh_sql enum), open/migrate/close, transactions (counted nesting), then the
 * tables in the header's order. Functions that read many rows for a callback read a page of
 * WH_PAGE rows into memory (keyset pagination: "id > last"), reset the statement, and only then
 * call back, so a callback may use the same connection freely (even the same statement).
 */
#include "warehouse.h"

#include <sqlite3.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define WH_APP_ID 0x7477696e   /* PRAGMA application_id: "twin" */
#define WH_BUSY_MS 10000       /* busy timeout (header: 10 s) */
#define WH_PAGE 32             /* rows read per page by the _each functions */
#define WH_INTERVAL_MAX (10LL * 366 * 86400) /* longest crawl interval accepted: ~10 years */

/* ---- schema -------------------------------------------------------------------------------- */

/* Migration i (0-based) takes a database from user_version i to i + 1. Append new versions at
 * the end; never edit a released one. Each runs inside the migration transaction. */
static const char *const wh_migrations[] = {
    /* 1: the first schema (warehouse.h). */
    "CREATE TABLE authors("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at REAL NOT NULL);"
    "CREATE TABLE sources("
    "  id INTEGER PRIMARY KEY,"
    "  author_id INTEGER NOT NULL REFERENCES authors(id),"
    "  platform TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  every_s INTEGER NOT NULL DEFAULT 0,"
    "  next_crawl_at REAL NOT NULL DEFAULT 0,"
    "  last_crawl_at REAL NOT NULL DEFAULT 0,"
    "  last_status TEXT NOT NULL DEFAULT '',"
    "  lock_owner TEXT,"
    "  lock_at REAL,"
    "  created_at REAL NOT NULL,"
    "  UNIQUE(author_id, platform, url));"
    "CREATE TABLE fetch_state("
    "  source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,"
    "  url TEXT NOT NULL,"
    "  etag TEXT,"
    "  last_modified TEXT,"
    "  content_hash TEXT,"
    "  fetched_at REAL NOT NULL,"
    "  PRIMARY KEY(source_id, url)) WITHOUT ROWID;"
    "CREATE TABLE seen_items("
    "  source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,"
    "  guid TEXT NOT NULL,"
    "  first_seen_at REAL NOT NULL,"
    "  PRIMARY KEY(source_id, guid)) WITHOUT ROWID;"
    /* Runs outlive their source (history, and documents name their runs). */
    "CREATE TABLE crawl_runs("
    "  id INTEGER PRIMARY KEY,"
    "  source_id INTEGER REFERENCES sources(id) ON DELETE SET NULL,"
    "  started_at REAL NOT NULL,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  status TEXT NOT NULL,"
    "  fetched INTEGER NOT NULL DEFAULT 0,"
    "  new_docs INTEGER NOT NULL DEFAULT 0,"
    "  changed INTEGER NOT NULL DEFAULT 0,"
    "  unchanged INTEGER NOT NULL DEFAULT 0,"
    "  skipped INTEGER NOT NULL DEFAULT 0,"
    "  failed INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT);"
    "CREATE INDEX crawl_runs_source ON crawl_runs(source_id, status);"
    "CREATE TABLE crawl_events("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES crawl_runs(id) ON DELETE CASCADE,"
    "  url TEXT NOT NULL,"
    "  kind INTEGER NOT NULL CHECK(kind BETWEEN 0 AND 3)," /* wh_event_kind */
    "  http_status INTEGER NOT NULL,"
    "  reason TEXT,"
    "  at REAL NOT NULL);"
    "CREATE INDEX crawl_events_run ON crawl_events(run_id, id);"
    "CREATE TABLE documents("
    "  id INTEGER PRIMARY KEY,"
    "  author_id INTEGER NOT NULL REFERENCES authors(id),"
    "  source_id INTEGER REFERENCES sources(id) ON DELETE SET NULL,"
    "  platform TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  title TEXT,"
    "  published_at TEXT,"
    "  content_type TEXT NOT NULL,"
    "  meta_json TEXT,"
    "  content TEXT NOT NULL,"
    "  content_hash TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  first_seen_at REAL NOT NULL,"
    "  last_seen_at REAL NOT NULL,"
    "  first_run_id INTEGER REFERENCES crawl_runs(id) ON DELETE SET NULL,"
    "  last_run_id INTEGER REFERENCES crawl_runs(id) ON DELETE SET NULL,"
    "  UNIQUE(author_id, url));"
    "CREATE INDEX documents_source ON documents(source_id);"
    "CREATE TABLE document_versions("
    "  id INTEGER PRIMARY KEY,"
    "  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    "  version INTEGER NOT NULL,"
    "  content_hash TEXT NOT NULL,"
    "  content TEXT NOT NULL,"
    "  title TEXT,"
    "  seen_at REAL NOT NULL,"
    "  run_id INTEGER REFERENCES crawl_runs(id) ON DELETE SET NULL,"
    "  UNIQUE(document_id, version));"
    "CREATE TABLE cleaned("
    "  id INTEGER PRIMARY KEY,"
    "  document_id INTEGER NOT NULL UNIQUE REFERENCES documents(id) ON DELETE CASCADE,"
    "  made_from_hash TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  text_hash TEXT NOT NULL,"
    "  dup_of INTEGER REFERENCES documents(id) ON DELETE SET NULL,"
    "  dup_similarity REAL NOT NULL DEFAULT 0,"
    "  cleaned_at REAL NOT NULL,"
    "  chunked_at REAL);" /* NULL until wh_chunks_replace ran on this text */
    "CREATE TABLE chunks("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused: the vector index keys by it */
    "  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    "  cleaned_id INTEGER NOT NULL REFERENCES cleaned(id) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  heading TEXT,"
    "  kind TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  n_tokens INTEGER NOT NULL,"
    "  tokenizer TEXT NOT NULL,"
    "  text_hash TEXT NOT NULL,"
    "  made_at REAL NOT NULL,"
    "  UNIQUE(cleaned_id, position));"
    "CREATE INDEX chunks_document ON chunks(document_id);"
    "CREATE TABLE embeddings("
    "  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,"
    "  model TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  embedded_at REAL NOT NULL,"
    "  PRIMARY KEY(chunk_id, model)) WITHOUT ROWID;"
    "CREATE TABLE chunk_tombstones("
    "  chunk_id INTEGER PRIMARY KEY,"
    "  deleted_at REAL NOT NULL);"
    /* Fires for cascaded deletes too (document or cleaned row removed). */
    "CREATE TRIGGER chunks_tombstone AFTER DELETE ON chunks BEGIN"
    "  INSERT OR REPLACE INTO chunk_tombstones(chunk_id, deleted_at)"
    "  VALUES(old.id, (julianday('now') - 2440587.5) * 86400.0);"
    "END;",
    /* 2: tracked training runs (warehouse.h, "training runs"). loss is NULL for a step whose
     * loss was not finite (SQLite stores NaN as NULL). */
    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK(kind IN ('sft', 'dpo')),"
    "  config_json TEXT NOT NULL DEFAULT '{}',"
    "  base_model TEXT,"
    "  base_hash TEXT,"
    "  dataset TEXT,"
    "  dataset_hash TEXT,"
    "  code_version TEXT,"
    "  host TEXT,"
    "  started_at REAL NOT NULL,"
    "  finished_at REAL,"
    "  status TEXT NOT NULL DEFAULT 'running',"
    "  adapter_path TEXT,"
    "  error TEXT);"
    "CREATE INDEX runs_name ON runs(name);"
    "CREATE TABLE run_steps("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  loss REAL,"
    "  lr REAL,"
    "  grad_norm REAL,"
    "  tokens_per_s REAL,"
    "  mem_bytes INTEGER,"
    "  at REAL NOT NULL,"
    "  PRIMARY KEY(run_id, step)) WITHOUT ROWID;"
    "CREATE TABLE run_evals("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  split TEXT NOT NULL,"
    "  loss REAL,"
    "  metrics_json TEXT NOT NULL DEFAULT '{}',"
    "  PRIMARY KEY(run_id, step, split)) WITHOUT ROWID;",
    /* 3: local documents keyed by folder, "file:<rel>" -> wh_local_url(source folder, rel), so
     * two folders of one author with the same relative path stop sharing one document. Only
     * sources of platform local with an absolute folder (local_v3; twin_local_url gives NULL
     * otherwise: a relative folder's keys and states are left as they are) and only keys of
     * the old form (a relative path never starts with '/', so an old key never starts with
     * "file://", and no new key can collide with an old one). Documents keep their
     * id (versions, cleaned text, chunks and embeddings stay). A fetch state moves with its key
     * only when its source's document under that key holds the content it remembers: where two
     * folders shared a key, the document holds one folder's text and the other folder's state
     * would otherwise call its file unchanged for good; without its state that file is read
     * again on the next crawl. Documents of a removed source (source_id NULL) keep the old
     * key: their folder is unknown. crawl_events keep the URLs they were logged with. */
    "CREATE TEMP TABLE local_v3(id INTEGER PRIMARY KEY, folder TEXT NOT NULL);"
    "INSERT INTO local_v3 SELECT id, url FROM sources"
    " WHERE platform = 'local' AND twin_local_url(url, '') IS NOT NULL;"
    "DELETE FROM fetch_state"
    " WHERE substr(url, 1, 5) = 'file:' AND substr(url, 1, 7) <> 'file://'"
    "   AND source_id IN (SELECT id FROM local_v3)"
    "   AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.source_id = fetch_state.source_id"
    "                   AND d.url = fetch_state.url AND d.content_hash = fetch_state.content_hash);"
    "UPDATE fetch_state"
    "   SET url = twin_local_url((SELECT folder FROM local_v3 WHERE id = fetch_state.source_id),"
    "                            substr(url, 6))"
    " WHERE substr(url, 1, 5) = 'file:' AND substr(url, 1, 7) <> 'file://'"
    "   AND source_id IN (SELECT id FROM local_v3);"
    "UPDATE documents"
    "   SET url = twin_local_url((SELECT folder FROM local_v3 WHERE id = documents.source_id),"
    "                            substr(url, 6))"
    " WHERE platform = 'local' AND substr(url, 1, 5) = 'file:' AND substr(url, 1, 7) <> 'file://'"
    "   AND source_id IN (SELECT id FROM local_v3);"
    "DROP TABLE local_v3;",
};
#define WH_SCHEMA_VERSION ((int)(sizeof wh_migrations / sizeof wh_migrations[0]))

/* ---- statements ---------------------------------------------------------------------------- */

typedef enum {
    S_AUTHOR_INSERT,
    S_AUTHOR_FIND,
    S_SOURCE_INSERT,
    S_SOURCE_FIND,
    S_SOURCE_DELETE,
    S_SOURCE_GET,
    S_SOURCE_PAGE,
    S_SOURCE_DUE_PAGE,
    S_SOURCE_BRIEF,
    S_SOURCE_LOCK_GET,
    S_SOURCE_LOCK_SET,
    S_SOURCE_UNLOCK,
    S_SOURCE_CRAWLED,
    S_SOURCE_INTERRUPTED,
    S_FETCH_GET,
    S_FETCH_PUT,
    S_SEEN_GET,
    S_SEEN_PUT,
    S_RUN_INTERRUPT,
    S_RUN_INSERT,
    S_RUN_EVENT,
    S_RUN_FINISH,
    S_RUN_GET,
    S_EVENT_PAGE,
    S_DOC_FIND,
    S_DOC_INSERT,
    S_DOC_TOUCH,
    S_DOC_UPDATE,
    S_VERSION_INSERT,
    S_DOC_GET,
    S_DOC_PAGE,
    S_DOC_COUNT,
    S_DOC_HASH,
    S_CLEANED_GET,
    S_CLEANED_INSERT,
    S_CLEANED_UPDATE,
    S_CLEANED_CHUNKED,
    S_CHUNKS_DELETE_DOC,
    S_CHUNK_INSERT,
    S_CHUNK_GET,
    S_UNEMBEDDED_PAGE,
    S_EMBED_MARK,
    S_EMBED_RESET,
    S_TOMB_PAGE,
    S_TOMB_CLEAR,
    S_STATS,
    S_TRUN_INSERT,
    S_TRUN_STEP,
    S_TRUN_EVAL,
    S_TRUN_FINISH,
    S_TRUN_GET,
    S_TRUN_PAGE,
    S_TRUN_FIND_NAME,
    S_TRUN_STEP_PAGE,
    S_TRUN_EVAL_PAGE,
    S_COUNT
} wh_sql;

#define SOURCE_COLS                                                                            \
    "SELECT s.id, s.author_id, a.name, s.platform, s.url, s.every_s, s.next_crawl_at,"         \
    " s.last_crawl_at, s.last_status FROM sources s JOIN authors a ON a.id = s.author_id "

/* The content column is chosen by the parameter ?20 (wh_doc_text); column 15 says whether the
 * cleaned text is present and made from the current content. */
#define DOC_COLS                                                                               \
    "SELECT d.id, d.author_id, a.name, d.source_id, d.platform, d.url, d.title,"               \
    " d.published_at, d.content_type, d.meta_json,"                                            \
    " CASE ?20 WHEN 0 THEN d.content WHEN 1 THEN c.text ELSE '' END,"                          \
    " d.content_hash, d.version, d.first_seen_at, d.last_seen_at,"                             \
    " (c.id IS NOT NULL AND c.made_from_hash = d.content_hash)"                                \
    " FROM documents d JOIN authors a ON a.id = d.author_id"                                   \
    " LEFT JOIN cleaned c ON c.document_id = d.id "

/* wh_doc_filter as SQL: ?2 author, ?3 platform name (NULL: any), ?4 source, ?5 need_cleaning,
 * ?6 only fresh cleaned text, ?7 skip duplicates, ?8 only not yet chunked. */
#define DOC_WHERE                                                                              \
    " (?2 = 0 OR d.author_id = ?2) AND (?3 IS NULL OR d.platform = ?3)"                        \
    " AND (?4 = 0 OR d.source_id = ?4)"                                                        \
    " AND (?5 = 0 OR c.id IS NULL OR c.made_from_hash <> d.content_hash)"                      \
    " AND (?6 = 0 OR (c.id IS NOT NULL AND c.made_from_hash = d.content_hash))"                \
    " AND (?7 = 0 OR c.dup_of IS NULL OR c.made_from_hash <> d.content_hash)"                  \
    " AND (?8 = 0 OR (c.chunked_at IS NULL AND c.dup_of IS NULL))"

#define CHUNK_COLS                                                                             \
    "SELECT k.id, k.document_id, k.position, k.heading, k.kind, k.text, k.n_tokens,"           \
    " d.author_id, a.name, d.platform, d.url, d.title, d.published_at, d.content_type"        \
    " FROM chunks k JOIN documents d ON d.id = k.document_id"                                  \
    " JOIN authors a ON a.id = d.author_id "

/* A training run with its summary: step count, last step and loss, last evaluation. */
#define TRUN_COLS                                                                              \
    "SELECT r.id, r.name, r.kind, r.config_json, r.base_model, r.base_hash, r.dataset,"        \
    " r.dataset_hash, r.code_version, r.host, r.started_at, r.finished_at, r.status,"          \
    " r.adapter_path, r.error,"                                                                \
    " (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id),"                               \
    " (SELECT max(step) FROM run_steps s WHERE s.run_id = r.id),"                              \
    " (SELECT loss FROM run_steps s WHERE s.run_id = r.id ORDER BY step DESC LIMIT 1),"        \
    " (SELECT count(*) FROM run_evals e WHERE e.run_id = r.id),"                               \
    " (SELECT loss FROM run_evals e WHERE e.run_id = r.id ORDER BY step DESC, split LIMIT 1),"  \
    " (SELECT split FROM run_evals e WHERE e.run_id = r.id ORDER BY step DESC, split LIMIT 1)" \
    " FROM runs r "

static const char *const wh_sql_text[S_COUNT] = {
    [S_AUTHOR_INSERT] = "INSERT INTO authors(name, created_at) VALUES(?1, ?2)"
                        " ON CONFLICT(name) DO NOTHING",
    [S_AUTHOR_FIND] = "SELECT id FROM authors WHERE name = ?1",
    [S_SOURCE_INSERT] = "INSERT INTO sources(author_id, platform, url, every_s, created_at)"
                        " VALUES(?1, ?2, ?3, ?4, ?5)"
                        " ON CONFLICT(author_id, platform, url) DO NOTHING",
    [S_SOURCE_FIND] = "SELECT id FROM sources WHERE author_id = ?1 AND platform = ?2 AND url = ?3",
    [S_SOURCE_DELETE] = "DELETE FROM sources WHERE id = ?1",
    [S_SOURCE_GET] = SOURCE_COLS "WHERE s.id = ?1",
    [S_SOURCE_PAGE] = SOURCE_COLS "WHERE (?1 = 0 OR s.author_id = ?1) AND s.id > ?2"
                                  " ORDER BY s.id LIMIT ?3",
    [S_SOURCE_DUE_PAGE] = SOURCE_COLS
    "WHERE s.every_s > 0 AND s.next_crawl_at <= ?1"
    " AND (s.next_crawl_at > ?2 OR (s.next_crawl_at = ?2 AND s.id > ?3))"
    " ORDER BY s.next_crawl_at, s.id LIMIT ?4",
    [S_SOURCE_BRIEF] = "SELECT author_id, platform FROM sources WHERE id = ?1",
    [S_SOURCE_LOCK_GET] = "SELECT lock_owner, lock_at FROM sources WHERE id = ?1",
    [S_SOURCE_LOCK_SET] = "UPDATE sources SET lock_owner = ?2, lock_at = ?3 WHERE id = ?1",
    [S_SOURCE_UNLOCK] = "UPDATE sources SET lock_owner = NULL, lock_at = NULL"
                        " WHERE id = ?1 AND lock_owner = ?2",
    [S_SOURCE_CRAWLED] = "UPDATE sources SET last_crawl_at = ?2,"
                         " next_crawl_at = CASE WHEN every_s > 0 THEN ?2 + every_s ELSE 0 END,"
                         " last_status = ?3 WHERE id = ?1",
    [S_SOURCE_INTERRUPTED] = "UPDATE sources SET last_status = 'interrupted' WHERE id = ?1",
    [S_FETCH_GET] = "SELECT etag, last_modified, content_hash FROM fetch_state"
                    " WHERE source_id = ?1 AND url = ?2",
    [S_FETCH_PUT] = "INSERT OR REPLACE INTO fetch_state(source_id, url, etag, last_modified,"
                    " content_hash, fetched_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_SEEN_GET] = "SELECT 1 FROM seen_items WHERE source_id = ?1 AND guid = ?2",
    [S_SEEN_PUT] = "INSERT OR IGNORE INTO seen_items(source_id, guid, first_seen_at)"
                   " VALUES(?1, ?2, ?3)",
    [S_RUN_INTERRUPT] =
        "UPDATE crawl_runs SET status = 'interrupted',"
        " finished_at = COALESCE((SELECT MAX(e.at) FROM crawl_events e"
        "                         WHERE e.run_id = crawl_runs.id), started_at),"
        " error = 'the crawl stopped before it finished (its process was killed)'"
        " WHERE source_id = ?1 AND status = 'running'",
    [S_RUN_INSERT] = "INSERT INTO crawl_runs(source_id, started_at, status)"
                     " VALUES(?1, ?2, 'running')",
    [S_RUN_EVENT] = "INSERT INTO crawl_events(run_id, url, kind, http_status, reason, at)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_RUN_FINISH] = "UPDATE crawl_runs SET finished_at = ?2, status = ?3, fetched = ?4,"
                     " new_docs = ?5, changed = ?6, unchanged = ?7, skipped = ?8, failed = ?9,"
                     " error = ?10 WHERE id = ?1",
    [S_RUN_GET] = "SELECT id, source_id, started_at, finished_at, status, error, fetched,"
                  " new_docs, changed, unchanged, skipped, failed FROM crawl_runs WHERE id = ?1",
    [S_EVENT_PAGE] = "SELECT id, url, kind, http_status, reason FROM crawl_events"
                     " WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    [S_DOC_FIND] = "SELECT id, content_hash, version FROM documents"
                   " WHERE author_id = ?1 AND url = ?2",
    [S_DOC_INSERT] = "INSERT INTO documents(author_id, source_id, platform, url, title,"
                     " published_at, content_type, meta_json, content, content_hash, version,"
                     " first_seen_at, last_seen_at, first_run_id, last_run_id)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11, ?11, ?12, ?12)",
    [S_DOC_TOUCH] = "UPDATE documents SET last_seen_at = ?2, last_run_id = COALESCE(?3, last_run_id),"
                    " source_id = ?4 WHERE id = ?1",
    [S_DOC_UPDATE] = "UPDATE documents SET source_id = ?2, title = ?3, published_at = ?4,"
                     " content_type = ?5, meta_json = ?6, content = ?7, content_hash = ?8,"
                     " version = ?9, last_seen_at = ?10,"
                     " last_run_id = COALESCE(?11, last_run_id) WHERE id = ?1",
    [S_VERSION_INSERT] = "INSERT INTO document_versions(document_id, version, content_hash,"
                         " content, title, seen_at, run_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_DOC_GET] = DOC_COLS "WHERE d.id = ?1",
    [S_DOC_PAGE] = DOC_COLS "WHERE d.id > ?1 AND" DOC_WHERE " ORDER BY d.id LIMIT ?9",
    [S_DOC_COUNT] = "SELECT count(*) FROM documents d LEFT JOIN cleaned c"
                    " ON c.document_id = d.id WHERE ?1 = ?1 AND" DOC_WHERE,
    [S_DOC_HASH] = "SELECT content_hash FROM documents WHERE id = ?1",
    [S_CLEANED_GET] = "SELECT id, text_hash, dup_of FROM cleaned WHERE document_id = ?1",
    [S_CLEANED_INSERT] = "INSERT INTO cleaned(document_id, made_from_hash, text, text_hash,"
                         " dup_of, dup_similarity, cleaned_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_CLEANED_UPDATE] = "UPDATE cleaned SET made_from_hash = ?2, text = ?3, text_hash = ?4,"
                         " dup_of = ?5, dup_similarity = ?6, cleaned_at = ?7,"
                         " chunked_at = CASE WHEN ?8 THEN NULL ELSE chunked_at END WHERE id = ?1",
    [S_CLEANED_CHUNKED] = "UPDATE cleaned SET chunked_at = ?2 WHERE id = ?1",
    [S_CHUNKS_DELETE_DOC] = "DELETE FROM chunks WHERE document_id = ?1",
    [S_CHUNK_INSERT] = "INSERT INTO chunks(document_id, cleaned_id, position, heading, kind,"
                       " text, n_tokens, tokenizer, text_hash, made_at)"
                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_CHUNK_GET] = CHUNK_COLS "WHERE k.id = ?1",
    [S_UNEMBEDDED_PAGE] = CHUNK_COLS "LEFT JOIN embeddings e ON e.chunk_id = k.id"
                                     " AND e.model = ?1 WHERE e.chunk_id IS NULL AND k.id > ?2"
                                     " ORDER BY k.id LIMIT ?3",
    [S_EMBED_MARK] = "INSERT OR REPLACE INTO embeddings(chunk_id, model, dim, embedded_at)"
                     " SELECT id, ?2, ?3, ?4 FROM chunks WHERE id = ?1",
    [S_EMBED_RESET] = "DELETE FROM embeddings WHERE model <> ?1",
    [S_TOMB_PAGE] = "SELECT chunk_id FROM chunk_tombstones WHERE chunk_id > ?1"
                    " ORDER BY chunk_id LIMIT ?2",
    [S_TOMB_CLEAR] = "DELETE FROM chunk_tombstones WHERE chunk_id <= ?1",
    [S_STATS] = "SELECT (SELECT count(*) FROM authors), (SELECT count(*) FROM sources),"
                " (SELECT count(*) FROM documents), (SELECT count(*) FROM document_versions),"
                " (SELECT count(*) FROM cleaned),"
                " (SELECT count(*) FROM cleaned WHERE dup_of IS NOT NULL),"
                " (SELECT count(*) FROM chunks), (SELECT count(DISTINCT chunk_id) FROM embeddings),"
                " (SELECT count(*) FROM crawl_runs)",
    [S_TRUN_INSERT] = "INSERT INTO runs(name, kind, config_json, base_model, base_hash, dataset,"
                      " dataset_hash, code_version, host, started_at, status)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running')",
    /* A resumed run logs the steps after its checkpoint again: the later row wins. */
    [S_TRUN_STEP] = "INSERT OR REPLACE INTO run_steps(run_id, step, loss, lr, grad_norm,"
                    " tokens_per_s, mem_bytes, at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
                    " WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
    [S_TRUN_EVAL] = "INSERT OR REPLACE INTO run_evals(run_id, step, split, loss, metrics_json)"
                    " SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
    [S_TRUN_FINISH] = "UPDATE runs SET finished_at = ?2, status = ?3,"
                      " adapter_path = COALESCE(?4, adapter_path), error = ?5 WHERE id = ?1",
    [S_TRUN_GET] = TRUN_COLS "WHERE r.id = ?1",
    [S_TRUN_PAGE] = TRUN_COLS "WHERE r.id > ?1 ORDER BY r.id LIMIT ?2",
    [S_TRUN_FIND_NAME] = "SELECT id FROM runs WHERE name = ?1 ORDER BY id DESC LIMIT 1",
    [S_TRUN_STEP_PAGE] = "SELECT step, loss, lr, grad_norm, tokens_per_s, mem_bytes, at"
                         " FROM run_steps WHERE run_id = ?1 AND step > ?2 ORDER BY step LIMIT ?3",
    [S_TRUN_EVAL_PAGE] = "SELECT step, split, loss, metrics_json FROM run_evals"
                         " WHERE run_id = ?1 AND (step > ?2 OR (step = ?2 AND split > ?3))"
                         " ORDER BY step, split LIMIT ?4",
};

struct wh_db {
    sqlite3 *sql;
    char *path;                  /* for messages */
    sqlite3_stmt *stmt[S_COUNT]; /* prepared on first use, finalized by wh_close */
    int depth;                   /* wh_begin nesting */
    int poisoned;                /* an inner wh_rollback happened: the outer commit rolls back */
};

static double wh_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sets the thread's error from a SQLite result code: the path, what was being done, SQLite's
 * message. */
static tw_status wh_fail(wh_db *db, int rc, const char *what) {
    const char *msg = db && db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc);
    const char *path = db && db->path ? db->path : "warehouse";
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return tw_error(TW_ERR_RUNTIME, "%s: %s: database is locked (%s)", path, what, msg);
    case SQLITE_NOMEM:
        return tw_error(TW_ERR_NOMEM, "%s: %s: out of memory", path, what);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return tw_error(TW_ERR_FORMAT, "%s: not a twin database (%s)", path, msg);
    case SQLITE_CONSTRAINT:
        return tw_error(TW_ERR_ARG, "%s: %s: %s", path, what, msg);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_FULL:
    case SQLITE_AUTH:
        return tw_error(TW_ERR_IO, "%s: %s: %s", path, what, msg);
    default:
        return tw_error(TW_ERR_RUNTIME, "%s: %s: %s", path, what, msg);
    }
}

/* The cached statement id, reset and with its bindings cleared; NULL (message set) when it
 * cannot be prepared. */
static sqlite3_stmt *wh_stmt(wh_db *db, wh_sql id, tw_status *st) {
    sqlite3_stmt *s = db->stmt[id];
    if (!s) {
        int rc = sqlite3_prepare_v3(db->sql, wh_sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
                                    NULL);
        if (rc != SQLITE_OK) {
            *st = wh_fail(db, rc, "preparing a statement");
            return NULL;
        }
        db->stmt[id] = s;
    }
    return s;
}

/* Ends the use of a cached statement (it stays prepared). */
static void wh_done(sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static void bind_str(sqlite3_stmt *s, int i, const char *v) {
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static void bind_strn(sqlite3_stmt *s, int i, const char *v, size_t n) {
    sqlite3_bind_text64(s, i, v ? v : "", (sqlite3_uint64)n, SQLITE_TRANSIENT, SQLITE_UTF8);
}

static void bind_id_or_null(sqlite3_stmt *s, int i, int64_t id) {
    if (id > 0)
        sqlite3_bind_int64(s, i, id);
    else
        sqlite3_bind_null(s, i);
}

/* Steps a statement that returns no row (or whose row is ignored); finishes its use. */
static tw_status wh_step_done(wh_db *db, sqlite3_stmt *s, const char *what) {
    int rc = sqlite3_step(s);
    tw_status st = TW_OK;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) st = wh_fail(db, rc, what);
    wh_done(s);
    return st;
}

/* A heap copy of a text column (dflt when NULL); sets *oom on allocation failure. */
static char *col_dup(sqlite3_stmt *s, int i, const char *dflt, int *oom) {
    const unsigned char *t = sqlite3_column_text(s, i);
    char *r;
    if (!t) {
        if (!dflt) return NULL;
        r = tw_strdup(dflt);
    } else {
        r = tw_strndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
    }
    if (!r) *oom = 1;
    return r;
}

static void hash_hex(const void *data, size_t n, char out[65]) {
    uint8_t h[32];
    tw_sha256(data, n, h);
    tw_hex(h, 32, out);
}

static tw_status wh_exec(wh_db *db, const char *sql, const char *what) {
    int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? TW_OK : wh_fail(db, rc, what);
}

/* One integer from a query without parameters (PRAGMAs). */
static tw_status wh_query_int(wh_db *db, const char *sql, int64_t *out) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(s, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    tw_status st = rc == SQLITE_OK ? TW_OK : wh_fail(db, rc, sql);
    sqlite3_finalize(s);
    return st;
}

/* ---- platforms, intervals ------------------------------------------------------------------ */

static const char *const wh_platform_names[WH_PLATFORM_COUNT] = {
    "medium", "substack", "github", "linkedin", "article", "local"};

const char *wh_platform_name(wh_platform p) {
    return (int)p >= 0 && p < WH_PLATFORM_COUNT ? wh_platform_names[p] : "?";
}

int wh_platform_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < WH_PLATFORM_COUNT; i++)
        if (!strcasecmp(name, wh_platform_names[i])) return i;
    return -1;
}

/* 1 when host (length n, lower case) is suffix or ends with "." suffix. */
static int host_is(const char *host, size_t n, const char *suffix, int subdomains_only) {
    size_t m = strlen(suffix);
    if (n == m && !subdomains_only) return memcmp(host, suffix, m) == 0;
    return n > m + 1 && host[n - m - 1] == '.' && memcmp(host + n - m, suffix, m) == 0;
}

int wh_platform_guess(const char *url) {
    if (!url || !*url) return -1;
    const char *p = NULL;
    if (!strncasecmp(url, "https://", 8))
        p = url + 8;
    else if (!strncasecmp(url, "http://", 7))
        p = url + 7;
    if (p) {
        size_t end = strcspn(p, "/?#");
        /* authority = [userinfo@]host[:port] */
        const char *host = p;
        for (size_t i = 0; i < end; i++)
            if (p[i] == '@') host = p + i + 1;
        size_t n = (size_t)(p + end - host);
        if (n > 0 && host[0] == '[') return WH_PLATFORM_ARTICLE; /* an IPv6 literal */
        const char *colon = memchr(host, ':', n);
        if (colon) n = (size_t)(colon - host);
        if (n > 0 && host[n - 1] == '.') n--; /* "medium.com." is medium.com */
        if (n == 0 || n > 253) return -1;
        char h[254];
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)host[i];
            if (c <= ' ' || c == 0x7f) return -1;
            h[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        h[n] = 0;
        if (host_is(h, n, "medium.com", 0)) return WH_PLATFORM_MEDIUM;
        if (host_is(h, n, "substack.com", 1)) return WH_PLATFORM_SUBSTACK;
        if (!strcmp(h, "github.com") || !strcmp(h, "www.github.com")) return WH_PLATFORM_GITHUB;
        return WH_PLATFORM_ARTICLE;
    }
    if (strstr(url, "://")) return -1; /* another scheme */
    size_t n = strlen(url);
    if (tw_is_dir(url)) {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s/Shares.csv", url);
        int linkedin = !sb.failed && tw_path_exists(tw_sb_str(&sb));
        tw_sb_free(&sb);
        return linkedin ? WH_PLATFORM_LINKEDIN : WH_PLATFORM_LOCAL;
    }
    if (n > 4 && !strcasecmp(url + n - 4, ".zip")) return WH_PLATFORM_LINKEDIN;
    return -1;
}

tw_status wh_interval_parse(const char *s, int64_t *seconds) {
    if (!s || !*s) return tw_error(TW_ERR_ARG, "interval: empty (expected SECONDS or 30m, 6h, 1d)");
    int64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        if (v > WH_INTERVAL_MAX) break; /* keeps v small; refused below */
        v = v * 10 + (*p - '0');
        p++;
    }
    int64_t unit = 0;
    if (p == s || (*p && p[1]))
        unit = 0;
    else if (!*p || *p == 's' || *p == 'S')
        unit = 1;
    else if (*p == 'm' || *p == 'M')
        unit = 60;
    else if (*p == 'h' || *p == 'H')
        unit = 3600;
    else if (*p == 'd' || *p == 'D')
        unit = 86400;
    else if (*p == 'w' || *p == 'W')
        unit = 7 * 86400;
    if (!unit)
        return tw_error(TW_ERR_ARG,
                        "interval '%.40s': expected SECONDS or a number with s, m, h, d or w "
                        "(30m, 6h, 1d)",
                        s);
    if (v <= 0 || v > WH_INTERVAL_MAX / unit)
        return tw_error(TW_ERR_ARG, "interval '%.40s': must be between 1 s and %lld days", s,
                        (long long)(WH_INTERVAL_MAX / 86400));
    *seconds = v * unit;
    return TW_OK;
}

/* ---- local document URLs ------------------------------------------------------------------- */

/* The folder of a local source's URL: without "file://" / "file:" and trailing slashes ("/"
 * stays "/"); *n its length. */
static const char *local_folder(const char *folder, size_t *n) {
    if (!strncmp(folder, "file://", 7)) folder += 7;
    else if (!strncmp(folder, "file:", 5)) folder += 5;
    size_t l = strlen(folder);
    while (l > 1 && folder[l - 1] == '/') l--;
    *n = l;
    return folder;
}

void wh_local_url(const char *folder, const char *rel, tw_sb *out) {
    size_t n;
    const char *f = local_folder(folder ? folder : "", &n);
    tw_sb_puts(out, f[0] == '/' ? "file://" : "file:");
    /* pchar (RFC 3986, 3.3: unreserved, sub-delims, ':' and '@') and '/' stay as they are */
    static const char keep[] = "!$&'()*+,;=:@/";
    tw_sb_pct(out, f, n, keep);
    if (!(n && f[n - 1] == '/')) tw_sb_putc(out, '/');
    tw_sb_pct(out, rel ? rel : "", rel ? strlen(rel) : 0, keep);
}

/* SQL twin_local_url(folder, rel) for migration 3: wh_local_url, or NULL when the folder is not
 * an absolute path (or an argument is NULL). */
static void sql_local_url(sqlite3_context *cx, int argc, sqlite3_value **argv) {
    (void)argc;
    const char *folder = (const char *)sqlite3_value_text(argv[0]);
    const char *rel = (const char *)sqlite3_value_text(argv[1]);
    size_t n;
    if (!folder || !rel || local_folder(folder, &n)[0] != '/') {
        sqlite3_result_null(cx);
        return;
    }
    tw_sb sb;
    tw_sb_init(&sb);
    wh_local_url(folder, rel, &sb);
    if (sb.failed) {
        sqlite3_result_error_nomem(cx);
    } else {
        sqlite3_result_text64(cx, sb.buf, sb.len, SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    tw_sb_free(&sb);
}

/* ---- open, migrate, close ------------------------------------------------------------------ */

static tw_status wh_migrate(wh_db *db) {
    int64_t v = 0, app = 0, objects = 0;
    tw_status st = wh_query_int(db, "PRAGMA user_version", &v);
    if (!st) st = wh_query_int(db, "PRAGMA application_id", &app);
    if (st) return st;
    if (v > WH_SCHEMA_VERSION && app == WH_APP_ID)
        return tw_error(TW_ERR_FORMAT,
                        "%s: schema version %lld is newer than this build's version %d "
                        "(use a newer twin)",
                        db->path, (long long)v, WH_SCHEMA_VERSION);
    if (v == WH_SCHEMA_VERSION && app == WH_APP_ID) return TW_OK;

    /* Migrate under a write lock, reading the version again: another process may have done it
     * meanwhile. */
    st = wh_exec(db, "BEGIN IMMEDIATE", "starting the schema migration");
    if (st) return st;
    st = wh_query_int(db, "PRAGMA user_version", &v);
    if (!st) st = wh_query_int(db, "PRAGMA application_id", &app);
    if (!st) st = wh_query_int(db, "SELECT count(*) FROM sqlite_master", &objects);
    if (!st && app != WH_APP_ID && (app != 0 || v != 0 || objects != 0))
        st = tw_error(TW_ERR_FORMAT,
                      "%s: not a twin database (application_id %lld, user_version %lld, "
                      "%lld schema objects)",
                      db->path, (long long)app, (long long)v, (long long)objects);
    if (!st && v > WH_SCHEMA_VERSION)
        st = tw_error(TW_ERR_FORMAT,
                      "%s: schema version %lld is newer than this build's version %d "
                      "(use a newer twin)",
                      db->path, (long long)v, WH_SCHEMA_VERSION);
    for (int64_t i = v; !st && i < WH_SCHEMA_VERSION; i++) {
        char what[64];
        snprintf(what, sizeof what, "migrating the schema to version %lld", (long long)i + 1);
        st = wh_exec(db, wh_migrations[i], what);
    }
    if (!st && v < WH_SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d",
                 WH_SCHEMA_VERSION, WH_APP_ID);
        st = wh_exec(db, sql, "recording the schema version");
    }
    if (!st) st = wh_exec(db, "COMMIT", "committing the schema migration");
    if (st) sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
    if (!st && v < WH_SCHEMA_VERSION)
        tw_log_debug("%s: schema migrated from version %lld to %d", db->path, (long long)v,
                     WH_SCHEMA_VERSION);
    return st;
}

tw_status wh_open(const char *path, wh_db **out) {
    if (out) *out = NULL;
    if (!out) return tw_error(TW_ERR_ARG, "wh_open: out is NULL");
    if (!path || !*path) return tw_error(TW_ERR_ARG, "wh_open: the database path is empty");
    wh_db *db = tw_calloc(1, sizeof *db);
    if (!db) return tw_error(TW_ERR_NOMEM, "%s: out of memory opening the warehouse", path);
    db->path = tw_strdup(path);
    if (!db->path) {
        tw_free(db);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory opening the warehouse", path);
    }
    int rc = sqlite3_open_v2(path, &db->sql,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    tw_status st;
    if (rc != SQLITE_OK) {
        if (db->sql)
            st = tw_error(rc == SQLITE_NOMEM ? TW_ERR_NOMEM : TW_ERR_IO, "%s: cannot open: %s",
                          path, sqlite3_errmsg(db->sql));
        else
            st = tw_error(TW_ERR_NOMEM, "%s: cannot open: out of memory", path);
        wh_close(db);
        return st;
    }
    sqlite3_extended_result_codes(db->sql, 1);
    sqlite3_busy_timeout(db->sql, WH_BUSY_MS);
    int64_t dummy;
    /* The first read of the file: a file that is not SQLite fails here (SQLITE_NOTADB). */
    st = wh_query_int(db, "PRAGMA application_id", &dummy);
    if (!st) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(db->sql, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(s, 0);
            if (mode && strcmp(mode, "wal") && strcmp(path, ":memory:"))
                tw_log_warn("%s: journal mode is '%s', not WAL (the file system may not "
                            "support it)",
                            path, mode);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_OK && rc != SQLITE_DONE) st = wh_fail(db, rc, "setting WAL mode");
    }
    /* NORMAL is crash-safe in WAL mode (a power loss may only lose the last commits). */
    if (!st) st = wh_exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", "pragmas");
    if (!st) {
        rc = sqlite3_create_function(db->sql, "twin_local_url", 2,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_local_url,
                                     NULL, NULL);
        if (rc != SQLITE_OK) st = wh_fail(db, rc, "registering twin_local_url");
    }
    if (!st) st = wh_migrate(db);
    if (st) {
        wh_close(db);
        return st;
    }
    *out = db;
    return TW_OK;
}

void wh_close(wh_db *db) {
    if (!db) return;
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(db->stmt[i]);
    if (db->sql) sqlite3_close(db->sql); /* an open transaction is rolled back */
    tw_free(db->path);
    tw_free(db);
}

int wh_schema_version(wh_db *db) {
    int64_t v = -1;
    if (!db || wh_query_int(db, "PRAGMA user_version", &v)) return -1;
    return (int)v;
}

/* ---- transactions -------------------------------------------------------------------------- */

tw_status wh_begin(wh_db *db) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_begin: db is NULL");
    if (db->depth > 0) {
        db->depth++;
        return TW_OK;
    }
    /* IMMEDIATE: take the write lock now (waiting up to the busy timeout), so a transaction
     * never fails half way when upgrading from a read lock. */
    tw_status st = wh_exec(db, "BEGIN IMMEDIATE", "starting a transaction");
    if (st) return st;
    db->depth = 1;
    db->poisoned = 0;
    return TW_OK;
}

tw_status wh_commit(wh_db *db) {
    if (!db || db->depth <= 0) return tw_error(TW_ERR_ARG, "wh_commit without wh_begin");
    if (--db->depth > 0) return TW_OK;
    if (db->poisoned) {
        db->poisoned = 0;
        sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
        return tw_error(TW_ERR_RUNTIME,
                        "%s: the transaction was rolled back (a step inside it failed)", db->path);
    }
    int rc = sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        tw_status st = wh_fail(db, rc, "committing");
        if (!sqlite3_get_autocommit(db->sql)) sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return TW_OK;
}

void wh_rollback(wh_db *db) {
    if (!db || db->depth <= 0) return;
    if (--db->depth > 0) {
        db->poisoned = 1;
        return;
    }
    db->poisoned = 0;
    /* Keeps the thread's error message: the caller is reporting the failure that led here. */
    if (!sqlite3_get_autocommit(db->sql)) sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
}

/* Ends an internal transaction: commit when st is TW_OK, else roll back and keep st. */
static tw_status wh_end(wh_db *db, tw_status st) {
    if (st) {
        wh_rollback(db);
        return st;
    }
    return wh_commit(db);
}

/* ---- authors ------------------------------------------------------------------------------- */

static tw_status author_find(wh_db *db, const char *name, int64_t *id, int *found) {
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_AUTHOR_FIND, &st);
    if (!s) return st;
    bind_str(s, 1, name);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        st = wh_fail(db, rc, "reading authors");
    wh_done(s);
    return st;
}

tw_status wh_author_find(wh_db *db, const char *name, int64_t *id) {
    if (!db || !name || !*name || !id) return tw_error(TW_ERR_ARG, "wh_author_find: author name is empty");
    int found = 0;
    tw_status st = author_find(db, name, id, &found);
    if (st) return st;
    if (!found) return tw_error(TW_ERR_NOT_FOUND, "no author '%s' in %s", name, db->path);
    return TW_OK;
}

tw_status wh_author_ensure(wh_db *db, const char *name, int64_t *id) {
    if (!db || !name || !*name || !id)
        return tw_error(TW_ERR_ARG, "wh_author_ensure: author name is empty");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_AUTHOR_INSERT, &st);
    if (!s) return st;
    bind_str(s, 1, name);
    sqlite3_bind_double(s, 2, wh_now());
    st = wh_step_done(db, s, "adding an author");
    if (st) return st;
    int found = 0;
    st = author_find(db, name, id, &found);
    if (!st && !found) st = tw_error(TW_ERR_RUNTIME, "%s: author '%s' vanished", db->path, name);
    return st;
}

/* ---- sources ------------------------------------------------------------------------------- */

void wh_source_clear(wh_source *s) {
    if (!s) return;
    tw_free(s->author);
    tw_free(s->url);
    tw_free(s->last_status);
    memset(s, 0, sizeof *s);
}

/* Fills out from a SOURCE_COLS row. */
static tw_status source_row(wh_db *db, sqlite3_stmt *s, wh_source *out) {
    int oom = 0;
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    out->author_id = sqlite3_column_int64(s, 1);
    out->author = col_dup(s, 2, "", &oom);
    int p = wh_platform_parse((const char *)sqlite3_column_text(s, 3));
    out->platform = p < 0 ? WH_PLATFORM_ARTICLE : (wh_platform)p;
    out->url = col_dup(s, 4, "", &oom);
    out->every_s = sqlite3_column_int64(s, 5);
    out->next_crawl_at = sqlite3_column_double(s, 6);
    out->last_crawl_at = sqlite3_column_double(s, 7);
    out->last_status = col_dup(s, 8, "", &oom);
    if (oom) {
        wh_source_clear(out);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory reading source", db->path);
    }
    return TW_OK;
}

tw_status wh_source_add(wh_db *db, const char *author, wh_platform platform, const char *url,
                        int64_t every_s, int64_t *id, int *existed) {
    if (!db || !id) return tw_error(TW_ERR_ARG, "wh_source_add: db or id is NULL");
    if (!author || !*author) return tw_error(TW_ERR_ARG, "source: author is empty");
    if (!url || !*url) return tw_error(TW_ERR_ARG, "source: url is empty");
    if ((int)platform < 0 || platform >= WH_PLATFORM_COUNT)
        return tw_error(TW_ERR_ARG, "source %s: platform %d is not a platform", url, (int)platform);
    if (every_s < 0)
        return tw_error(TW_ERR_ARG, "source %s: every_s %lld is negative", url, (long long)every_s);
    tw_status st = wh_begin(db);
    if (st) return st;
    int64_t author_id = 0;
    st = wh_author_ensure(db, author, &author_id);
    sqlite3_stmt *s = st ? NULL : wh_stmt(db, S_SOURCE_INSERT, &st);
    int added = 0;
    if (s) {
        sqlite3_bind_int64(s, 1, author_id);
        bind_str(s, 2, wh_platform_names[platform]);
        bind_str(s, 3, url);
        sqlite3_bind_int64(s, 4, every_s);
        sqlite3_bind_double(s, 5, wh_now());
        st = wh_step_done(db, s, "adding a source");
        added = !st && sqlite3_changes(db->sql) > 0;
    }
    if (!st) s = wh_stmt(db, S_SOURCE_FIND, &st);
    if (!st) {
        sqlite3_bind_int64(s, 1, author_id);
        bind_str(s, 2, wh_platform_names[platform]);
        bind_str(s, 3, url);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            st = wh_fail(db, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, "finding the source");
        wh_done(s);
    }
    if (!st && existed) *existed = !added;
    return wh_end(db, st);
}

tw_status wh_source_remove(wh_db *db, int64_t id) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_source_remove: db is NULL");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_DELETE, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    st = wh_step_done(db, s, "removing a source");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s", (long long)id, db->path);
    return st;
}

tw_status wh_source_get(wh_db *db, int64_t id, wh_source *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_source_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = source_row(db, s, out);
    else if (rc == SQLITE_DONE)
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s", (long long)id, db->path);
    else
        st = wh_fail(db, rc, "reading a source");
    wh_done(s);
    return st;
}

/* Reads up to WH_PAGE source rows from the bound statement s into page; *n set. */
static tw_status source_page(wh_db *db, sqlite3_stmt *s, wh_source *page, int *n) {
    tw_status st = TW_OK;
    *n = 0;
    int rc = SQLITE_DONE;
    while (*n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        st = source_row(db, s, &page[*n]);
        if (st) break;
        ++*n;
    }
    if (!st && *n < WH_PAGE && rc != SQLITE_DONE) st = wh_fail(db, rc, "reading sources");
    wh_done(s);
    if (st)
        for (int i = 0; i < *n; i++) wh_source_clear(&page[i]);
    return st;
}

/* Calls fn for each source of a page, clearing them all; *stop set when fn asked to stop. */
static void source_page_call(wh_source *page, int n, wh_source_fn fn, void *ctx, int *stop) {
    for (int i = 0; i < n; i++) {
        if (!*stop && fn(ctx, &page[i])) *stop = 1;
        wh_source_clear(&page[i]);
    }
}

tw_status wh_source_each(wh_db *db, int64_t author_id, wh_source_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_source_each: db or fn is NULL");
    int64_t last = 0;
    for (;;) {
        wh_source page[WH_PAGE];
        int n = 0;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_SOURCE_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, author_id);
        sqlite3_bind_int64(s, 2, last);
        sqlite3_bind_int(s, 3, WH_PAGE);
        st = source_page(db, s, page, &n);
        if (st) return st;
        if (n == 0) break;
        last = page[n - 1].id;
        int stop = 0;
        source_page_call(page, n, fn, ctx, &stop);
        if (stop || n < WH_PAGE) break;
    }
    return TW_OK;
}

tw_status wh_source_each_due(wh_db *db, double now, wh_source_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_source_each_due: db or fn is NULL");
    double last_t = -INFINITY;
    int64_t last_id = 0;
    for (;;) {
        wh_source page[WH_PAGE];
        int n = 0;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_SOURCE_DUE_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_double(s, 1, now);
        sqlite3_bind_double(s, 2, last_t);
        sqlite3_bind_int64(s, 3, last_id);
        sqlite3_bind_int(s, 4, WH_PAGE);
        st = source_page(db, s, page, &n);
        if (st) return st;
        if (n == 0) break;
        last_t = page[n - 1].next_crawl_at;
        last_id = page[n - 1].id;
        int stop = 0;
        source_page_call(page, n, fn, ctx, &stop);
        if (stop || n < WH_PAGE) break;
    }
    return TW_OK;
}

/* "2024-05-01T10:00:00Z" for a wall-clock time. */
static void iso_time(double t, char out[32]) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%.0f", t);
}

tw_status wh_source_lock(wh_db *db, int64_t id, const char *owner, double stale_s,
                         wh_owner_alive_fn owner_alive) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_source_lock: db is NULL");
    if (!owner || !*owner) return tw_error(TW_ERR_ARG, "source %lld: lock owner is empty", (long long)id);
    tw_status st = wh_begin(db);
    if (st) return st;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_LOCK_GET, &st);
    char *holder = NULL;
    double at = 0;
    if (s) {
        sqlite3_bind_int64(s, 1, id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            int oom = 0;
            holder = col_dup(s, 0, NULL, &oom);
            at = sqlite3_column_double(s, 1);
            if (oom) st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading a lock", db->path);
        } else if (rc == SQLITE_DONE) {
            st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s", (long long)id, db->path);
        } else {
            st = wh_fail(db, rc, "reading the source lock");
        }
        wh_done(s);
    }
    double now = wh_now();
    if (!st && holder && strcmp(holder, owner) != 0) {
        double age = now - at;
        int alive = owner_alive ? owner_alive(holder) != 0 : 1;
        if (age < stale_s && alive) {
            char when[32];
            iso_time(at, when);
            st = tw_error(TW_ERR_RUNTIME, "source %lld is being crawled by %s since %s (%.0f s ago)",
                          (long long)id, holder, when, age);
        } else {
            tw_log_warn("source %lld: taking over the crawl lock of %s (%s)", (long long)id,
                        holder, alive ? "stale" : "its process is gone");
        }
    }
    tw_free(holder);
    if (!st) s = wh_stmt(db, S_SOURCE_LOCK_SET, &st);
    if (!st) {
        sqlite3_bind_int64(s, 1, id);
        bind_str(s, 2, owner);
        sqlite3_bind_double(s, 3, now);
        st = wh_step_done(db, s, "taking the source lock");
    }
    return wh_end(db, st);
}

tw_status wh_source_unlock(wh_db *db, int64_t id, const char *owner) {
    if (!db || !owner) return tw_error(TW_ERR_ARG, "wh_source_unlock: db or owner is NULL");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_UNLOCK, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    bind_str(s, 2, owner);
    return wh_step_done(db, s, "releasing the source lock");
}

static int run_status_ok(const char *status, int allow_interrupted) {
    return status && (!strcmp(status, "ok") || !strcmp(status, "partial") ||
                      !strcmp(status, "failed") ||
                      (allow_interrupted && !strcmp(status, "interrupted")));
}

tw_status wh_source_crawled(wh_db *db, int64_t id, double now, const char *status) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_source_crawled: db is NULL");
    if (!run_status_ok(status, 1))
        return tw_error(TW_ERR_ARG, "source %lld: status '%s' is not ok|partial|failed|interrupted",
                        (long long)id, status ? status : "(null)");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_CRAWLED, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, now);
    bind_str(s, 3, status);
    st = wh_step_done(db, s, "recording a crawl");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s", (long long)id, db->path);
    return st;
}

/* The author and platform of a source; TW_ERR_NOT_FOUND when absent. */
static tw_status source_brief(wh_db *db, int64_t id, int64_t *author_id, char platform[16]) {
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SOURCE_BRIEF, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *author_id = sqlite3_column_int64(s, 0);
        const char *p = (const char *)sqlite3_column_text(s, 1);
        snprintf(platform, 16, "%s", p ? p : "");
    } else if (rc == SQLITE_DONE) {
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s", (long long)id, db->path);
    } else {
        st = wh_fail(db, rc, "reading a source");
    }
    wh_done(s);
    return st;
}

/* ---- crawl state --------------------------------------------------------------------------- */

void wh_fetch_state_clear(wh_fetch_state *st) {
    if (!st) return;
    tw_free(st->etag);
    tw_free(st->last_modified);
    tw_free(st->content_hash);
    memset(st, 0, sizeof *st);
}

tw_status wh_fetch_state_get(wh_db *db, int64_t source_id, const char *url, wh_fetch_state *out) {
    if (!db || !url || !out) return tw_error(TW_ERR_ARG, "wh_fetch_state_get: url is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_FETCH_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, source_id);
    bind_str(s, 2, url);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int oom = 0;
        out->etag = col_dup(s, 0, NULL, &oom);
        out->last_modified = col_dup(s, 1, NULL, &oom);
        out->content_hash = col_dup(s, 2, NULL, &oom);
        if (oom) {
            wh_fetch_state_clear(out);
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading fetch state", db->path);
        }
    } else if (rc == SQLITE_DONE) {
        st = tw_error(TW_ERR_NOT_FOUND, "source %lld never fetched %s", (long long)source_id, url);
    } else {
        st = wh_fail(db, rc, "reading fetch state");
    }
    wh_done(s);
    return st;
}

tw_status wh_fetch_state_put(wh_db *db, int64_t source_id, const char *url, const char *etag,
                             const char *last_modified, const char *content_hash) {
    if (!db || !url || !*url) return tw_error(TW_ERR_ARG, "fetch state: url is empty");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_FETCH_PUT, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, source_id);
    bind_str(s, 2, url);
    bind_str(s, 3, etag);
    bind_str(s, 4, last_modified);
    bind_str(s, 5, content_hash);
    sqlite3_bind_double(s, 6, wh_now());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s (fetch state of %s)",
                      (long long)source_id, db->path, url);
    else if (rc != SQLITE_DONE)
        st = wh_fail(db, rc, "storing fetch state");
    wh_done(s);
    return st;
}

int wh_item_seen(wh_db *db, int64_t source_id, const char *guid) {
    if (!db || !guid) {
        tw_error(TW_ERR_ARG, "wh_item_seen: guid is NULL");
        return -1;
    }
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SEEN_GET, &st);
    if (!s) return -1;
    sqlite3_bind_int64(s, 1, source_id);
    bind_str(s, 2, guid);
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (r < 0) wh_fail(db, rc, "reading seen items");
    wh_done(s);
    return r;
}

tw_status wh_item_mark(wh_db *db, int64_t source_id, const char *guid) {
    if (!db || !guid || !*guid) return tw_error(TW_ERR_ARG, "seen item: guid is empty");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_SEEN_PUT, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, source_id);
    bind_str(s, 2, guid);
    sqlite3_bind_double(s, 3, wh_now());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = tw_error(TW_ERR_NOT_FOUND, "no source %lld in %s (seen item %s)",
                      (long long)source_id, db->path, guid);
    else if (rc != SQLITE_DONE)
        st = wh_fail(db, rc, "marking a seen item");
    wh_done(s);
    return st;
}

/* ---- crawl runs ---------------------------------------------------------------------------- */

tw_status wh_run_begin(wh_db *db, int64_t source_id, int64_t *run_id) {
    if (!db || !run_id) return tw_error(TW_ERR_ARG, "wh_run_begin: db or run_id is NULL");
    tw_status st = wh_begin(db);
    if (st) return st;
    int64_t author_id;
    char platform[16];
    st = source_brief(db, source_id, &author_id, platform);
    sqlite3_stmt *s = st ? NULL : wh_stmt(db, S_RUN_INTERRUPT, &st);
    int interrupted = 0;
    if (s) {
        sqlite3_bind_int64(s, 1, source_id);
        st = wh_step_done(db, s, "marking interrupted runs");
        interrupted = !st && sqlite3_changes(db->sql) > 0;
    }
    if (!st && interrupted && (s = wh_stmt(db, S_SOURCE_INTERRUPTED, &st))) {
        sqlite3_bind_int64(s, 1, source_id);
        st = wh_step_done(db, s, "marking the source interrupted");
    }
    if (!st && (s = wh_stmt(db, S_RUN_INSERT, &st))) {
        sqlite3_bind_int64(s, 1, source_id);
        sqlite3_bind_double(s, 2, wh_now());
        st = wh_step_done(db, s, "starting a run");
        if (!st) *run_id = sqlite3_last_insert_rowid(db->sql);
    }
    return wh_end(db, st);
}

static const char *const wh_event_names[] = {"fetched", "not_modified", "skipped", "failed"};

tw_status wh_run_event(wh_db *db, int64_t run_id, const char *url, wh_event_kind kind,
                       int http_status, const char *reason) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_run_event: db is NULL");
    if (!url || !*url) return tw_error(TW_ERR_ARG, "run %lld event: url is empty", (long long)run_id);
    if ((int)kind < 0 || kind > WH_EVENT_FAILED)
        return tw_error(TW_ERR_ARG, "run %lld event %s: kind %d is not an event kind",
                        (long long)run_id, url, (int)kind);
    if ((kind == WH_EVENT_SKIPPED || kind == WH_EVENT_FAILED) && (!reason || !*reason))
        return tw_error(TW_ERR_ARG, "run %lld event %s (%s): reason is required",
                        (long long)run_id, url, wh_event_names[kind]);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_RUN_EVENT, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    bind_str(s, 2, url);
    sqlite3_bind_int(s, 3, (int)kind);
    sqlite3_bind_int(s, 4, http_status);
    bind_str(s, 5, reason && *reason ? reason : NULL);
    sqlite3_bind_double(s, 6, wh_now());
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = tw_error(TW_ERR_NOT_FOUND, "no crawl run %lld in %s", (long long)run_id, db->path);
    else if (rc != SQLITE_DONE)
        st = wh_fail(db, rc, "recording a crawl event");
    wh_done(s);
    return st;
}

tw_status wh_run_finish(wh_db *db, int64_t run_id, const wh_run_counts *c, const char *status,
                        const char *error) {
    if (!db || !c) return tw_error(TW_ERR_ARG, "wh_run_finish: db or counts is NULL");
    if (!run_status_ok(status, 0))
        return tw_error(TW_ERR_ARG, "run %lld: status '%s' is not ok|partial|failed",
                        (long long)run_id, status ? status : "(null)");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_RUN_FINISH, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_double(s, 2, wh_now());
    bind_str(s, 3, status);
    sqlite3_bind_int64(s, 4, c->fetched);
    sqlite3_bind_int64(s, 5, c->new_docs);
    sqlite3_bind_int64(s, 6, c->changed);
    sqlite3_bind_int64(s, 7, c->unchanged);
    sqlite3_bind_int64(s, 8, c->skipped);
    sqlite3_bind_int64(s, 9, c->failed);
    bind_str(s, 10, error && *error ? error : NULL);
    st = wh_step_done(db, s, "finishing a run");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no crawl run %lld in %s", (long long)run_id, db->path);
    return st;
}

void wh_run_clear(wh_run *r) {
    if (!r) return;
    tw_free(r->status);
    tw_free(r->error);
    memset(r, 0, sizeof *r);
}

tw_status wh_run_get(wh_db *db, int64_t run_id, wh_run *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_run_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_RUN_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int oom = 0;
        out->id = sqlite3_column_int64(s, 0);
        out->source_id = sqlite3_column_int64(s, 1); /* NULL (source removed) reads 0 */
        out->started_at = sqlite3_column_double(s, 2);
        out->finished_at = sqlite3_column_double(s, 3);
        out->status = col_dup(s, 4, "", &oom);
        out->error = col_dup(s, 5, NULL, &oom);
        out->counts.fetched = sqlite3_column_int64(s, 6);
        out->counts.new_docs = sqlite3_column_int64(s, 7);
        out->counts.changed = sqlite3_column_int64(s, 8);
        out->counts.unchanged = sqlite3_column_int64(s, 9);
        out->counts.skipped = sqlite3_column_int64(s, 10);
        out->counts.failed = sqlite3_column_int64(s, 11);
        if (oom) {
            wh_run_clear(out);
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading a run", db->path);
        }
    } else if (rc == SQLITE_DONE) {
        st = tw_error(TW_ERR_NOT_FOUND, "no crawl run %lld in %s", (long long)run_id, db->path);
    } else {
        st = wh_fail(db, rc, "reading a run");
    }
    wh_done(s);
    return st;
}

tw_status wh_run_each_event(wh_db *db, int64_t run_id, wh_event_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_run_each_event: db or fn is NULL");
    int64_t last = 0;
    for (;;) {
        struct {
            int64_t id;
            char *url, *reason;
            int kind, http_status;
        } page[WH_PAGE];
        int n = 0, oom = 0, rc = SQLITE_DONE;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_EVENT_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, last);
        sqlite3_bind_int(s, 3, WH_PAGE);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            page[n].id = sqlite3_column_int64(s, 0);
            page[n].url = col_dup(s, 1, "", &oom);
            page[n].kind = sqlite3_column_int(s, 2);
            page[n].http_status = sqlite3_column_int(s, 3);
            page[n].reason = col_dup(s, 4, NULL, &oom);
            n++;
        }
        if (oom)
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading events", db->path);
        else if (n < WH_PAGE && rc != SQLITE_DONE)
            st = wh_fail(db, rc, "reading events");
        wh_done(s);
        int stop = st != TW_OK;
        for (int i = 0; i < n; i++) {
            if (!stop) {
                wh_event e = {page[i].url, (wh_event_kind)page[i].kind, page[i].http_status,
                              page[i].reason};
                if (fn(ctx, &e)) stop = 1;
            }
            tw_free(page[i].url);
            tw_free(page[i].reason);
        }
        if (st) return st;
        if (stop || n < WH_PAGE) break;
        last = page[n - 1].id;
    }
    return TW_OK;
}

/* ---- documents ----------------------------------------------------------------------------- */

static const char *const wh_content_types[] = {"html", "html_fragment", "markdown", "text",
                                               "code"};

static int content_type_ok(const char *t) {
    if (!t) return 0;
    for (size_t i = 0; i < sizeof wh_content_types / sizeof wh_content_types[0]; i++)
        if (!strcmp(t, wh_content_types[i])) return 1;
    return 0;
}

/* A non-empty string or NULL (empty strings are stored as NULL). */
static const char *opt_str(const char *s) { return s && *s ? s : NULL; }

static tw_status doc_insert_version(wh_db *db, int64_t doc_id, int64_t version, const char *hash,
                                    const wh_doc_in *d, double now, int64_t run_id) {
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_VERSION_INSERT, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, version);
    bind_str(s, 3, hash);
    bind_strn(s, 4, d->content, d->content_len);
    bind_str(s, 5, opt_str(d->title));
    sqlite3_bind_double(s, 6, now);
    bind_id_or_null(s, 7, run_id);
    return wh_step_done(db, s, "storing a document version");
}

/* The body of wh_document_upsert, inside its transaction. */
static tw_status doc_upsert(wh_db *db, int64_t run_id, const wh_doc_in *d, const char *hash,
                            int64_t *doc_id, wh_doc_outcome *outcome) {
    int64_t author_id;
    char platform[16];
    tw_status st = source_brief(db, d->source_id, &author_id, platform);
    if (st) return tw_error_wrap("document %s", d->url);
    sqlite3_stmt *s = wh_stmt(db, S_DOC_FIND, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, author_id);
    bind_str(s, 2, d->url);
    int rc = sqlite3_step(s);
    int64_t id = 0, version = 0;
    int same = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        const char *h = (const char *)sqlite3_column_text(s, 1);
        same = h && !strcmp(h, hash);
        version = sqlite3_column_int64(s, 2);
    } else if (rc != SQLITE_DONE) {
        st = wh_fail(db, rc, "finding a document");
    }
    wh_done(s);
    if (st) return st;
    double now = wh_now();
    if (!id) {
        s = wh_stmt(db, S_DOC_INSERT, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, author_id);
        sqlite3_bind_int64(s, 2, d->source_id);
        bind_str(s, 3, platform);
        bind_str(s, 4, d->url);
        bind_str(s, 5, opt_str(d->title));
        bind_str(s, 6, opt_str(d->published_at));
        bind_str(s, 7, d->content_type);
        bind_str(s, 8, opt_str(d->meta_json));
        bind_strn(s, 9, d->content, d->content_len);
        bind_str(s, 10, hash);
        sqlite3_bind_double(s, 11, now);
        bind_id_or_null(s, 12, run_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            st = tw_error(TW_ERR_NOT_FOUND, "document %s: no crawl run %lld in %s", d->url,
                          (long long)run_id, db->path);
        else if (rc != SQLITE_DONE)
            st = wh_fail(db, rc, "storing a document");
        wh_done(s);
        if (st) return st;
        id = sqlite3_last_insert_rowid(db->sql);
        st = doc_insert_version(db, id, 1, hash, d, now, run_id);
        *outcome = WH_DOC_NEW;
    } else if (same) {
        s = wh_stmt(db, S_DOC_TOUCH, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_double(s, 2, now);
        bind_id_or_null(s, 3, run_id);
        sqlite3_bind_int64(s, 4, d->source_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            st = tw_error(TW_ERR_NOT_FOUND, "document %s: no crawl run %lld in %s", d->url,
                          (long long)run_id, db->path);
        else if (rc != SQLITE_DONE)
            st = wh_fail(db, rc, "updating a document");
        wh_done(s);
        *outcome = WH_DOC_UNCHANGED;
    } else {
        s = wh_stmt(db, S_DOC_UPDATE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, d->source_id);
        bind_str(s, 3, opt_str(d->title));
        bind_str(s, 4, opt_str(d->published_at));
        bind_str(s, 5, d->content_type);
        bind_str(s, 6, opt_str(d->meta_json));
        bind_strn(s, 7, d->content, d->content_len);
        bind_str(s, 8, hash);
        sqlite3_bind_int64(s, 9, version + 1);
        sqlite3_bind_double(s, 10, now);
        bind_id_or_null(s, 11, run_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            st = tw_error(TW_ERR_NOT_FOUND, "document %s: no crawl run %lld in %s", d->url,
                          (long long)run_id, db->path);
        else if (rc != SQLITE_DONE)
            st = wh_fail(db, rc, "updating a document");
        wh_done(s);
        if (!st) st = doc_insert_version(db, id, version + 1, hash, d, now, run_id);
        *outcome = WH_DOC_CHANGED;
    }
    if (!st) *doc_id = id;
    return st;
}

tw_status wh_document_upsert(wh_db *db, int64_t run_id, const wh_doc_in *d, int64_t *doc_id,
                             wh_doc_outcome *outcome) {
    if (!db || !d) return tw_error(TW_ERR_ARG, "wh_document_upsert: db or document is NULL");
    if (!d->url || !*d->url) return tw_error(TW_ERR_ARG, "document: url is empty");
    if (!d->content && d->content_len)
        return tw_error(TW_ERR_ARG, "document %s: content is NULL", d->url);
    if (!content_type_ok(d->content_type))
        return tw_error(TW_ERR_ARG,
                        "document %s: content_type '%s' is not html|html_fragment|markdown|text|code",
                        d->url, d->content_type ? d->content_type : "(null)");
    char hash[65];
    hash_hex(d->content ? d->content : "", d->content_len, hash);
    int64_t id = 0;
    wh_doc_outcome oc = WH_DOC_UNCHANGED;
    tw_status st = wh_begin(db);
    if (st) return st;
    st = wh_end(db, doc_upsert(db, run_id, d, hash, &id, &oc));
    if (st) return st;
    if (doc_id) *doc_id = id;
    if (outcome) *outcome = oc;
    return TW_OK;
}

void wh_doc_clear(wh_doc *d) {
    if (!d) return;
    tw_free(d->author);
    tw_free(d->url);
    tw_free(d->title);
    tw_free(d->published_at);
    tw_free(d->content_type);
    tw_free(d->meta_json);
    tw_free(d->content);
    tw_free(d->content_hash);
    memset(d, 0, sizeof *d);
}

/* Fills out from a DOC_COLS row; *fresh says whether the cleaned text is current. */
static tw_status doc_row(wh_db *db, sqlite3_stmt *s, wh_doc *out, int *fresh) {
    int oom = 0;
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    out->author_id = sqlite3_column_int64(s, 1);
    out->author = col_dup(s, 2, "", &oom);
    out->source_id = sqlite3_column_int64(s, 3);
    int p = wh_platform_parse((const char *)sqlite3_column_text(s, 4));
    out->platform = p < 0 ? WH_PLATFORM_ARTICLE : (wh_platform)p;
    out->url = col_dup(s, 5, "", &oom);
    out->title = col_dup(s, 6, "", &oom);
    out->published_at = col_dup(s, 7, "", &oom);
    out->content_type = col_dup(s, 8, "", &oom);
    out->meta_json = col_dup(s, 9, "{}", &oom);
    out->content = col_dup(s, 10, "", &oom);
    out->content_len = out->content ? (size_t)sqlite3_column_bytes(s, 10) : 0;
    out->content_hash = col_dup(s, 11, "", &oom);
    out->version = sqlite3_column_int64(s, 12);
    out->first_seen_at = sqlite3_column_double(s, 13);
    out->last_seen_at = sqlite3_column_double(s, 14);
    *fresh = sqlite3_column_int(s, 15);
    if (oom) {
        wh_doc_clear(out);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory reading a document", db->path);
    }
    return TW_OK;
}

static int which_ok(wh_doc_text which) { return (int)which >= 0 && which <= WH_DOC_NONE; }

tw_status wh_doc_get(wh_db *db, int64_t id, wh_doc_text which, wh_doc *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_doc_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    if (!which_ok(which)) return tw_error(TW_ERR_ARG, "wh_doc_get: which %d is not a wh_doc_text", (int)which);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_DOC_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int(s, 20, (int)which);
    int rc = sqlite3_step(s);
    int fresh = 0;
    if (rc == SQLITE_ROW)
        st = doc_row(db, s, out, &fresh);
    else if (rc == SQLITE_DONE)
        st = tw_error(TW_ERR_NOT_FOUND, "no document %lld in %s", (long long)id, db->path);
    else
        st = wh_fail(db, rc, "reading a document");
    wh_done(s);
    if (!st && which == WH_DOC_CLEANED && !fresh) {
        wh_doc_clear(out);
        st = tw_error(TW_ERR_NOT_FOUND, "document %lld has no current cleaned text (twin clean)",
                      (long long)id);
    }
    return st;
}

/* Binds a filter to ?2..?8 of S_DOC_PAGE / S_DOC_COUNT. */
static void bind_filter(sqlite3_stmt *s, const wh_doc_filter *f, int fresh_cleaned,
                        int unchunked) {
    wh_doc_filter all = {0, -1, 0, 0, 0};
    if (!f) f = &all;
    sqlite3_bind_int64(s, 2, f->author_id);
    if (f->platform >= 0 && f->platform < WH_PLATFORM_COUNT)
        bind_str(s, 3, wh_platform_names[f->platform]);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_int64(s, 4, f->source_id);
    sqlite3_bind_int(s, 5, f->need_cleaning != 0);
    sqlite3_bind_int(s, 6, fresh_cleaned);
    sqlite3_bind_int(s, 7, f->skip_duplicates != 0 || unchunked);
    sqlite3_bind_int(s, 8, unchunked);
}

/* The walk behind wh_doc_each and wh_doc_each_unchunked. */
static tw_status doc_walk(wh_db *db, const wh_doc_filter *f, wh_doc_text which, int unchunked,
                          wh_doc_fn fn, void *ctx) {
    int64_t last = 0;
    for (;;) {
        wh_doc page[WH_PAGE];
        int n = 0, rc = SQLITE_DONE, fresh;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_DOC_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, last);
        bind_filter(s, f, which == WH_DOC_CLEANED, unchunked);
        sqlite3_bind_int(s, 9, WH_PAGE);
        sqlite3_bind_int(s, 20, (int)which);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            st = doc_row(db, s, &page[n], &fresh);
            if (st) break;
            n++;
        }
        if (!st && n < WH_PAGE && rc != SQLITE_DONE) st = wh_fail(db, rc, "reading documents");
        wh_done(s);
        int stop = st != TW_OK;
        for (int i = 0; i < n; i++) {
            if (!stop && fn(ctx, &page[i])) stop = 1;
            if (i == n - 1) last = page[i].id;
            wh_doc_clear(&page[i]);
        }
        if (st) return st;
        if (stop || n < WH_PAGE) break;
    }
    return TW_OK;
}

tw_status wh_doc_each(wh_db *db, const wh_doc_filter *f, wh_doc_text which, wh_doc_fn fn,
                      void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_doc_each: db or fn is NULL");
    if (!which_ok(which)) return tw_error(TW_ERR_ARG, "wh_doc_each: which %d is not a wh_doc_text", (int)which);
    return doc_walk(db, f, which, 0, fn, ctx);
}

tw_status wh_doc_count(wh_db *db, const wh_doc_filter *f, int64_t *n) {
    if (!db || !n) return tw_error(TW_ERR_ARG, "wh_doc_count: db or n is NULL");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_DOC_COUNT, &st);
    if (!s) return st;
    sqlite3_bind_int(s, 1, 0);
    bind_filter(s, f, 0, 0);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else
        st = wh_fail(db, rc, "counting documents");
    wh_done(s);
    return st;
}

/* ---- cleaned text and chunks --------------------------------------------------------------- */

static tw_status cleaned_put(wh_db *db, int64_t doc_id, const char *made_from_hash,
                             const char *text, size_t len, int64_t dup_of, double dup_similarity,
                             int64_t *cleaned_id) {
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_DOC_HASH, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, doc_id);
    int rc = sqlite3_step(s);
    wh_done(s);
    if (rc == SQLITE_DONE)
        return tw_error(TW_ERR_NOT_FOUND, "no document %lld in %s", (long long)doc_id, db->path);
    if (rc != SQLITE_ROW) return wh_fail(db, rc, "reading a document");
    char text_hash[65];
    hash_hex(text ? text : "", len, text_hash);

    s = wh_stmt(db, S_CLEANED_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, doc_id);
    rc = sqlite3_step(s);
    int64_t id = 0, old_dup = 0;
    int same_text = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        const char *h = (const char *)sqlite3_column_text(s, 1);
        same_text = h && !strcmp(h, text_hash);
        old_dup = sqlite3_column_int64(s, 2);
    } else if (rc != SQLITE_DONE) {
        st = wh_fail(db, rc, "reading cleaned text");
    }
    wh_done(s);
    if (st) return st;
    /* Chunks go when the text changed, and when the document became a duplicate (its chunks
     * would repeat another document's in search). */
    int drop_chunks = id && (!same_text || (dup_of > 0 && old_dup <= 0));
    if (drop_chunks) {
        s = wh_stmt(db, S_CHUNKS_DELETE_DOC, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, doc_id);
        st = wh_step_done(db, s, "deleting stale chunks");
        if (st) return st;
    }
    s = wh_stmt(db, id ? S_CLEANED_UPDATE : S_CLEANED_INSERT, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id ? id : doc_id);
    bind_str(s, 2, made_from_hash);
    bind_strn(s, 3, text, len);
    bind_str(s, 4, text_hash);
    bind_id_or_null(s, 5, dup_of);
    sqlite3_bind_double(s, 6, dup_of > 0 ? dup_similarity : 0.0);
    sqlite3_bind_double(s, 7, wh_now());
    if (id) sqlite3_bind_int(s, 8, drop_chunks);
    rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        st = tw_error(TW_ERR_NOT_FOUND, "document %lld: dup_of %lld: no such document in %s",
                      (long long)doc_id, (long long)dup_of, db->path);
    else if (rc != SQLITE_DONE)
        st = wh_fail(db, rc, "storing cleaned text");
    wh_done(s);
    if (!st && !id) id = sqlite3_last_insert_rowid(db->sql);
    if (!st && cleaned_id) *cleaned_id = id;
    return st;
}

tw_status wh_cleaned_put(wh_db *db, int64_t doc_id, const char *made_from_hash,
                         const char *text, size_t len, int64_t dup_of, double dup_similarity,
                         int64_t *cleaned_id) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_cleaned_put: db is NULL");
    if (!made_from_hash || !*made_from_hash)
        return tw_error(TW_ERR_ARG, "document %lld: made_from_hash is empty", (long long)doc_id);
    if (!text && len) return tw_error(TW_ERR_ARG, "document %lld: cleaned text is NULL", (long long)doc_id);
    if (dup_of == doc_id)
        return tw_error(TW_ERR_ARG, "document %lld: dup_of names the document itself", (long long)doc_id);
    tw_status st = wh_begin(db);
    if (st) return st;
    return wh_end(db, cleaned_put(db, doc_id, made_from_hash, text, len, dup_of, dup_similarity,
                                  cleaned_id));
}

static tw_status chunks_replace(wh_db *db, int64_t doc_id, const char *tokenizer,
                                const wh_chunk_in *chunks, size_t n) {
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_CLEANED_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, doc_id);
    int rc = sqlite3_step(s);
    int64_t cleaned_id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    wh_done(s);
    if (rc == SQLITE_DONE)
        return tw_error(TW_ERR_NOT_FOUND, "document %lld has no cleaned text in %s (twin clean)",
                        (long long)doc_id, db->path);
    if (rc != SQLITE_ROW) return wh_fail(db, rc, "reading cleaned text");
    s = wh_stmt(db, S_CHUNKS_DELETE_DOC, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, doc_id);
    st = wh_step_done(db, s, "deleting old chunks");
    double now = wh_now();
    for (size_t i = 0; !st && i < n; i++) {
        const wh_chunk_in *c = &chunks[i];
        if (!c->kind || (strcmp(c->kind, "prose") && strcmp(c->kind, "code")))
            return tw_error(TW_ERR_ARG, "document %lld chunk %zu: kind '%s' is not prose|code",
                            (long long)doc_id, i, c->kind ? c->kind : "(null)");
        if (!c->text && c->len)
            return tw_error(TW_ERR_ARG, "document %lld chunk %zu: text is NULL", (long long)doc_id, i);
        if (c->position < 0 || c->n_tokens < 0)
            return tw_error(TW_ERR_ARG, "document %lld chunk %zu: negative position or n_tokens",
                            (long long)doc_id, i);
        char h[65];
        hash_hex(c->text ? c->text : "", c->len, h);
        s = wh_stmt(db, S_CHUNK_INSERT, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, doc_id);
        sqlite3_bind_int64(s, 2, cleaned_id);
        sqlite3_bind_int(s, 3, c->position);
        bind_str(s, 4, opt_str(c->heading));
        bind_str(s, 5, c->kind);
        bind_strn(s, 6, c->text, c->len);
        sqlite3_bind_int(s, 7, c->n_tokens);
        bind_str(s, 8, tokenizer);
        bind_str(s, 9, h);
        sqlite3_bind_double(s, 10, now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_CONSTRAINT_UNIQUE)
            st = tw_error(TW_ERR_ARG, "document %lld chunk %zu: position %d is repeated",
                          (long long)doc_id, i, (int)c->position);
        else if (rc != SQLITE_DONE)
            st = wh_fail(db, rc, "storing a chunk");
        wh_done(s);
    }
    if (!st && (s = wh_stmt(db, S_CLEANED_CHUNKED, &st))) {
        sqlite3_bind_int64(s, 1, cleaned_id);
        sqlite3_bind_double(s, 2, now);
        st = wh_step_done(db, s, "recording the chunking");
    }
    return st;
}

tw_status wh_chunks_replace(wh_db *db, int64_t doc_id, const char *tokenizer,
                            const wh_chunk_in *chunks, size_t n) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_chunks_replace: db is NULL");
    if (!tokenizer || !*tokenizer)
        return tw_error(TW_ERR_ARG, "document %lld chunks: tokenizer is empty", (long long)doc_id);
    if (n && !chunks) return tw_error(TW_ERR_ARG, "document %lld: chunks is NULL", (long long)doc_id);
    tw_status st = wh_begin(db);
    if (st) return st;
    return wh_end(db, chunks_replace(db, doc_id, tokenizer, chunks, n));
}

tw_status wh_doc_each_unchunked(wh_db *db, int64_t author_id, wh_doc_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_doc_each_unchunked: db or fn is NULL");
    wh_doc_filter f = {author_id, -1, 0, 0, 1};
    return doc_walk(db, &f, WH_DOC_CLEANED, 1, fn, ctx);
}

void wh_chunk_clear(wh_chunk *c) {
    if (!c) return;
    tw_free(c->heading);
    tw_free(c->kind);
    tw_free(c->text);
    tw_free(c->author);
    tw_free(c->url);
    tw_free(c->title);
    tw_free(c->published_at);
    tw_free(c->content_type);
    memset(c, 0, sizeof *c);
}

static tw_status chunk_row(wh_db *db, sqlite3_stmt *s, wh_chunk *out) {
    int oom = 0;
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    out->document_id = sqlite3_column_int64(s, 1);
    out->position = sqlite3_column_int(s, 2);
    out->heading = col_dup(s, 3, "", &oom);
    out->kind = col_dup(s, 4, "", &oom);
    out->text = col_dup(s, 5, "", &oom);
    out->n_tokens = sqlite3_column_int(s, 6);
    out->author_id = sqlite3_column_int64(s, 7);
    out->author = col_dup(s, 8, "", &oom);
    int p = wh_platform_parse((const char *)sqlite3_column_text(s, 9));
    out->platform = p < 0 ? WH_PLATFORM_ARTICLE : (wh_platform)p;
    out->url = col_dup(s, 10, "", &oom);
    out->title = col_dup(s, 11, "", &oom);
    out->published_at = col_dup(s, 12, "", &oom);
    out->content_type = col_dup(s, 13, "", &oom);
    if (oom) {
        wh_chunk_clear(out);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory reading a chunk", db->path);
    }
    return TW_OK;
}

tw_status wh_chunk_get(wh_db *db, int64_t id, wh_chunk *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_chunk_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_CHUNK_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st = chunk_row(db, s, out);
    else if (rc == SQLITE_DONE)
        st = tw_error(TW_ERR_NOT_FOUND, "no chunk %lld in %s", (long long)id, db->path);
    else
        st = wh_fail(db, rc, "reading a chunk");
    wh_done(s);
    return st;
}

tw_status wh_chunk_each_unembedded(wh_db *db, const char *model, wh_chunk_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_chunk_each_unembedded: db or fn is NULL");
    if (!model || !*model) return tw_error(TW_ERR_ARG, "unembedded chunks: model is empty");
    int64_t last = 0;
    for (;;) {
        wh_chunk page[WH_PAGE];
        int n = 0, rc = SQLITE_DONE;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_UNEMBEDDED_PAGE, &st);
        if (!s) return st;
        bind_str(s, 1, model);
        sqlite3_bind_int64(s, 2, last);
        sqlite3_bind_int(s, 3, WH_PAGE);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            st = chunk_row(db, s, &page[n]);
            if (st) break;
            n++;
        }
        if (!st && n < WH_PAGE && rc != SQLITE_DONE) st = wh_fail(db, rc, "reading chunks");
        wh_done(s);
        int stop = st != TW_OK;
        for (int i = 0; i < n; i++) {
            if (!stop && fn(ctx, &page[i])) stop = 1;
            if (i == n - 1) last = page[i].id;
            wh_chunk_clear(&page[i]);
        }
        if (st) return st;
        if (stop || n < WH_PAGE) break;
    }
    return TW_OK;
}

static tw_status embeddings_mark(wh_db *db, const char *model, int32_t dim,
                                 const int64_t *ids, size_t n) {
    double now = wh_now();
    tw_status st = TW_OK;
    for (size_t i = 0; !st && i < n; i++) {
        sqlite3_stmt *s = wh_stmt(db, S_EMBED_MARK, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, ids[i]);
        bind_str(s, 2, model);
        sqlite3_bind_int(s, 3, dim);
        sqlite3_bind_double(s, 4, now);
        st = wh_step_done(db, s, "recording embeddings");
    }
    return st;
}

tw_status wh_embeddings_mark(wh_db *db, const char *model, int32_t dim, const int64_t *chunk_ids,
                             size_t n) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_embeddings_mark: db is NULL");
    if (!model || !*model) return tw_error(TW_ERR_ARG, "embeddings: model is empty");
    if (dim <= 0) return tw_error(TW_ERR_ARG, "embeddings of %s: dim %d is not positive", model, (int)dim);
    if (n && !chunk_ids) return tw_error(TW_ERR_ARG, "embeddings of %s: chunk_ids is NULL", model);
    tw_status st = wh_begin(db);
    if (st) return st;
    return wh_end(db, embeddings_mark(db, model, dim, chunk_ids, n));
}

tw_status wh_embeddings_reset_except(wh_db *db, const char *model) {
    if (!db || !model || !*model) return tw_error(TW_ERR_ARG, "embeddings reset: model is empty");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_EMBED_RESET, &st);
    if (!s) return st;
    bind_str(s, 1, model);
    return wh_step_done(db, s, "forgetting embeddings");
}

tw_status wh_tombstones_each(wh_db *db, wh_id_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_tombstones_each: db or fn is NULL");
    int64_t last = 0;
    for (;;) {
        int64_t page[WH_PAGE * 8];
        int n = 0, rc = SQLITE_DONE, cap = WH_PAGE * 8;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_TOMB_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, last);
        sqlite3_bind_int(s, 2, cap);
        while (n < cap && (rc = sqlite3_step(s)) == SQLITE_ROW) page[n++] = sqlite3_column_int64(s, 0);
        if (n < cap && rc != SQLITE_DONE) st = wh_fail(db, rc, "reading tombstones");
        wh_done(s);
        if (st) return st;
        for (int i = 0; i < n; i++)
            if (fn(ctx, page[i])) return TW_OK;
        if (n < cap) break;
        last = page[n - 1];
    }
    return TW_OK;
}

tw_status wh_tombstones_clear(wh_db *db, int64_t upto) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_tombstones_clear: db is NULL");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TOMB_CLEAR, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, upto);
    return wh_step_done(db, s, "clearing tombstones");
}

tw_status wh_stats_get(wh_db *db, wh_stats *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_stats_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_STATS, &st);
    if (!s) return st;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int64_t *f[] = {&out->authors, &out->sources, &out->documents, &out->versions,
                        &out->cleaned, &out->duplicates, &out->chunks, &out->embedded,
                        &out->runs};
        for (int i = 0; i < 9; i++) *f[i] = sqlite3_column_int64(s, i);
    } else {
        st = wh_fail(db, rc, "counting");
    }
    wh_done(s);
    return st;
}

/* ---- integrity ----------------------------------------------------------------------------- */

/* Runs a check query: its first row (if any) is the problem, described by column 0. */
static tw_status check_query(wh_db *db, const char *sql, const char *ok_text, const char *what) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL);
    tw_status st = TW_OK;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (!ok_text || !t || strcmp(t, ok_text))
                st = tw_error(TW_ERR_FORMAT, "%s: %s: %s", db->path, what, t ? t : "(null)");
        } else if (rc != SQLITE_DONE) {
            st = wh_fail(db, rc, what);
        }
    } else {
        st = wh_fail(db, rc, what);
    }
    sqlite3_finalize(s);
    return st;
}

tw_status wh_integrity_check(wh_db *db) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_integrity_check: db is NULL");
    tw_status st = check_query(db, "PRAGMA integrity_check", "ok", "integrity check");
    if (!st)
        st = check_query(db,
                         "SELECT 'table ' || \"table\" || ' row ' || rowid || ' points to a "
                         "missing ' || parent FROM pragma_foreign_key_check",
                         NULL, "foreign key check");
    if (!st)
        st = check_query(
            db,
            "SELECT 'document ' || d.id || ' (version ' || d.version || ') lacks version rows'"
            " FROM documents d WHERE"
            " (SELECT count(*) FROM document_versions v WHERE v.document_id = d.id) <> d.version"
            " OR (SELECT min(version) FROM document_versions v WHERE v.document_id = d.id) <> 1"
            " OR NOT EXISTS (SELECT 1 FROM document_versions v WHERE v.document_id = d.id"
            "                AND v.version = d.version AND v.content_hash = d.content_hash)"
            " LIMIT 1",
            NULL, "document versions");
    return st;
}

/* ---- training runs (schema version 2) ------------------------------------------------------- */

static void bind_real_or_null(sqlite3_stmt *s, int i, double v) {
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static double col_real_or_nan(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

tw_status wh_trun_begin(wh_db *db, const wh_trun_in *r, int64_t *run_id) {
    if (!db || !r || !run_id) return tw_error(TW_ERR_ARG, "wh_trun_begin: NULL argument");
    if (!r->name || !*r->name) return tw_error(TW_ERR_ARG, "training run: name is empty");
    if (!r->kind || (strcmp(r->kind, "sft") && strcmp(r->kind, "dpo")))
        return tw_error(TW_ERR_ARG, "training run '%s': kind '%s' (expected sft or dpo)", r->name,
                        r->kind ? r->kind : "");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_INSERT, &st);
    if (!s) return st;
    bind_str(s, 1, r->name);
    bind_str(s, 2, r->kind);
    bind_str(s, 3, r->config_json && *r->config_json ? r->config_json : "{}");
    bind_str(s, 4, opt_str(r->base_model));
    bind_str(s, 5, opt_str(r->base_hash));
    bind_str(s, 6, opt_str(r->dataset));
    bind_str(s, 7, opt_str(r->dataset_hash));
    bind_str(s, 8, opt_str(r->code_version));
    bind_str(s, 9, opt_str(r->host));
    sqlite3_bind_double(s, 10, wh_now());
    st = wh_step_done(db, s, "recording a training run");
    if (!st) *run_id = sqlite3_last_insert_rowid(db->sql);
    return st;
}

tw_status wh_trun_log_step(wh_db *db, int64_t run_id, const wh_trun_step *x) {
    if (!db || !x) return tw_error(TW_ERR_ARG, "wh_trun_log_step: NULL argument");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_STEP, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, x->step);
    bind_real_or_null(s, 3, x->loss);
    bind_real_or_null(s, 4, x->lr);
    bind_real_or_null(s, 5, x->grad_norm);
    bind_real_or_null(s, 6, x->tokens_per_s);
    sqlite3_bind_int64(s, 7, x->mem_bytes);
    sqlite3_bind_double(s, 8, x->at > 0 ? x->at : wh_now());
    st = wh_step_done(db, s, "recording a training step");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no training run %lld in %s", (long long)run_id, db->path);
    return st;
}

tw_status wh_trun_log_eval(wh_db *db, int64_t run_id, int64_t step, const char *split,
                           double loss, const char *metrics_json) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_trun_log_eval: db is NULL");
    if (!split || !*split) return tw_error(TW_ERR_ARG, "training run evaluation: split is empty");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_EVAL, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, step);
    bind_str(s, 3, split);
    bind_real_or_null(s, 4, loss);
    bind_str(s, 5, metrics_json && *metrics_json ? metrics_json : "{}");
    st = wh_step_done(db, s, "recording an evaluation");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no training run %lld in %s", (long long)run_id, db->path);
    return st;
}

tw_status wh_trun_finish(wh_db *db, int64_t run_id, const char *status, const char *adapter_path,
                         const char *error) {
    if (!db) return tw_error(TW_ERR_ARG, "wh_trun_finish: db is NULL");
    if (!status || (strcmp(status, "ok") && strcmp(status, "failed") &&
                    strcmp(status, "interrupted")))
        return tw_error(TW_ERR_ARG, "training run %lld: status '%s' (expected ok, failed or "
                                    "interrupted)",
                        (long long)run_id, status ? status : "");
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_FINISH, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_double(s, 2, wh_now());
    bind_str(s, 3, status);
    bind_str(s, 4, opt_str(adapter_path));
    bind_str(s, 5, opt_str(error));
    st = wh_step_done(db, s, "finishing a training run");
    if (!st && sqlite3_changes(db->sql) == 0)
        st = tw_error(TW_ERR_NOT_FOUND, "no training run %lld in %s", (long long)run_id, db->path);
    return st;
}

void wh_trun_clear(wh_trun *r) {
    if (!r) return;
    char **f[] = {&r->name, &r->kind, &r->config_json, &r->base_model, &r->base_hash,
                  &r->dataset, &r->dataset_hash, &r->code_version, &r->host, &r->status,
                  &r->adapter_path, &r->error, &r->last_eval_split};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        tw_free(*f[i]);
        *f[i] = NULL;
    }
}

/* Reads a TRUN_COLS row. */
static int trun_read(sqlite3_stmt *s, wh_trun *out) {
    int oom = 0;
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    char **f[] = {&out->name, &out->kind, &out->config_json, &out->base_model, &out->base_hash,
                  &out->dataset, &out->dataset_hash, &out->code_version, &out->host};
    for (int i = 0; i < 9; i++) *f[i] = col_dup(s, 1 + i, "", &oom);
    out->started_at = sqlite3_column_double(s, 10);
    out->finished_at = sqlite3_column_double(s, 11);
    out->status = col_dup(s, 12, "", &oom);
    out->adapter_path = col_dup(s, 13, "", &oom);
    out->error = col_dup(s, 14, "", &oom);
    out->n_steps = sqlite3_column_int64(s, 15);
    out->last_step = sqlite3_column_type(s, 16) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 16);
    out->last_loss = col_real_or_nan(s, 17);
    out->n_evals = sqlite3_column_int64(s, 18);
    out->last_eval_loss = col_real_or_nan(s, 19);
    out->last_eval_split = col_dup(s, 20, "", &oom);
    if (oom) wh_trun_clear(out);
    return oom;
}

tw_status wh_trun_get(wh_db *db, int64_t run_id, wh_trun *out) {
    if (!db || !out) return tw_error(TW_ERR_ARG, "wh_trun_get: db or out is NULL");
    memset(out, 0, sizeof *out);
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_GET, &st);
    if (!s) return st;
    sqlite3_bind_int64(s, 1, run_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (trun_read(s, out))
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading a training run", db->path);
    } else if (rc == SQLITE_DONE) {
        st = tw_error(TW_ERR_NOT_FOUND, "no training run %lld in %s", (long long)run_id, db->path);
    } else {
        st = wh_fail(db, rc, "reading a training run");
    }
    wh_done(s);
    return st;
}

tw_status wh_trun_find(wh_db *db, const char *id_or_name, int64_t *run_id) {
    if (!db || !id_or_name || !run_id) return tw_error(TW_ERR_ARG, "wh_trun_find: NULL argument");
    const char *p = id_or_name;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9' && v < INT64_MAX / 10 - 9) v = v * 10 + (*p++ - '0');
    if (p != id_or_name && !*p) {
        wh_trun r;
        tw_status st = wh_trun_get(db, v, &r);
        wh_trun_clear(&r);
        if (st == TW_ERR_NOT_FOUND)
            return tw_error(TW_ERR_NOT_FOUND, "no training run '%.64s' in %s", id_or_name,
                            db->path);
        if (!st) *run_id = v;
        return st;
    }
    tw_status st = TW_OK;
    sqlite3_stmt *s = wh_stmt(db, S_TRUN_FIND_NAME, &st);
    if (!s) return st;
    bind_str(s, 1, id_or_name);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *run_id = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE)
        st = tw_error(TW_ERR_NOT_FOUND, "no training run '%.64s' in %s", id_or_name, db->path);
    else
        st = wh_fail(db, rc, "finding a training run");
    wh_done(s);
    return st;
}

tw_status wh_trun_each(wh_db *db, wh_trun_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_trun_each: db or fn is NULL");
    int64_t last = 0;
    for (;;) {
        wh_trun page[WH_PAGE];
        int n = 0, oom = 0, rc = SQLITE_DONE;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_TRUN_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, last);
        sqlite3_bind_int(s, 2, WH_PAGE);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (trun_read(s, &page[n])) {
                oom = 1;
                break;
            }
            n++;
        }
        if (oom)
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading training runs", db->path);
        else if (n < WH_PAGE && rc != SQLITE_DONE)
            st = wh_fail(db, rc, "reading training runs");
        wh_done(s);
        int stop = st != TW_OK;
        for (int i = 0; i < n; i++) {
            if (!stop && fn(ctx, &page[i])) stop = 1;
        }
        if (n) last = page[n - 1].id;
        for (int i = 0; i < n; i++) wh_trun_clear(&page[i]);
        if (st) return st;
        if (stop || n < WH_PAGE) break;
    }
    return TW_OK;
}

tw_status wh_trun_each_step(wh_db *db, int64_t run_id, wh_trun_step_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_trun_each_step: db or fn is NULL");
    int64_t last = INT64_MIN;
    for (;;) {
        wh_trun_step page[WH_PAGE];
        int n = 0, rc = SQLITE_DONE;
        tw_status st = TW_OK;
        sqlite3_stmt *s = wh_stmt(db, S_TRUN_STEP_PAGE, &st);
        if (!s) return st;
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, last);
        sqlite3_bind_int(s, 3, WH_PAGE);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            wh_trun_step *x = &page[n++];
            x->step = sqlite3_column_int64(s, 0);
            x->loss = col_real_or_nan(s, 1);
            x->lr = col_real_or_nan(s, 2);
            x->grad_norm = col_real_or_nan(s, 3);
            x->tokens_per_s = col_real_or_nan(s, 4);
            x->mem_bytes = sqlite3_column_int64(s, 5);
            x->at = sqlite3_column_double(s, 6);
        }
        if (n < WH_PAGE && rc != SQLITE_DONE) st = wh_fail(db, rc, "reading training steps");
        wh_done(s);
        if (st) return st;
        for (int i = 0; i < n; i++)
            if (fn(ctx, &page[i])) return TW_OK;
        if (n < WH_PAGE) break;
        last = page[n - 1].step;
    }
    return TW_OK;
}

tw_status wh_trun_each_eval(wh_db *db, int64_t run_id, wh_trun_eval_fn fn, void *ctx) {
    if (!db || !fn) return tw_error(TW_ERR_ARG, "wh_trun_each_eval: db or fn is NULL");
    int64_t last = INT64_MIN;
    char *last_split = tw_strdup("");
    if (!last_split) return tw_error(TW_ERR_NOMEM, "%s: out of memory", db->path);
    tw_status st = TW_OK;
    for (;;) {
        struct {
            int64_t step;
            char *split, *metrics;
            double loss;
        } page[WH_PAGE];
        int n = 0, oom = 0, rc = SQLITE_DONE;
        sqlite3_stmt *s = wh_stmt(db, S_TRUN_EVAL_PAGE, &st);
        if (!s) break;
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, last);
        bind_str(s, 3, last_split);
        sqlite3_bind_int(s, 4, WH_PAGE);
        while (n < WH_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            page[n].step = sqlite3_column_int64(s, 0);
            page[n].split = col_dup(s, 1, "", &oom);
            page[n].loss = col_real_or_nan(s, 2);
            page[n].metrics = col_dup(s, 3, "{}", &oom);
            n++;
        }
        if (oom)
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory reading evaluations", db->path);
        else if (n < WH_PAGE && rc != SQLITE_DONE)
            st = wh_fail(db, rc, "reading evaluations");
        wh_done(s);
        int stop = st != TW_OK;
        for (int i = 0; i < n; i++) {
            if (!stop) {
                wh_trun_eval e = {page[i].step, page[i].split, page[i].loss, page[i].metrics};
                if (fn(ctx, &e)) stop = 1;
            }
        }
        if (n && !st) {
            last = page[n - 1].step;
            tw_free(last_split);
            last_split = page[n - 1].split;
            page[n - 1].split = NULL;
            if (!last_split) st = TW_ERR_NOMEM;
        }
        for (int i = 0; i < n; i++) {
            tw_free(page[i].split);
            tw_free(page[i].metrics);
        }
        if (st || stop || n < WH_PAGE) break;
    }
    tw_free(last_split);
    return st;
}
