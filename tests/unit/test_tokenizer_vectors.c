/* test_tokenizer_vectors.c: conformance with llama.cpp's tokenizer test vectors.
 *
 * For every ggml-vocab-NAME.gguf in $TWIN_SHARED/testdata/tokenizer that has .inp and .out
 * files (format: README.md beside them), each case is encoded without special tokens and
 * compared id for id with the expected line; for byte-level BPE and SentencePiece the ids
 * must also decode back to the case's text. Prints "NAME: passed/total" per vocabulary and
 * fails on any mismatch. Skips (77) only when the folder is absent. */
#include "test.h"
#include "tokenizer.h"

#include <dirent.h>

#define SEP "\n__ggml_vocab_test__\n"

static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    if (n > 40) fprintf(stderr, " ... (%zu ids)", n);
    fputc('\n', stderr);
}

/* Parses "1 2 3" into ids; returns the count. */
static size_t parse_ids(const char *line, size_t len, tw_tokens *out) {
    out->n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && line[i] == ' ') i++;
        if (i >= len) break;
        long v = 0;
        while (i < len && line[i] >= '0' && line[i] <= '9') v = v * 10 + (line[i++] - '0');
        tw_tokens_push(out, (int32_t)v);
        while (i < len && line[i] != ' ') i++;
    }
    return out->n;
}

static int run_vocab(const char *dir, const char *name, int *total_fail) {
    char path[4400], inp_path[4500], out_path[4500];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    char *inp = NULL, *exp = NULL;
    size_t inp_len, exp_len;
    if (tw_file_read(inp_path, &inp, &inp_len) != TW_OK || tw_file_read(out_path, &exp, &exp_len) != TW_OK) {
        tw_free(inp);
        tw_free(exp);
        tw_error_clear();
        return 0; /* no vectors for this vocabulary */
    }
    tw_tokenizer *t = tw_tokenizer_load(path);
    if (!t) {
        fprintf(stderr, "%s: load failed: %s\n", name, tw_errmsg());
        (*total_fail)++;
        test_failures++;
        tw_free(inp);
        tw_free(exp);
        return 1;
    }
    tw_tok_kind kind = tw_tokenizer_kind(t);
    tw_tokens got, want;
    tw_tokens_init(&got);
    tw_tokens_init(&want);
    tw_sb dec;
    tw_sb_init(&dec);
    int passed = 0, total = 0;
    const char *p = inp, *end = inp + inp_len;
    const char *q = exp, *qend = exp + exp_len;
    size_t sep_len = strlen(SEP);
    for (;;) {
        const char *s = NULL;
        for (const char *x = p; x + sep_len <= end; x++)
            if (memcmp(x, SEP, sep_len) == 0) {
                s = x;
                break;
            }
        if (!s) break;
        size_t case_len = (size_t)(s - p);
        const char *nl = memchr(q, '\n', (size_t)(qend - q));
        size_t line_len = nl ? (size_t)(nl - q) : (size_t)(qend - q);
        parse_ids(q, line_len, &want);
        got.n = 0;
        tw_status st = tw_tokenizer_encode(t, p, case_len, 0, &got);
        int ok = st == TW_OK && got.n == want.n &&
                 (got.n == 0 || memcmp(got.ids, want.ids, got.n * sizeof(int32_t)) == 0);
        if (ok && kind != TW_TOK_WORDPIECE) {
            tw_sb_clear(&dec);
            ok = tw_tokenizer_decode(t, got.ids, got.n, 0, &dec) == TW_OK && dec.len == case_len &&
                 (case_len == 0 || memcmp(dec.buf, p, case_len) == 0);
            if (!ok) {
                fprintf(stderr, "  %s: decode does not give the text back: \"", name);
                print_escaped(p, case_len);
                fprintf(stderr, "\" -> \"");
                print_escaped(tw_sb_str(&dec), dec.len);
                fprintf(stderr, "\"\n");
            }
        } else if (!ok) {
            fprintf(stderr, "  %s: case %d \"", name, total);
            print_escaped(p, case_len);
            fprintf(stderr, "\"%s%s\n", st != TW_OK ? ": " : "", st != TW_OK ? tw_errmsg() : "");
            print_ids("want", want.ids, want.n);
            print_ids("got ", got.ids, got.n);
        }
        passed += ok;
        total++;
        p = s + sep_len;
        q = nl ? nl + 1 : qend;
    }
    fprintf(stderr, "%s: %d/%d\n", name, passed, total);
    if (passed != total || total == 0) {
        (*total_fail)++;
        test_failures++;
    }
    tw_sb_free(&dec);
    tw_tokens_free(&got);
    tw_tokens_free(&want);
    tw_tokenizer_free(t);
    tw_free(inp);
    tw_free(exp);
    return 1;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    const char *shared = test_env("TWIN_SHARED");
    if (!shared) TEST_SKIP("TWIN_SHARED is not set");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/testdata/tokenizer", shared);
    DIR *d = opendir(dir);
    if (!d) TEST_SKIP("%s: no such folder", dir);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "ggml-vocab-", 11) == 0 && l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0)
            names[n++] = tw_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], name_cmp);
    int tested = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        tested += run_vocab(dir, names[i], &failed);
        tw_free(names[i]);
    }
    fprintf(stderr, "%d vocabularies with vectors, %d failed\n", tested, failed);
    CHECK(tested > 0);
    TEST_DONE();
}
