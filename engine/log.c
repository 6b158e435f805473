/* log.c: leveled logging to stderr, as text or as one JSON object per line (core.h). */
#include "core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static _Atomic int log_level = TW_LOG_INFO;
static _Atomic int log_json = 0;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

int tw_log_parse_level(const char *s, tw_log_level *out) {
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= TW_LOG_OFF; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (tw_log_level)i;
            return 0;
        }
    return -1;
}

static void log_init_env(void) {
    const char *l = getenv("TWIN_LOG");
    tw_log_level lv;
    if (l && tw_log_parse_level(l, &lv) == 0) log_level = lv;
    const char *f = getenv("TWIN_LOG_FORMAT");
    if (f && strcasecmp(f, "json") == 0) log_json = 1;
}

void tw_log_set_level(tw_log_level level) {
    pthread_once(&log_once, log_init_env);
    log_level = level;
}
tw_log_level tw_log_get_level(void) {
    pthread_once(&log_once, log_init_env);
    return (tw_log_level)log_level;
}
void tw_log_set_json(int on) {
    pthread_once(&log_once, log_init_env);
    log_json = on;
}

void tw_log(tw_log_level level, const char *fmt, ...) {
    pthread_once(&log_once, log_init_env);
    if ((int)level < log_level || level >= TW_LOG_OFF) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_mu);
    if (log_json) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", when,
                     ts.tv_nsec / 1000000, names[level]);
        tw_sb_json_str(&sb, msg, strlen(msg));
        tw_sb_puts(&sb, "}\n");
        fputs(tw_sb_str(&sb), stderr);
        tw_sb_free(&sb);
    } else {
        if (level == TW_LOG_INFO)
            fprintf(stderr, "twin: %s\n", msg);
        else
            fprintf(stderr, "twin: %s: %s\n", names[level], msg);
    }
    pthread_mutex_unlock(&log_mu);
}
