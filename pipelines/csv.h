/* csv.h: reading CSV text (RFC 4180) with the quirks of real exports (the LinkedIn member data
 * export's Shares.csv and the like).
 *
 *   csv_reader_new(data, len, what, &r)   over bytes the caller keeps alive
 *   csv_next(r, &rec, &got)               one record at a time
 *   csv_column(&header, "ShareLink")      a column's index by its header name
 *   csv_reader_free(r)
 *
 * Accepted beyond RFC 4180:
 *   - a UTF-8 byte order mark before the first field is dropped;
 *   - records end with CRLF, LF or a lone CR; the last record may lack an end of line;
 *   - a quoted field holds delimiters, line ends (kept as they are) and doubled quotes ("");
 *   - a quote inside an unquoted field is an ordinary character (`5" disk`);
 *   - text after a closing quote and before the next delimiter is appended to the field
 *     (`"abc"def` reads abc + def), as Python's csv module does;
 *   - empty lines between records are skipped (they hold no record).
 * Refused (TW_ERR_FORMAT, the message names `what`, the line and the column): a quoted field
 * still open at the end of the input, and a record of more than CSV_MAX_FIELDS fields.
 * Field bytes are passed on unchanged (no UTF-8 check, NUL bytes kept: lens say the length).
 *
 * Memory: the reader's buffers grow to the largest record; all of it is freed by
 * csv_reader_free. Thread safety: a reader is used by one thread at a time.
 */
#ifndef TWIN_CSV_H
#define TWIN_CSV_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* More fields than this in one record is taken as hostile input, not a spreadsheet. */
#define CSV_MAX_FIELDS 4096

typedef struct csv_reader csv_reader;

/* One record. Owned by the reader and valid until the next csv_next or csv_reader_free. */
typedef struct {
    size_t n_fields;           /* >= 1 */
    const char *const *fields; /* n_fields NUL-terminated strings (a field may hold NULs) */
    const size_t *lens;        /* their lengths in bytes */
    size_t line;               /* 1-based line of the input where the record starts */
} csv_record;

/* A reader over data[0..len) (not copied: it must outlive the reader). delim is the field
 * separator (',' for CSV). what names the input in messages (e.g. "export.zip:Shares.csv").
 * TW_ERR_ARG for a NULL out or a delimiter that is '"', CR or LF; TW_ERR_NOMEM. */
tw_status csv_reader_new(const char *data, size_t len, char delim, const char *what,
                         csv_reader **out);
void csv_reader_free(csv_reader *r); /* NULL is a no-op */

/* Reads the next record into *rec and sets *got = 1, or *got = 0 at the end of the input.
 * TW_ERR_FORMAT (see above) or TW_ERR_NOMEM; after an error the reader stays at the end. */
tw_status csv_next(csv_reader *r, csv_record *rec, int *got);

/* Index of the field of header equal to name (ASCII case-insensitive, surrounding spaces of
 * the header field ignored), or -1 when there is none. */
int csv_column(const csv_record *header, const char *name);

/* Field i of rec, or "" when the record is shorter (ragged rows); *len gets its length when
 * len is not NULL. i < 0 gives "" too, so csv_field(rec, csv_column(...), NULL) is safe. */
const char *csv_field(const csv_record *rec, int i, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
