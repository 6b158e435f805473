/* tokenizer_impl.h: the private layout of a tokenizer, shared by tokenizer.c (loading,
 * special tokens, dispatch, decode), tok_bpe.c + pretok.c (byte-level BPE and its
 * pre-tokenizers), tok_spm.c (SentencePiece BPE) and tok_wordpiece.c (BERT WordPiece).
 * Not a public header: nothing outside engine/tok* includes it. */
#ifndef TWIN_TOKENIZER_IMPL_H
#define TWIN_TOKENIZER_IMPL_H

#include "tokenizer.h"

/* Open-addressing string -> int32 map (keys are referenced, not copied). */
typedef struct {
    uint32_t *slots; /* index+1 into the key table, 0 = empty; cap is a power of two */
    uint64_t *hashes;
    const char **keys;
    uint32_t *key_lens;
    int32_t *vals;
    uint32_t cap, n;
} tok_map;
tw_status tok_map_init(tok_map *m, uint32_t expected);
void tok_map_free(tok_map *m);
tw_status tok_map_put(tok_map *m, const char *key, uint32_t len, int32_t val); /* replaces */
int32_t tok_map_get(const tok_map *m, const char *key, uint32_t len);         /* -1 missing */
uint64_t tok_hash(const char *s, size_t n);

typedef struct {
    const char *text; /* into tw_tokenizer.arena; NUL-terminated */
    uint32_t len;
    float score;      /* SPM piece score; 0 elsewhere */
    tw_toktype type;
} tok_entry;

/* The pre-tokenizers of byte-level BPE (pretok.c). Each splits text into words the way the
 * matching HF/llama.cpp regex does. */
typedef enum {
    TOK_PRE_GPT2 = 0,
    TOK_PRE_LLAMA3,
    TOK_PRE_SMOLLM,
    TOK_PRE_STARCODER,
    TOK_PRE_QWEN2,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_FALCON,
    TOK_PRE_MPT,
    TOK_PRE_REFACT,
    TOK_PRE_GPT_NEOX,
    TOK_PRE_COUNT
} tok_pre;

struct tw_tokenizer {
    tw_tok_kind kind;
    tok_pre pre;
    char pre_name[32];
    tw_arena *arena;  /* all token texts, merge tables, ... */

    int32_t n_vocab;
    tok_entry *vocab; /* (n_vocab) */
    tok_map text_to_id;

    /* BPE merges: rank of the pair (left id, right id) -> merged id; see tok_bpe.c. */
    void *bpe; /* private to tok_bpe.c */
    /* WordPiece settings, private to tok_wordpiece.c. */
    void *wordpiece;

    /* Special tokens that may appear in text when TW_TOK_PARSE_SPECIAL is set: CONTROL and
     * USER_DEFINED tokens, longest first. */
    int32_t *specials;
    int32_t n_specials;

    int32_t bos, eos, unk, pad, sep, cls, eot; /* -1 when absent */
    int add_bos, add_eos;      /* what TW_TOK_ADD_SPECIAL adds (BERT: cls ... sep) */
    int add_space_prefix;      /* SPM: prepend a space (llama.cpp's add_space_prefix) */
    int byte_fallback;         /* SPM: <0xNN> tokens for bytes missing from the vocab */
    int32_t byte_to_id[256];   /* SPM byte tokens / byte-level BPE single-byte tokens */
};

/* Per-algorithm entry points: tokenize one fragment of raw text (no special tokens inside)
 * and append ids. `t` is read-only; any scratch is per call. */
tw_status tok_bpe_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out);
tw_status tok_spm_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out);
tw_status tok_wordpiece_encode(const tw_tokenizer *t, const char *text, size_t len,
                               tw_tokens *out);

/* Set-up done after the vocabulary is loaded (merges, lookup tables). */
tw_status tok_bpe_init(tw_tokenizer *t, const gguf_str *merges, uint64_t n_merges);
void tok_bpe_free(tw_tokenizer *t);
tw_status tok_spm_init(tw_tokenizer *t);
tw_status tok_wordpiece_init(tw_tokenizer *t, int lowercase, int strip_accents,
                             int tokenize_chinese_chars, const char *continuing_prefix,
                             int max_input_chars_per_word);
void tok_wordpiece_free(tw_tokenizer *t);

/* Pre-tokenizer: calls emit(word) for each piece of text, in order, covering all of text. */
typedef tw_status (*tok_emit_fn)(void *ctx, const char *word, size_t len);
tw_status tok_pretokenize(tok_pre pre, const char *text, size_t len, tok_emit_fn emit,
                          void *ctx);
int tok_pre_from_name(const char *name, tok_pre *out); /* 0 on success */

#endif
