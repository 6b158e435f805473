/* test_minilm_tokenizer.c: the all-MiniLM-L6-v2 tokenizer (BERT WordPiece, loaded from its
 * tokenizer.json) against HF tokenizers' ids for the same texts.
 *
 * References (rows {"name", "text"/"text_hex", "ids", "ids_special"}, read by tok_golden.h):
 *   minilm-l6.golden.jsonl            hand-written texts (tools/gen_tokenizer_golden.py);
 *   minilm-l6.wordpiece.golden.jsonl  300 seeded texts aimed at the normaliser: accents and
 *                                     combining marks, Hangul, CJK, controls, Unicode spaces
 *                                     and punctuation, words at the 100-character limit
 *                                     (tools/gen_wordpiece_golden.py).
 *   ids          = encode(text, add_special_tokens=False), special-token texts left as text
 *                  (twin: flags 0);
 *   ids_special  = encode(text, add_special_tokens=True), special tokens parsed
 *                  (twin: TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL).
 * Also: a few ids written out here, and the same results from four threads sharing one
 * tokenizer (a loaded tokenizer is immutable). The model comes from `twin model fetch
 * minilm-l6` ($TWIN_MODELS/minilm-l6); without it the test is skipped (77). */
#include "test.h"
#include "tok_golden.h"
#include "tokenizer.h"

#include <pthread.h>

/* Compares ids with a JSON array of ints; prints the first difference. 1 when equal. */
static int ids_match(const char *name, const char *which, const tw_tokens *got,
                     const tw_json *want) {
    size_t n = tw_json_size(want);
    const tw_json *w = tw_json_first(want);
    size_t i = 0;
    for (; w && i < got->n; i++, w = tw_json_next(w)) {
        if ((double)got->ids[i] != tw_json_num(w, -1)) break;
    }
    if (i == n && got->n == n) return 1;
    fprintf(stderr, "  %s (%s): %zu ids, expected %zu; first difference at %zu: got %d, "
                    "expected %g\n",
            name, which, got->n, n, i, i < got->n ? got->ids[i] : -1,
            w ? tw_json_num(w, -1) : -1.0);
    return 0;
}

static tw_tokenizer *load_minilm(void) {
    const char *models = test_env("TWIN_MODELS");
    if (!models) TEST_SKIP("TWIN_MODELS is not set");
    tw_sb path;
    tw_sb_init(&path);
    tw_sb_printf(&path, "%s/minilm-l6/tokenizer.json", models);
    if (!tw_path_exists(tw_sb_str(&path))) {
        fprintf(stderr, "SKIP: %s not found (run `twin model fetch minilm-l6`)\n",
                tw_sb_str(&path));
        tw_sb_free(&path);
        exit(77);
    }
    tw_tokenizer *t = tw_tokenizer_from_hf(tw_sb_str(&path));
    if (!t) fprintf(stderr, "%s: %s\n", tw_sb_str(&path), tw_errmsg());
    tw_sb_free(&path);
    return t;
}

static tw_tokenizer *tok;

/* A few ids known from HF, so that a wrong vocabulary cannot pass by an empty golden file. */
static void test_known_ids(void) {
    CHECK_EQ_INT(tw_tokenizer_kind(tok), TW_TOK_WORDPIECE);
    CHECK_EQ_INT(tw_tokenizer_n_vocab(tok), 30522);
    CHECK_EQ_INT(tw_tokenizer_unk(tok), 100);
    CHECK_EQ_INT(tw_tokenizer_cls(tok), 101);
    CHECK_EQ_INT(tw_tokenizer_sep(tok), 102);
    const char *text = "Hello, World! Caf\xC3\xA9 unaffable \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80";
    static const int32_t want[] = {7592, 1010, 2088, 999, 7668, 14477, 20961, 3468, 1746, 1861, 100};
    static const int32_t want_special[] = {101, 7592, 1010, 2088, 999, 7668, 14477, 20961,
                                           3468, 1746, 1861, 100, 102};
    tw_tokens out;
    tw_tokens_init(&out);
    CHECK_EQ_INT(tw_tokenizer_encode(tok, text, strlen(text), 0, &out), TW_OK);
    CHECK_EQ_INT(out.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < out.n && i < sizeof want / sizeof want[0]; i++)
        CHECK_EQ_INT(out.ids[i], want[i]);
    out.n = 0;
    CHECK_EQ_INT(tw_tokenizer_encode(tok, text, strlen(text),
                                     TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL, &out),
                 TW_OK);
    CHECK_EQ_INT(out.n, sizeof want_special / sizeof want_special[0]);
    for (size_t i = 0; i < out.n && i < sizeof want_special / sizeof want_special[0]; i++)
        CHECK_EQ_INT(out.ids[i], want_special[i]);
    tw_tokens_free(&out);
}

typedef struct {
    int rows, same;
} golden_count;

static void golden_row(const tw_json *row, void *ctx) {
    golden_count *c = ctx;
    const char *name = tw_json_get_str(row, "name", "?");
    size_t len = 0;
    char *text = golden_text(row, &len);
    const tw_json *ids = tw_json_get(row, "ids"), *ids_sp = tw_json_get(row, "ids_special");
    c->rows++;
    CHECK(text && tw_json_is_array(ids) && tw_json_is_array(ids_sp));
    if (!text || !ids || !ids_sp) {
        tw_free(text);
        return;
    }
    tw_tokens out;
    tw_tokens_init(&out);
    int ok = 1;
    CHECK_EQ_INT(tw_tokenizer_encode(tok, text, len, 0, &out), TW_OK);
    ok &= ids_match(name, "ids", &out, ids);
    out.n = 0;
    CHECK_EQ_INT(tw_tokenizer_encode(tok, text, len, TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL,
                                     &out),
                 TW_OK);
    ok &= ids_match(name, "ids_special", &out, ids_sp);
    c->same += ok;
    tw_tokens_free(&out);
    tw_free(text);
}

static void check_golden_file(const char *file, int min_rows) {
    const char *data = test_env("TWIN_TEST_DATA");
    CHECK(data != NULL);
    if (!data) return;
    tw_sb path;
    tw_sb_init(&path);
    tw_sb_printf(&path, "%s/tokenizer/%s", data, file);
    golden_count c = {0, 0};
    int rows = golden_each_row(tw_sb_str(&path), golden_row, &c);
    fprintf(stderr, "  %s: %d texts, %d match HF\n", file, c.rows, c.same);
    CHECK(rows >= min_rows);
    CHECK_EQ_INT(c.same, c.rows);
    tw_sb_free(&path);
}

static void test_golden_texts(void) { check_golden_file("minilm-l6.golden.jsonl", 60); }

static void test_golden_wordpiece_stress(void) {
    check_golden_file("minilm-l6.wordpiece.golden.jsonl", 300);
}

/* Four threads encode the same texts through one tokenizer; every result must equal the
 * single-threaded one (no shared scratch, no hidden state in encode). */
enum { N_THREADS = 4, N_TEXTS = 6, N_ROUNDS = 200 };
static const char *const mt_texts[N_TEXTS] = {
    "The quick brown fox jumps over the lazy dog.",
    "Caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9 \xC3\x91" "and\xC3\xBA \xC3\xBC" "ber",
    "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C 1314151",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "emoji \xF0\x9F\x98\x80\xF0\x9F\xA6\x99 tabs\tand\nnewlines   and\x01" "controls",
    "[CLS] looks special [SEP] but is text here",
};
static tw_tokens mt_want[N_TEXTS];

static void *mt_worker(void *arg) {
    int *bad = arg;
    tw_tokens out;
    tw_tokens_init(&out);
    for (int r = 0; r < N_ROUNDS; r++) {
        for (int i = 0; i < N_TEXTS; i++) {
            out.n = 0;
            if (tw_tokenizer_encode(tok, mt_texts[i], strlen(mt_texts[i]), 0, &out) != TW_OK ||
                out.n != mt_want[i].n ||
                memcmp(out.ids, mt_want[i].ids, out.n * sizeof(int32_t)) != 0)
                (*bad)++;
        }
    }
    tw_tokens_free(&out);
    return NULL;
}

static void test_threads(void) {
    for (int i = 0; i < N_TEXTS; i++) {
        tw_tokens_init(&mt_want[i]);
        CHECK_EQ_INT(tw_tokenizer_encode(tok, mt_texts[i], strlen(mt_texts[i]), 0, &mt_want[i]),
                     TW_OK);
        CHECK(mt_want[i].n > 0);
    }
    pthread_t th[N_THREADS];
    int bad[N_THREADS] = {0};
    for (int k = 0; k < N_THREADS; k++)
        CHECK_EQ_INT(pthread_create(&th[k], NULL, mt_worker, &bad[k]), 0);
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ_INT(bad[k], 0);
    }
    for (int i = 0; i < N_TEXTS; i++) tw_tokens_free(&mt_want[i]);
}

int main(void) {
    tok = load_minilm();
    CHECK(tok != NULL);
    if (!tok) TEST_DONE();
    RUN(test_known_ids);
    RUN(test_golden_texts);
    RUN(test_golden_wordpiece_stress);
    RUN(test_threads);
    tw_tokenizer_free(tok);
    TEST_DONE();
}
