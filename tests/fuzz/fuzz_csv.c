/* fuzz_csv.c: the CSV reader (pipelines/csv.h) on arbitrary bytes. The first byte picks the
 * delimiter (';' or tab when it is one, else ','), the rest is the input. Every record must be
 * well formed (1 to CSV_MAX_FIELDS fields, each NUL-terminated at its length, start lines
 * non-decreasing), a header name must be found again by csv_column, and an error must say
 * why. Any crash, out-of-bounds access or leak is a bug. */
#include <stdint.h>
#include <string.h>

#include "pipelines/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    char delim = (data[0] == ';' || data[0] == '\t') ? (char)data[0] : ',';
    csv_reader *r = NULL;
    if (csv_reader_new((const char *)data + 1, size - 1, delim, "fuzz.csv", &r) != TW_OK) {
        TW_ASSERT(r == NULL && tw_errmsg()[0] != 0);
        return 0;
    }
    size_t last_line = 0, records = 0;
    for (;;) {
        csv_record rec;
        int got = -1;
        tw_status st = csv_next(r, &rec, &got);
        if (st != TW_OK) {
            TW_ASSERT(got == 0 && tw_errmsg()[0] != 0);
            /* After an error the reader stays at the end. */
            TW_ASSERT(csv_next(r, &rec, &got) == TW_OK && got == 0);
            break;
        }
        if (!got) break;
        records++;
        TW_ASSERT(rec.n_fields >= 1 && rec.n_fields <= CSV_MAX_FIELDS);
        TW_ASSERT(rec.line >= last_line && rec.line >= 1);
        last_line = rec.line;
        size_t total = 0;
        for (size_t i = 0; i < rec.n_fields; i++) {
            TW_ASSERT(rec.fields[i][rec.lens[i]] == 0);
            total += rec.lens[i];
        }
        TW_ASSERT(total <= size); /* a field never holds more than the input */
        /* A field without NULs, spaces or tabs is a header name csv_column finds (at its first
         * equal field, ASCII case-insensitive). */
        const char *f0 = rec.fields[0];
        if (strlen(f0) == rec.lens[0] && !strpbrk(f0, " \t")) {
            int c = csv_column(&rec, f0);
            TW_ASSERT(c == 0);
        }
        size_t l;
        TW_ASSERT(csv_field(&rec, (int)rec.n_fields, &l)[0] == 0 && l == 0);
    }
    TW_ASSERT(records <= size);
    csv_reader_free(r);
    return 0;
}
