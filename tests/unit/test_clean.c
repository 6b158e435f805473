/* test_clean.c: clean_text's normalisation rules one by one, NFC, each kind of invalid UTF-8,
 * clean_document per content type, the MinHash signature and LSH index (identical, one
 * sentence changed, unrelated, too short, a planted near duplicate among 2,000 documents),
 * clean_word_f1, and allocation failures. */
#include <string.h>

#include "pipelines/clean.h"
#include "test.h"

/* Pinned values of the signature of "the quick brown fox jumps over the lazy dog" (set once from
 * this implementation; a change means every stored signature changes). */
#define DEDUP_PIN_H0 1274894447u
#define DEDUP_PIN_H127 698621852u

/* clean_text of s (n bytes) into a static buffer. */
static const char *ct_n(const char *s, size_t n) {
    static char out[4096];
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK(clean_text(s, n, &sb) == TW_OK);
    snprintf(out, sizeof out, "%s", tw_sb_str(&sb));
    tw_sb_free(&sb);
    return out;
}
static const char *ct(const char *s) { return ct_n(s, strlen(s)); }

static void test_rules(void) {
    /* \r\n and \r -> \n */
    CHECK_EQ_STR(ct("a\r\nb\rc\n"), "a\nb\nc");
    /* control characters other than \n and \t removed (C0, DEL, C1) */
    CHECK_EQ_STR(ct("a\x01" "b\x1F" "c\x7F" "d\xC2\x85" "e\xC2\x9F" "f\tg"), "abcdef g");
    /* runs of spaces and tabs inside a line -> one space; indentation kept; trailing removed */
    CHECK_EQ_STR(ct("one  two\t\tthree \t four   \n  - nested   item  "), "one two three four\n  - nested item");
    /* 3+ newlines -> one blank line; single newlines and paragraph breaks kept */
    CHECK_EQ_STR(ct("p1\n\n\n\np2\n\np3\nline"), "p1\n\np2\n\np3\nline");
    /* lines of only blanks count as blank */
    CHECK_EQ_STR(ct("a\n  \n\t\n \nb"), "a\n\nb");
    /* leading and trailing blank lines removed */
    CHECK_EQ_STR(ct("\n\n  \n  text\n\n\n"), "  text");
    CHECK_EQ_STR(ct(""), "");
    CHECK_EQ_STR(ct(" \n\t\n"), "");
    /* fenced code verbatim: space runs, trailing spaces, blank-line runs */
    CHECK_EQ_STR(ct("text  here\n```c\nint  x;   \n\n\n\n  y\t=\t1;\n```\nafter   fence  "),
                 "text here\n```c\nint  x;   \n\n\n\n  y\t=\t1;\n```\nafter fence");
    /* an unclosed fence keeps the rest verbatim */
    CHECK_EQ_STR(ct("```\na  b"), "```\na  b");
    /* ... but not blank lines at the end of the text (it never ends with a newline; the
     * fuzzer found this), while blank lines that end a closed fenced block are all kept */
    CHECK_EQ_STR(ct("```\na  b\n\n\n"), "```\na  b");
    CHECK_EQ_STR(ct("```\n\n\na\n\n\n```\nz"), "```\n\n\na\n\n\n```\nz");
    /* punctuation, apostrophes, quotes and emoji kept as they are */
    CHECK_EQ_STR(ct("It’s “fine” — isn't it? «oui» 😀👩🏽‍💻 ½"), "It’s “fine” — isn't it? «oui» 😀👩🏽‍💻 ½");
    /* byte-order marks dropped, leading or not */
    CHECK_EQ_STR(ct("\xEF\xBB\xBFhi\xEF\xBB\xBF!"), "hi!");
    /* NUL bytes are control characters */
    CHECK_EQ_STR(ct_n("a\0b", 3), "ab");
    /* appends to what the builder holds */
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_puts(&sb, "x:");
    CHECK(clean_text("  y  ", 5, &sb) == TW_OK);
    CHECK_EQ_STR(tw_sb_str(&sb), "x:  y"); /* indentation of the first line kept */
    tw_sb_free(&sb);
}

static void test_nfc(void) {
    CHECK_EQ_STR(ct("e\xCC\x81"), "\xC3\xA9");                /* e + U+0301 -> é */
    CHECK_EQ_STR(ct("A\xCC\x8A ok"), "\xC3\x85 ok");          /* A + ring -> Å */
    CHECK_EQ_STR(ct("\xE2\x84\xAB"), "\xC3\x85");             /* U+212B ANGSTROM SIGN -> Å */
    CHECK_EQ_STR(ct("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C"); /* jamo -> 한 */
    /* canonical reordering of marks: dot below (ccc 220) before dot above (ccc 230) */
    CHECK_EQ_STR(ct("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");
    /* already NFC stays, compatibility characters are not folded (NFC, not NFKC) */
    CHECK_EQ_STR(ct("caf\xC3\xA9 \xEF\xAC\x81 \xE2\x91\xA0"), "caf\xC3\xA9 \xEF\xAC\x81 \xE2\x91\xA0");
    /* a typographic quote then a decomposed letter on one line */
    CHECK_EQ_STR(ct("\xE2\x80\x9C" "cafe\xCC\x81\xE2\x80\x9D"), "\xE2\x80\x9C" "caf\xC3\xA9\xE2\x80\x9D");
    /* a long line needs a bigger code point buffer than the stack one */
    char big[3001];
    for (int i = 0; i < 1000; i++) memcpy(big + 3 * i, "e\xCC\x81", 3);
    big[3000] = 0;
    const char *r = ct(big);
    CHECK_EQ_INT(strlen(r), 2000);
    CHECK(memcmp(r, "\xC3\xA9\xC3\xA9", 4) == 0);
}

static void test_invalid_utf8(void) {
#define FFFD "\xEF\xBF\xBD"
    CHECK_EQ_STR(ct("a\x80" "b"), "a" FFFD "b");                       /* lone continuation byte */
    CHECK_EQ_STR(ct("\xC0\xAF"), FFFD FFFD);                           /* overlong 2-byte lead */
    CHECK_EQ_STR(ct("\xE0\x80\x80"), FFFD FFFD FFFD);                  /* overlong 3-byte */
    CHECK_EQ_STR(ct("\xED\xA0\x80"), FFFD FFFD FFFD);                  /* a surrogate */
    CHECK_EQ_STR(ct("\xF4\x90\x80\x80"), FFFD FFFD FFFD FFFD);         /* past U+10FFFF */
    CHECK_EQ_STR(ct("\xF5\xFF\xFE"), FFFD FFFD FFFD);                  /* never-valid bytes */
    CHECK_EQ_STR(ct("x\xE2\x82"), "x" FFFD);                           /* truncated at the end */
    CHECK_EQ_STR(ct("\xE2\x82z"), FFFD "z");                           /* truncated, one U+FFFD */
    CHECK_EQ_STR(ct("\xF0\x9F\x98 ok"), FFFD " ok");                   /* truncated 4-byte */
    CHECK_EQ_STR(ct("\xC3"), FFFD);                                    /* truncated 2-byte */
    CHECK_EQ_STR(ct("ok \xF0\x9F\x98\x80"), "ok \xF0\x9F\x98\x80");    /* valid 4-byte kept */
    /* the output is always valid UTF-8 */
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    const char *r = ct_n((const char *)all, sizeof all);
    CHECK(tw_utf8_valid(r, strlen(r)));
#undef FFFD
}

static const char *cd(const char *type, const char *s, tw_status want) {
    static char out[4096];
    tw_sb sb;
    tw_sb_init(&sb);
    tw_status st = clean_document(type, s, strlen(s), &sb);
    CHECK_EQ_INT(st, want);
    snprintf(out, sizeof out, "%s", tw_sb_str(&sb));
    tw_sb_free(&sb);
    return out;
}

static void test_documents(void) {
    CHECK_EQ_STR(cd("html", "<html><body><nav>Menu</nav><article><p>Body  text e\xCC\x81.</p></article></body></html>", TW_OK),
                 "Body text \xC3\xA9.");
    CHECK_EQ_STR(cd("html_fragment", "<p>One</p><p>Two <b>bold</b></p>", TW_OK), "One\n\nTwo bold");
    /* markdown: YAML front matter dropped, the rest kept as text */
    CHECK_EQ_STR(cd("markdown", "---\ntitle: x\ntags: [a]\n---\n# Head\n\nBody  text\n", TW_OK), "# Head\n\nBody text");
    CHECK_EQ_STR(cd("markdown", "\xEF\xBB\xBF---\r\ntitle: x\r\n...\r\nBody\r\n", TW_OK), "Body");
    /* not front matter: unclosed, or not at the start */
    CHECK_EQ_STR(cd("markdown", "---\nnot closed\n", TW_OK), "---\nnot closed");
    CHECK_EQ_STR(cd("markdown", "text\n---\nx: y\n---\n", TW_OK), "text\n---\nx: y\n---");
    CHECK_EQ_STR(cd("text", "a  b\r\n\r\n\r\n\r\nc", TW_OK), "a b\n\nc");
    /* code: verbatim except UTF-8 repair and \r\n */
    CHECK_EQ_STR(cd("code", "  int  x;  \r\n\r\n\r\n\tlone\rcr\x01\xFF\n", TW_OK), "  int  x;  \n\n\n\tlone\rcr\x01\xEF\xBF\xBD\n");
    /* unknown type: an error that names it */
    CHECK_EQ_STR(cd("pdf", "x", TW_ERR_ARG), "");
    CHECK(strstr(tw_errmsg(), "'pdf'") != NULL);
    /* binary HTML is refused by the extractor, with its reason */
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK(clean_document("html", "<p>\0</p>", 8, &sb) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "clean_document") != NULL && strstr(tw_errmsg(), "NUL") != NULL);
    tw_sb_free(&sb);
}

/* ---- dedup ------------------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng;
static uint64_t rnext(rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static const char *const VOCAB[] = {
    "river", "stone", "window", "garden", "paper", "signal", "market", "winter", "kettle", "harbour", "lantern",
    "orchard", "silver", "meadow", "engine", "button", "copper", "thunder", "violet", "anchor", "biscuit", "canyon",
    "dolphin", "ember", "feather", "glacier", "hollow", "island", "jigsaw", "kernel", "ladder", "mirror", "needle",
    "oyster", "pepper", "quartz", "rocket", "saddle", "tunnel", "umbrella", "velvet", "walnut", "yonder", "zephyr",
    "the", "a", "of", "and", "to", "in", "was", "is", "with", "under", "over", "beside", "quietly", "slowly"};
#define NV (sizeof VOCAB / sizeof VOCAB[0])

/* A random document of n words (sentences of 12 words). */
static void rand_doc(rng *r, int n, tw_sb *sb) {
    for (int i = 0; i < n; i++) {
        tw_sb_puts(sb, VOCAB[rnext(r) % NV]);
        tw_sb_puts(sb, (i + 1) % 12 == 0 ? ". " : " ");
    }
}

static double sim_of(const char *a, const char *b) {
    dedup_sig x, y;
    dedup_signature(a, strlen(a), &x);
    dedup_signature(b, strlen(b), &y);
    return dedup_similarity(&x, &y);
}

static void test_minhash(void) {
    rng r = {12345};
    tw_sb a, b;
    tw_sb_init(&a);
    tw_sb_init(&b);
    rand_doc(&r, 600, &a);
    /* identical -> 1.0, and word normalisation: case and punctuation do not matter */
    CHECK_NEAR(sim_of(a.buf, a.buf), 1.0, 0);
    CHECK_NEAR(sim_of("The river, the STONE; the window! and more words here", "the river the stone the window and more words here"), 1.0, 0);
    /* one sentence changed in a long text: still a near duplicate (true Jaccard ~0.9) */
    tw_sb_puts(&b, a.buf);
    char *dot = strstr(b.buf + b.len / 2, ". ");
    TW_ASSERT(dot);
    static const char repl[] = "completely different words were written in this sentence";
    memcpy(dot + 2, repl, sizeof repl - 1);
    double s1 = sim_of(a.buf, b.buf);
    fprintf(stderr, "one sentence changed: similarity %.3f\n", s1);
    CHECK(s1 >= DEDUP_NEAR_THRESHOLD && s1 < 1.0);
    /* unrelated texts -> near 0 */
    tw_sb_clear(&b);
    rand_doc(&r, 600, &b);
    CHECK(sim_of(a.buf, b.buf) < 0.05);
    /* under 5 words: no shingle, never similar, even to itself */
    dedup_sig t;
    dedup_signature("only four words here", 20, &t);
    CHECK_EQ_INT(t.n_shingles, 0);
    CHECK_NEAR(dedup_similarity(&t, &t), 0.0, 0);
    dedup_signature("exactly five words right here", 29, &t);
    CHECK_EQ_INT(t.n_shingles, 1);
    dedup_signature(NULL, 0, &t);
    CHECK_EQ_INT(t.n_shingles, 0);
    /* punctuation-only tokens are not words */
    dedup_signature("one -- two ... three !!! four", 29, &t);
    CHECK_EQ_INT(t.n_shingles, 0);
    /* deterministic: a pinned signature (the same on every machine and run) */
    dedup_signature("the quick brown fox jumps over the lazy dog", 43, &t);
    CHECK_EQ_INT(t.n_shingles, 5);
    dedup_sig t2;
    dedup_signature("The Quick Brown Fox Jumps Over The Lazy Dog.", 44, &t2);
    CHECK(memcmp(t.h, t2.h, sizeof t.h) == 0);
    fprintf(stderr, "pinned: h[0]=%u h[127]=%u\n", t.h[0], t.h[127]);
    CHECK_EQ_INT(t.h[0], DEDUP_PIN_H0);
    CHECK_EQ_INT(t.h[127], DEDUP_PIN_H127);
    tw_sb_free(&a);
    tw_sb_free(&b);
}

static void test_lsh(void) {
    enum { N = 2000 };
    rng r = {777};
    dedup_index *ix;
    CHECK(dedup_index_new(&ix) == TW_OK);
    tw_sb doc, planted;
    tw_sb_init(&doc);
    tw_sb_init(&planted);
    dedup_sig s;
    for (int i = 0; i < N; i++) {
        tw_sb_clear(&doc);
        rand_doc(&r, 150 + (int)(rnext(&r) % 300), &doc);
        if (i == 1234) tw_sb_puts(&planted, doc.buf);
        dedup_signature(doc.buf, doc.len, &s);
        CHECK(dedup_index_add(ix, 1000 + i, &s) == TW_OK);
    }
    /* the planted near duplicate: one sentence of doc 1234 replaced */
    char *dot = strstr(planted.buf + 40, ". ");
    TW_ASSERT(dot);
    static const char repl[] = "an entirely new line written by someone else";
    memcpy(dot + 2, repl, sizeof repl - 1);
    dedup_signature(planted.buf, planted.len, &s);
    int64_t id;
    double sim;
    CHECK(dedup_index_query(ix, &s, DEDUP_NEAR_THRESHOLD, &id, &sim) == TW_OK);
    CHECK_EQ_INT(id, 1000 + 1234);
    CHECK(sim >= DEDUP_NEAR_THRESHOLD);
    /* a fresh random document matches nothing */
    tw_sb_clear(&doc);
    rand_doc(&r, 300, &doc);
    dedup_signature(doc.buf, doc.len, &s);
    CHECK(dedup_index_query(ix, &s, DEDUP_NEAR_THRESHOLD, &id, &sim) == TW_OK);
    CHECK_EQ_INT(id, 0);
    /* short documents never match, even an identical one */
    dedup_signature("tiny doc", 8, &s);
    CHECK(dedup_index_add(ix, 99, &s) == TW_OK);
    CHECK(dedup_index_query(ix, &s, 0.0, &id, &sim) == TW_OK);
    CHECK_EQ_INT(id, 0);
    /* exact duplicates: the earliest added wins */
    dedup_signature(planted.buf, planted.len, &s);
    CHECK(dedup_index_add(ix, 5, &s) == TW_OK);
    CHECK(dedup_index_add(ix, 6, &s) == TW_OK);
    CHECK(dedup_index_query(ix, &s, DEDUP_NEAR_THRESHOLD, &id, &sim) == TW_OK);
    CHECK_EQ_INT(id, 5);
    CHECK_NEAR(sim, 1.0, 0);
    /* id 0 means "none" and is refused */
    CHECK(dedup_index_add(ix, 0, &s) == TW_ERR_ARG);
    dedup_index_free(ix);
    dedup_index_free(NULL);
    tw_sb_free(&doc);
    tw_sb_free(&planted);
}

static void test_f1(void) {
    CHECK_NEAR(clean_word_f1("a b c", 5, "A, b. c!", 8), 1.0, 0);
    CHECK_NEAR(clean_word_f1("x y", 3, "a b", 3), 0.0, 0);
    CHECK_NEAR(clean_word_f1("", 0, "", 0), 1.0, 0);
    CHECK_NEAR(clean_word_f1("", 0, "a", 1), 0.0, 0);
    /* got {a, b, b, c}, want {a, b, d}: common {a, b} -> P 2/4, R 2/3, F1 4/7 */
    CHECK_NEAR(clean_word_f1("a b b c", 7, "a b d", 5), 4.0 / 7.0, 1e-12);
}

static void test_alloc_failures(void) {
    const char *in = "  Some  text\r\nwith e\xCC\x81 and \xFF bad\n\n\n```\n  code  \n```\n";
    size_t base = tw_mem_get_stats().current_bytes;
    int nomem = 0;
    for (uint64_t k = 1; k < 40; k++) {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_mem_fail_after(k);
        tw_status s = clean_text(in, strlen(in), &sb);
        tw_mem_fail_after(0);
        CHECK(s == TW_OK || s == TW_ERR_NOMEM);
        nomem += s == TW_ERR_NOMEM;
        tw_sb_free(&sb);
        dedup_index *ix = NULL;
        tw_mem_fail_after(k);
        s = dedup_index_new(&ix);
        if (s == TW_OK) {
            dedup_sig sig;
            dedup_signature("one two three four five six", 27, &sig);
            for (int i = 1; i <= 100 && s == TW_OK; i++) s = dedup_index_add(ix, i, &sig);
        }
        tw_mem_fail_after(0);
        CHECK(s == TW_OK || s == TW_ERR_NOMEM);
        dedup_index_free(ix);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, base);
    }
    CHECK(nomem > 0);
}

int main(void) {
    RUN(test_rules);
    RUN(test_nfc);
    RUN(test_invalid_utf8);
    RUN(test_documents);
    RUN(test_minhash);
    RUN(test_lsh);
    RUN(test_f1);
    RUN(test_alloc_failures);
    TEST_DONE();
}
