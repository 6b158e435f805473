/* tokenizer_impl.h: the private layout of a tokenizer, shared by tokenizer.c (loading,
 * special tokens, dispatch, decode), tok_bpe.c + pretok.c (byte-level BPE and its
 * pre-tokenizers), tok_spm.c (SentencePiece BPE) and tok_wordpiece.c (BERT WordPiece).
 * Not a public header: nothing outside engine/tok* (and the tokenizer's own unit tests)
 * includes it.
 *
 * Division of work for one tw_tokenizer_encode call (tokenizer.c):
 *   1. added/special tokens are cut out of the text (longest match, leftmost first, as HF
 *      tokenizers' AddedVocabulary does): USER_DEFINED tokens always, CONTROL/UNKNOWN
 *      tokens only with TW_TOK_PARSE_SPECIAL;
 *   2. every run of plain text between them goes to the algorithm's fragment encoder
 *      (tok_bpe_encode / tok_spm_encode / tok_wordpiece_encode) as it is in the input;
 *   3. TW_TOK_ADD_SPECIAL adds BOS/EOS ([CLS]/[SEP] for WordPiece) around the result.
 * SPM's space prefix (llama.cpp's add_space_prefix) belongs to step 2: every fragment
 * starts the text or follows an added token, which is exactly where llama.cpp and HF (the
 * Prepend normalizer) add "▁", so tok_spm_encode prefixes every fragment it is given. */
#ifndef TWIN_TOKENIZER_IMPL_H
#define TWIN_TOKENIZER_IMPL_H

#include "json.h"
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

/* The pre-tokenizer families of byte-level BPE (pretok.c), named by GGUF tokenizer.ggml.pre
 * (aliases are mapped by tok_pre_from_name) or recognised in tokenizer.json. */
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
    TOK_PRE_DEFAULT, /* llama.cpp's "default" (GGUF pre "default" on a gpt2 model) */
    TOK_PRE_CUSTOM,  /* a tokenizer.json sequence of known stages that is no family above */
    TOK_PRE_COUNT
} tok_pre;

/* One step of a pre-tokenizer. Each splits every piece that the previous step produced,
 * and keeps both the matches and the text between them as pieces (HF's Split behaviour
 * "Isolated"), so a family is a short list of steps, as in its tokenizer.json. */
typedef enum {
    TOK_ST_GPT2 = 0,      /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TOK_ST_LLAMA3,        /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                             ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    TOK_ST_QWEN2,         /* the same with \p{N} instead of \p{N}{1,3} */
    TOK_ST_DIGITS,        /* Digits(individual_digits=true): each \p{N} alone */
    TOK_ST_DIGIT_RUNS,    /* Digits(individual_digits=false): runs of \p{N} */
    TOK_ST_PUNCT,         /* Punctuation (Isolated): each ASCII punctuation or \p{P} alone */
    TOK_ST_PUNCT_RUNS,    /* Punctuation (Contiguous): runs of them */
    TOK_ST_NEWLINE,       /* [\r\n] */
    TOK_ST_SPACE_LETTERS, /* \s?\p{L}+ */
    TOK_ST_SPACE_PUNCT,   /* \s?\p{P}+ */
    TOK_ST_CJK,           /* [一-龥ࠀ-一가-퟿]+ */
    TOK_ST_DSLLM_LETTERS, /* \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (deepseek-llm's cased-letter class) */
    TOK_ST_DSLLM_PUNCT,   /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    TOK_ST_TRAILING_WS,   /* \s+$ */
    TOK_ST_DIGITS3,       /* [0-9][0-9][0-9] */
    TOK_ST_LLAMACPP_PUNCT, /* [\p{P}\$\+<=>\^~\|]+ (llama.cpp's "default" family) */
    TOK_ST_COUNT
} tok_stage_kind;

typedef struct {
    uint8_t kind;      /* tok_stage_kind */
    uint8_t bytelevel; /* 1: runs after HF's ByteLevel step, so it sees each byte as the
                          code point that the GPT-2 byte alphabet maps it to */
} tok_stage;

#define TOK_MAX_STAGES 8
typedef struct {
    tok_stage st[TOK_MAX_STAGES];
    int n;
} tok_pretok;

/* A byte trie over the texts of added tokens (CONTROL, USER_DEFINED, UNKNOWN), for the
 * longest match at a position. Node 0 is the root. */
typedef struct {
    int32_t id;     /* token ending here, -1 none */
    uint32_t edge0; /* first edge in tok_trie.edges */
    uint32_t n_edges;
} tok_trie_node;
typedef struct {
    uint8_t byte;
    uint32_t node;
} tok_trie_edge;
typedef struct {
    tok_trie_node *nodes; /* in tw_tokenizer.arena */
    tok_trie_edge *edges; /* sorted by byte within a node */
    uint32_t n_nodes;
    uint8_t first_user[256]; /* 1: some USER_DEFINED token starts with this byte */
    uint8_t first_any[256];  /* 1: some added token starts with this byte */
} tok_trie;

struct tw_tokenizer {
    tw_tok_kind kind;
    tok_pre pre;
    char pre_name[32];
    tok_pretok pretok; /* byte-level BPE: the steps of `pre` */
    tw_arena *arena;   /* all token texts, merge tables, ... */

    int32_t n_vocab;
    tok_entry *vocab; /* (n_vocab) */
    tok_map text_to_id; /* the first id of each text wins (as HF's model vocab would) */

    /* BPE merges: rank of the pair (left id, right id) -> merged id; see tok_bpe.c. */
    void *bpe; /* private to tok_bpe.c */
    /* WordPiece settings, private to tok_wordpiece.c. */
    void *wordpiece;

    /* Special tokens that may appear in text: CONTROL, UNKNOWN and USER_DEFINED tokens,
     * longest first. */
    int32_t *specials;
    int32_t n_specials;
    int32_t n_user_defined; /* how many of them are USER_DEFINED (matched without PARSE_SPECIAL) */
    tok_trie trie;

    int32_t bos, eos, unk, pad, sep, cls, eot; /* -1 when absent */
    int add_bos, add_eos;      /* what TW_TOK_ADD_SPECIAL adds (WordPiece: cls ... sep) */
    int add_space_prefix;      /* SPM: prepend a space (llama.cpp's add_space_prefix) */
    int byte_fallback;         /* SPM: <0xNN> tokens for bytes missing from the vocab */
    int ignore_merges;         /* BPE: a word that is a whole token is that token (llama3) */
    /* WordPiece decoding: the continuation prefix ("##"), or wp_phantom = 1 for llama.cpp's
     * GGUF convention (word starts carry "▁", continuations nothing). */
    char wp_prefix[16];
    int wp_phantom;
    int32_t byte_to_id[256];   /* SPM byte tokens / byte-level BPE single-byte tokens */
};

/* Per-algorithm entry points: tokenize one fragment of raw text (no special tokens inside)
 * and append ids. `t` is read-only; any scratch is per call. tok_spm_encode adds the
 * space prefix itself when t->add_space_prefix (see the top of this file). */
tw_status tok_bpe_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out);
tw_status tok_spm_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out);
tw_status tok_wordpiece_encode(const tw_tokenizer *t, const char *text, size_t len,
                               tw_tokens *out);

/* A tokenizer from a parsed tokenizer.json and its tokenizer_config.json (NULL when there is
 * none); `name` is used in messages. tw_tokenizer_from_hf reads the files and calls this; the
 * loader fuzz target calls it on arbitrary documents. */
tw_tokenizer *tok_from_hf_json(const tw_json *root, const tw_json *config, const char *name);

/* Set-up done after the vocabulary is loaded (merges, lookup tables). Merges are "a b"
 * strings (GGUF tokenizer.ggml.merges, tokenizer.json's older form); for tokenizer.json's
 * pair form the loader joins them with a space first. */
tw_status tok_bpe_init(tw_tokenizer *t, const gguf_str *merges, uint64_t n_merges);
void tok_bpe_free(tw_tokenizer *t);
/* The bytes token `id` (< n_vocab) stands for: its text decoded from the byte alphabet, or
 * its own text for added tokens and texts outside the alphabet. Points into the tokenizer. */
const uint8_t *tok_bpe_token_bytes(const tw_tokenizer *t, int32_t id, size_t *len);
tw_status tok_spm_init(tw_tokenizer *t);
tw_status tok_wordpiece_init(tw_tokenizer *t, int lowercase, int strip_accents,
                             int tokenize_chinese_chars, const char *continuing_prefix,
                             int max_input_chars_per_word);
void tok_wordpiece_free(tw_tokenizer *t);

/* Pre-tokenizer: calls emit(word) for each piece of text, in order, covering all of text
 * (the pieces concatenate to the input, byte for byte, invalid UTF-8 included: an invalid
 * byte is a code point of no category, as U+FFFD would be). */
typedef tw_status (*tok_emit_fn)(void *ctx, const char *word, size_t len);
tw_status tok_pretokenize(const tok_pretok *p, const char *text, size_t len, tok_emit_fn emit,
                          void *ctx);
/* The Unicode major class of a code point (one utf8proc category lookup), shared by the
 * pre-tokenizers (\p{L}, \p{N}, \p{P}, separators) and WordPiece (punctuation). Thread-safe. */
typedef enum { TOK_UC_OTHER = 0, TOK_UC_LETTER, TOK_UC_NUMBER, TOK_UC_PUNCT, TOK_UC_SEPARATOR } tok_uclass;
tok_uclass tok_unicode_class(uint32_t cp);

int tok_pre_from_name(const char *name, tok_pre *out); /* 0 on success */
const char *tok_pre_name(tok_pre pre);                 /* canonical name */
void tok_pretok_for(tok_pre pre, tok_pretok *out);      /* the steps of a family */
tok_pre tok_pre_identify(const tok_pretok *p);          /* the family, or TOK_PRE_CUSTOM */

/* The GPT-2 byte alphabet: byte -> code point, and code point -> byte (-1 when cp is not in
 * the alphabet). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

#endif
