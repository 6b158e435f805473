/* chunk.h: cleaned text -> chunks sized in tokens of the embedding model's tokenizer.
 *
 *   chunk_text(tok, text, len, kind, opts, &spans, &n)
 *
 * Prose: split at paragraph boundaries (blank lines), then at sentence ends, then (a single
 * sentence longer than the limit) at word boundaries; consecutive pieces are packed up to
 * opts.max_tokens content tokens, and each chunk after the first starts with up to
 * opts.overlap_tokens tokens of whole sentences from the end of the previous one. Headings
 * ("# ..." lines of the cleaned text) start a new chunk and are remembered as the heading of
 * the chunks below them. Code (kind CHUNK_CODE, or ``` fenced blocks inside prose): split on
 * blank lines between blocks, then on line boundaries; never inside a line unless one line
 * alone is over the limit. The tail is never dropped: the last chunk may be short. Every byte
 * of the text that is not whitespace is in at least one chunk.
 * Content tokens are counted without special tokens (MiniLM's limit is 256 with [CLS] and
 * [SEP], hence max_tokens 254).
 *
 * Thread safety: reentrant; tok is only read.
 */
#ifndef TWIN_CHUNK_H
#define TWIN_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CHUNK_PROSE = 0, CHUNK_CODE } chunk_kind;

typedef struct {
    int32_t max_tokens;     /* content tokens per chunk; default 254 */
    int32_t overlap_tokens; /* default 32; 0 for none; must be < max_tokens / 2 */
} chunk_opts;
void chunk_opts_default(chunk_opts *o);

/* One chunk: bytes [start, end) of the text (chunks may overlap), its token count, kind and
 * the heading above it. */
typedef struct {
    size_t start, end;
    int32_t n_tokens;
    chunk_kind kind;
    char *heading; /* NULL when none; owned by the array (chunk_spans_free) */
} chunk_span;

/* Splits text into *n spans (*out, for chunk_spans_free). An empty or all-whitespace text gives
 * *n = 0. TW_ERR_ARG for bad options (named), TW_ERR_NOMEM, tokenizer errors. */
tw_status chunk_text(const tw_tokenizer *tok, const char *text, size_t len, chunk_kind kind,
                     const chunk_opts *o, chunk_span **out, size_t *n);
void chunk_spans_free(chunk_span *spans, size_t n); /* NULL-safe */

#ifdef __cplusplus
}
#endif

#endif
