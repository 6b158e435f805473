/* cmd_crawl.c: twin crawl [--author NAME] [--source ID] [--max-items N] [--json]: every matching
 * source crawled once into the warehouse.
 *
 * stderr: a progress line per source (rewritten in place with '\r' while it runs when stderr
 * is a terminal; one line when the source is done otherwise). stdout: the summary, a line per
 * source then the totals and the failure / skip reasons grouped ("3 failed: 2 x HTTP 404,
 * 1 x timeout"), or with --json one object:
 *   {"sources":[{"id","author","platform","url","run_id","status","fetched","new","changed",
 *    "unchanged","skipped","failed","error"}...], "totals":{...counts...},
 *    "failed_reasons":{"HTTP 404":2}, "skipped_reasons":{...}}
 * Exit 0 when every run finished (items may have failed), 1 when one could not run. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "crawl_report.h"

#define CMD "crawl"

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin crawl [--author NAME] [--source ID] [--max-items N] [--json]\n"
            "                  [--interval S] [--timeout S]\n\n"
            "Crawls each source (of the author, or the one source) once into the warehouse:\n"
            "new and changed documents are stored (a change is a new version), unchanged ones\n"
            "are found by conditional GETs and known feed GUIDs. Every URL fetched, unchanged,\n"
            "skipped or failed is recorded with its reason in the run's events.\n\n"
            "  --author NAME   only this author's sources\n"
            "  --source ID     only this source (see twin source ls)\n"
            "  --max-items N   at most N documents per source\n"
            "  --json          the summary as one JSON object\n"
            "  --interval S    seconds between two requests to one host (default 0.25)\n"
            "  --timeout S     seconds one request may take (default 30)\n\n"
            "exit status: 0 every run finished (even with failed items), 1 a run could not run\n"
            "(source locked by another crawl, database error), 2 bad usage\n");
}

/* The sources to crawl, copied out of wh_source_each's callback. */
typedef struct {
    wh_source *v;
    size_t n, cap;
    int oom;
} source_list;

static int collect(void *ctx, const wh_source *s) {
    source_list *l = ctx;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        wh_source *nv = tw_realloc(l->v, nc * sizeof *nv);
        if (!nv) return l->oom = 1;
        l->v = nv;
        l->cap = nc;
    }
    wh_source *d = &l->v[l->n];
    *d = *s;
    d->author = tw_strdup(s->author ? s->author : "");
    d->url = tw_strdup(s->url ? s->url : "");
    d->last_status = tw_strdup(s->last_status ? s->last_status : "");
    l->n++;
    if (!d->author || !d->url || !d->last_status) return l->oom = 1;
    return 0;
}

static void list_free(source_list *l) {
    for (size_t i = 0; i < l->n; i++) wh_source_clear(&l->v[i]);
    tw_free(l->v);
}

typedef struct {
    int tty;
    size_t index, total;
} progress_state;

static void progress_line(const progress_state *p, const wh_source *s, const wh_run_counts *c,
                          const char *end) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "crawl [%zu/%zu] source %lld %s %s: ", p->index + 1, p->total,
                 (long long)s->id, wh_platform_name(s->platform), s->url);
    crawl_counts_print(&sb, c);
    if (p->tty) fprintf(stderr, "\r%s\033[K%s", tw_sb_str(&sb), end);
    else fprintf(stderr, "%s%s", tw_sb_str(&sb), end);
    fflush(stderr);
    tw_sb_free(&sb);
}

static void on_progress(void *ctx, const wh_source *s, const wh_run_counts *c) {
    const progress_state *p = ctx;
    if (p->tty) progress_line(p, s, c, "");
}

static void counts_add(wh_run_counts *t, const wh_run_counts *c) {
    t->fetched += c->fetched;
    t->new_docs += c->new_docs;
    t->changed += c->changed;
    t->unchanged += c->unchanged;
    t->skipped += c->skipped;
    t->failed += c->failed;
}

static void counts_json(tw_sb *sb, const wh_run_counts *c) {
    tw_sb_printf(sb,
                 "\"fetched\":%lld,\"new\":%lld,\"changed\":%lld,\"unchanged\":%lld,"
                 "\"skipped\":%lld,\"failed\":%lld",
                 (long long)c->fetched, (long long)c->new_docs, (long long)c->changed,
                 (long long)c->unchanged, (long long)c->skipped, (long long)c->failed);
}

int cmd_crawl(int argc, char **argv) {
    const char *author = NULL;
    long source_id = 0, max_items = 0;
    int json = 0;
    crawl_cli_opts co = {-1, -1};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, CMD, "--author needs a name");
            author = v;
        } else if (cli_opt(argc, argv, &i, "--source", &v)) {
            if (cli_parse_int(CMD, "--source", v, 1, 0x7fffffffL, &source_id)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--max-items", &v)) {
            if (cli_parse_int(CMD, "--max-items", v, 1, 0x7fffffffL, &max_items)) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--json")) {
            json = 1;
        } else if ((r = crawl_cli_opt(CMD, argc, argv, &i, &co)) != 0) {
            if (r < 0) return CLI_USAGE;
        } else {
            usage(stderr);
            return cli_fail(CLI_USAGE, CMD, "unknown argument '%s'", argv[i]);
        }
    }
    crawl_ctx ctx = {0};
    int rc = crawl_cli_open(CMD, &co, &ctx);
    if (rc) return rc;
    ctx.max_items = max_items;
    source_list list = {0};
    int64_t author_id = 0;
    tw_status st = TW_OK;
    if (author && wh_author_find(ctx.db, author, &author_id)) {
        rc = cli_fail(CLI_ERR, CMD, "--author: no author '%s' in the warehouse", author);
        goto done;
    }
    if (source_id) {
        wh_source s;
        if (wh_source_get(ctx.db, source_id, &s)) {
            rc = cli_fail(CLI_ERR, CMD, "--source: %s", tw_errmsg());
            goto done;
        }
        if (!author || s.author_id == author_id) collect(&list, &s);
        wh_source_clear(&s);
    } else {
        st = wh_source_each(ctx.db, author_id, collect, &list);
    }
    if (st || list.oom) {
        rc = list.oom ? cli_fail(CLI_ERR, CMD, "out of memory") : cli_fail_status(CMD);
        goto done;
    }
    if (!list.n) {
        rc = cli_fail(CLI_ERR, CMD, "no sources to crawl%s%s (add one: twin source add)",
                      author ? " for author " : "", author ? author : "");
        goto done;
    }
    progress_state ps = {isatty(STDERR_FILENO), 0, list.n};
    ctx.progress = on_progress;
    ctx.progress_ctx = &ps;
    wh_run_counts total = {0};
    crawl_reasons failed = {0}, skipped = {0};
    tw_sb out, js;
    tw_sb_init(&out);
    tw_sb_init(&js);
    tw_sb_puts(&js, "{\"sources\":[");
    int could_not_run = 0;
    for (size_t i = 0; i < list.n; i++) {
        const wh_source *s = &list.v[i];
        ps.index = i;
        wh_run_counts c;
        int64_t run_id = 0;
        if (ps.tty) progress_line(&ps, s, &(wh_run_counts){0}, "");
        tw_status cs = crawl_source(&ctx, s, &c, &run_id);
        char err[512] = "";
        progress_line(&ps, s, &c, "\n");
        if (cs) {
            snprintf(err, sizeof err, "%s", tw_errmsg());
            could_not_run = 1;
            cli_fail(CLI_ERR, CMD, "source %lld: %s", (long long)s->id, err);
        }
        counts_add(&total, &c);
        if (run_id) {
            if (crawl_reasons_add(&failed, ctx.db, run_id, WH_EVENT_FAILED) ||
                crawl_reasons_add(&skipped, ctx.db, run_id, WH_EVENT_SKIPPED))
                tw_log_warn("crawl: run %lld: events not readable: %s", (long long)run_id, tw_errmsg());
        }
        const char *status = cs ? "failed" : c.failed ? "partial" : "ok";
        tw_sb_printf(&out, "source %lld %s %s: %s, ", (long long)s->id,
                     wh_platform_name(s->platform), s->url, status);
        crawl_counts_print(&out, &c);
        if (cs) tw_sb_printf(&out, " (%s)", err);
        tw_sb_putc(&out, '\n');
        tw_sb_printf(&js, "%s{\"id\":%lld,\"author\":", i ? "," : "", (long long)s->id);
        tw_sb_json_str(&js, s->author, strlen(s->author));
        tw_sb_printf(&js, ",\"platform\":\"%s\",\"url\":", wh_platform_name(s->platform));
        tw_sb_json_str(&js, s->url, strlen(s->url));
        tw_sb_printf(&js, ",\"run_id\":%lld,\"status\":\"%s\",", (long long)run_id, status);
        counts_json(&js, &c);
        tw_sb_puts(&js, ",\"error\":");
        if (cs) tw_sb_json_str(&js, err, strlen(err));
        else tw_sb_puts(&js, "null");
        tw_sb_putc(&js, '}');
    }
    tw_sb_puts(&js, "],\"totals\":{");
    counts_json(&js, &total);
    tw_sb_puts(&js, "},\"failed_reasons\":");
    crawl_reasons_json(&js, &failed);
    tw_sb_puts(&js, ",\"skipped_reasons\":");
    crawl_reasons_json(&js, &skipped);
    tw_sb_puts(&js, "}\n");
    tw_sb_printf(&out, "crawled %zu source%s: ", list.n, list.n == 1 ? "" : "s");
    crawl_counts_print(&out, &total);
    tw_sb_putc(&out, '\n');
    if (failed.n) crawl_reasons_print(&out, &failed, "failed"), tw_sb_putc(&out, '\n');
    if (skipped.n) crawl_reasons_print(&out, &skipped, "skipped"), tw_sb_putc(&out, '\n');
    if (out.failed || js.failed) {
        rc = cli_fail(CLI_ERR, CMD, "out of memory");
    } else {
        fputs(json ? tw_sb_str(&js) : tw_sb_str(&out), stdout);
        rc = could_not_run ? CLI_ERR : CLI_OK;
        if (could_not_run)
            cli_fail(CLI_ERR, CMD, "some sources could not be crawled (their errors are above)");
    }
    tw_sb_free(&out);
    tw_sb_free(&js);
    crawl_reasons_free(&failed);
    crawl_reasons_free(&skipped);
done:
    list_free(&list);
    crawl_cli_close(&ctx);
    return rc;
}
