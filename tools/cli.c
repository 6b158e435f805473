/* cli.c: shared helpers of the twin program (cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

cli_globals g_cli;

int cli_fail(int code, const char *cmd, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cmd && *cmd)
        fprintf(stderr, "twin %s: %s\n", cmd, msg);
    else
        fprintf(stderr, "twin: %s\n", msg);
    return code;
}

int cli_fail_status(const char *cmd) {
    const char *m = tw_errmsg();
    return cli_fail(tw_errcode() == TW_ERR_ARG ? CLI_USAGE : CLI_ERR, cmd, "%s",
                    *m ? m : "failed");
}

int cli_opt(int argc, char **argv, int *i, const char *name, const char **value) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') { /* --opt=value */
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != 0) return 0;
    if (*i + 1 >= argc) {
        *value = NULL; /* caller reports the missing value */
        return 1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_flag(char **argv, int i, const char *name) { return strcmp(argv[i], name) == 0; }

int cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    if (!s) return cli_fail(CLI_USAGE, cmd, "%s needs a value", opt);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return cli_fail(CLI_USAGE, cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo,
                        hi);
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out) {
    if (!s) return cli_fail(CLI_USAGE, cmd, "%s needs a value", opt);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return cli_fail(CLI_USAGE, cmd, "%s: '%s' is not a number", opt, s);
    *out = v;
    return 0;
}

char *cli_workspace_path(const char *sub) {
    const char *ws = g_cli.workspace;
    if (!ws || !*ws) ws = getenv("TWIN_HOME");
    if (!ws || !*ws) ws = "./twin-data";
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_puts(&sb, ws);
    if (sub && *sub) tw_sb_printf(&sb, "/%s", sub);
    return tw_sb_take(&sb);
}

char *cli_source_path(const char *rel) {
    tw_sb sb;
    tw_sb_init(&sb);
    const char *src = getenv("TWIN_SRC");
    if (src && *src) {
        tw_sb_printf(&sb, "%s/%s", src, rel);
        if (tw_path_exists(tw_sb_str(&sb))) return tw_sb_take(&sb);
        tw_sb_clear(&sb);
    }
    const char *me = __FILE__; /* <checkout>/tools/cli.c */
    const char *slash = strrchr(me, '/');
    if (slash && slash > me) {
        const char *up = slash - 1;
        while (up > me && *up != '/') up--;
        if (*up == '/') {
            tw_sb_append(&sb, me, (size_t)(up - me));
            tw_sb_printf(&sb, "/%s", rel);
            if (tw_path_exists(tw_sb_str(&sb))) return tw_sb_take(&sb);
        }
    }
    tw_sb_free(&sb);
    return NULL;
}
