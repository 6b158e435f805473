/* crawl_report.c: shared by twin crawl and twin schedule run (crawl_report.h). */
#include "crawl_report.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_warehouse.h"

int crawl_cli_opt(const char *cmd, int argc, char **argv, int *i, crawl_cli_opts *o) {
    const char *v;
    double *dst = NULL;
    const char *name = NULL;
    if (cli_opt(argc, argv, i, "--interval", &v)) dst = &o->interval_s, name = "--interval";
    else if (cli_opt(argc, argv, i, "--timeout", &v)) dst = &o->timeout_s, name = "--timeout";
    if (!dst) return 0;
    double x;
    if (cli_parse_double(cmd, name, v, &x)) return -1;
    if (!(x >= 0 && x <= 86400) || (dst == &o->timeout_s && x <= 0))
        return cli_fail(CLI_USAGE, cmd, "%s: '%s' is out of range", name, v), -1;
    *dst = x;
    return 1;
}

int crawl_cli_open(const char *cmd, const crawl_cli_opts *o, crawl_ctx *ctx) {
    int rc = cli_warehouse_open(cmd, &ctx->db);
    if (rc) return rc;
    http_opts ho;
    http_opts_default(&ho);
    if (o->interval_s >= 0) ho.min_interval_s = o->interval_s;
    if (o->timeout_s > 0) ho.timeout_s = o->timeout_s;
    if (http_client_new(&ho, &ctx->http)) {
        rc = cli_fail_status(cmd);
        wh_close(ctx->db);
        ctx->db = NULL;
        return rc == CLI_USAGE ? CLI_ERR : rc;
    }
    return CLI_OK;
}

void crawl_cli_close(crawl_ctx *ctx) {
    http_client_free(ctx->http);
    wh_close(ctx->db);
    ctx->http = NULL;
    ctx->db = NULL;
}

void crawl_reasons_free(crawl_reasons *r) {
    for (size_t i = 0; i < r->n; i++) tw_free(r->reason[i]);
    tw_free(r->reason);
    tw_free(r->count);
    memset(r, 0, sizeof *r);
}

typedef struct {
    crawl_reasons *r;
    wh_event_kind kind;
    int oom;
} reasons_walk;

static int reasons_on_event(void *ctx, const wh_event *e) {
    reasons_walk *w = ctx;
    if (e->kind != w->kind) return 0;
    const char *why = e->reason && e->reason[0] ? e->reason : "no reason given";
    const char *semi = strstr(why, "; ");
    size_t n = semi ? (size_t)(semi - why) : strlen(why);
    crawl_reasons *r = w->r;
    for (size_t i = 0; i < r->n; i++)
        if (strlen(r->reason[i]) == n && !memcmp(r->reason[i], why, n)) return r->count[i]++, 0;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 8;
        char **nr = tw_realloc(r->reason, nc * sizeof *nr);
        if (nr) r->reason = nr;
        int64_t *ncnt = nr ? tw_realloc(r->count, nc * sizeof *ncnt) : NULL;
        if (ncnt) r->count = ncnt;
        if (!nr || !ncnt) return w->oom = 1;
        r->cap = nc;
    }
    char *s = tw_strndup(why, n);
    if (!s) return w->oom = 1;
    r->reason[r->n] = s;
    r->count[r->n++] = 1;
    return 0;
}

tw_status crawl_reasons_add(crawl_reasons *r, wh_db *db, int64_t run_id, wh_event_kind kind) {
    reasons_walk w = {r, kind, 0};
    tw_status st = wh_run_each_event(db, run_id, reasons_on_event, &w);
    if (!st && w.oom) st = tw_error(TW_ERR_NOMEM, "crawl: out of memory");
    return st;
}

/* Indices of r by count, largest first (ties in first-seen order). */
static size_t *reasons_order(const crawl_reasons *r) {
    size_t *ix = tw_calloc(r->n ? r->n : 1, sizeof *ix);
    if (!ix) return NULL;
    for (size_t i = 0; i < r->n; i++) {
        size_t j = i;
        while (j > 0 && r->count[ix[j - 1]] < r->count[i]) ix[j] = ix[j - 1], j--;
        ix[j] = i;
    }
    return ix;
}

void crawl_reasons_print(tw_sb *sb, const crawl_reasons *r, const char *what) {
    if (!r->n) return;
    int64_t total = 0;
    for (size_t i = 0; i < r->n; i++) total += r->count[i];
    size_t *ix = reasons_order(r);
    tw_sb_printf(sb, "%lld %s: ", (long long)total, what);
    for (size_t k = 0; k < r->n; k++) {
        size_t i = ix ? ix[k] : k;
        tw_sb_printf(sb, "%s%lld x %s", k ? ", " : "", (long long)r->count[i], r->reason[i]);
    }
    tw_free(ix);
}

void crawl_reasons_json(tw_sb *sb, const crawl_reasons *r) {
    tw_sb_putc(sb, '{');
    for (size_t i = 0; i < r->n; i++) {
        if (i) tw_sb_putc(sb, ',');
        tw_sb_json_str(sb, r->reason[i], strlen(r->reason[i]));
        tw_sb_printf(sb, ":%lld", (long long)r->count[i]);
    }
    tw_sb_putc(sb, '}');
}

void crawl_counts_print(tw_sb *sb, const wh_run_counts *c) {
    tw_sb_printf(sb, "%lld fetched, %lld new, %lld changed, %lld unchanged, %lld skipped, %lld failed",
                 (long long)c->fetched, (long long)c->new_docs, (long long)c->changed,
                 (long long)c->unchanged, (long long)c->skipped, (long long)c->failed);
}
