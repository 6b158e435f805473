/* core.h: the base layer every other module of twin stands on.
 *
 *   status codes + a thread-local error message   tw_error(), tw_errmsg()
 *   logging with levels and an optional JSON form tw_log_*()
 *   host allocation through one entry point        tw_malloc()/tw_free(), accounting, fault hook
 *   arenas (one allocation per lifetime group)     tw_arena_*()
 *   growable strings                               tw_sb_*()
 *   read-only mmap'd files                         tw_mfile_*()
 *   atomic file writes (tmp + fsync + rename)      tw_afile_*()
 *   SHA-256                                        tw_sha256_*()
 *   UTF-8 helpers                                  tw_utf8_*()
 *   thread count shared by OpenMP regions          tw_threads_*()
 *
 * Thread safety: everything here is thread-safe except where a function says it takes a
 * handle that the caller must not share (arenas, string builders, sha256 contexts).
 */
#ifndef TWIN_CORE_H
#define TWIN_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define TW_NORETURN __attribute__((noreturn))
#else
#define TW_PRINTF(a, b)
#define TW_NORETURN
#endif

/* ---- status ------------------------------------------------------------------------------ */

typedef enum {
    TW_OK = 0,
    TW_ERR_ARG,         /* bad argument or usage */
    TW_ERR_IO,          /* open/read/write/mmap failed */
    TW_ERR_FORMAT,      /* a file or message is malformed, truncated or hostile */
    TW_ERR_UNSUPPORTED, /* valid, but a feature twin does not implement */
    TW_ERR_NOMEM,       /* an allocation failed (or a test hook made it fail) */
    TW_ERR_NOT_FOUND,   /* a named thing (tensor, key, model) does not exist */
    TW_ERR_RUNTIME,     /* anything else that went wrong while running */
    TW_ERR_COUNT
} tw_status;

/* Records `code` and a printf-style message as this thread's last error, and returns `code`,
 * so callers write `return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': offset out of file", ..)`.
 * The message should name the file, field or value at fault. It is always one line: a control
 * byte in it (a newline in a name quoted from a file) is stored as '?'. */
tw_status tw_error(tw_status code, const char *fmt, ...) TW_PRINTF(2, 3);
/* Prefixes the current message with "prefix: " (adds context on the way up). Returns the
 * current code. */
tw_status tw_error_wrap(const char *fmt, ...) TW_PRINTF(1, 2);
/* This thread's last error message ("" when none); valid until the next tw_error* call. */
const char *tw_errmsg(void);
tw_status tw_errcode(void);
void tw_error_clear(void);
const char *tw_status_name(tw_status s);

/* Always-on assertion for broken invariants (never for bad input). */
#define TW_ASSERT(cond)                                                                       \
    do {                                                                                      \
        if (!(cond)) tw_assert_fail(#cond, __FILE__, __LINE__);                               \
    } while (0)
TW_NORETURN void tw_assert_fail(const char *expr, const char *file, int line);

/* ---- logging ----------------------------------------------------------------------------- */

typedef enum { TW_LOG_DEBUG = 0, TW_LOG_INFO, TW_LOG_WARN, TW_LOG_ERROR, TW_LOG_OFF } tw_log_level;

/* Reads TWIN_LOG (debug|info|warn|error|off) and TWIN_LOG_FORMAT (text|json) once; the CLI
 * may override them. Log lines go to stderr, one per call. */
void tw_log_set_level(tw_log_level level);
tw_log_level tw_log_get_level(void);
void tw_log_set_json(int on);
int tw_log_parse_level(const char *s, tw_log_level *out); /* 0 on success */
void tw_log(tw_log_level level, const char *fmt, ...) TW_PRINTF(2, 3);
#define tw_log_debug(...) tw_log(TW_LOG_DEBUG, __VA_ARGS__)
#define tw_log_info(...) tw_log(TW_LOG_INFO, __VA_ARGS__)
#define tw_log_warn(...) tw_log(TW_LOG_WARN, __VA_ARGS__)
#define tw_log_error(...) tw_log(TW_LOG_ERROR, __VA_ARGS__)

/* ---- host memory ------------------------------------------------------------------------- */

/* The one entry point for host heap memory. Returns NULL (and sets TW_ERR_NOMEM) on failure;
 * tw_free(NULL) is a no-op. Memory from tw_malloc must be freed with tw_free. */
void *tw_malloc(size_t n);
void *tw_calloc(size_t count, size_t size); /* checks count*size for overflow */
void *tw_realloc(void *p, size_t n);
void tw_free(void *p);
char *tw_strdup(const char *s);
char *tw_strndup(const char *s, size_t n);

typedef struct {
    size_t current_bytes; /* live bytes allocated through tw_malloc */
    size_t peak_bytes;
    uint64_t n_allocs; /* successful allocations so far */
} tw_mem_stats;
tw_mem_stats tw_mem_get_stats(void);

/* Test hook: the n-th allocation from now (1 = the next one) fails; 0 disables. Every
 * allocation after the failing one succeeds again, so error paths run once each. */
void tw_mem_fail_after(uint64_t n);

/* ---- arenas ------------------------------------------------------------------------------ */

/* A bump allocator for a group of allocations that die together. Not thread-safe. */
typedef struct tw_arena tw_arena;
tw_arena *tw_arena_new(size_t block_size); /* 0: a default of 64 KiB */
void *tw_arena_alloc(tw_arena *a, size_t n, size_t align); /* zeroed; NULL on failure */
char *tw_arena_strndup(tw_arena *a, const char *s, size_t n);
size_t tw_arena_used(const tw_arena *a);
void tw_arena_reset(tw_arena *a); /* frees everything but the first block */
void tw_arena_free(tw_arena *a);  /* NULL is a no-op */

/* ---- string builder ---------------------------------------------------------------------- */

typedef struct {
    char *buf;  /* NUL-terminated when len > 0 or after any append; owned, tw_free */
    size_t len;
    size_t cap;
    int failed; /* set once an allocation failed; later appends do nothing */
} tw_sb;
void tw_sb_init(tw_sb *sb);
void tw_sb_free(tw_sb *sb);
void tw_sb_clear(tw_sb *sb);
int tw_sb_append(tw_sb *sb, const char *s, size_t n); /* 0 on success */
int tw_sb_puts(tw_sb *sb, const char *s);
int tw_sb_putc(tw_sb *sb, char c);
int tw_sb_printf(tw_sb *sb, const char *fmt, ...) TW_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. */
int tw_sb_json_str(tw_sb *sb, const char *s, size_t n);
/* Appends s[0..n) percent-encoded (RFC 3986): each byte outside the unreserved set (A-Z a-z
 * 0-9 - . _ ~) and the bytes of keep (NULL: none) as %XX, upper-case hex. */
int tw_sb_pct(tw_sb *sb, const char *s, size_t n, const char *keep);
const char *tw_sb_str(const tw_sb *sb); /* "" when empty */
char *tw_sb_take(tw_sb *sb);            /* hands the buffer to the caller (tw_free) */

/* ---- files ------------------------------------------------------------------------------- */

/* A whole file mapped read-only. data is NULL for an empty file. */
typedef struct {
    const uint8_t *data;
    size_t size;
    char *path; /* owned copy, for messages */
} tw_mfile;
tw_status tw_mfile_open(tw_mfile *mf, const char *path);
void tw_mfile_close(tw_mfile *mf); /* safe on a zeroed or closed struct */

/* Reads a whole file into a NUL-terminated heap buffer (tw_free). */
tw_status tw_file_read(const char *path, char **out, size_t *out_len);

/* Atomic write: data goes to "<path>.tmp.<pid>", is flushed and fsync'd, then renamed over
 * path, so a crash never leaves half a file. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} tw_afile;
tw_status tw_afile_open(tw_afile *af, const char *path);
tw_status tw_afile_write(tw_afile *af, const void *data, size_t n);
tw_status tw_afile_commit(tw_afile *af); /* flush, fsync, rename; closes */
void tw_afile_abort(tw_afile *af);       /* removes the temporary; safe after commit */
tw_status tw_file_write_atomic(const char *path, const void *data, size_t n);

int tw_path_exists(const char *path);
int tw_is_dir(const char *path);
tw_status tw_mkdir_p(const char *path);

/* ---- sha256 ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t buf[64];
    size_t nbuf;
} tw_sha256_ctx;
void tw_sha256_init(tw_sha256_ctx *c);
void tw_sha256_update(tw_sha256_ctx *c, const void *data, size_t n);
void tw_sha256_final(tw_sha256_ctx *c, uint8_t out[32]);
void tw_sha256(const void *data, size_t n, uint8_t out[32]);
void tw_hex(const uint8_t *bytes, size_t n, char *out); /* out holds 2n+1 chars */
tw_status tw_sha256_file(const char *path, char hex_out[65]);
/* The same digest, remembered in "<path>.sha256" beside the file and keyed by the file's size,
 * modification time (ns) and inode, so that a model file is read once, not at every start of
 * a program that names it by content (encoder identity, LoRA base checks). A missing, stale
 * or unreadable record is recomputed; a record that cannot be written (a read-only folder)
 * is skipped silently. Thread-safe; the record is written atomically (tw_afile). */
tw_status tw_sha256_file_cached(const char *path, char hex_out[65]);

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Decodes one code point from s[0..n). Returns the number of bytes consumed (1..4) and
 * stores the code point; on an invalid or truncated sequence returns 1 and stores
 * TW_UTF8_INVALID (the caller decides whether to repair with U+FFFD). n must be > 0. */
#define TW_UTF8_INVALID 0xFFFFFFFFu
int tw_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns the length, 0 for an invalid code point. */
int tw_utf8_encode(uint32_t cp, char *out);
/* Length of the sequence that starts with byte c (1 for invalid lead bytes). */
int tw_utf8_len(uint8_t c);
int tw_utf8_valid(const char *s, size_t n); /* 1 when s is valid UTF-8 */

/* ---- threads ----------------------------------------------------------------------------- */

/* Threads used by parallel regions (OpenMP). Default: TWIN_THREADS, else the core count. */
void tw_threads_set(int n);
int tw_threads_get(void);

/* ---- time -------------------------------------------------------------------------------- */
double tw_now_s(void); /* monotonic seconds */

#ifdef __cplusplus
}
#endif
#endif
