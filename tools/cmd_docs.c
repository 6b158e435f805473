/* cmd_docs.c: twin docs ls|show|export: the documents in the warehouse.
 *
 *   ls [--author A] [--platform P] [--json]     one line (or object) per document
 *   show ID [--raw]                             its cleaned text when present, else the raw
 *   export [--format jsonl] [--author A] [--platform P] [--out FILE]
 *       one JSON object per line with exactly ARCHITECTURE.md's fields {id, author, platform,
 *       url, title, published_at, content} (content: the cleaned text when present, else the
 *       raw; title / published_at null when unknown); --out writes the file atomically.
 */
#include "cli.h"
#include "cli_warehouse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin docs ls [--author A] [--platform P] [--json]\n"
            "       twin docs show ID [--raw]\n"
            "       twin docs export [--format jsonl] [--author A] [--platform P] [--out FILE]\n\n"
            "The documents crawled into <workspace>/twin.db (made when absent).\n\n"
            "ls        lists documents: id, author, platform, version, date of publication,\n"
            "          whether it has current cleaned text (CLEAN yes/no), title, URL\n"
            "  --author A        only this author's\n"
            "  --platform P      only this platform's (medium|substack|github|linkedin|article|\n"
            "                    local)\n"
            "  --json            a JSON array of objects {id, author, platform, url, title,\n"
            "                    published_at, content_type, version, source_id, content_hash}\n"
            "show ID   prints the document's cleaned text when it has current cleaned text, else\n"
            "          the raw content as fetched, byte for byte\n"
            "  --raw             always the raw content\n"
            "export    writes one JSON object per line: {id, author, platform, url, title,\n"
            "          published_at, content}, content being the cleaned text when current, else\n"
            "          the raw; title and published_at are null when unknown; bytes that are not\n"
            "          UTF-8 become U+FFFD. An empty selection writes nothing (and says so)\n"
            "  --format jsonl    the only format (default)\n"
            "  --author A, --platform P   as for ls\n"
            "  --out FILE        write FILE atomically (a temporary file renamed when complete)\n"
            "                    instead of standard output\n\n"
            "exit status: 0 success, 1 runtime error (unreadable warehouse, no such document or\n"
            "author, unwritable FILE), 2 bad usage\n");
}

/* The filter options shared by ls and export. */
typedef struct {
    const char *author;
    int platform; /* -1: any */
} doc_opts;

/* Parses --author / --platform at argv[*i]: 1 when it was one, 0 when not, -1 after an error. */
static int filter_opt(const char *cmd, int argc, char **argv, int *i, doc_opts *o) {
    const char *v;
    if (cli_opt(argc, argv, i, "--author", &v)) {
        if (!v || !*v) return cli_fail(CLI_USAGE, cmd, "--author needs a name"), -1;
        o->author = v;
        return 1;
    }
    if (cli_opt(argc, argv, i, "--platform", &v)) {
        o->platform = v ? wh_platform_parse(v) : -1;
        if (o->platform < 0)
            return cli_fail(CLI_USAGE, cmd,
                            "--platform '%s': expected medium|substack|github|linkedin|article|local",
                            v ? v : ""), -1;
        return 1;
    }
    return 0;
}

/* Opens the warehouse and makes the filter; CLI_OK or the exit status after an error. */
static int open_filtered(const char *cmd, const doc_opts *o, wh_db **db, wh_doc_filter *f) {
    memset(f, 0, sizeof *f);
    f->platform = o->platform;
    int rc = cli_warehouse_open(cmd, db);
    if (rc) return rc;
    if (o->author && wh_author_find(*db, o->author, &f->author_id)) {
        wh_close(*db);
        *db = NULL;
        return cli_fail(CLI_ERR, cmd, "--author '%s': no such author", o->author);
    }
    return CLI_OK;
}

/* ---- ls ------------------------------------------------------------------------------------ */

typedef struct {
    int64_t *ids; /* ascending */
    size_t n, cap;
    int oom;
} id_set;

static int id_set_add(void *ctx, const wh_doc *d) {
    id_set *s = ctx;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        int64_t *ni = tw_realloc(s->ids, nc * sizeof *ni);
        if (!ni) return s->oom = 1;
        s->ids = ni;
        s->cap = nc;
    }
    s->ids[s->n++] = d->id;
    return 0;
}

static int id_set_has(const id_set *s, int64_t id) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] == id) return 1;
        if (s->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

typedef struct {
    const id_set *unclean; /* documents without current cleaned text */
    int json, n;
    tw_status st;
} ls_state;

/* At most max bytes of s, cut on a character boundary, with "..." when cut; control
 * characters (a title's newline or tab) as spaces, so a listing stays one line per item. */
static void put_cut(tw_sb *sb, const char *s, size_t max) {
    size_t n = strlen(s), k = n;
    if (n > max) {
        k = max;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    }
    for (size_t i = 0; i < k; i++) tw_sb_putc(sb, (unsigned char)s[i] < 0x20 ? ' ' : s[i]);
    if (k < n) tw_sb_puts(sb, "...");
}

static int ls_one(void *ctx, const wh_doc *d) {
    ls_state *l = ctx;
    tw_sb o;
    tw_sb_init(&o);
    if (l->json) {
        tw_sb_puts(&o, l->n ? ",\n  " : "\n  ");
        tw_sb_printf(&o, "{\"id\": %lld, \"author\": ", (long long)d->id);
        cli_json_text(&o, d->author, strlen(d->author));
        tw_sb_printf(&o, ", \"platform\": \"%s\", \"url\": ", wh_platform_name(d->platform));
        cli_json_text(&o, d->url, strlen(d->url));
        tw_sb_puts(&o, ", \"title\": ");
        cli_json_text(&o, d->title, strlen(d->title));
        tw_sb_puts(&o, ", \"published_at\": ");
        if (d->published_at[0])
            cli_json_text(&o, d->published_at, strlen(d->published_at));
        else
            tw_sb_puts(&o, "null");
        tw_sb_printf(&o, ", \"content_type\": \"%s\", \"version\": %lld, \"source_id\": %lld, "
                         "\"content_hash\": \"%s\"}",
                     d->content_type, (long long)d->version, (long long)d->source_id,
                     d->content_hash);
    } else {
        tw_sb_printf(&o, "%-5lld %-16s %-9s %3lld  %-10.10s %-5s ", (long long)d->id, d->author,
                     wh_platform_name(d->platform), (long long)d->version,
                     d->published_at[0] ? d->published_at : "-", id_set_has(l->unclean, d->id) ? "no" : "yes");
        size_t at = o.len, chars = 0;
        put_cut(&o, d->title[0] ? d->title : "(untitled)", 48);
        for (size_t k = at; k < o.len; k++) chars += ((unsigned char)o.buf[k] & 0xC0) != 0x80;
        for (; chars < 48; chars++) tw_sb_putc(&o, ' ');
        tw_sb_printf(&o, "  %s\n", d->url);
    }
    int failed = o.failed;
    if (!failed) fwrite(tw_sb_str(&o), 1, o.len, stdout);
    tw_sb_free(&o);
    if (failed) l->st = TW_ERR_NOMEM;
    l->n++;
    return failed;
}

static int docs_ls(int argc, char **argv) {
    const char *cmd = "docs ls";
    doc_opts o = {NULL, -1};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if ((r = filter_opt(cmd, argc, argv, &i, &o)) != 0) {
            if (r < 0) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--json")) {
            json = 1;
        } else {
            return cli_fail(CLI_USAGE, cmd, "unexpected argument '%s' (twin docs --help)", argv[i]);
        }
    }
    wh_db *db;
    wh_doc_filter f;
    int rc = open_filtered(cmd, &o, &db, &f);
    if (rc) return rc;
    /* Which documents lack current cleaned text: one walk, not a query per line. */
    id_set unclean = {NULL, 0, 0, 0};
    wh_doc_filter fu = f;
    fu.need_cleaning = 1;
    if (wh_doc_each(db, &fu, WH_DOC_NONE, id_set_add, &unclean) || unclean.oom) {
        rc = unclean.oom ? cli_fail(CLI_ERR, cmd, "out of memory") : cli_fail_status(cmd);
        tw_free(unclean.ids);
        wh_close(db);
        return rc;
    }
    ls_state l = {&unclean, json, 0, TW_OK};
    if (json)
        fputs("[", stdout);
    else
        printf("%-5s %-16s %-9s %3s  %-10s %-5s %-48s  %s\n", "ID", "AUTHOR", "PLATFORM", "VER",
               "PUBLISHED", "CLEAN", "TITLE", "URL");
    if (wh_doc_each(db, &f, WH_DOC_NONE, ls_one, &l))
        rc = cli_fail_status(cmd);
    else if (l.st)
        rc = cli_fail(CLI_ERR, cmd, "out of memory");
    else if (json)
        fputs(l.n ? "\n]\n" : "]\n", stdout);
    tw_free(unclean.ids);
    wh_close(db);
    return rc;
}

/* ---- show ---------------------------------------------------------------------------------- */

static int docs_show(int argc, char **argv) {
    const char *cmd = "docs show";
    const char *id_text = NULL;
    int raw = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_flag(argv, i, "--raw")) {
            raw = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_fail(CLI_USAGE, cmd, "unknown option '%s' (twin docs --help)", argv[i]);
        } else if (id_text) {
            return cli_fail(CLI_USAGE, cmd, "one ID only");
        } else {
            id_text = argv[i];
        }
    }
    if (!id_text) return cli_fail(CLI_USAGE, cmd, "an ID is required (twin docs ls lists them)");
    long id;
    if (cli_parse_int(cmd, "ID", id_text, 1, LONG_MAX, &id)) return CLI_USAGE;
    wh_db *db;
    int rc = cli_warehouse_open(cmd, &db);
    if (rc) return rc;
    wh_doc d;
    tw_status st = raw ? TW_ERR_NOT_FOUND : wh_doc_get(db, id, WH_DOC_CLEANED, &d);
    if (st == TW_ERR_NOT_FOUND) st = wh_doc_get(db, id, WH_DOC_RAW, &d);
    if (st) {
        rc = cli_fail_status(cmd);
    } else {
        fwrite(d.content, 1, d.content_len, stdout);
        wh_doc_clear(&d);
    }
    wh_close(db);
    return rc;
}

/* ---- export -------------------------------------------------------------------------------- */

typedef struct {
    wh_db *db;
    FILE *fp;     /* stdout, or NULL when writing af */
    tw_afile *af;
    int64_t n;
    tw_status st;
} export_state;

static int export_one(void *ctx, const wh_doc *raw) {
    export_state *x = ctx;
    wh_doc cleaned;
    const wh_doc *d = raw;
    int have_clean = wh_doc_get(x->db, raw->id, WH_DOC_CLEANED, &cleaned) == TW_OK;
    if (have_clean) d = &cleaned;
    tw_sb o;
    tw_sb_init(&o);
    tw_sb_printf(&o, "{\"id\": %lld, \"author\": ", (long long)d->id);
    cli_json_text(&o, d->author, strlen(d->author));
    tw_sb_printf(&o, ", \"platform\": \"%s\", \"url\": ", wh_platform_name(d->platform));
    cli_json_text(&o, d->url, strlen(d->url));
    tw_sb_puts(&o, ", \"title\": ");
    if (d->title[0])
        cli_json_text(&o, d->title, strlen(d->title));
    else
        tw_sb_puts(&o, "null");
    tw_sb_puts(&o, ", \"published_at\": ");
    if (d->published_at[0])
        cli_json_text(&o, d->published_at, strlen(d->published_at));
    else
        tw_sb_puts(&o, "null");
    tw_sb_puts(&o, ", \"content\": ");
    cli_json_text(&o, d->content, d->content_len);
    tw_sb_puts(&o, "}\n");
    if (have_clean) wh_doc_clear(&cleaned);
    if (o.failed) {
        x->st = tw_error(TW_ERR_NOMEM, "document %lld: out of memory", (long long)raw->id);
    } else if (x->af) {
        x->st = tw_afile_write(x->af, o.buf, o.len);
    } else if (fwrite(o.buf, 1, o.len, x->fp) != o.len) {
        x->st = tw_error(TW_ERR_IO, "standard output: write failed");
    }
    tw_sb_free(&o);
    if (!x->st) x->n++;
    return x->st != TW_OK;
}

static int docs_export(int argc, char **argv) {
    const char *cmd = "docs export";
    doc_opts o = {NULL, -1};
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if ((r = filter_opt(cmd, argc, argv, &i, &o)) != 0) {
            if (r < 0) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--format", &v)) {
            if (!v || strcmp(v, "jsonl"))
                return cli_fail(CLI_USAGE, cmd, "--format '%s': only jsonl is supported",
                                v ? v : "");
        } else if (cli_opt(argc, argv, &i, "--out", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, cmd, "--out needs a file");
            out = v;
        } else {
            return cli_fail(CLI_USAGE, cmd, "unexpected argument '%s' (twin docs --help)", argv[i]);
        }
    }
    wh_db *db;
    wh_doc_filter f;
    int rc = open_filtered(cmd, &o, &db, &f);
    if (rc) return rc;
    tw_afile af;
    export_state x = {db, stdout, NULL, 0, TW_OK};
    if (out) {
        if (tw_afile_open(&af, out)) {
            rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
            wh_close(db);
            return rc;
        }
        x.af = &af;
        x.fp = NULL;
    }
    tw_status st = wh_doc_each(db, &f, WH_DOC_RAW, export_one, &x);
    if (!st) st = x.st;
    if (!st && !x.af && fflush(stdout)) st = tw_error(TW_ERR_IO, "standard output: write failed");
    if (x.af) {
        if (!st)
            st = tw_afile_commit(x.af);
        else
            tw_afile_abort(x.af);
    }
    if (st) {
        rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    } else if (x.n == 0) {
        fprintf(stderr, "twin docs export: no documents%s (0 written%s%s)\n",
                o.author || o.platform >= 0 ? " match" : " in the warehouse yet",
                out ? " to " : "", out ? out : "");
    } else if (out) {
        fprintf(stderr, "twin docs export: %lld documents written to %s\n", (long long)x.n, out);
    }
    wh_close(db);
    return rc;
}

int cmd_docs(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "ls")) return docs_ls(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show")) return docs_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "export")) return docs_export(argc - 1, argv + 1);
    return cli_fail(CLI_USAGE, "docs", "unknown subcommand '%s' (ls, show, export)", argv[1]);
}
