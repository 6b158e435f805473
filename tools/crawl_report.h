/* crawl_report.h: what `twin crawl` and `twin schedule run` share: opening the warehouse and
 * the HTTP client for crawling, and reporting a run (counts, failure reasons grouped). */
#ifndef TWIN_CRAWL_REPORT_H
#define TWIN_CRAWL_REPORT_H

#include "pipelines/crawl.h"

/* Options both commands take. */
typedef struct {
    double interval_s; /* --interval: seconds between two requests to one host (<0: default) */
    double timeout_s;  /* --timeout: one request's whole transfer (<0: default) */
} crawl_cli_opts;

/* Parses --interval S / --timeout S at argv[*i] (advancing *i past a value). Returns 1 when
 * the argument was one of them, 0 when not, -1 after printing a usage error for cmd. */
int crawl_cli_opt(const char *cmd, int argc, char **argv, int *i, crawl_cli_opts *o);

/* Opens <workspace>/twin.db (cli_warehouse_open: made when absent) and an HTTP client
 * with the options; fills ctx's db and http. Prints the one-line error for cmd and returns
 * CLI_ERR on failure (then nothing is left open). crawl_cli_close frees both. */
int crawl_cli_open(const char *cmd, const crawl_cli_opts *o, crawl_ctx *ctx);
void crawl_cli_close(crawl_ctx *ctx);

/* Reasons counted by group (the text of an event's reason before its first "; "). */
typedef struct {
    char **reason; /* (n,) heap strings */
    int64_t *count;
    size_t n, cap;
} crawl_reasons;
void crawl_reasons_free(crawl_reasons *r);
/* Adds the FAILED (kind WH_EVENT_FAILED) or SKIPPED events of run_id to r. */
tw_status crawl_reasons_add(crawl_reasons *r, wh_db *db, int64_t run_id, wh_event_kind kind);
/* "3 failed: 2 x HTTP 404, 1 x timeout" into sb (what: "failed" / "skipped"); nothing when
 * r is empty. Groups by count, largest first. */
void crawl_reasons_print(tw_sb *sb, const crawl_reasons *r, const char *what);
/* {"HTTP 404":2,"timeout":1} into sb. */
void crawl_reasons_json(tw_sb *sb, const crawl_reasons *r);

/* "5 fetched, 3 new, 0 changed, 1 unchanged, 0 skipped, 1 failed" into sb. */
void crawl_counts_print(tw_sb *sb, const wh_run_counts *c);

#endif
