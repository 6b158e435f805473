/* fixture_server.h: starts and stops tests/fixture_server.py (its contract is at the top of that
 * file) from C: for the crawler tests and `twin bench crawl`, which includes this header from
 * tools/ so that there is one way to run the server. Test and tool code only.
 *
 *   fixture_server s;
 *   if (fixture_server_start(&s, script, root, why, sizeof why) != 0) TEST_SKIP("%s", why);
 *   ... http://127.0.0.1:<s.port>/ ... (s.base is "http://127.0.0.1:<port>")
 *   fixture_server_stop(&s);
 *
 * The server also exits by itself once the process that started it exits (it watches its
 * parent), so a test that crashes leaves nothing running.
 */
#ifndef TWIN_TEST_FIXTURE_SERVER_H
#define TWIN_TEST_FIXTURE_SERVER_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core.h"

typedef struct {
    FILE *out;      /* the server's stdout (popen) */
    pid_t pid;
    int port;
    char base[64];  /* "http://127.0.0.1:<port>" */
} fixture_server;

/* Appends s single-quoted for sh. */
static inline void fixture_sh_quote(tw_sb *sb, const char *s) {
    tw_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') tw_sb_puts(sb, "'\\''");
        else tw_sb_putc(sb, *s);
    }
    tw_sb_putc(sb, '\'');
}

/* Is python3 (or $TWIN_PYTHON) there? */
static inline const char *fixture_python(void) {
    const char *p = getenv("TWIN_PYTHON");
    return p && *p ? p : "python3";
}

/* Starts the server on root (a folder) with the script at `script` and waits for its PORT
 * line. 0 on success; -1 with the reason in why[cap] when python3 or the script is missing
 * or the server did not come up (callers skip or fail on that). */
static inline int fixture_server_start(fixture_server *s, const char *script, const char *root, char *why,
                                       size_t cap) {
    memset(s, 0, sizeof *s);
    s->pid = -1;
    tw_sb cmd;
    tw_sb_init(&cmd);
    fixture_sh_quote(&cmd, fixture_python());
    tw_sb_puts(&cmd, " -c 'import http.server' >/dev/null 2>&1");
    int rc = system(tw_sb_str(&cmd));
    if (rc != 0) {
        snprintf(why, cap, "%s with http.server not found", fixture_python());
        tw_sb_free(&cmd);
        return -1;
    }
    if (!script || !tw_path_exists(script)) {
        snprintf(why, cap, "fixture server script not found: %s", script ? script : "(none)");
        tw_sb_free(&cmd);
        return -1;
    }
    tw_sb_clear(&cmd);
    tw_sb_puts(&cmd, "exec "); /* the shell becomes python: its parent is us */
    fixture_sh_quote(&cmd, fixture_python());
    tw_sb_putc(&cmd, ' ');
    fixture_sh_quote(&cmd, script);
    tw_sb_puts(&cmd, " --root ");
    fixture_sh_quote(&cmd, root);
    tw_sb_puts(&cmd, " --port 0");
    s->out = popen(tw_sb_str(&cmd), "r");
    tw_sb_free(&cmd);
    if (!s->out) {
        snprintf(why, cap, "could not start %s", script);
        return -1;
    }
    char line[128];
    long pid = -1;
    if (fgets(line, sizeof line, s->out) && sscanf(line, "PORT %d", &s->port) == 1 &&
        fgets(line, sizeof line, s->out) && sscanf(line, "PID %ld", &pid) == 1 && s->port > 0) {
        s->pid = (pid_t)pid;
        snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
        return 0;
    }
    snprintf(why, cap, "%s did not print its PORT and PID lines", script);
    pclose(s->out);
    s->out = NULL;
    return -1;
}

/* Stops the server (SIGTERM) and waits for it. Safe on a server that did not start. */
static inline void fixture_server_stop(fixture_server *s) {
    if (s->pid > 0) kill(s->pid, SIGTERM);
    if (s->out) pclose(s->out);
    s->out = NULL;
    s->pid = -1;
}

#endif
