/* test_spm.c: SentencePiece BPE (engine/tok_spm.c) on hand-built vocabularies: merge order
 * by score, leftmost ties, stale pairs, the space prefix and U+2581 escaping, byte fallback,
 * the unknown token, invalid UTF-8, long inputs (heap scratch) and allocation failure.
 * Real vocabularies: llama-spm and phi-3 are checked on llama.cpp's vectors by
 * test_tokenizer_vectors; baichuan, which has no vectors, here against
 * tests/data/tokenizer/baichuan.spm.golden.jsonl (tools/gen_spm_golden.py: HF tokenizers with
 * the vocabulary converted as transformers converts SentencePiece models; that reference
 * reproduces the llama-spm and phi-3 vectors). */
#include "test.h"
#include "tok_golden.h"
#include "tokenizer_impl.h"

#define SP "\xE2\x96\x81" /* U+2581, SentencePiece's space */

typedef struct {
    const char *text;
    float score;
    tw_toktype type;
} spec;

/* A tokenizer that holds only what tok_spm_* reads: vocab, text_to_id, byte tokens, flags.
 * Vocab: <unk>, then 256 byte tokens <0x00>..<0xFF> (ids 1..256), then `extra`. */
static tw_tokenizer *spm_make(const spec *extra, int n_extra, int with_bytes, int prefix) {
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    TW_ASSERT(t);
    t->arena = tw_arena_new(0);
    int n = 1 + (with_bytes ? 256 : 0) + n_extra;
    t->vocab = tw_calloc((size_t)n, sizeof(tok_entry));
    TW_ASSERT(t->arena && t->vocab);
    TW_ASSERT(tok_map_init(&t->text_to_id, (uint32_t)n) == TW_OK);
    int id = 0;
    char name[8];
    for (int i = -1; i < (with_bytes ? 256 : 0) + n_extra; i++) {
        const char *text;
        float score = 0;
        tw_toktype type = TW_TOKTYPE_NORMAL;
        if (i < 0) {
            text = "<unk>";
            type = TW_TOKTYPE_UNKNOWN;
        } else if (with_bytes && i < 256) {
            snprintf(name, sizeof name, "<0x%02X>", i);
            text = name;
            type = TW_TOKTYPE_BYTE;
        } else {
            const spec *s = &extra[i - (with_bytes ? 256 : 0)];
            text = s->text;
            score = s->score;
            type = s->type ? s->type : TW_TOKTYPE_NORMAL;
        }
        tok_entry *e = &t->vocab[id];
        e->len = (uint32_t)strlen(text);
        e->text = tw_arena_strndup(t->arena, text, e->len);
        e->score = score;
        e->type = type;
        TW_ASSERT(tok_map_put(&t->text_to_id, e->text, e->len, id) == TW_OK);
        id++;
    }
    t->n_vocab = n;
    t->kind = TW_TOK_SPM;
    t->unk = 0;
    t->bos = t->eos = t->pad = t->sep = t->cls = t->eot = -1;
    t->add_space_prefix = prefix;
    t->byte_fallback = with_bytes;
    TW_ASSERT(tok_spm_init(t) == TW_OK);
    return t;
}

static void spm_free(tw_tokenizer *t) {
    tok_map_free(&t->text_to_id);
    tw_free(t->vocab);
    tw_arena_free(t->arena);
    tw_free(t);
}

/* Encodes text and writes the pieces as "a|b|<0xC3>" into buf (for readable failures). */
static const char *pieces(const tw_tokenizer *t, const char *text, size_t len, char *buf,
                          size_t cap) {
    tw_tokens out;
    tw_tokens_init(&out);
    tw_status st = tok_spm_encode(t, text, len, &out);
    size_t w = 0;
    buf[0] = 0;
    if (st != TW_OK) {
        snprintf(buf, cap, "error %s: %s", tw_status_name(st), tw_errmsg());
    } else {
        for (size_t i = 0; i < out.n; i++) {
            TW_ASSERT(out.ids[i] >= 0 && out.ids[i] < t->n_vocab);
            w += (size_t)snprintf(buf + w, cap - w, "%s%s", i ? "|" : "",
                                  t->vocab[out.ids[i]].text);
            if (w >= cap) break;
        }
    }
    tw_tokens_free(&out);
    return buf;
}
#define PIECES(t, s) pieces((t), (s), strlen(s), buf, sizeof buf)

static void test_merge_order_by_score(void) {
    char buf[512];
    /* bc scores higher than ab: "abc" -> a|bc; with the scores swapped -> ab|c. */
    spec v1[] = {{"a", -5, 0}, {"b", -5, 0}, {"c", -5, 0}, {"ab", -1, 0}, {"bc", -0.5f, 0}};
    tw_tokenizer *t = spm_make(v1, 5, 1, 0);
    CHECK_EQ_STR(PIECES(t, "abc"), "a|bc");
    spm_free(t);
    spec v2[] = {{"a", -5, 0}, {"b", -5, 0}, {"c", -5, 0}, {"ab", -0.5f, 0}, {"bc", -1, 0}};
    t = spm_make(v2, 5, 1, 0);
    CHECK_EQ_STR(PIECES(t, "abc"), "ab|c");
    spm_free(t);
}

static void test_ties_go_leftmost(void) {
    char buf[512];
    spec v[] = {{"a", -5, 0}, {"aa", -1, 0}};
    tw_tokenizer *t = spm_make(v, 2, 1, 0);
    CHECK_EQ_STR(PIECES(t, "aaa"), "aa|a");
    CHECK_EQ_STR(PIECES(t, "aaaaa"), "aa|aa|a");
    spm_free(t);
    /* Equal scores on different pairs: the leftmost merges first, which decides the rest. */
    spec v2[] = {{"x", -5, 0}, {"y", -5, 0}, {"xy", -2, 0}, {"yx", -2, 0}};
    t = spm_make(v2, 4, 1, 0);
    CHECK_EQ_STR(PIECES(t, "xyx"), "xy|x");
    CHECK_EQ_STR(PIECES(t, "yxy"), "yx|y");
    spm_free(t);
}

static void test_merges_chain_and_stale_pairs(void) {
    char buf[512];
    /* "abcd": ab merges, then (ab, c) = abc, then (abc, d) = abcd; the queued pair (c, d)
     * is stale by then (c was merged away) and must not merge. */
    spec v[] = {{"a", -9, 0},  {"b", -9, 0},  {"c", -9, 0},      {"d", -9, 0},
                {"ab", -1, 0}, {"cd", -2, 0}, {"abcd", -3, 0}, {"abc", -0.1f, 0}};
    tw_tokenizer *t = spm_make(v, 8, 1, 0);
    CHECK_EQ_STR(PIECES(t, "abcd"), "abcd");
    CHECK_EQ_STR(PIECES(t, "abcdcd"), "abcd|cd");
    /* Only whole-vocabulary concatenations of adjacent symbols merge: no "bc", so "abc" can
     * only come from ab + c. */
    CHECK_EQ_STR(PIECES(t, "abc"), "abc");
    spm_free(t);
    /* After bc merges, the queued pair (a, b) is stale: a + bc = "abc" is no token, so a
     * stale merge would show up as byte tokens. */
    spec v2[] = {{"a", -9, 0}, {"b", -9, 0}, {"c", -9, 0}, {"ab", -1, 0}, {"bc", -0.5f, 0}};
    t = spm_make(v2, 5, 1, 0);
    CHECK_EQ_STR(PIECES(t, "abcbc"), "a|bc|bc");
    spm_free(t);
}

static void test_space_prefix_and_escaping(void) {
    char buf[512];
    spec v[] = {{SP, -9, 0},       {"h", -9, 0},        {"i", -9, 0},
                {SP "h", -3, 0},   {SP "hi", -1, 0},    {SP SP, -2, 0},
                {"hi", -4, 0},     {SP SP SP, -5, 0}};
    tw_tokenizer *t = spm_make(v, 8, 1, 1);
    CHECK_EQ_STR(PIECES(t, "hi"), SP "hi");
    CHECK_EQ_STR(PIECES(t, "hi hi"), SP "hi|" SP "hi");
    CHECK_EQ_STR(PIECES(t, " hi"), SP SP "|hi");
    CHECK_EQ_STR(PIECES(t, " "), SP SP);
    CHECK_EQ_STR(PIECES(t, ""), ""); /* no fragment, no prefix */
    /* Only ' ' is escaped: a tab stays a byte. */
    CHECK_EQ_STR(PIECES(t, "\thi"), SP "|<0x09>|hi");
    spm_free(t);
    t = spm_make(v, 8, 1, 0);
    CHECK_EQ_STR(PIECES(t, "hi hi"), "hi|" SP "hi");
    CHECK_EQ_STR(PIECES(t, " "), SP);
    spm_free(t);
}

static void test_byte_fallback_and_unknown(void) {
    char buf[512];
    spec v[] = {{"a", -1, 0}, {"\xC3\xA9", -1, 0} /* é */};
    tw_tokenizer *t = spm_make(v, 2, 1, 0);
    CHECK_EQ_STR(PIECES(t, "a\xC3\xA9"), "a|\xC3\xA9");
    /* ü is not in the vocabulary: its two bytes. A 4-byte emoji: four byte tokens. */
    CHECK_EQ_STR(PIECES(t, "a\xC3\xBC"), "a|<0xC3>|<0xBC>");
    CHECK_EQ_STR(PIECES(t, "\xF0\x9F\xA6\x99"), "<0xF0>|<0x9F>|<0xA6>|<0x99>");
    /* Invalid UTF-8: each stray byte is a symbol of its own (a truncated sequence does not
     * swallow the next character), so decoding gives the bytes back. */
    CHECK_EQ_STR(PIECES(t, "\xE2" "a"), "<0xE2>|a");
    CHECK_EQ_STR(PIECES(t, "\xC3" "a\xC3\xA9"), "<0xC3>|a|\xC3\xA9");
    CHECK_EQ_STR(PIECES(t, "a\x80" "a"), "a|<0x80>|a");
    spm_free(t);

    /* No byte tokens: one unknown token per symbol that is not a token. */
    t = spm_make(v, 2, 0, 0);
    CHECK_EQ_STR(PIECES(t, "a\xC3\xBC" "a"), "a|<unk>|a");
    CHECK_EQ_STR(PIECES(t, "\xC3\xBC\xC3\xBC"), "<unk>|<unk>");
    spm_free(t);

    /* Byte tokens present but byte_fallback off (HF tokenizer.json byte_fallback=false). */
    t = spm_make(v, 2, 1, 0);
    t->byte_fallback = 0;
    CHECK_EQ_STR(PIECES(t, "\xC3\xBC"), "<unk>");
    spm_free(t);

    /* No unknown token either: an error that says so, not a crash. */
    t = spm_make(v, 2, 0, 0);
    t->unk = -1;
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tok_spm_encode(t, "\xC3\xBC", 2, &out), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "unknown token") != NULL);
    tw_tokens_free(&out);
    spm_free(t);
}

static void test_byte_table(void) {
    spec v[] = {{"z", -1, 0}};
    tw_tokenizer *t = spm_make(v, 1, 1, 0);
    CHECK_EQ_INT(t->byte_to_id[0x00], 1);
    CHECK_EQ_INT(t->byte_to_id[0x41], 1 + 0x41);
    CHECK_EQ_INT(t->byte_to_id[0xFF], 256);
    spm_free(t);
    /* Without <0xNN> tokens, a token that is the byte itself stands in (llama.cpp). */
    t = spm_make(v, 1, 0, 0);
    CHECK_EQ_INT(t->byte_to_id['z'], 1);
    CHECK_EQ_INT(t->byte_to_id['y'], -1);
    CHECK_EQ_INT(t->byte_to_id[0xC3], -1);
    spm_free(t);
}

static void test_appends_to_existing_ids(void) {
    spec v[] = {{"a", -1, 0}, {"b", -1, 0}};
    tw_tokenizer *t = spm_make(v, 2, 1, 0);
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tw_tokens_push(&out, 7), TW_OK);
    CHECK_EQ_INT(tok_spm_encode(t, "ab", 2, &out), TW_OK);
    CHECK_EQ_INT(out.n, 3);
    if (out.n == 3) {
        CHECK_EQ_INT(out.ids[0], 7);
        CHECK_EQ_INT(out.ids[1], 257);
        CHECK_EQ_INT(out.ids[2], 258);
    }
    tw_tokens_free(&out);
    spm_free(t);
}

/* Long inputs take the heap scratch path; the result must not depend on the length. */
static void test_long_text(void) {
    spec v[] = {{SP, -9, 0}, {"a", -9, 0}, {"b", -9, 0}, {SP "a", -2, 0}, {SP "ab", -1, 0}};
    tw_tokenizer *t = spm_make(v, 5, 1, 1);
    enum { N = 20000 };
    char *text = tw_malloc(3 * N);
    TW_ASSERT(text);
    /* "ab" then N-1 times " ab": with the prefix, N x "▁ab". */
    memcpy(text, "ab", 2);
    size_t len = 2 + 3 * (size_t)(N - 1);
    for (int i = 1; i < N; i++) memcpy(text + 2 + 3 * (i - 1), " ab", 3);
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tok_spm_encode(t, text, len, &out), TW_OK);
    CHECK_EQ_INT(out.n, N);
    int all_ab = 1;
    for (size_t i = 0; i < out.n; i++) all_ab &= out.ids[i] == 257 + 4;
    CHECK(all_ab);

    /* A failed scratch allocation is an error, not a crash, and leaves out usable. */
    tw_tokens_free(&out);
    tw_tokens_init(&out);
    tw_mem_fail_after(1);
    tw_status st = tok_spm_encode(t, text, len, &out);
    tw_mem_fail_after(0);
    CHECK_EQ_INT(st, TW_ERR_NOMEM);
    CHECK_EQ_INT(out.n, 0);
    tw_tokens_free(&out);
    tw_free(text);
    spm_free(t);
}

/* Tokenizing is deterministic and every byte of the text is covered: decoding the pieces by
 * hand (▁ -> ' ', <0xNN> -> byte) gives the text back, for random byte strings. */
static void test_round_trip_random(void) {
    spec v[] = {{SP, -9, 0},          {"e", -3, 0},        {"t", -3, 0},   {"th", -2, 0},
                {"the", -1, 0},       {SP "the", -0.5f, 0}, {"\xC3\xA9", -4, 0},
                {SP SP, -6, 0},       {"ee", -2.5f, 0}};
    tw_tokenizer *t = spm_make(v, 9, 1, 0);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    const char alphabet[] = " eth\xC3\xA9\x80\xFF\n";
    int ok = 1;
    for (int iter = 0; iter < 2000 && ok; iter++) {
        char text[64];
        size_t n = (size_t)(iter % 40);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            text[i] = alphabet[(seed >> 33) % (sizeof alphabet - 1)];
        }
        tw_tokens out;
        tw_tokens_init(&out);
        CHECK_EQ_INT(tok_spm_encode(t, text, n, &out), TW_OK);
        char back[256];
        size_t w = 0;
        for (size_t i = 0; i < out.n; i++) {
            const tok_entry *e = &t->vocab[out.ids[i]];
            if (e->type == TW_TOKTYPE_BYTE) {
                back[w++] = (char)strtol(e->text + 3, NULL, 16);
                continue;
            }
            for (uint32_t j = 0; j < e->len;) {
                if (j + 3 <= e->len && memcmp(e->text + j, SP, 3) == 0) {
                    back[w++] = ' ';
                    j += 3;
                } else {
                    back[w++] = e->text[j++];
                }
            }
        }
        if (w != n || memcmp(back, text, n) != 0) {
            fprintf(stderr, "round trip failed at iteration %d\n", iter);
            ok = 0;
        }
        tw_tokens_free(&out);
    }
    CHECK(ok);
    spm_free(t);
}

typedef struct {
    const tw_tokenizer *t;
    int rows, same;
} golden_ctx;

static void golden_row(const tw_json *row, void *ctx) {
    golden_ctx *g = ctx;
    size_t len = 0;
    char *text = golden_text(row, &len);
    const tw_json *want = tw_json_get(row, "ids");
    g->rows++;
    CHECK(text && tw_json_is_array(want));
    if (!text || !want) {
        tw_free(text);
        return;
    }
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tw_tokenizer_encode(g->t, text, len, 0, &out), TW_OK);
    int ok = out.n == tw_json_size(want);
    size_t i = 0;
    for (const tw_json *x = tw_json_first(want); ok && x; x = tw_json_next(x), i++)
        ok = out.ids[i] == (int32_t)tw_json_num(x, -1);
    if (!ok && g->rows - g->same <= 5)
        fprintf(stderr, "  baichuan: %s: %zu ids, expected %zu (first differing at %zu)\n",
                tw_json_get_str(row, "name", "?"), out.n, tw_json_size(want), i);
    g->same += ok;
    tw_tokens_free(&out);
    tw_free(text);
}

static void test_baichuan_golden(void) {
    const char *shared = test_env("TWIN_SHARED"), *data = test_env("TWIN_TEST_DATA");
    tw_sb gpath, jpath;
    tw_sb_init(&gpath);
    tw_sb_init(&jpath);
    tw_sb_printf(&gpath, "%s/testdata/tokenizer/ggml-vocab-baichuan.gguf", shared ? shared : "");
    if (!shared || !data || !tw_path_exists(tw_sb_str(&gpath))) {
        fprintf(stderr, "  %s not found: baichuan golden not run\n", tw_sb_str(&gpath));
        tw_sb_free(&gpath);
        tw_sb_free(&jpath);
        return;
    }
    tw_sb_printf(&jpath, "%s/tokenizer/baichuan.spm.golden.jsonl", data);
    tw_tokenizer *t = tw_tokenizer_load(tw_sb_str(&gpath));
    if (!t) fprintf(stderr, "%s\n", tw_errmsg());
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_INT(tw_tokenizer_kind(t), TW_TOK_SPM);
        golden_ctx g = {t, 0, 0};
        int rows = golden_each_row(tw_sb_str(&jpath), golden_row, &g);
        fprintf(stderr, "  baichuan: %d texts, %d match the reference\n", g.rows, g.same);
        CHECK(rows >= 100);
        CHECK_EQ_INT(g.same, g.rows);
        tw_tokenizer_free(t);
    }
    tw_sb_free(&gpath);
    tw_sb_free(&jpath);
}

int main(void) {
    RUN(test_merge_order_by_score);
    RUN(test_ties_go_leftmost);
    RUN(test_merges_chain_and_stale_pairs);
    RUN(test_space_prefix_and_escaping);
    RUN(test_byte_fallback_and_unknown);
    RUN(test_byte_table);
    RUN(test_appends_to_existing_ids);
    RUN(test_long_text);
    RUN(test_round_trip_random);
    RUN(test_baichuan_golden);
    TEST_DONE();
}
