/* test_wordpiece.c: BERT WordPiece (engine/tok_wordpiece.c) on hand-built vocabularies:
 * greedy longest-match-first with ## continuations (and no backtracking), over-long words,
 * lower-casing and accent stripping, CJK and punctuation splitting, text cleaning (control
 * characters, whitespace), invalid UTF-8, the llama.cpp GGUF "▁" vocabulary convention and
 * the settings of tok_wordpiece_init. Expected pieces follow HF tokenizers' BertNormalizer +
 * BertPreTokenizer + WordPiece (checked against it while writing these cases); the full
 * MiniLM vocabulary is compared with HF in tests/integration/test_minilm_tokenizer.c. */
#include "test.h"
#include "tokenizer_impl.h"

#define SP "\xE2\x96\x81" /* U+2581 */

/* A tokenizer with just what tok_wordpiece_* reads. words: NULL-terminated texts, id = index. */
static tw_tokenizer *wp_make(const char *const *words, int lowercase, int strip_accents,
                             int chinese, int max_chars) {
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    TW_ASSERT(t);
    int n = 0;
    while (words[n]) n++;
    t->arena = tw_arena_new(0);
    t->vocab = tw_calloc((size_t)n, sizeof(tok_entry));
    TW_ASSERT(t->arena && t->vocab);
    TW_ASSERT(tok_map_init(&t->text_to_id, (uint32_t)n) == TW_OK);
    for (int i = 0; i < n; i++) {
        tok_entry *e = &t->vocab[i];
        e->len = (uint32_t)strlen(words[i]);
        e->text = tw_arena_strndup(t->arena, words[i], e->len);
        e->type = words[i][0] == '[' ? TW_TOKTYPE_CONTROL : TW_TOKTYPE_NORMAL;
        TW_ASSERT(tok_map_put(&t->text_to_id, e->text, e->len, i) == TW_OK);
    }
    t->n_vocab = n;
    t->kind = TW_TOK_WORDPIECE;
    t->unk = tok_map_get(&t->text_to_id, "[UNK]", 5);
    t->bos = t->eos = t->pad = t->sep = t->cls = t->eot = -1;
    tw_status st = tok_wordpiece_init(t, lowercase, strip_accents, chinese, "##", max_chars);
    if (st != TW_OK) fprintf(stderr, "tok_wordpiece_init: %s\n", tw_errmsg());
    TW_ASSERT(st == TW_OK);
    return t;
}

static void wp_free(tw_tokenizer *t) {
    tok_wordpiece_free(t);
    tok_map_free(&t->text_to_id);
    tw_free(t->vocab);
    tw_arena_free(t->arena);
    tw_free(t);
}

/* The pieces of text as "a|##b|[UNK]", or "error ..." */
static const char *pieces(const tw_tokenizer *t, const char *text, size_t len, char *buf,
                          size_t cap) {
    tw_tokens out;
    tw_tokens_init(&out);
    tw_status st = tok_wordpiece_encode(t, text, len, &out);
    size_t w = 0;
    buf[0] = 0;
    if (st != TW_OK) {
        snprintf(buf, cap, "error %s: %s", tw_status_name(st), tw_errmsg());
    } else {
        for (size_t i = 0; i < out.n && w < cap; i++) {
            TW_ASSERT(out.ids[i] >= 0 && out.ids[i] < t->n_vocab);
            w += (size_t)snprintf(buf + w, cap - w, "%s%s", i ? "|" : "",
                                  t->vocab[out.ids[i]].text);
        }
    }
    tw_tokens_free(&out);
    return buf;
}
#define PIECES(t, s) pieces((t), (s), strlen(s), buf, sizeof buf)

static const char *const base_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un",     "##aff",  "##able", "aff",  "able",
    "the",   "hello", "world", ",",     "!",      "?",      "'",      "$",    "-",
    "cafe",  "naive", "##s",   "a",     "##a",    "play",   "##ing",  "una",  "##affable",
    "中",    "文",    "##文",  "\xC2\xBF" /* ¿ */, "\xE2\x80\x94" /* — */, "x", "##y",
    "\xC3\xA9" /* é */, "caf", "##\xC3\xA9", "i", "##\xCC\x87" /* ##U+0307 */, "istanbul",
    "##x",   "1",     "##2",   "##3",   "12",     "##i",    NULL};

static void test_greedy_longest_match(void) {
    char buf[1024];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "hello world"), "hello|world");
    CHECK_EQ_STR(PIECES(t, "playing"), "play|##ing");
    CHECK_EQ_STR(PIECES(t, "plays"), "play|##s");
    /* Longest first: "una" beats "un", then "##ffable" does not exist and the greedy
     * algorithm does not backtrack to un + ##affable: the word is unknown, as in HF. */
    CHECK_EQ_STR(PIECES(t, "unaffable"), "[UNK]");
    CHECK_EQ_STR(PIECES(t, "unaff"), "[UNK]");
    CHECK_EQ_STR(PIECES(t, "un aff"), "un|aff");
    /* Continuations come from ## entries only: "##able" exists, "##hello" does not (though
     * "hello" does). */
    CHECK_EQ_STR(PIECES(t, "theable"), "the|##able");
    CHECK_EQ_STR(PIECES(t, "thehello"), "[UNK]");
    CHECK_EQ_STR(PIECES(t, "aaaa"), "a|##a|##a|##a");
    CHECK_EQ_STR(PIECES(t, "123"), "12|##3");
    CHECK_EQ_STR(PIECES(t, "xyz"), "[UNK]");
    CHECK_EQ_STR(PIECES(t, ""), "");
    CHECK_EQ_STR(PIECES(t, "   \t\n "), "");
    wp_free(t);
}

static void test_long_words(void) {
    char buf[4096], text[512];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    /* 100 characters is still a word; 101 is unknown (HF: count > max_input_chars_per_word). */
    memset(text, 'a', 100);
    text[100] = 0;
    const char *p = PIECES(t, text);
    CHECK(strncmp(p, "a|##a|##a", 9) == 0);
    CHECK_EQ_INT(strlen(p), 1 + 99 * 4);
    memset(text, 'a', 101);
    text[101] = 0;
    CHECK_EQ_STR(PIECES(t, text), "[UNK]");
    /* The word after an over-long one is tokenized normally. */
    memset(text, 'a', 300);
    memcpy(text + 300, " hello", 7);
    CHECK_EQ_STR(PIECES(t, text), "[UNK]|hello");
    wp_free(t);
    /* Counted in characters, not bytes: 100 x é (200 bytes) is a word, 101 are not. */
    t = wp_make(base_vocab, 1, 0, 1, 100);
    for (int i = 0; i < 101; i++) memcpy(text + 2 * i, "\xC3\xA9", 2);
    text[202] = 0;
    CHECK_EQ_STR(PIECES(t, text), "[UNK]");
    text[200] = 0;
    p = PIECES(t, text);
    CHECK(strncmp(p, "\xC3\xA9|##\xC3\xA9|", 2 + 1 + 4 + 1) == 0);
    CHECK_EQ_INT(strlen(p), 2 + 99 * 5);
    wp_free(t);
    /* A limit past the stack buffer (256) takes the heap path. */
    t = wp_make(base_vocab, 1, -1, 1, 300);
    memset(text, 'a', 290);
    text[290] = 0;
    p = PIECES(t, text);
    CHECK_EQ_INT(strlen(p), 1 + 289 * 4);
    memset(text, 'a', 301);
    text[301] = 0;
    CHECK_EQ_STR(PIECES(t, text), "[UNK]");
    wp_free(t);
}

static void test_lowercase_and_accents(void) {
    char buf[1024];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "Hello WORLD"), "hello|world");
    CHECK_EQ_STR(PIECES(t, "Caf\xC3\xA9 NA\xC3\x8FVE"), "cafe|naive");    /* Café NAÏVE */
    CHECK_EQ_STR(PIECES(t, "cafe\xCC\x81"), "cafe");                      /* e + U+0301 */
    CHECK_EQ_STR(PIECES(t, "\xC4\xB0stanbul"), "istanbul");              /* İstanbul */
    wp_free(t);
    /* Lower-case without stripping: é stays, and İ becomes "i" + U+0307 (full mapping). */
    t = wp_make(base_vocab, 1, 0, 1, 100);
    CHECK_EQ_STR(PIECES(t, "CAF\xC3\x89"), "caf|##\xC3\xA9");
    CHECK_EQ_STR(PIECES(t, "\xC3\x89"), "\xC3\xA9");
    CHECK_EQ_STR(PIECES(t, "\xC4\xB0"), "i|##\xCC\x87");
    wp_free(t);
    /* Cased: nothing changes case. */
    t = wp_make(base_vocab, 0, 0, 1, 100);
    CHECK_EQ_STR(PIECES(t, "Hello hello"), "[UNK]|hello");
    wp_free(t);
    /* strip_accents = 1 with lowercase = 0 strips but keeps case. */
    t = wp_make(base_vocab, 0, 1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "caf\xC3\xA9 Caf\xC3\xA9"), "cafe|[UNK]");
    wp_free(t);
}

static void test_cjk_and_punctuation(void) {
    char buf[1024];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    /* Each ideograph is a word of its own. */
    CHECK_EQ_STR(PIECES(t, "中文"), "中|文");
    CHECK_EQ_STR(PIECES(t, "hello中world"), "hello|中|world");
    /* Punctuation: ASCII ranges (including $ and `-`, which Unicode calls symbols and dash)
     * and every P* category (¿ Po, — Pd); each is a word. */
    CHECK_EQ_STR(PIECES(t, "hello,world!"), "hello|,|world|!");
    CHECK_EQ_STR(PIECES(t, "$a-a"), "$|a|-|a");
    CHECK_EQ_STR(PIECES(t, "\xC2\xBFhello\xE2\x80\x94world?"), "\xC2\xBF|hello|\xE2\x80\x94|world|?");
    CHECK_EQ_STR(PIECES(t, "don't"), "[UNK]|'|[UNK]");
    CHECK_EQ_STR(PIECES(t, "!!"), "!|!");
    /* A character that decomposes to punctuation is punctuation (U+1FEF -> '`', not in
     * this vocabulary). */
    CHECK_EQ_STR(PIECES(t, "a\xE1\xBF\xAF" "a"), "a|[UNK]|a");
    wp_free(t);
    /* Without CJK splitting the ideographs stay in one word. */
    t = wp_make(base_vocab, 1, -1, 0, 100);
    CHECK_EQ_STR(PIECES(t, "中文"), "中|##文");
    wp_free(t);
}

static void test_cleaning(void) {
    char buf[1024];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    /* NUL, other C0 controls, DEL, U+FFFD, format (U+200B, U+00AD) and private-use
     * characters vanish without splitting the word; \v and \f are controls too. */
    CHECK_EQ_STR(PIECES(t, "hel\x01lo\x7f"), "hello");
    CHECK_EQ_STR(pieces(t, "hel\0lo", 6, buf, sizeof buf), "hello");
    CHECK_EQ_STR(PIECES(t, "hel\xEF\xBF\xBDlo"), "hello");
    CHECK_EQ_STR(PIECES(t, "hel\xE2\x80\x8Blo wor\xC2\xADld"), "hello|world");
    CHECK_EQ_STR(PIECES(t, "hel\xEE\x80\x80lo"), "hello");
    CHECK_EQ_STR(PIECES(t, "hel\vlo\fx"), "hello|##x");
    /* Whitespace of every kind splits: tab, newline, CR, NBSP, U+3000, U+2028. */
    CHECK_EQ_STR(PIECES(t, "hello\tworld\r\nhello\xC2\xA0world\xE3\x80\x80hello\xE2\x80\xA8x"),
                 "hello|world|hello|world|hello|x");
    /* An unassigned code point is kept (HF's control test does not include Cn). */
    CHECK_EQ_STR(PIECES(t, "a\xCD\xB8"), "[UNK]");
    /* Emoji are ordinary characters: the word they are in is unknown. */
    CHECK_EQ_STR(PIECES(t, "hello \xF0\x9F\x98\x80 world"), "hello|[UNK]|world");
    CHECK_EQ_STR(PIECES(t, "hello\xF0\x9F\x98\x80"), "[UNK]");
    wp_free(t);
}

static void test_invalid_utf8(void) {
    char buf[1024];
    tw_tokenizer *t = wp_make(base_vocab, 1, -1, 1, 100);
    /* A stray byte makes its word unknown; neighbours are untouched. */
    CHECK_EQ_STR(PIECES(t, "hello wor\xFFld the"), "hello|[UNK]|the");
    CHECK_EQ_STR(PIECES(t, "\xC3"), "[UNK]");
    CHECK_EQ_STR(PIECES(t, "the \xE2\x80"), "the|[UNK]");
    CHECK_EQ_STR(PIECES(t, "\xED\xA0\x80 a"), "[UNK]|a"); /* a surrogate */
    wp_free(t);
}

/* Combining marks are put in canonical order before marks are dropped; with accents
 * stripped the order shows only for marks that are not Mn: U+1D16D (class 226) and U+1D165
 * (class 216) are spacing marks (Mc), so "x" U+1D16D U+1D165 becomes x U+1D165 U+1D16D. */
static void test_canonical_order(void) {
    char buf[1024];
    static const char *const v[] = {"[UNK]", "x", "##\xF0\x9D\x85\xA5", "##\xF0\x9D\x85\xAD",
                                    "##y", NULL};
    tw_tokenizer *t = wp_make(v, 1, -1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "x\xF0\x9D\x85\xAD\xF0\x9D\x85\xA5y"),
                 "x|##\xF0\x9D\x85\xA5|##\xF0\x9D\x85\xAD|##y");
    /* An Mn mark between them (U+0301) is dropped and changes nothing. */
    CHECK_EQ_STR(PIECES(t, "x\xF0\x9D\x85\xAD\xCC\x81\xF0\x9D\x85\xA5y"),
                 "x|##\xF0\x9D\x85\xA5|##\xF0\x9D\x85\xAD|##y");
    wp_free(t);
}

/* llama.cpp's BERT GGUF: word starts carry ▁, continuations are bare, specials unchanged.
 * The same text gives the same pieces (modulo the markers) as the HF vocabulary. */
static void test_gguf_convention(void) {
    char buf[1024];
    static const char *const v[] = {"[PAD]", "[UNK]", SP "un", "aff", "able", SP "hello",
                                    SP "play", "ing", SP ",", "s", SP "a", "a", NULL};
    tw_tokenizer *t = wp_make(v, 1, -1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "unaffable, Hello"), SP "un|aff|able|" SP ",|" SP "hello");
    CHECK_EQ_STR(PIECES(t, "playing plays aaa"),
                 SP "play|ing|" SP "play|s|" SP "a|a|a");
    /* Bare pieces are continuations only: "aff" alone is no word start. */
    CHECK_EQ_STR(PIECES(t, "aff"), "[UNK]");
    wp_free(t);
}

static void test_errors(void) {
    char buf[1024];
    /* No [UNK] in the vocabulary: an unknown word is an error that says why. */
    static const char *const v[] = {"hello", NULL};
    tw_tokenizer *t = wp_make(v, 1, -1, 1, 100);
    CHECK_EQ_STR(PIECES(t, "hello"), "hello");
    CHECK(strncmp(PIECES(t, "hello world"), "error", 5) == 0);
    CHECK(strstr(buf, "unknown token") != NULL);
    /* A bad max_input_chars_per_word is refused and leaves the tokenizer as it was. */
    CHECK_EQ_INT(tok_wordpiece_init(t, 1, -1, 1, "##", 0), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "max_input_chars_per_word") != NULL);
    CHECK_EQ_STR(PIECES(t, "Hello"), "hello");
    wp_free(t);
    /* Encoding before init is an error, not a crash. */
    tw_tokenizer bare;
    memset(&bare, 0, sizeof bare);
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tok_wordpiece_encode(&bare, "a", 1, &out), TW_ERR_ARG);
    tw_tokens_free(&out);
    tok_wordpiece_free(&bare); /* no-op */
    tok_wordpiece_free(NULL);
}

/* Every allocation failure during init is reported and leaves the earlier settings in
 * place (here: cased, so "Hello" stays unknown); the init that finally succeeds applies. */
static void test_init_allocation_failures(void) {
    char buf[256];
    tw_tokenizer *t = wp_make(base_vocab, 0, 0, 1, 100);
    void *before = t->wordpiece;
    int failures = 0;
    tw_status st = TW_ERR_NOMEM;
    for (uint64_t k = 1; k < 20 && st != TW_OK; k++) {
        tw_mem_fail_after(k);
        st = tok_wordpiece_init(t, 1, -1, 1, "##", 100);
        tw_mem_fail_after(0);
        if (st == TW_OK) break;
        failures++;
        CHECK_EQ_INT(st, TW_ERR_NOMEM);
        CHECK(t->wordpiece == before);
        CHECK_EQ_STR(PIECES(t, "Hello"), "[UNK]");
    }
    CHECK_EQ_INT(st, TW_OK);
    CHECK(failures > 0);
    CHECK_EQ_STR(PIECES(t, "Hello"), "hello");
    wp_free(t);
}

int main(void) {
    RUN(test_greedy_longest_match);
    RUN(test_long_words);
    RUN(test_lowercase_and_accents);
    RUN(test_cjk_and_punctuation);
    RUN(test_cleaning);
    RUN(test_invalid_utf8);
    RUN(test_canonical_order);
    RUN(test_gguf_convention);
    RUN(test_errors);
    RUN(test_init_allocation_failures);
    TEST_DONE();
}
