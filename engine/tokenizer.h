/* tokenizer.h: text <-> token ids for the model families twin runs.
 *
 *   byte-level BPE (GPT-2 style), with the pre-tokenizer that GGUF `tokenizer.ggml.pre`
 *     (or tokenizer.json's pre_tokenizer) names: gpt2, llama-bpe/llama3, smollm, starcoder,
 *     qwen2, deepseek-coder, deepseek-llm, falcon, mpt, refact, gpt-neox ... each a
 *     hand-written scanner (no regex library);
 *   SentencePiece BPE with byte fallback (llama-spm, mistral, phi-3, baichuan);
 *   WordPiece (BERT: lower-casing, accent stripping, punctuation and CJK splitting).
 *
 * Loaded from GGUF metadata (tokenizer.ggml.*) or from an HF tokenizer.json.
 * Thread safety: a loaded tokenizer is immutable; encode/decode may run on many threads.
 */
#ifndef TWIN_TOKENIZER_H
#define TWIN_TOKENIZER_H

#include "core.h"
#include "gguf.h"

typedef struct tw_tokenizer tw_tokenizer;

typedef enum { TW_TOK_BPE = 0, TW_TOK_SPM, TW_TOK_WORDPIECE } tw_tok_kind;

/* Token attributes (GGUF tokenizer.ggml.token_type values). */
typedef enum {
    TW_TOKTYPE_UNDEFINED = 0,
    TW_TOKTYPE_NORMAL = 1,
    TW_TOKTYPE_UNKNOWN = 2,
    TW_TOKTYPE_CONTROL = 3,
    TW_TOKTYPE_USER_DEFINED = 4,
    TW_TOKTYPE_UNUSED = 5,
    TW_TOKTYPE_BYTE = 6
} tw_toktype;

/* Encode flags. */
enum {
    TW_TOK_ADD_SPECIAL = 1u << 0,   /* BOS/EOS or [CLS]/[SEP] as the model's config asks */
    TW_TOK_PARSE_SPECIAL = 1u << 1, /* text like "<|im_start|>" becomes its special token
                                       (CONTROL/UNKNOWN tokens; without the flag their text is
                                       plain text). USER_DEFINED tokens (HF's non-special added
                                       tokens) are matched either way, as HF and llama.cpp do;
                                       matching is longest-first at the leftmost position. */
};
/* Decode flags. */
enum {
    TW_TOK_SKIP_SPECIAL = 1u << 0, /* drop control tokens (BOS, EOS, [CLS], ...) */
};

/* A growable id vector; the tokenizer appends to it. Free with tw_tokens_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tw_tokens;
void tw_tokens_init(tw_tokens *t);
void tw_tokens_free(tw_tokens *t);
tw_status tw_tokens_push(tw_tokens *t, int32_t id);

/* From an open GGUF (reads tokenizer.ggml.*; the tokenizer keeps its own copies, so the file
 * may be closed afterwards). */
tw_tokenizer *tw_tokenizer_from_gguf(const gguf_file *f);
/* From an HF tokenizer.json (plus tokenizer_config.json beside it when present): model BPE
 * with a ByteLevel pre-tokenizer of a known family, or WordPiece. */
tw_tokenizer *tw_tokenizer_from_hf(const char *tokenizer_json_path);
/* A GGUF file, an HF folder (its tokenizer.json, else its first *.gguf by name), or a
 * tokenizer.json path. On failure NULL, with the thread's error naming the file and field
 * (TW_ERR_NOT_FOUND: no such path; TW_ERR_FORMAT: not a model or a malformed one;
 * TW_ERR_UNSUPPORTED: a tokenizer twin does not implement, e.g. an unknown pre-tokenizer). */
tw_tokenizer *tw_tokenizer_load(const char *path);
void tw_tokenizer_free(tw_tokenizer *t); /* NULL is a no-op */

/* Appends the ids of text[0..len) to out. Invalid UTF-8 is tokenized as its bytes where the
 * vocabulary can express them (byte-level BPE, SPM byte fallback), else as the unknown token. */
tw_status tw_tokenizer_encode(const tw_tokenizer *t, const char *text, size_t len,
                              unsigned flags, tw_tokens *out);
/* Appends the text of ids to out. Decoding the ids of a text gives the text back: for BPE and
 * SPM byte for byte (invalid UTF-8 included), except where the vocabulary cannot say it (a
 * byte whose only token is an added token; for SPM, a "▁" of the text, which reads back as a
 * space); WordPiece gives the normalised text, pieces joined as HF's WordPiece decoder does.
 * Control tokens decode to their text unless TW_TOK_SKIP_SPECIAL. Out-of-range ids are an
 * error (TW_ERR_ARG), and nothing is appended then. */
tw_status tw_tokenizer_decode(const tw_tokenizer *t, const int32_t *ids, size_t n,
                              unsigned flags, tw_sb *out);

/* Appends the text one token stands for in the middle of a decoded text (llama.cpp's
 * token_to_piece): byte-level BPE its bytes, SPM its text with "▁" as a space and <0xNN> as
 * that byte, WordPiece and added tokens their vocabulary text. Out-of-range ids are an error. */
tw_status tw_tokenizer_piece(const tw_tokenizer *t, int32_t id, tw_sb *out);

tw_tok_kind tw_tokenizer_kind(const tw_tokenizer *t);
const char *tw_tokenizer_pre_name(const tw_tokenizer *t); /* "gpt2", "smollm", ... or "" */
int32_t tw_tokenizer_n_vocab(const tw_tokenizer *t);
/* Raw vocabulary text of a token (not decoded: byte-level BPE tokens are in the GPT-2 byte
 * alphabet); NULL when id is out of range. */
const char *tw_tokenizer_token_text(const tw_tokenizer *t, int32_t id, size_t *len);
tw_toktype tw_tokenizer_token_type(const tw_tokenizer *t, int32_t id);
int32_t tw_tokenizer_find(const tw_tokenizer *t, const char *text, size_t len); /* -1: none */
/* Special ids, -1 when the model has none. */
int32_t tw_tokenizer_bos(const tw_tokenizer *t);
int32_t tw_tokenizer_eos(const tw_tokenizer *t);
int32_t tw_tokenizer_unk(const tw_tokenizer *t);
int32_t tw_tokenizer_pad(const tw_tokenizer *t);
int32_t tw_tokenizer_sep(const tw_tokenizer *t);
int32_t tw_tokenizer_cls(const tw_tokenizer *t);

#endif
