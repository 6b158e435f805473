/* fuzz_tokenizer.c: tw_tokenizer_encode/decode on arbitrary bytes with real vocabularies of
 * every kind: the byte-level BPE families, SentencePiece and WordPiece GGUFs of
 * $TWIN_SHARED/testdata/tokenizer (llama.cpp's test vocabularies), or, where that folder is
 * absent, a small byte-level BPE vocabulary written here.
 *
 * The first input byte picks the vocabulary (low bits) and the flags (PARSE_SPECIAL,
 * ADD_SPECIAL); the rest is the text. Promises checked (a broken one aborts):
 *   every kind: TW_OK, every id in range, the same ids on a second call, decoding succeeds;
 *   ADD_SPECIAL adds exactly what the model adds around the text;
 *   BPE and SPM without ADD_SPECIAL: decode(encode(text)) == text, byte for byte, for any
 *   bytes, except bytes whose only token is an added token of the vocabulary (deepseek's
 *   user-defined "õ" for the byte 0xF5: decoding gives the token's text, as llama.cpp does)
 *   and, for SPM, a U+2581 of the text itself, which reads back as a space (SentencePiece
 *   escapes spaces as U+2581).
 *
 * Vocabularies load once per process (LLVMFuzzerInitialize, or on the first input when the
 * replay driver runs the target). */
#include "gguf.h"
#include "tokenizer.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOK 16

static tw_tokenizer *toks[MAX_TOK];
static uint8_t byte_ok[MAX_TOK][256]; /* the byte alone decodes back to itself */
static int n_toks, inited;

static void fuzz_require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_tokenizer: broken promise: %s (%s)\n", what, tw_errmsg());
        abort();
    }
}

static void add_tokenizer(tw_tokenizer *t) {
    if (!t || n_toks == MAX_TOK) {
        tw_tokenizer_free(t);
        return;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tw_tokens ids;
        tw_tokens_init(&ids);
        tw_sb sb;
        tw_sb_init(&sb);
        byte_ok[n_toks][b] = tw_tokenizer_encode(t, &c, 1, 0, &ids) == TW_OK &&
                             tw_tokenizer_decode(t, ids.ids, ids.n, 0, &sb) == TW_OK && sb.len == 1 &&
                             sb.buf[0] == c;
        tw_sb_free(&sb);
        tw_tokens_free(&ids);
    }
    toks[n_toks++] = t;
}

/* A byte-level BPE vocabulary: the 256 byte tokens, a few merges, a control and a
 * user-defined token; written to a temporary GGUF and loaded like any model. */
static void add_builtin(void) {
    static const char *merges[] = {"h e", "l l", "he ll", "hell o", "Ġ t", "Ġt he", "a a", "Ġ Ġ"};
    static const char *merged[] = {"he", "ll", "hell", "hello", "Ġt", "Ġthe", "aa", "ĠĠ"};
    const char *texts[256 + 8 + 2];
    int32_t types[256 + 8 + 2];
    char bytes[256][5];
    for (int b = 0; b < 256; b++) {
        uint32_t cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE ? (uint32_t)b
                      : b <= 0x20                                                       ? 0x100u + (uint32_t)b
                      : b <= 0xA0 ? 0x121u + (uint32_t)(b - 0x7F)
                                  : 0x143u;
        int l = tw_utf8_encode(cp, bytes[b]);
        bytes[b][l] = 0;
        texts[b] = bytes[b];
        types[b] = 1;
    }
    for (int i = 0; i < 8; i++) texts[256 + i] = merged[i], types[256 + i] = 1;
    texts[264] = "<|endoftext|>", types[264] = 3;
    texts[265] = "<u>", types[265] = 4;
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama3");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, 266);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, 266);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 8);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 264);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 1);
    const char *td = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz-tokenizer-%ld.gguf", td && *td ? td : "/tmp", (long)getpid());
    if (gguf_writer_write(w, path) == TW_OK) add_tokenizer(tw_tokenizer_load(path));
    unlink(path);
    gguf_writer_free(w);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void init(void) {
    if (inited) return;
    inited = 1;
    tw_log_set_level(TW_LOG_ERROR);
    const char *shared = getenv("TWIN_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/testdata/tokenizer", shared ? shared : "");
    DIR *d = shared ? opendir(dir) : NULL;
    char *names[64];
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".gguf")) names[n++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof names[0], name_cmp);
    for (int i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        add_tokenizer(tw_tokenizer_load(path));
        free(names[i]);
    }
    add_builtin();
    fuzz_require(n_toks > 0, "no vocabulary loaded");
    fprintf(stderr, "fuzz_tokenizer: %d vocabularies (%d from %s)\n", n_toks, n_toks - 1,
            d ? dir : "nowhere: TWIN_SHARED unset or without testdata/tokenizer");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size == 0) return 0;
    int k = data[0] % n_toks;
    unsigned flags = ((data[0] >> 5) & 1 ? TW_TOK_PARSE_SPECIAL : 0) |
                     ((data[0] >> 6) & 1 ? TW_TOK_ADD_SPECIAL : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const tw_tokenizer *t = toks[k];
    int32_t nv = tw_tokenizer_n_vocab(t);

    tw_tokens a, b;
    tw_tokens_init(&a);
    tw_tokens_init(&b);
    fuzz_require(tw_tokenizer_encode(t, text, len, flags, &a) == TW_OK, "encode succeeds");
    for (size_t i = 0; i < a.n; i++) fuzz_require(a.ids[i] >= 0 && a.ids[i] < nv, "ids in range");
    fuzz_require(tw_tokenizer_encode(t, text, len, flags, &b) == TW_OK && a.n == b.n &&
                     (a.n == 0 || !memcmp(a.ids, b.ids, a.n * sizeof *a.ids)),
                 "same ids twice");
    /* ADD_SPECIAL adds the same around the text as around nothing */
    tw_tokens plain, none;
    tw_tokens_init(&plain);
    tw_tokens_init(&none);
    if (flags & TW_TOK_ADD_SPECIAL) {
        fuzz_require(tw_tokenizer_encode(t, text, len, flags & ~(unsigned)TW_TOK_ADD_SPECIAL, &plain) == TW_OK,
                     "encode without ADD_SPECIAL");
        fuzz_require(tw_tokenizer_encode(t, "", 0, TW_TOK_ADD_SPECIAL, &none) == TW_OK, "encode nothing");
        fuzz_require(a.n == plain.n + none.n, "ADD_SPECIAL adds the model's tokens only");
    }
    tw_sb sb;
    tw_sb_init(&sb);
    fuzz_require(tw_tokenizer_decode(t, a.ids, a.n, 0, &sb) == TW_OK, "decode succeeds");
    tw_tok_kind kind = tw_tokenizer_kind(t);
    if (!(flags & TW_TOK_ADD_SPECIAL) && kind != TW_TOK_WORDPIECE) {
        int all_ok = 1;
        for (size_t i = 0; i < len && all_ok; i++) all_ok = byte_ok[k][(uint8_t)text[i]];
        if (kind == TW_TOK_SPM && memmem(text, len, "\xE2\x96\x81", 3)) all_ok = 0;
        if (all_ok)
            fuzz_require(sb.len == len && (len == 0 || !memcmp(sb.buf, text, len)),
                         "decode(encode(text)) == text");
    }
    tw_sb_clear(&sb);
    fuzz_require(tw_tokenizer_decode(t, a.ids, a.n, TW_TOK_SKIP_SPECIAL, &sb) == TW_OK, "decode skipping");
    tw_sb_free(&sb);
    tw_tokens_free(&a);
    tw_tokens_free(&b);
    tw_tokens_free(&plain);
    tw_tokens_free(&none);
    return 0;
}
