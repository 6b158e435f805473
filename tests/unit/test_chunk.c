/* test_chunk.c: pipelines/chunk.c on generated and hand-written texts, with three tokenizers:
 * MiniLM's WordPiece when $TWIN_MODELS/minilm-l6 exists, a tiny WordPiece vocabulary written
 * here as a tokenizer.json (always: letters and ## letters, so words cost several tokens and
 * CJK characters and emoji are [UNK]), and the tiny GPT-2 byte-level BPE of tests/data (always:
 * its counts do not add up over pieces, which exercises the exact recount of each chunk).
 *
 * Every result is checked against all of chunk.h's promises (tests/chunk_check.h: sizes by a
 * fresh count, coverage of every non-space byte, order, overlap bounds, UTF-8 boundaries);
 * each test adds what its text is for: headings that start and label chunks, code never cut
 * inside a line, paragraphs kept whole when they fit, sentence ends (abbreviations, initials,
 * decimals, ellipses, CJK full stops), the tail, a 2,000-word paragraph without a full stop,
 * CJK text, emoji, overlaps of whole sentences, bad options, allocation failures, and the time
 * for a 1 MB document. */
#include "chunk_check.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TW_SANITIZED 1
#endif
#endif
#ifndef TW_SANITIZED
#define TW_SANITIZED 0
#endif

typedef struct {
    const char *name;
    tw_tokenizer *tok;
    int additive; /* WordPiece: counts of pieces cut at whitespace add up */
} tok_case;

static tok_case toks[3];
static int n_toks;
static char tmpdir[] = "/tmp/twin_test_chunk.XXXXXX";

/* ---- fixtures ------------------------------------------------------------------------- */

static void load_tokenizers(void) {
    const char *models = test_env("TWIN_MODELS");
    if (models) {
        tw_sb p;
        tw_sb_init(&p);
        tw_sb_printf(&p, "%s/minilm-l6/tokenizer.json", models);
        if (tw_path_exists(tw_sb_str(&p))) {
            tw_tokenizer *t = tw_tokenizer_load(tw_sb_str(&p));
            if (!t) fprintf(stderr, "minilm-l6: %s\n", tw_errmsg());
            TW_ASSERT(t);
            toks[n_toks++] = (tok_case){"minilm-l6", t, 1};
        }
        tw_sb_free(&p);
    }
    if (!n_toks) fprintf(stderr, "note: no $TWIN_MODELS/minilm-l6: the tiny WordPiece stands in\n");
    toks[n_toks++] = (tok_case){"tiny-wordpiece", chunk_check_tiny_wordpiece(tmpdir), 1};
    const char *data = test_env("TWIN_TEST_DATA");
    if (data) {
        tw_sb p;
        tw_sb_init(&p);
        tw_sb_printf(&p, "%s/gpt2/tiny-gpt2-f32.gguf", data);
        tw_tokenizer *t = tw_tokenizer_load(tw_sb_str(&p));
        if (!t) fprintf(stderr, "tiny GPT-2: %s\n", tw_errmsg());
        TW_ASSERT(t);
        toks[n_toks++] = (tok_case){"tiny-gpt2-bpe", t, 0};
        tw_sb_free(&p);
    }
}

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static const char *const vocab_words[] = {
    "the", "model", "writes", "like", "one", "person", "and", "we", "crawl", "their", "posts",
    "clean", "text", "into", "chunks", "that", "fit", "an", "encoder", "window", "of", "tokens",
    "it's", "don't", "retrieval", "works", "better", "when", "sentences", "stay", "whole",
    "data", "pipeline", "vector", "index", "search", "twin", "quickly", "learns", "style",
    "from", "examples", "in", "a", "warehouse", "with", "SQLite", "embeddings", "are", "384",
    "dimensions", "cosine", "similarity", "is", "used", "for", "ranking", "results", NULL};
static size_t n_vocab_words(void) {
    size_t n = 0;
    while (vocab_words[n]) n++;
    return n;
}

/* A sentence of lo..hi words with a capital letter and an end mark (or none when end = 0). */
static void gen_sentence(tw_sb *sb, int lo, int hi, char end) {
    int n = lo + (int)rnd((uint32_t)(hi - lo + 1));
    size_t nv = n_vocab_words();
    for (int w = 0; w < n; w++) {
        const char *word = vocab_words[rnd((uint32_t)nv)];
        if (w == 0) {
            char c = word[0];
            tw_sb_putc(sb, c >= 'a' && c <= 'z' ? (char)(c - 32) : c);
            tw_sb_puts(sb, word + 1);
        } else {
            tw_sb_putc(sb, ' ');
            tw_sb_puts(sb, word);
            if (rnd(12) == 0) tw_sb_putc(sb, ',');
        }
    }
    if (end) tw_sb_putc(sb, end);
}

/* A Markdown-like document of about n_words words: headings, paragraphs of several sentences,
 * now and then a ``` block or a list. */
static void gen_document(tw_sb *sb, size_t n_words, uint64_t seed) {
    rng_state = seed;
    size_t words0 = 0;
    int sec = 0;
    while (words0 < n_words) {
        uint32_t r = rnd(10);
        if (r == 0) {
            tw_sb_printf(sb, "# Section %d about ", ++sec);
            gen_sentence(sb, 2, 4, 0);
            tw_sb_puts(sb, "\n\n");
        } else if (r == 1) {
            tw_sb_puts(sb, "```c\n");
            int lines = 2 + (int)rnd(12);
            for (int l = 0; l < lines; l++) {
                if (rnd(5) == 0) tw_sb_puts(sb, "\n");
                tw_sb_printf(sb, "    int v%d = f(%d, \"x\"); /* %s */\n", l, l, vocab_words[rnd(10)]);
            }
            tw_sb_puts(sb, "```\n\n");
            words0 += (size_t)lines * 6;
        } else if (r == 2) {
            for (int k = 0; k < 4; k++) {
                tw_sb_puts(sb, "- ");
                gen_sentence(sb, 2, 8, 0);
                tw_sb_putc(sb, '\n');
            }
            tw_sb_putc(sb, '\n');
            words0 += 20;
        } else {
            int ns = 1 + (int)rnd(8);
            for (int k = 0; k < ns; k++) {
                if (k) tw_sb_putc(sb, rnd(6) == 0 ? '\n' : ' ');
                gen_sentence(sb, 3, 24, ".!?"[rnd(3) == 0 ? rnd(3) : 0]);
                words0 += 12;
            }
            tw_sb_puts(sb, "\n\n");
        }
    }
}

/* Chunks text, checks every promise; returns the spans (caller frees) or NULL on failure. */
static chunk_span *chunk_checked(const tok_case *tc, const char *text, size_t len,
                                 chunk_kind kind, int32_t max_tok, int32_t ov, size_t *n) {
    chunk_opts o = {max_tok, ov};
    chunk_span *sp = NULL;
    *n = 0;
    tw_status st = chunk_text(tc->tok, text, len, kind, &o, &sp, n);
    if (st != TW_OK) {
        fprintf(stderr, "  %s max %d overlap %d: chunk_text: %s\n", tc->name, max_tok, ov,
                tw_errmsg());
        CHECK(st == TW_OK);
        return NULL;
    }
    char msg[512];
    if (chunk_check_spans(tc->tok, text, len, &o, sp, *n, msg, sizeof msg)) {
        fprintf(stderr, "  %s max %d overlap %d: %s\n", tc->name, max_tok, ov, msg);
        CHECK(!"chunk.h promise broken");
    }
    return sp;
}

static long count_tokens(const tok_case *tc, const char *s, size_t a, size_t b) {
    return chunk_check_count(tc->tok, s, a, b);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_blank_and_bad_options(void) {
    const tok_case *tc = &toks[0];
    chunk_span *sp = (chunk_span *)1;
    size_t n = 99;
    chunk_opts o;
    chunk_opts_default(&o);
    CHECK_EQ_INT(o.max_tokens, 254);
    CHECK_EQ_INT(o.overlap_tokens, 32);
    CHECK_EQ_INT(chunk_text(tc->tok, "", 0, CHUNK_PROSE, &o, &sp, &n), TW_OK);
    CHECK(sp == NULL && n == 0);
    CHECK_EQ_INT(chunk_text(tc->tok, NULL, 0, CHUNK_CODE, NULL, &sp, &n), TW_OK);
    CHECK(sp == NULL && n == 0);
    const char *ws = "  \n\n\t \r\n   \n";
    CHECK_EQ_INT(chunk_text(tc->tok, ws, strlen(ws), CHUNK_PROSE, &o, &sp, &n), TW_OK);
    CHECK(sp == NULL && n == 0);
    CHECK_EQ_INT(chunk_text(tc->tok, ws, strlen(ws), CHUNK_CODE, &o, &sp, &n), TW_OK);
    CHECK(sp == NULL && n == 0);

    chunk_opts bad = {4, 0};
    CHECK_EQ_INT(chunk_text(tc->tok, "a b", 3, CHUNK_PROSE, &bad, &sp, &n), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "max_tokens") != NULL);
    bad = (chunk_opts){64, 32}; /* overlap must be under max / 2 */
    CHECK_EQ_INT(chunk_text(tc->tok, "a b", 3, CHUNK_PROSE, &bad, &sp, &n), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "overlap_tokens") != NULL);
    bad = (chunk_opts){64, -1};
    CHECK_EQ_INT(chunk_text(tc->tok, "a b", 3, CHUNK_PROSE, &bad, &sp, &n), TW_ERR_ARG);
    CHECK_EQ_INT(chunk_text(NULL, "a b", 3, CHUNK_PROSE, &o, &sp, &n), TW_ERR_ARG);
    CHECK_EQ_INT(chunk_text(tc->tok, NULL, 3, CHUNK_PROSE, &o, &sp, &n), TW_ERR_ARG);
    CHECK_EQ_INT(chunk_text(tc->tok, "a", 1, (chunk_kind)7, &o, &sp, &n), TW_ERR_ARG);
    CHECK_EQ_INT(chunk_text(tc->tok, "a", 1, CHUNK_PROSE, &o, NULL, &n), TW_ERR_ARG);
    chunk_spans_free(NULL, 0);

    /* One short sentence: one chunk, exactly its bytes. */
    const char *one = "\n  Hello there, it's me.  \n";
    for (int t = 0; t < n_toks; t++) {
        chunk_span *s1 = chunk_checked(&toks[t], one, strlen(one), CHUNK_PROSE, 254, 32, &n);
        CHECK_EQ_INT(n, 1);
        if (n == 1) {
            CHECK_EQ_INT(s1[0].start, 3);
            CHECK_EQ_INT(s1[0].end, 3 + strlen("Hello there, it's me."));
            CHECK(s1[0].heading == NULL && s1[0].kind == CHUNK_PROSE);
        }
        chunk_spans_free(s1, n);
    }
}

/* Generated documents with every tokenizer and several limits: all promises; overlaps are
 * present with overlap > 0 and absent with 0; the same input gives the same chunks. */
static void test_generated_documents(void) {
    static const int32_t limits[][2] = {{254, 32}, {254, 0}, {64, 16}, {100, 0}, {8, 3}, {9, 0}};
    for (int t = 0; t < n_toks; t++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            tw_sb doc;
            tw_sb_init(&doc);
            gen_document(&doc, 3000, seed);
            for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
                size_t n, n2;
                chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE,
                                               limits[l][0], limits[l][1], &n);
                chunk_span *again = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE,
                                                  limits[l][0], limits[l][1], &n2);
                CHECK(n > 1 && n == n2);
                int same = n == n2, overlaps = 0;
                for (size_t i = 0; same && i < n; i++) {
                    same = sp[i].start == again[i].start && sp[i].end == again[i].end;
                    if (i && sp[i].start < sp[i - 1].end) overlaps++;
                }
                CHECK(same);
                if (limits[l][1] >= 16) CHECK(overlaps > 0);
                chunk_spans_free(sp, n);
                chunk_spans_free(again, n2);
            }
            tw_sb_free(&doc);
        }
    }
}

/* Headings start a chunk, label it and every chunk below them up to the next heading; nothing
 * crosses a heading; the text before the first heading has no label. */
static void test_headings(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    rng_state = 42;
    tw_sb_puts(&doc, "An opening line without a heading.\n\n");
    size_t h1 = doc.len;
    tw_sb_puts(&doc, "# First steps\n\n");
    for (int p = 0; p < 6; p++) {
        for (int s = 0; s < 6; s++) gen_sentence(&doc, 6, 14, '.'), tw_sb_putc(&doc, ' ');
        tw_sb_puts(&doc, "\n\n");
    }
    size_t h2 = doc.len;
    tw_sb_puts(&doc, "## Second part, with code\n\nShort.\n");
    size_t h3 = doc.len;
    tw_sb_puts(&doc, "### Third\nDirectly below.\n#hashtag is no heading.\n");
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 64, 16, &n);
        if (!sp) continue;
        CHECK(sp[0].heading == NULL);
        CHECK_EQ_INT(sp[0].start, 0);
        CHECK(sp[0].end <= h1);
        int starts[3] = {0, 0, 0};
        for (size_t i = 0; i < n; i++) {
            const size_t hs[3] = {h1, h2, h3};
            const char *labels[3] = {"First steps", "Second part, with code", "Third"};
            for (int h = 0; h < 3; h++) {
                CHECK(!(sp[i].start < hs[h] && hs[h] < sp[i].end)); /* no chunk crosses it */
                if (sp[i].start == hs[h]) starts[h]++;
                size_t next = h < 2 ? hs[h + 1] : doc.len;
                if (sp[i].start >= hs[h] && sp[i].start < next) {
                    CHECK(sp[i].heading != NULL);
                    if (sp[i].heading) CHECK_EQ_STR(sp[i].heading, labels[h]);
                }
            }
        }
        CHECK_EQ_INT(starts[0], 1);
        CHECK_EQ_INT(starts[1], 1);
        CHECK_EQ_INT(starts[2], 1);
        /* The first section needs several chunks, all labelled (checked above). */
        size_t in_first = 0;
        for (size_t i = 0; i < n; i++) in_first += sp[i].start >= h1 && sp[i].start < h2;
        CHECK(in_first >= 3);
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
}

/* Whether [start, end) begins at the first non-blank byte of a line and ends at the last
 * non-blank byte of a line. */
static int on_line_bounds(const char *s, size_t len, size_t start, size_t end) {
    size_t a = start;
    while (a > 0 && (s[a - 1] == ' ' || s[a - 1] == '\t')) a--;
    size_t b = end;
    while (b < len && (s[b] == ' ' || s[b] == '\t')) b++;
    return (a == 0 || s[a - 1] == '\n') && (b == len || s[b] == '\n');
}

/* CHUNK_CODE: chunks start and end on line boundaries; a block that fits a chunk is never cut
 * (with WordPiece, whose estimates are exact); a line longer than the limit is cut (only
 * then) and still fits. A ``` block inside prose is cut only between lines. */
static void test_code(void) {
    tw_sb code;
    tw_sb_init(&code);
    rng_state = 7;
    for (int f = 0; f < 30; f++) {
        tw_sb_printf(&code, "static int fn_%d(int a, int b) {\n", f);
        int lines = 1 + (int)rnd(9);
        for (int l = 0; l < lines; l++)
            tw_sb_printf(&code, "    a = a * %d + b; // step %d of %s\n", l + 3, l, vocab_words[rnd(20)]);
        tw_sb_puts(&code, "    return a;\n}\n\n");
    }
    size_t long_at = code.len;
    tw_sb_puts(&code, "const char *table = \"");
    for (int k = 0; k < 300; k++) tw_sb_printf(&code, "x%d ", k);
    tw_sb_puts(&code, "\";\n");
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], code.buf, code.len, CHUNK_CODE, 60, 0, &n);
        if (!sp) continue;
        for (size_t i = 0; i < n; i++) {
            CHECK(sp[i].kind == CHUNK_CODE);
            if (sp[i].end <= long_at) CHECK(on_line_bounds(code.buf, code.len, sp[i].start, sp[i].end));
        }
        /* The long line needed several chunks. */
        size_t in_long = 0;
        for (size_t i = 0; i < n; i++) in_long += sp[i].start >= long_at;
        CHECK(in_long >= 2);
        if (toks[t].additive) {
            /* Each function block that fits is inside one chunk. */
            size_t b0 = 0;
            while (b0 < long_at) {
                const char *e = strstr(code.buf + b0, "\n}\n");
                size_t b1 = (size_t)(e - code.buf) + 2;
                if (count_tokens(&toks[t], code.buf, b0, b1) <= 60) {
                    int whole = 0;
                    for (size_t i = 0; i < n; i++) whole |= sp[i].start <= b0 && sp[i].end >= b1;
                    CHECK(whole);
                }
                b0 = b1 + 2;
            }
        }
        chunk_spans_free(sp, n);
    }
    /* Fenced code inside prose, with the same lines: cut between lines only. */
    tw_sb doc;
    tw_sb_init(&doc);
    tw_sb_puts(&doc, "Here is the code. It is long.\n\n```c\n");
    size_t f0 = doc.len;
    tw_sb_append(&doc, code.buf, long_at);
    size_t f1 = doc.len;
    tw_sb_puts(&doc, "```\n\nAnd some words after it.\n");
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 48, 8, &n);
        if (!sp) continue;
        int code_chunks = 0;
        for (size_t i = 0; i < n; i++) {
            if (sp[i].start >= f0 && sp[i].start < f1) CHECK(on_line_bounds(doc.buf, doc.len, sp[i].start, sp[i].end));
            if (sp[i].end > f0 && sp[i].end <= f1) CHECK(on_line_bounds(doc.buf, doc.len, sp[i].start, sp[i].end));
            code_chunks += sp[i].kind == CHUNK_CODE;
        }
        CHECK(code_chunks >= 3);
        CHECK(sp[0].kind == CHUNK_PROSE && sp[n - 1].kind == CHUNK_PROSE);
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
    tw_sb_free(&code);
}

/* The start of each chunk after a chunk it overlaps is a sentence start, the repeated part is
 * at most overlap_tokens, and, with short sentences, every chunk of a long paragraph has one. */
static void test_overlap(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    rng_state = 99;
    for (int s = 0; s < 80; s++) {
        if (s) tw_sb_putc(&doc, ' ');
        gen_sentence(&doc, 2, 3, '.');
    }
    for (int t = 0; t < n_toks; t++) {
        /* Sentences of 2-3 words: under 10 MiniLM tokens, under 40 with the letter-by-letter
         * vocabularies (tiny WordPiece, tiny GPT-2), so one always fits in the overlap. */
        size_t n;
        int minilm = strcmp(toks[t].name, "minilm-l6") == 0;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, minilm ? 64 : 200,
                                       minilm ? 20 : 60, &n);
        if (!sp) continue;
        CHECK(n >= 3);
        for (size_t i = 1; i < n; i++) {
            CHECK(sp[i].start < sp[i - 1].end);
            CHECK(sp[i].start >= 2 && doc.buf[sp[i].start - 2] == '.' && doc.buf[sp[i].start - 1] == ' ');
            CHECK(doc.buf[sp[i - 1].end - 1] == '.');
        }
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
}

/* Sentence ends: each sentence below is padded to about the same count C and max_tokens is set
 * to the largest, so a chunk holds exactly one sentence: the chunks are the sentences. The
 * abbreviations, initials, decimals and the ellipsis before a lower-case word stay inside. */
static void test_sentence_ends(void) {
    static const char *const parts[][2] = {
        {"Dr. Smith met Mrs. Jones", "in the city."},
        {"The U.S. team, e.g. the coach", "won again!"},
        {"Pi is about 3.14 and the cost was $2.50 but", "that is fine?"},
        {"He waited\xE2\x80\xA6 then", "he left\xE2\x80\xA6"},
        {"J. R. R. Tolkien wrote", "books (i.e. many of them)."},
        {"She said \"stop", "now.\""},
        {"Version 1.2.3 of the tool, vs. the old one,", "is better..."},
        {"It ends with an exclamation", "mark?!"},
        {"And the last one has no full stop", "at all"},
    };
    size_t np = sizeof parts / sizeof parts[0];
    for (int t = 0; t < n_toks; t++) {
        const tok_case *tc = &toks[t];
        tw_sb doc, s;
        tw_sb_init(&doc);
        tw_sb_init(&s);
        size_t starts[16], ends[16];
        long mx = 0;
        for (size_t i = 0; i < np; i++) {
            tw_sb_clear(&s);
            tw_sb_puts(&s, parts[i][0]);
            while (count_tokens(tc, s.buf, 0, s.len) < 40) tw_sb_puts(&s, " and more");
            tw_sb_putc(&s, ' ');
            tw_sb_puts(&s, parts[i][1]);
            long c = count_tokens(tc, s.buf, 0, s.len);
            if (c > mx) mx = c;
            if (i) tw_sb_putc(&doc, ' ');
            starts[i] = doc.len;
            tw_sb_append(&doc, s.buf, s.len);
            ends[i] = doc.len;
        }
        size_t n;
        chunk_span *sp = chunk_checked(tc, doc.buf, doc.len, CHUNK_PROSE, (int32_t)mx, 0, &n);
        CHECK_EQ_INT(n, np);
        for (size_t i = 0; sp && i < n && i < np; i++) {
            if (sp[i].start != starts[i] || sp[i].end != ends[i])
                fprintf(stderr, "  %s: chunk %zu is \"%.*s\"\n", tc->name, i,
                        (int)(sp[i].end - sp[i].start), doc.buf + sp[i].start);
            CHECK_EQ_INT(sp[i].start, starts[i]);
            CHECK_EQ_INT(sp[i].end, ends[i]);
        }
        chunk_spans_free(sp, n);
        tw_sb_free(&doc);
        tw_sb_free(&s);
    }
}

/* The tail is never dropped, even a short one after a long paragraph. */
static void test_tail(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    rng_state = 5;
    for (int s = 0; s < 40; s++) gen_sentence(&doc, 8, 16, '.'), tw_sb_putc(&doc, ' ');
    tw_sb_puts(&doc, "\n\nok\n\n\n");
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 50, 10, &n);
        if (!sp) continue;
        CHECK(n >= 2);
        CHECK_EQ_INT(sp[n - 1].end, doc.len - 3);
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
}

/* 2,000 words with no full stop: cut at word boundaries, packed close to the limit. */
static void test_long_paragraph(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    rng_state = 11;
    size_t nv = n_vocab_words();
    for (int w = 0; w < 2000; w++) {
        if (w) tw_sb_putc(&doc, ' ');
        tw_sb_puts(&doc, vocab_words[rnd((uint32_t)nv)]);
    }
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 254, 32, &n);
        if (!sp) continue;
        CHECK(n >= 8);
        for (size_t i = 0; i < n; i++) {
            CHECK(sp[i].start == 0 || doc.buf[sp[i].start - 1] == ' ');
            CHECK(sp[i].end == doc.len || doc.buf[sp[i].end] == ' ');
            /* Pieces of one sentence make no overlap; the chunks are full but for the last. */
            if (i) CHECK(sp[i].start >= sp[i - 1].end);
            if (i + 1 < n) CHECK(sp[i].n_tokens >= 254 - 16);
        }
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
}

/* CJK: full stops 。！？ end sentences without a space; a run with no punctuation is cut at
 * character boundaries. Emoji: kept whole (4-byte characters), also in a long run. */
static void test_cjk_and_emoji(void) {
    static const char *const cjk[] = {"我们今天去公园散步", "天气非常好", "你喜欢读书吗",
                                      "这是一个很长的句子用来测试分块", "太好了"};
    static const char *const ends[] = {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"};
    tw_sb doc;
    tw_sb_init(&doc);
    rng_state = 3;
    for (int s = 0; s < 120; s++) {
        tw_sb_puts(&doc, cjk[rnd(5)]);
        tw_sb_puts(&doc, ends[rnd(3)]);
    }
    size_t run_at = doc.len;
    tw_sb_puts(&doc, "\n\n");
    for (int k = 0; k < 600; k++) tw_sb_puts(&doc, cjk[k % 5]);
    tw_sb_puts(&doc, "\n\nEmoji 😀 are fine 👍🏽 and 👨‍👩‍👧 families too. 🎉🎉🎉!\n\n");
    for (int k = 0; k < 500; k++) tw_sb_puts(&doc, k % 3 ? "😀" : "🚀");
    tw_sb_puts(&doc, " done 😀\n");
    for (int t = 0; t < n_toks; t++) {
        size_t n;
        chunk_span *sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 64, 8, &n);
        if (!sp) continue;
        CHECK(n >= 10);
        /* In the punctuated part, a chunk ends with a full stop (3 bytes): every sentence fits
         * a chunk (at most 16 characters, 3 tokens each in byte-level BPE: 48 < 64). */
        for (size_t i = 0; i < n && sp[i].end <= run_at; i++) {
            const unsigned char *e = (const unsigned char *)doc.buf + sp[i].end - 3;
            CHECK((e[0] == 0xE3 && e[1] == 0x80 && e[2] == 0x82) ||
                  (e[0] == 0xEF && e[1] == 0xBC && (e[2] == 0x81 || e[2] == 0x9F)));
        }
        chunk_spans_free(sp, n);
        sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_PROSE, 8, 0, &n);
        chunk_spans_free(sp, n);
        sp = chunk_checked(&toks[t], doc.buf, doc.len, CHUNK_CODE, 9, 0, &n);
        chunk_spans_free(sp, n);
    }
    tw_sb_free(&doc);
}

/* Every allocation failure gives TW_ERR_NOMEM (or success when the failing allocation was
 * not ours) and leaks nothing (ASan's leak check runs on this test). */
static void test_allocation_failures(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    gen_document(&doc, 400, 17);
    chunk_opts o = {48, 8};
    int failures = 0;
    for (uint64_t k = 1; k < 400; k++) {
        chunk_span *sp = NULL;
        size_t n = 0;
        tw_mem_fail_after(k);
        tw_status st = chunk_text(toks[0].tok, doc.buf, doc.len, CHUNK_PROSE, &o, &sp, &n);
        tw_mem_fail_after(0);
        CHECK(st == TW_OK || st == TW_ERR_NOMEM);
        if (st != TW_OK) {
            CHECK(sp == NULL && n == 0);
            failures++;
        }
        chunk_spans_free(sp, n);
    }
    CHECK(failures > 10);
    tw_sb_free(&doc);
}

/* A 1 MB document chunks in well under a second (not measured under sanitizers). */
static void test_speed_1mb(void) {
    tw_sb doc;
    tw_sb_init(&doc);
    gen_document(&doc, 190000, 2024);
    CHECK(doc.len >= 1000000);
    const tok_case *tc = &toks[0];
    size_t n;
    chunk_opts o;
    chunk_opts_default(&o);
    chunk_span *sp = NULL;
    double t0 = tw_now_s();
    tw_status st = chunk_text(tc->tok, doc.buf, doc.len, CHUNK_PROSE, &o, &sp, &n);
    double dt = tw_now_s() - t0;
    CHECK_EQ_INT(st, TW_OK);
    fprintf(stderr, "  %s: %.2f MB in %.3f s, %zu chunks\n", tc->name, (double)doc.len / 1e6,
            dt, n);
    if (!TW_SANITIZED) CHECK(dt < 1.0);
    char msg[512];
    if (st == TW_OK && chunk_check_spans(tc->tok, doc.buf, doc.len, &o, sp, n, msg, sizeof msg)) {
        fprintf(stderr, "  %s\n", msg);
        CHECK(!"1 MB document");
    }
    chunk_spans_free(sp, n);
    tw_sb_free(&doc);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    load_tokenizers();
    RUN(test_blank_and_bad_options);
    RUN(test_generated_documents);
    RUN(test_headings);
    RUN(test_code);
    RUN(test_overlap);
    RUN(test_sentence_ends);
    RUN(test_tail);
    RUN(test_long_paragraph);
    RUN(test_cjk_and_emoji);
    RUN(test_allocation_failures);
    RUN(test_speed_1mb);
    for (int t = 0; t < n_toks; t++) tw_tokenizer_free(toks[t].tok);
    rmdir(tmpdir);
    TEST_DONE();
}
