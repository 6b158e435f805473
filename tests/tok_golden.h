/* tok_golden.h: reading the tokenizer golden files (tests/data/tokenizer/NAME.golden.jsonl,
 * written by tools/gen_tokenizer_golden.py), shared by the tokenizer tests. */
#ifndef TWIN_TOK_GOLDEN_H
#define TWIN_TOK_GOLDEN_H

#include "json.h"

#include <string.h>

/* The text of a golden row as bytes: "text_hex" when present (texts with a NUL, which a
 * JSON string read into a C string cannot hold), else "text". Heap copy (tw_free); NULL when
 * the row has neither. */
static inline char *golden_text(const tw_json *row, size_t *len) {
    const char *hex = tw_json_get_str(row, "text_hex", NULL);
    if (hex) {
        size_t n = strlen(hex) / 2;
        char *out = (char *)tw_malloc(n + 1);
        if (!out) return NULL;
        for (size_t i = 0; i < n; i++) {
            unsigned v = 0;
            for (int k = 0; k < 2; k++) {
                char c = hex[2 * i + (size_t)k];
                v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            out[i] = (char)v;
        }
        out[n] = 0;
        *len = n;
        return out;
    }
    const char *text = tw_json_get_str(row, "text", NULL);
    if (!text) return NULL;
    *len = strlen(text);
    return tw_strndup(text, *len);
}

/* Calls fn(row, ctx) for each line of a JSON-lines file; returns the number of rows, or -1
 * when the file cannot be read or a line is not JSON (after printing why). */
static inline int golden_each_row(const char *path, void (*fn)(const tw_json *row, void *ctx),
                                  void *ctx) {
    char *buf;
    size_t len;
    if (tw_file_read(path, &buf, &len) != TW_OK) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return -1;
    }
    int rows = 0;
    for (char *line = buf; line < buf + len;) {
        char *nl = (char *)memchr(line, '\n', (size_t)(buf + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
        if (ll) {
            tw_json *row = tw_json_parse(line, ll, path);
            if (!row) {
                fprintf(stderr, "%s\n", tw_errmsg());
                tw_free(buf);
                return -1;
            }
            fn(row, ctx);
            tw_json_free(row);
            rows++;
        }
        line = nl ? nl + 1 : buf + len;
    }
    tw_free(buf);
    return rows;
}

#endif
