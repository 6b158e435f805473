/* cli_warehouse.c: helpers of the warehouse subcommands (cli_warehouse.h). */
#include "cli_warehouse.h"

#include <time.h>

#include "cli.h"

int cli_warehouse_open(const char *cmd, wh_db **db) {
    *db = NULL;
    char *ws = cli_workspace_path(NULL);
    char *path = cli_workspace_path("twin.db");
    int rc = CLI_OK;
    if (!ws || !path) {
        rc = cli_fail(CLI_ERR, cmd, "out of memory");
    } else if (tw_mkdir_p(ws) != TW_OK) {
        rc = cli_fail(CLI_ERR, cmd, "workspace %s: %s", ws, tw_errmsg());
    } else if (wh_open(path, db) != TW_OK) {
        rc = cli_fail(CLI_ERR, cmd, "%s", tw_errmsg());
    }
    tw_free(ws);
    tw_free(path);
    return rc;
}

int cli_json_text(tw_sb *sb, const char *s, size_t n) {
    if (tw_utf8_valid(s, n)) return tw_sb_json_str(sb, s, n);
    tw_sb fixed;
    tw_sb_init(&fixed);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == TW_UTF8_INVALID)
            tw_sb_append(&fixed, "\xEF\xBF\xBD", 3);
        else
            tw_sb_append(&fixed, s + i, (size_t)k);
        i += (size_t)k;
    }
    int r = fixed.failed ? -1 : tw_sb_json_str(sb, tw_sb_str(&fixed), fixed.len);
    tw_sb_free(&fixed);
    return r;
}

void cli_time_iso(double t, char out[32]) {
    if (t <= 0) {
        snprintf(out, 32, "never");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%.0f", t);
}

void cli_interval_text(int64_t s, char out[24]) {
    static const struct {
        int64_t n;
        char u;
    } units[] = {{7 * 86400, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    if (s <= 0) {
        snprintf(out, 24, "-");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (s % units[i].n == 0) {
            snprintf(out, 24, "%lld%c", (long long)(s / units[i].n), units[i].u);
            return;
        }
    snprintf(out, 24, "%llds", (long long)s);
}
