/* fuzz_tokenizer_load.c: building a tokenizer from hostile metadata. An input that starts with
 * "GGUF" goes through gguf_open_memory + tw_tokenizer_from_gguf (tokenizer.ggml.*), anything
 * else through the JSON parser + tok_from_hf_json (tokenizer.json). A refused input must
 * leave an error message; an accepted tokenizer is used: a few texts are encoded with every
 * flag combination (ids in range), decoded, and every token's piece and text are read. A
 * broken promise aborts.
 *
 * Seeds (corpus/fuzz_tokenizer_load/) were written with gguf-py's GGUFWriter and json.dumps:
 * small byte-level BPE GGUFs (smollm, llama3, deepseek-llm, falcon pre-tokenizers, added
 * tokens), a SentencePiece GGUF with byte tokens and scores, a WordPiece GGUF in llama.cpp's
 * convention, and tokenizer.json files (BPE with Digits/ByteLevel, the llama3 Split, the
 * deepseek-llm class and Punctuation; WordPiece with BertNormalizer and BertProcessing). */
#include "gguf.h"
#include "json.h"
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

static void fuzz_require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_tokenizer_load: broken promise: %s (%s)\n", what, tw_errmsg());
        abort();
    }
}

static void exercise(const tw_tokenizer *t) {
    static const char *texts[] = {"", "hello world", "  the 123 <|endoftext|><u>[CLS] \xC3\xA9\xE4\xB8\xAD",
                                  "\xFF\xFE\n\r\t", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    int32_t nv = tw_tokenizer_n_vocab(t);
    fuzz_require(nv > 0, "a vocabulary");
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (unsigned flags = 0; flags < 4; flags++) {
            tw_tokens ids;
            tw_tokens_init(&ids);
            tw_status st = tw_tokenizer_encode(t, texts[i], strlen(texts[i]), flags, &ids);
            /* an odd vocabulary may lack a character and an unknown token: an error, no crash */
            if (st == TW_OK) {
                for (size_t k = 0; k < ids.n; k++) fuzz_require(ids.ids[k] >= 0 && ids.ids[k] < nv, "ids in range");
                tw_sb sb;
                tw_sb_init(&sb);
                fuzz_require(tw_tokenizer_decode(t, ids.ids, ids.n, flags & 1, &sb) == TW_OK, "decode");
                tw_sb_free(&sb);
            } else {
                fuzz_require(*tw_errmsg() != 0, "an error has a message");
            }
            tw_tokens_free(&ids);
        }
    }
    tw_sb sb;
    tw_sb_init(&sb);
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        size_t len;
        fuzz_require(tw_tokenizer_token_text(t, id, &len) != NULL, "token text");
        tw_sb_clear(&sb);
        fuzz_require(tw_tokenizer_piece(t, id, &sb) == TW_OK, "piece");
    }
    fuzz_require(tw_tokenizer_token_text(t, nv, NULL) == NULL, "out-of-range text is NULL");
    tw_sb_free(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tw_error_clear();
    tw_log_set_level(TW_LOG_OFF);
    tw_tokenizer *t = NULL;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        gguf_file *f = gguf_open_memory(data, size, "fuzz.gguf");
        if (!f) {
            fuzz_require(*tw_errmsg() != 0, "a refused GGUF has a message");
            return 0;
        }
        t = tw_tokenizer_from_gguf(f);
        gguf_close(f); /* the tokenizer keeps its own copies */
    } else {
        tw_json *doc = tw_json_parse((const char *)data, size, "fuzz.json");
        if (!doc) return 0;
        t = tok_from_hf_json(doc, NULL, "fuzz.json");
        tw_json_free(doc);
    }
    if (!t) {
        fuzz_require(*tw_errmsg() != 0, "a refused tokenizer has a message");
        return 0;
    }
    exercise(t);
    tw_tokenizer_free(t);
    return 0;
}
