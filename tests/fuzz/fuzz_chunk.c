/* fuzz_chunk.c: chunk_text on arbitrary bytes (invalid UTF-8, NULs, controls, fences, headings,
 * anything), with every promise of chunk.h checked on the result (tests/chunk_check.h: each
 * chunk's stored count equals a fresh count and is within max_tokens, every non-space byte is
 * in a chunk, order, overlap bounds, whole UTF-8 characters when the input is valid UTF-8).
 *
 * The first byte picks the tokenizer (a tiny WordPiece written at start-up, or, when
 * TWIN_TEST_DATA is set, the tiny GPT-2 byte-level BPE whose counts do not add up over pieces),
 * the kind (prose or code) and the second byte the limits (max_tokens 8..71, overlap 0 up to
 * under half of it); the rest is the text. Any broken promise aborts with the reason. */
#include "chunk_check.h"

#include <stdint.h>
#include <stdlib.h>

/* Built once per process; the fuzzer's input never changes them. */
static tw_tokenizer *wp_tok, *bpe_tok;

static void setup(void) {
    char dir[] = "/tmp/twin_fuzz_chunk.XXXXXX";
    TW_ASSERT(mkdtemp(dir) != NULL);
    wp_tok = chunk_check_tiny_wordpiece(dir);
    rmdir(dir);
    const char *data = getenv("TWIN_TEST_DATA");
    if (data && *data) {
        tw_sb p;
        tw_sb_init(&p);
        tw_sb_printf(&p, "%s/gpt2/tiny-gpt2-f32.gguf", data);
        bpe_tok = tw_tokenizer_load(tw_sb_str(&p));
        tw_sb_free(&p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!wp_tok) setup();
    if (size < 2) return 0;
    const tw_tokenizer *tok = (data[0] & 1) && bpe_tok ? bpe_tok : wp_tok;
    chunk_kind kind = (data[0] & 2) ? CHUNK_CODE : CHUNK_PROSE;
    chunk_opts o;
    o.max_tokens = 8 + (data[1] & 63);
    o.overlap_tokens = (data[0] >> 2) % (o.max_tokens / 2);
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    chunk_span *sp = NULL;
    size_t n = 0;
    tw_status st = chunk_text(tok, text, len, kind, &o, &sp, &n);
    if (st != TW_OK) {
        fprintf(stderr, "chunk_text failed on valid options: %s\n", tw_errmsg());
        abort();
    }
    char msg[512];
    if (chunk_check_spans(tok, text, len, &o, sp, n, msg, sizeof msg)) {
        fprintf(stderr, "max %d overlap %d %s: %s\n", o.max_tokens, o.overlap_tokens,
                kind == CHUNK_CODE ? "code" : "prose", msg);
        abort();
    }
    chunk_spans_free(sp, n);
    return 0;
}
