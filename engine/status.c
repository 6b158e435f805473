/* status.c: result codes and the thread-local error message (core.h). */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define TW_ERRMSG_CAP 1024

static _Thread_local tw_status tl_code;
static _Thread_local char tl_msg[TW_ERRMSG_CAP];

/* A message is one line whatever it quotes: names and values read from files (a tensor name,
 * a JSON string) may hold a newline or other control byte, which would break the one-line
 * error of the CLI, of a log record and of an HTTP error body. Each becomes '?'. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

tw_status tw_error(tw_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    one_line(tl_msg);
    tl_code = code;
    return code;
}

tw_status tw_error_wrap(const char *fmt, ...) {
    char prefix[512], old[TW_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_msg, sizeof old);
    /* Truncation is acceptable: the message stays a valid, if shortened, string. */
    size_t np = strlen(prefix);
    if (np > sizeof tl_msg - 3) np = sizeof tl_msg - 3;
    memcpy(tl_msg, prefix, np);
    memcpy(tl_msg + np, ": ", 2);
    size_t room = sizeof tl_msg - np - 3, no = strlen(old);
    if (no > room) no = room;
    memcpy(tl_msg + np + 2, old, no);
    tl_msg[np + 2 + no] = 0;
    one_line(tl_msg);
    return tl_code;
}

const char *tw_errmsg(void) { return tl_msg; }
tw_status tw_errcode(void) { return tl_code; }

void tw_error_clear(void) {
    tl_code = TW_OK;
    tl_msg[0] = 0;
}

const char *tw_status_name(tw_status s) {
    static const char *names[TW_ERR_COUNT] = {"ok",          "bad argument", "i/o error",
                                              "bad format",  "unsupported",  "out of memory",
                                              "not found",   "runtime error"};
    return (unsigned)s < TW_ERR_COUNT ? names[s] : "unknown status";
}

void tw_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "twin: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    fflush(stderr);
    abort();
}
