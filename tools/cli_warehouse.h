/* cli_warehouse.h: what the warehouse's subcommands (twin source, twin docs, ...) share:
 * opening <workspace>/twin.db, JSON text of stored bytes, times and intervals for people. */
#ifndef TWIN_CLI_WAREHOUSE_H
#define TWIN_CLI_WAREHOUSE_H

#include "core.h"
#include "pipelines/warehouse.h"

/* Opens <workspace>/twin.db, creating the workspace folder (and the database) when absent.
 * Prints the one-line error for cmd and returns CLI_ERR on failure (*db NULL), CLI_OK with
 * *db for wh_close on success. */
int cli_warehouse_open(const char *cmd, wh_db **db);

/* Appends n bytes as a JSON string literal; bytes that are not UTF-8 become U+FFFD (each bad
 * sequence one), so the output is always valid JSON. Returns 0, or -1 when out of memory. */
int cli_json_text(tw_sb *sb, const char *s, size_t n);

/* "2024-05-01T10:00:00Z" (UTC) for seconds since the epoch; "never" for 0. */
void cli_time_iso(double t, char out[32]);

/* "6h", "30m", "1d", "2w", "45s" (the largest unit that divides it); "-" for 0. */
void cli_interval_text(int64_t seconds, char out[24]);

#endif
