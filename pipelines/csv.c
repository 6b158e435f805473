/* csv.c: the CSV reader (csv.h).
 *
 * One pass over the bytes with two states per field: inside quotes (everything is data until a
 * quote that is not doubled) and outside (data until the delimiter or a line end). Field bytes
 * go into one text buffer with a NUL after each field; the record's pointers are made from
 * offsets once the record is complete, because the buffer may move while it grows. */
#include "csv.h"

#include <string.h>

struct csv_reader {
    const char *data;
    size_t len, pos;
    size_t line; /* 1-based line at pos */
    char delim;
    int done;    /* end reached or an error was returned */
    char *what;
    tw_sb text;  /* the record's fields, each followed by a NUL */
    size_t *offs, *lens;
    const char **ptrs;
    size_t cap; /* entries of offs/lens/ptrs */
};

tw_status csv_reader_new(const char *data, size_t len, char delim, const char *what,
                         csv_reader **out) {
    if (!out) return tw_error(TW_ERR_ARG, "csv_reader_new: out is NULL");
    *out = NULL;
    if (!data && len) return tw_error(TW_ERR_ARG, "csv_reader_new: data is NULL");
    if (delim == '"' || delim == '\r' || delim == '\n')
        return tw_error(TW_ERR_ARG, "csv_reader_new: the delimiter cannot be a quote or line end");
    csv_reader *r = tw_calloc(1, sizeof *r);
    if (!r) return TW_ERR_NOMEM;
    r->data = data ? data : "";
    r->len = len;
    r->line = 1;
    r->delim = delim;
    r->what = tw_strdup(what && *what ? what : "csv");
    tw_sb_init(&r->text);
    if (!r->what) {
        tw_free(r);
        return TW_ERR_NOMEM;
    }
    /* A UTF-8 byte order mark (Excel and the LinkedIn export write one) is not data. */
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) r->pos = 3;
    *out = r;
    return TW_OK;
}

void csv_reader_free(csv_reader *r) {
    if (!r) return;
    tw_sb_free(&r->text);
    tw_free(r->offs);
    tw_free(r->lens);
    tw_free(r->ptrs);
    tw_free(r->what);
    tw_free(r);
}

/* Consumes the line end at pos (CRLF, LF or CR) if there is one. */
static void csv_skip_eol(csv_reader *r) {
    if (r->pos < r->len && r->data[r->pos] == '\r') {
        r->pos++;
        if (r->pos < r->len && r->data[r->pos] == '\n') r->pos++;
        r->line++;
    } else if (r->pos < r->len && r->data[r->pos] == '\n') {
        r->pos++;
        r->line++;
    }
}

static tw_status csv_fail(csv_reader *r, tw_status code) {
    r->done = 1;
    r->pos = r->len;
    return code;
}

/* Records the start of field n at the current end of the text buffer. */
static tw_status csv_field_begin(csv_reader *r, size_t n) {
    if (n >= CSV_MAX_FIELDS)
        return csv_fail(r, tw_error(TW_ERR_FORMAT, "%s: line %zu: more than %d fields in a record",
                                    r->what, r->line, CSV_MAX_FIELDS));
    if (n >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        if (cap > CSV_MAX_FIELDS) cap = CSV_MAX_FIELDS;
        size_t *offs = tw_realloc(r->offs, cap * sizeof *offs);
        if (!offs) return csv_fail(r, TW_ERR_NOMEM);
        r->offs = offs;
        size_t *lens = tw_realloc(r->lens, cap * sizeof *lens);
        if (!lens) return csv_fail(r, TW_ERR_NOMEM);
        r->lens = lens;
        const char **ptrs = tw_realloc(r->ptrs, cap * sizeof *ptrs);
        if (!ptrs) return csv_fail(r, TW_ERR_NOMEM);
        r->ptrs = ptrs;
        r->cap = cap;
    }
    r->offs[n] = r->text.len;
    return TW_OK;
}

tw_status csv_next(csv_reader *r, csv_record *rec, int *got) {
    if (!r || !rec || !got) return tw_error(TW_ERR_ARG, "csv_next: NULL argument");
    *got = 0;
    memset(rec, 0, sizeof *rec);
    if (r->done) return TW_OK;
    /* Empty lines hold no record. */
    while (r->pos < r->len && (r->data[r->pos] == '\r' || r->data[r->pos] == '\n')) csv_skip_eol(r);
    if (r->pos >= r->len) {
        r->done = 1;
        return TW_OK;
    }
    const char *d = r->data;
    size_t start_line = r->line, n = 0;
    tw_sb_clear(&r->text);
    for (;;) {
        tw_status st = csv_field_begin(r, n);
        if (st) return st;
        if (r->pos < r->len && d[r->pos] == '"') {
            size_t qline = r->line;
            r->pos++;
            for (;;) {
                if (r->pos >= r->len)
                    return csv_fail(r, tw_error(TW_ERR_FORMAT,
                                                "%s: line %zu, field %zu: quoted field not closed "
                                                "before the end of the input",
                                                r->what, qline, n + 1));
                char c = d[r->pos];
                if (c == '"') {
                    if (r->pos + 1 < r->len && d[r->pos + 1] == '"') {
                        tw_sb_putc(&r->text, '"');
                        r->pos += 2;
                        continue;
                    }
                    r->pos++;
                    break;
                }
                /* Line ends inside quotes are data; count them for messages. A CRLF pair is
                 * one line end. */
                if (c == '\n' || (c == '\r' && !(r->pos + 1 < r->len && d[r->pos + 1] == '\n')))
                    r->line++;
                tw_sb_putc(&r->text, c);
                r->pos++;
            }
        }
        /* Unquoted data, or what follows a closing quote: up to the delimiter or line end. */
        size_t s = r->pos;
        while (r->pos < r->len && d[r->pos] != r->delim && d[r->pos] != '\r' && d[r->pos] != '\n')
            r->pos++;
        tw_sb_append(&r->text, d + s, r->pos - s);
        tw_sb_putc(&r->text, '\0');
        if (r->text.failed) return csv_fail(r, tw_error(TW_ERR_NOMEM, "%s: out of memory", r->what));
        r->lens[n] = r->text.len - 1 - r->offs[n];
        n++;
        if (r->pos < r->len && d[r->pos] == r->delim) {
            r->pos++;
            continue; /* a delimiter before the line end means one more (maybe empty) field */
        }
        csv_skip_eol(r);
        break;
    }
    for (size_t i = 0; i < n; i++) r->ptrs[i] = r->text.buf + r->offs[i];
    rec->n_fields = n;
    rec->fields = r->ptrs;
    rec->lens = r->lens;
    rec->line = start_line;
    *got = 1;
    return TW_OK;
}

static int csv_lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

int csv_column(const csv_record *header, const char *name) {
    if (!header || !name) return -1;
    size_t nl = strlen(name);
    for (size_t i = 0; i < header->n_fields; i++) {
        const char *f = header->fields[i];
        size_t l = header->lens[i];
        while (l && (*f == ' ' || *f == '\t')) f++, l--;
        while (l && (f[l - 1] == ' ' || f[l - 1] == '\t')) l--;
        if (l != nl) continue;
        size_t k = 0;
        while (k < l && csv_lower((unsigned char)f[k]) == csv_lower((unsigned char)name[k])) k++;
        if (k == l) return (int)i;
    }
    return -1;
}

const char *csv_field(const csv_record *rec, int i, size_t *len) {
    if (!rec || i < 0 || (size_t)i >= rec->n_fields) {
        if (len) *len = 0;
        return "";
    }
    if (len) *len = rec->lens[i];
    return rec->fields[i];
}
