/* test_csv.c: the CSV reader (pipelines/csv.h): RFC 4180, the LinkedIn export's quirks (BOM,
 * CRLF, multi-line quoted commentary with doubled quotes), the lenient cases, the refused
 * ones with their messages, a random round trip through an RFC 4180 writer, and every
 * allocation failing once. */
#include "pipelines/csv.h"
#include "test.h"

/* Reads all of text into a flat description "f1|f2\nf1|f2\n" (fields joined by '|', records by
 * '\n'; a NUL byte shows as '0'); returns the csv_next status of the end. */
static tw_status read_all(const char *text, size_t len, char delim, tw_sb *out, size_t *lines,
                          size_t max_lines) {
    csv_reader *r = NULL;
    tw_status st = csv_reader_new(text, len, delim, "t.csv", &r);
    if (st) return st;
    size_t k = 0;
    for (;;) {
        csv_record rec;
        int got;
        st = csv_next(r, &rec, &got);
        if (st || !got) break;
        if (lines && k < max_lines) lines[k] = rec.line;
        k++;
        for (size_t i = 0; i < rec.n_fields; i++) {
            if (i) tw_sb_putc(out, '|');
            for (size_t j = 0; j < rec.lens[i]; j++)
                tw_sb_putc(out, rec.fields[i][j] ? rec.fields[i][j] : '0');
            if (rec.fields[i][rec.lens[i]] != 0) tw_sb_puts(out, "<no NUL>");
        }
        tw_sb_putc(out, '\n');
    }
    csv_reader_free(r);
    return st;
}

static void expect(const char *text, const char *want) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_status st = read_all(text, strlen(text), ',', &sb, NULL, 0);
    CHECK_EQ_INT(st, TW_OK);
    if (strcmp(tw_sb_str(&sb), want) != 0)
        fprintf(stderr, "  input <%s>\n  got  <%s>\n  want <%s>\n", text, tw_sb_str(&sb), want);
    CHECK_EQ_STR(tw_sb_str(&sb), want);
    tw_sb_free(&sb);
}

static void test_rfc4180(void) {
    expect("a,b,c\r\n1,2,3\r\n", "a|b|c\n1|2|3\n");
    expect("a,b\n1,2", "a|b\n1|2\n");                      /* LF, no final line end */
    expect("a,b\r1,2\r", "a|b\n1|2\n");                    /* lone CR */
    expect("\"x,y\",\"say \"\"hi\"\"\"\n", "x,y|say \"hi\"\n");
    expect("a,,\n", "a||\n");                                /* empty fields, trailing too */
    expect("\"\"\n", "\n");                                  /* one empty quoted field */
    expect(",\n", "|\n");
    expect("", "");
    expect("\r\n\r\n", "");
    /* A quoted field keeps its line ends exactly (CRLF stays CRLF). */
    expect("\"one\r\ntwo\nthree\",z\r\n", "one\r\ntwo\nthree|z\n");
}

static void test_quirks(void) {
    expect("\xEF\xBB\xBF" "Date,ShareLink\r\n", "Date|ShareLink\n"); /* BOM dropped */
    expect("\xEF\xBB\xBF", "");
    expect("a\xEF\xBB\xBF,b\n", "a\xEF\xBB\xBF|b\n"); /* only a leading BOM is special */
    expect("5\" disk,x\n", "5\" disk|x\n");            /* quote inside an unquoted field */
    expect("\"abc\"def,g\n", "abcdef|g\n");            /* text after the closing quote */
    expect("a,b\n\n\nc,d\n", "a|b\nc|d\n");            /* empty lines skipped */
    expect("x;y,z\n", "x;y|z\n");
    {
        csv_reader *r = NULL;
        csv_record h;
        int got = 0;
        CHECK_EQ_INT(csv_reader_new(" Title ,\tUrl\n", 13, ',', "h.csv", &r), TW_OK);
        CHECK_EQ_INT(csv_next(r, &h, &got), TW_OK);
        CHECK_EQ_INT(csv_column(&h, "title"), 0); /* spaces around a header name ignored */
        CHECK_EQ_INT(csv_column(&h, "url"), 1);
        csv_reader_free(r);
    }
    {
        tw_sb sb;
        tw_sb_init(&sb);
        CHECK_EQ_INT(read_all("x;\"y;z\"\n", 8, ';', &sb, NULL, 0), TW_OK);
        CHECK_EQ_STR(tw_sb_str(&sb), "x|y;z\n");
        tw_sb_clear(&sb);
        CHECK_EQ_INT(read_all("a\tb\n", 4, '\t', &sb, NULL, 0), TW_OK);
        CHECK_EQ_STR(tw_sb_str(&sb), "a|b\n");
        tw_sb_clear(&sb);
        const char nul[] = "a\0b,\"c\0\"\n";
        CHECK_EQ_INT(read_all(nul, sizeof nul - 1, ',', &sb, NULL, 0), TW_OK);
        CHECK_EQ_STR(tw_sb_str(&sb), "a0b|c0\n");
        tw_sb_free(&sb);
    }
}

/* The shape of a LinkedIn Shares.csv: the start line of each record counts the line ends
 * inside quoted commentary. */
static void test_linkedin_shape(void) {
    const char *text =
        "\xEF\xBB\xBF" "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\r\n"
        "2024-03-01 09:15:00,https://www.linkedin.com/feed/update/urn:li:share:1,\"First line\r\n"
        "\r\n"
        "He said \"\"ship it\"\", so we did.\",,,MEMBER_NETWORK\r\n"
        "2024-02-01 10:00:00,https://www.linkedin.com/feed/update/urn:li:share:2,,"
        "https://example.org,,PUBLIC\r\n";
    csv_reader *r = NULL;
    CHECK_EQ_INT(csv_reader_new(text, strlen(text), ',', "Shares.csv", &r), TW_OK);
    csv_record h, rec;
    int got = 0;
    CHECK_EQ_INT(csv_next(r, &h, &got), TW_OK);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_INT(h.line, 1);
    CHECK_EQ_INT(h.n_fields, 6);
    /* The header's pointers die with the next record: keep its column indices. */
    int c_date = csv_column(&h, "date"), c_link = csv_column(&h, "ShareLink"),
        c_text = csv_column(&h, "ShareCommentary"), c_vis = csv_column(&h, "VISIBILITY");
    CHECK_EQ_INT(c_date, 0);
    CHECK_EQ_INT(c_link, 1);
    CHECK_EQ_INT(c_text, 2);
    CHECK_EQ_INT(c_vis, 5);
    CHECK_EQ_INT(csv_column(&h, "Missing"), -1);
    CHECK_EQ_INT(csv_column(&h, "Dat"), -1);
    CHECK_EQ_INT(csv_next(r, &rec, &got), TW_OK);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_INT(rec.line, 2);
    CHECK_EQ_STR(csv_field(&rec, c_text, NULL), "First line\r\n\r\nHe said \"ship it\", so we did.");
    CHECK_EQ_STR(csv_field(&rec, c_vis, NULL), "MEMBER_NETWORK");
    CHECK_EQ_INT(csv_next(r, &rec, &got), TW_OK);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_INT(rec.line, 5);
    size_t l = 99;
    CHECK_EQ_STR(csv_field(&rec, c_text, &l), "");
    CHECK_EQ_INT(l, 0);
    CHECK_EQ_STR(csv_field(&rec, c_link, NULL), "https://www.linkedin.com/feed/update/urn:li:share:2");
    CHECK_EQ_STR(csv_field(&rec, 6, &l), ""); /* past the end of the record */
    CHECK_EQ_STR(csv_field(&rec, -1, NULL), "");
    CHECK_EQ_INT(csv_next(r, &rec, &got), TW_OK);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(csv_next(r, &rec, &got), TW_OK); /* stays at the end */
    CHECK_EQ_INT(got, 0);
    csv_reader_free(r);
    csv_reader_free(NULL);
}

static void test_refused(void) {
    tw_sb sb;
    tw_sb_init(&sb);
    const char *open = "a,b\n1,\"never\nclosed\n";
    CHECK_EQ_INT(read_all(open, strlen(open), ',', &sb, NULL, 0), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "t.csv: line 2, field 2: quoted field not closed") != NULL);
    CHECK_EQ_STR(tw_sb_str(&sb), "a|b\n"); /* the records before it were read */
    /* More than CSV_MAX_FIELDS fields. */
    size_t n = CSV_MAX_FIELDS + 1;
    char *many = tw_malloc(n + 8);
    memset(many, ',', n);
    many[n] = '\n';
    tw_sb_clear(&sb);
    CHECK_EQ_INT(read_all(many, n + 1, ',', &sb, NULL, 0), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "t.csv: line 1: more than 4096 fields") != NULL);
    /* Exactly the limit is fine. */
    tw_sb_clear(&sb);
    CHECK_EQ_INT(read_all(many + 2, n - 1, ',', &sb, NULL, 0), TW_OK); /* 4095 commas */
    CHECK_EQ_INT(sb.len, CSV_MAX_FIELDS - 1 + 1);
    tw_free(many);
    tw_sb_free(&sb);
    csv_reader *r = (csv_reader *)1;
    CHECK_EQ_INT(csv_reader_new("a", 1, '"', "x", &r), TW_ERR_ARG);
    CHECK(r == NULL);
    CHECK_EQ_INT(csv_reader_new("a", 1, '\n', "x", &r), TW_ERR_ARG);
    CHECK_EQ_INT(csv_reader_new("a", 1, ',', "x", NULL), TW_ERR_ARG);
}

/* Random tables written the RFC 4180 way (quoting when needed, with random line ends) read
 * back unchanged. */
static uint32_t rnd_state = 2024;
static uint32_t rnd(void) {
    rnd_state = rnd_state * 1664525u + 1013904223u;
    return rnd_state >> 8;
}

static void test_round_trip(void) {
    static const char alphabet[] = "ab ,\"\r\n\t;x\xC3\xA9";
    for (int t = 0; t < 300; t++) {
        size_t rows = 1 + rnd() % 6, cols = 1 + rnd() % 5;
        tw_sb csv, want;
        tw_sb_init(&csv);
        tw_sb_init(&want);
        for (size_t i = 0; i < rows; i++) {
            for (size_t j = 0; j < cols; j++) {
                char field[24];
                size_t fl = rnd() % 12;
                for (size_t k = 0; k < fl; k++) field[k] = alphabet[rnd() % (sizeof alphabet - 1)];
                /* A record of one empty field would be an empty line: give it a character. */
                if (cols == 1 && fl == 0) field[fl++] = 'e';
                int quote = (rnd() % 3 == 0);
                for (size_t k = 0; k < fl; k++)
                    if (strchr(",\"\r\n", field[k])) quote = 1;
                if (j) tw_sb_putc(&csv, ','), tw_sb_putc(&want, '|');
                if (quote) tw_sb_putc(&csv, '"');
                for (size_t k = 0; k < fl; k++) {
                    if (field[k] == '"' && quote) tw_sb_putc(&csv, '"');
                    tw_sb_putc(&csv, field[k]);
                    tw_sb_putc(&want, field[k]);
                }
                if (quote) tw_sb_putc(&csv, '"');
            }
            const char *eol[] = {"\r\n", "\n", "\r"};
            if (i + 1 < rows || rnd() % 2) tw_sb_puts(&csv, eol[rnd() % 3]);
            tw_sb_putc(&want, '\n');
        }
        tw_sb got;
        tw_sb_init(&got);
        CHECK_EQ_INT(read_all(csv.buf, csv.len, ',', &got, NULL, 0), TW_OK);
        if (strcmp(tw_sb_str(&got), tw_sb_str(&want)) != 0) {
            fprintf(stderr, "  round trip %d differs\n", t);
            CHECK_EQ_STR(tw_sb_str(&got), tw_sb_str(&want));
            t = 1000;
        }
        tw_sb_free(&got);
        tw_sb_free(&csv);
        tw_sb_free(&want);
    }
}

/* Every allocation of a read fails once in turn: a clean error each time, no leak, and the
 * same result once nothing fails. */
static void test_alloc_failures(void) {
    const char *text = "h1,h2\n\"a\nb\",c\nd,e\n";
    int failures_seen = 0;
    for (uint64_t n = 1; n < 64; n++) {
        tw_mem_stats before = tw_mem_get_stats();
        tw_sb sb;
        tw_sb_init(&sb);
        tw_mem_fail_after(n);
        tw_status st = read_all(text, strlen(text), ',', &sb, NULL, 0);
        tw_mem_fail_after(0);
        int out_failed = sb.failed; /* the failure hit the test's own output buffer */
        tw_sb_free(&sb);
        CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before.current_bytes);
        if (st == TW_OK && !out_failed) break;
        if (st == TW_OK) continue;
        CHECK_EQ_INT(st, TW_ERR_NOMEM);
        failures_seen++;
    }
    CHECK(failures_seen >= 3);
}

int main(void) {
    RUN(test_rfc4180);
    RUN(test_quirks);
    RUN(test_linkedin_shape);
    RUN(test_refused);
    RUN(test_round_trip);
    RUN(test_alloc_failures);
    TEST_DONE();
}
