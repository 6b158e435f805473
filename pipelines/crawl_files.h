/* crawl_files.h: private to the crawlers of files (crawl_github.c, crawl_local.c,
 * crawl_linkedin.c): which files are the author's writing or code and how to store them, plus
 * the small decoders those crawlers need.
 *
 *   crawl_file_kind(path, &kind)               content type and language by file name
 *   crawl_github_skip_reason(path, size, ...)  GitHub's keep/skip rules for a tree entry
 *   crawl_bytes_binary(data, n)                NUL bytes: not text
 *   crawl_base64_decode(in, n, &out, &len)     the GitHub contents API's "content"
 *   crawl_url_escape(s, keep_slash)            a path or ref made safe for a URL
 *   crawl_text_title(text, n, markdown)        first heading (or first line) as a title
 *
 * Thread safety: all reentrant (no state).
 */
#ifndef TWIN_CRAWL_FILES_H
#define TWIN_CRAWL_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* What a file is, by its name. content_type is "markdown", "text", "html" or "code" (NULL when
 * the file is none of these); language names the programming language of "code" (and
 * "Markdown" / "Text" / "HTML" for the others), NULL when content_type is. */
typedef struct {
    const char *content_type;
    const char *language;
} crawl_file_kind_t;

/* Classifies path by its base name (README, Makefile, Dockerfile ...) and extension
 * (case-insensitive). Returns 1 when the file is writing or code twin keeps, 0 when not. */
int crawl_file_kind(const char *path, crawl_file_kind_t *kind);

/* Why a GitHub tree entry (a blob at path, size bytes) is not crawled, or NULL when it is
 * kept. The reason starts with its class (crawl_impl.h's grouping): "vendored (node_modules/)",
 * "generated (minified .js)", "lock file (yarn.lock)", "binary (.png)",
 * "too large (2000000 bytes > 1048576)", "not source or docs (.json)". buf (cap bytes) holds
 * the text; the return value is buf or NULL. max_bytes 0 means no size cap. For a vendored
 * file, *folder_len (may be NULL; 0 otherwise) gets the length of the vendored folder's path
 * ("a/node_modules" in "a/node_modules/x/y.js"), so a crawler can report the folder once. */
const char *crawl_github_skip_reason(const char *path, int64_t size, size_t max_bytes, char *buf,
                                     size_t cap, size_t *folder_len);

/* 1 when data holds a NUL byte in its first 8 KiB (how git and grep tell binary from text). */
int crawl_bytes_binary(const void *data, size_t n);

/* Decodes standard base64 (RFC 4648 section 4) ignoring whitespace (the API wraps lines at 60
 * characters), '=' padding optional at the end. *out is a NUL-terminated heap buffer (tw_free)
 * of *out_len bytes. TW_ERR_FORMAT on a character outside the alphabet, data after padding or a
 * dangling single character (the message names the offset). */
tw_status crawl_base64_decode(const char *in, size_t n, char **out, size_t *out_len);

/* s with every byte outside RFC 3986's unreserved set percent-encoded ('/' kept when
 * keep_slash). Heap string (tw_free); NULL only on no memory. */
char *crawl_url_escape(const char *s, int keep_slash);

/* A title for a text: Markdown (markdown = 1): the first ATX heading ("# Title", any level,
 * outside fenced code and after any "---" front matter), else the front matter's "title:";
 * plain text: nothing. Heap string (tw_free) trimmed of spaces and closing '#'s, or NULL when
 * there is none (or no memory). */
char *crawl_text_title(const char *text, size_t n, int markdown);

#endif
