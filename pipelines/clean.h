/* clean.h: from a document's raw content to the cleaned text that the rest of the pipeline
 * reads (chunking, datasets), and the near-duplicate detector that runs across an author's
 * documents.
 *
 *   clean_text(in, len, &sb)                   normalise any text (below)
 *   clean_document(type, raw, len, &sb)        by content type: HTML through html.h, Markdown
 *                                              front matter dropped, code kept verbatim
 *   dedup_signature / dedup_index_*            MinHash over 5-word shingles + LSH bands
 *
 * clean_text: invalid UTF-8 repaired (each bad sequence -> U+FFFD), Unicode NFC (utf8proc),
 * control characters other than \n and \t removed, \r\n and \r -> \n, runs of spaces and tabs
 * inside a line -> one space (not inside ``` fenced code blocks, kept verbatim), trailing spaces
 * removed, 3+ newlines -> one blank line (paragraph breaks kept), leading/trailing blank lines
 * removed. Punctuation, apostrophes, quotes and emoji are kept as they are.
 *
 * Thread safety: all functions are reentrant; a dedup_index is used by one thread at a time.
 */
#ifndef TWIN_CLEAN_H
#define TWIN_CLEAN_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends the normalised text to out (tw_sb, core.h). TW_ERR_NOMEM only. */
tw_status clean_text(const char *in, size_t len, tw_sb *out);

/* content_type as in warehouse.h ("html", "html_fragment", "markdown", "text", "code").
 * Appends the cleaned text to out. TW_ERR_ARG for an unknown type (named). */
tw_status clean_document(const char *content_type, const char *raw, size_t len, tw_sb *out);

/* Bag-of-words F1 of got against want (words as dedup's shingles see them: lower-cased,
 * punctuation stripped): 2PR/(P+R) over the multiset of words; 1 when both have no words, 0
 * when one has none. Measures extraction quality (tests, twin bench clean). */
double clean_word_f1(const char *got, size_t got_len, const char *want, size_t want_len);

/* ---- near duplicates ---------------------------------------------------------------------- */

#define DEDUP_NUM_HASHES 128 /* MinHash permutations */
#define DEDUP_BANDS 16       /* LSH: 16 bands x 8 rows; candidate pairs are then checked on the
                                full signature */
#define DEDUP_SHINGLE_WORDS 5
/* Two documents are near duplicates when their estimated Jaccard similarity of 5-word
 * shingles (lower-cased words, punctuation stripped) is at least this. */
#define DEDUP_NEAR_THRESHOLD 0.8

typedef struct {
    uint32_t h[DEDUP_NUM_HASHES];
    int32_t n_shingles; /* 0: too short to have a 5-word shingle (never a near duplicate) */
} dedup_sig;

/* The MinHash signature of text (deterministic: same text, same signature on any machine). */
void dedup_signature(const char *text, size_t len, dedup_sig *out);
/* Estimated Jaccard similarity in [0, 1]. */
double dedup_similarity(const dedup_sig *a, const dedup_sig *b);

typedef struct dedup_index dedup_index;
tw_status dedup_index_new(dedup_index **out);
void dedup_index_free(dedup_index *ix); /* NULL is a no-op */
/* The most similar document already added with similarity >= threshold: *id and *sim, or
 * *id = 0 when none. */
tw_status dedup_index_query(const dedup_index *ix, const dedup_sig *s, double threshold,
                            int64_t *id, double *sim);
tw_status dedup_index_add(dedup_index *ix, int64_t id, const dedup_sig *s);

#ifdef __cplusplus
}
#endif

#endif
