/* dataset.h: instruction (SFT) and preference datasets from JSONL, as users bring them, turned
 * into token ids with a loss mask, split, shuffled, packed and batched for training.
 *
 * Line formats (one JSON object per line; blank lines are ignored; detected per line unless
 * ds_opts.format forces one):
 *   alpaca      {"instruction", "input"?, "output", "system"?}: user = instruction, or
 *               instruction + "\n\n" + input when input is not empty; assistant = output
 *   sharegpt    {"conversations": [{"from": "system"|"human"|"user"|"gpt"|"assistant",
 *                                   "value"}...]}   ("role"/"content" keys are read too)
 *   messages    {"messages": [{"role": "system"|"user"|"assistant", "content"}...]} (ChatML /
 *               OpenAI; content a string or an array of {"type": "text", "text"} parts)
 *   preference  {"prompt", "chosen", "rejected", "system"?}: prompt a string (one user turn) or
 *               a messages array; chosen/rejected a string, an assistant message object, or a
 *               messages array whose last message is the assistant's (only that one is used;
 *               when "prompt" is missing, the chosen array's earlier messages are the prompt)
 * A file is SFT or preference, set by its first good line (or by format = PREFERENCE); a line
 * of the other kind is a bad line. Detection order: conversations, messages, chosen+rejected,
 * instruction/output.
 *
 * Rendering: the conversation is rendered with the model's chat template (chat_template.h)
 * through its last assistant turn, and the text is tokenized once with
 * TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL (so the ids are those the model sees when the same
 * conversation is fed back). The loss mask is 1 exactly on the assistant tokens: the content
 * of each assistant turn and its end-of-turn token ("<|im_end|>", "<|eot_id|>", "</s>"; for
 * alpaca, which has none, the tokenizer's EOS id is inserted after the response and masked,
 * as Stanford Alpaca trains). The boundaries come from rendering prefix by prefix: the
 * conversation up to turn i with the generation prompt, and up to the end of turn i's
 * end-of-turn marker, each tokenized the same way; where a prefix's ids are a prefix of the
 * whole conversation's ids the boundary is exact, and where a token straddles the boundary
 * (BPE merged across it) that token counts as the assistant's. Text inside messages that
 * spells a special token ("<|im_end|>") becomes that token, as in HF apply_chat_template +
 * tokenize. Preference examples are rendered the same way with only the final response masked.
 *
 * Lengths: an example longer than max_len tokens is truncated (its first max_len tokens kept,
 * counted in n_truncated) or dropped (n_dropped_long), as long_policy says; one left without
 * a masked token at index >= 1 is dropped too.
 *
 * Bad lines (not JSON, missing or mistyped fields, unknown roles, a system message that is not
 * first, no assistant turn, an empty assistant turn, the wrong kind): skipped and counted, the
 * first DS_BAD_KEPT line numbers and the first reason kept in ds_stats; with ds_opts.strict
 * the first one fails ds_open with TW_ERR_FORMAT and "<file>:<line>: <reason>".
 *
 * Held-out split: an example is in the eval split when the first 8 bytes of
 * sha256(split_seed as 8 little-endian bytes || its messages as role\0content\0...), read as a
 * big-endian u64, are below eval_fraction * 2^64; or, when eval_count > 0, when its hash is
 * among the eval_count smallest (ties by line). The hash depends on the content only (not the
 * line number, the JSON spelling or the template), so adding lines never moves an existing
 * example with a fraction, and with a count moves one only when a new one hashes lower.
 *
 * Order: the eval split is read in file order; the train split in a permutation of its
 * examples that depends only on (shuffle_seed, epoch) (Fisher-Yates on splitmix64), so a run
 * resumed at ds_position {epoch, index} continues with exactly the examples it would have
 * seen. shuffle = 0 keeps file order.
 *
 * Batches (ds_next_batch): whole examples in order from the split's position. Without packing
 * each example is its own row, rows concatenated without padding (a ragged batch); with
 * packing (SFT only) consecutive examples share a row while the row stays <= max_len tokens.
 * Either way the batch carries, per token, the position within its example (restarting at 0)
 * and the example's index in the batch (its segment id): attention must not cross examples.
 * A preference batch holds pairs: example 2j is pair j's chosen sequence and 2j+1 its
 * rejected one, each its own row. A batch never crosses an epoch: the last batch of an epoch
 * is flagged and the next call starts the next epoch.
 *
 * Content hash: sha256 over the file's bytes and the options that change the examples
 * (format, template name and default system prompt, tokenizer kind/pre-tokenizer/vocab size,
 * max_len, long_policy, split_seed, eval_fraction/eval_count, lineage): the dataset version
 * for run tracking. Shuffling and packing are how a run reads it, not part of it.
 *
 * Thread safety: ds_open borrows the tokenizer and template only while it runs. A dataset's
 * getters are safe from many threads; ds_next_batch and ds_position_set change its
 * positions, so one thread at a time.
 */
#ifndef TWIN_DATASET_H
#define TWIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"
#include "core.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DS_FORMAT_AUTO = 0,
    DS_FORMAT_ALPACA,
    DS_FORMAT_SHAREGPT,
    DS_FORMAT_MESSAGES,
    DS_FORMAT_PREFERENCE,
    DS_FORMAT_COUNT
} ds_format;

typedef enum { DS_KIND_SFT = 0, DS_KIND_PREFERENCE } ds_kind;
typedef enum { DS_LONG_TRUNCATE = 0, DS_LONG_DROP } ds_long_policy;
typedef enum { DS_SPLIT_TRAIN = 0, DS_SPLIT_EVAL = 1 } ds_split;

/* "auto", "alpaca", "sharegpt", "messages", "preference" (static); NULL out of range. */
const char *ds_format_name(ds_format f);
/* The format called name; TW_ERR_ARG listing the names when unknown. */
tw_status ds_format_parse(const char *name, ds_format *out);

typedef struct {
    ds_format format;           /* AUTO: detected per line */
    size_t max_len;             /* tokens per example and per packed row; >= 2 */
    ds_long_policy long_policy; /* truncate (default) or drop examples over max_len */
    int strict;                 /* 1: the first bad line is an error */
    double eval_fraction;       /* in [0, 1): share held out (used when eval_count == 0) */
    size_t eval_count;          /* > 0: hold out this many instead */
    uint64_t split_seed;
    int shuffle;                /* 1 (default): train order permuted per epoch */
    uint64_t shuffle_seed;
    int pack;                   /* 1: pack SFT examples into rows of max_len */
    const char *lineage;        /* optional text hashed into the content hash (model hash...) */
} ds_opts;

/* max_len 1024, truncate, not strict, eval_fraction 0.05, split_seed 0, shuffle on with
 * seed 0, no packing, auto format. */
void ds_opts_default(ds_opts *o);

#define DS_BAD_KEPT 8

typedef struct {
    size_t n_lines;                  /* non-blank lines read */
    size_t n_examples;               /* kept (train + eval) */
    size_t n_train, n_eval;
    size_t n_bad;                    /* bad lines skipped */
    size_t bad_lines[DS_BAD_KEPT];   /* the first of them, 1-based line numbers */
    char bad_reason[256];            /* why the first bad line was bad ("" when none) */
    size_t n_truncated, n_dropped_long;
    size_t n_tokens;                 /* ids kept, over all sequences */
    size_t n_loss_tokens;            /* of which mask = 1 */
    size_t n_format[DS_FORMAT_COUNT]; /* kept examples per detected format */
} ds_stats;

typedef struct ds_dataset ds_dataset;

/* Reads path (JSONL) and builds the dataset: every example rendered with tpl, tokenized with
 * tok, masked, split. *out is NULL on failure; TW_ERR_IO (the file), TW_ERR_FORMAT (strict and
 * a bad line: "<file>:<line>: <reason>"; or no usable example, naming the first bad line),
 * TW_ERR_ARG (bad options: max_len < 2, a fraction outside [0, 1), a split that leaves no
 * training example), TW_ERR_NOMEM. The caller frees with ds_free. */
tw_status ds_open(const char *path, const tw_tokenizer *tok, const tw_chat_template *tpl,
                  const ds_opts *opts, ds_dataset **out);
/* The same from text[0..len) in memory; name stands for the file in messages and the hash. */
tw_status ds_open_mem(const char *name, const char *text, size_t len, const tw_tokenizer *tok,
                      const tw_chat_template *tpl, const ds_opts *opts, ds_dataset **out);
void ds_free(ds_dataset *ds); /* NULL is a no-op */

ds_kind ds_get_kind(const ds_dataset *ds);
const ds_stats *ds_get_stats(const ds_dataset *ds);
/* 64 lowercase hex characters (valid while ds lives). */
const char *ds_content_hash(const ds_dataset *ds);
size_t ds_count(const ds_dataset *ds, ds_split split);

/* One tokenized sequence: ids (n) and mask (n), 1 on the tokens the loss is taken on. */
typedef struct {
    const int32_t *ids;
    const uint8_t *mask;
    size_t n;
} ds_seq;

/* An example (pointers valid while ds lives). SFT: seq. Preference: prompt (the prompt
 * rendered with the generation prompt; mask all 0), chosen and rejected (each the whole
 * sequence prompt + response, mask 1 on the response and its end-of-turn token; their first
 * n_prompt ids are prompt's ids unless BPE merged across the boundary). */
typedef struct {
    size_t line;      /* 1-based line in the file */
    ds_format format; /* as detected */
    int truncated;
    uint64_t split_hash;
    ds_seq seq;
    ds_seq prompt, chosen, rejected;
} ds_example;

/* The i-th example of split in file order (i < ds_count). TW_ERR_ARG when out of range. */
tw_status ds_example_get(const ds_dataset *ds, ds_split split, size_t i, ds_example *ex);

/* Where a split's reading stands: the epoch, and how many examples of that epoch's order
 * have been handed out. Saving it with a checkpoint and setting it back resumes exactly. */
typedef struct {
    uint64_t epoch;
    uint64_t index;
} ds_position;
void ds_position_get(const ds_dataset *ds, ds_split split, ds_position *pos);
/* TW_ERR_ARG when index > ds_count(split) (index == count is the end of that epoch). */
tw_status ds_position_set(ds_dataset *ds, ds_split split, const ds_position *pos);

/* The order in which epoch `epoch` reads split: order (ds_count(split)) receives indices for
 * ds_example_get. TW_ERR_NOMEM. */
tw_status ds_epoch_order(const ds_dataset *ds, ds_split split, uint64_t epoch, size_t *order);

/* A batch; arrays owned by the batch (reused across ds_next_batch calls), freed by
 * ds_batch_free. T = n_tokens, R = n_rows, E = n_examples. */
typedef struct {
    size_t n_tokens, n_rows, n_examples;
    int32_t *tokens;   /* (T) ids, rows one after another, no padding */
    uint8_t *mask;     /* (T) 1 on the tokens the loss is taken on */
    int32_t *targets;  /* (T) next-token label: tokens[t+1] when t+1 is in the same example and
                          mask[t+1] = 1, else -1 */
    int32_t *pos;      /* (T) position within the example, 0 at each example's first token */
    int32_t *seg;      /* (T) example index in the batch (0..E-1): attend only within equal seg */
    size_t *row_start; /* (R+1) token offset of each row; row_start[R] = T */
    size_t *ex_start;  /* (E+1) token offset of each example; ex_start[E] = T */
    size_t *ex_index;  /* (E) index of the example in its split (for ds_example_get) */
    int8_t *ex_side;   /* (E) preference: 0 chosen, 1 rejected; SFT: -1 */
    int epoch_end;     /* this batch holds the last examples of its epoch */
    ds_position start; /* the position this batch started at */
    size_t cap_t, cap_r, cap_e; /* capacities (internal) */
} ds_batch;
void ds_batch_init(ds_batch *b);
void ds_batch_free(ds_batch *b); /* NULL is a no-op */

/* The next batch of split: whole examples from the split's position, as many as fit in
 * tokens_per_batch tokens and n_sequences rows (0 = no limit on that count; at least one must
 * be set); a batch always holds at least one example (or pair), even one over the token
 * budget. Advances the position. TW_ERR_ARG (both limits 0), TW_ERR_NOT_FOUND (the split is
 * empty), TW_ERR_NOMEM (the batch is left empty, the position unchanged). */
tw_status ds_next_batch(ds_dataset *ds, ds_split split, size_t tokens_per_batch,
                        size_t n_sequences, ds_batch *b);

#ifdef __cplusplus
}
#endif
#endif
